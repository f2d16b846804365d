package attribute

import (
	"context"
	"errors"
	"os/user"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// passwd is the fake passwd database of the tests: tokens (uids and login
// names, as getent accepts both) to login names.
var passwd = map[string]string{
	"1001": "dave",
	"1002": "erin",
	"bak":  "bak",
	"dave": "dave",
}

func fakeLookup(token string) (string, bool) {
	name, ok := passwd[token]
	return name, ok
}

func TestOwner(t *testing.T) {
	unknown := pipeline.Owner{Name: pipeline.UnknownOwner, Source: pipeline.OwnerUnknown}
	own := func(name string, src pipeline.OwnerSource) pipeline.Owner {
		return pipeline.Owner{Name: name, Source: src}
	}
	tests := []struct {
		name string
		c    *pipeline.Container
		want pipeline.Owner
	}{
		// Rule 1.
		{"ds01.user", pipelinetest.Ctr("c", "ds01.user", "alice"), own("alice", pipeline.OwnerFromUser)},
		{"ds01.user wins over all", pipelinetest.Ctr("p._.1001", "ds01.user", "alice", "aime.mlc.USER", "bob", "devcontainer.local_folder", "/home/carol/p"), own("alice", pipeline.OwnerFromUser)},
		{"ds01.user domain name verbatim", pipelinetest.Ctr("c", "ds01.user", "h.baker@hertie-school.lan"), own("h.baker@hertie-school.lan", pipeline.OwnerFromUser)},
		{"ds01.user literal unknown", pipelinetest.Ctr("c", "ds01.user", "unknown"), own("unknown", pipeline.OwnerFromUser)},
		{"ds01.user empty falls through", pipelinetest.Ctr("c", "ds01.user", "", "aime.mlc.USER", "bob"), own("bob", pipeline.OwnerFromAIME)},
		{"ds01.user <no value> falls through", pipelinetest.Ctr("c", "ds01.user", "<no value>", "aime.mlc.USER", "bob"), own("bob", pipeline.OwnerFromAIME)},
		// Rule 2; reference 11 scenario 5.
		{"scenario 5: aime.mlc.USER", pipelinetest.Ctr("c", "aime.mlc.USER", "bob"), own("bob", pipeline.OwnerFromAIME)},
		{"aime wins over folder", pipelinetest.Ctr("c", "aime.mlc.USER", "bob", "devcontainer.local_folder", "/home/carol/p"), own("bob", pipeline.OwnerFromAIME)},
		// Rule 3; reference 11 scenario 6.
		{"scenario 6: devcontainer folder", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home/carol/p"), own("carol", pipeline.OwnerFromDevcontainer)},
		{"folder deep path", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home/alice/x/y"), own("alice", pipeline.OwnerFromDevcontainer)},
		{"folder is the home itself", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home/alice"), own("alice", pipeline.OwnerFromDevcontainer)},
		{"folder domain user", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home/h.baker@hertie-school.lan/p"), own("h.baker@hertie-school.lan", pipeline.OwnerFromDevcontainer)},
		{"folder /home/ gives unknown, no fall through", pipelinetest.Ctr("p._.1001", "devcontainer.local_folder", "/home/"), unknown},
		{"folder /home//x gives unknown", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home//x"), unknown},
		{"folder macOS falls through", pipelinetest.Ctr("c", "devcontainer.local_folder", "/Users/x/p"), unknown},
		{"folder macOS falls through to name", pipelinetest.Ctr("p._.1001", "devcontainer.local_folder", "/Users/x/p"), own("dave", pipeline.OwnerFromNameUID)},
		{"folder Windows falls through", pipelinetest.Ctr("c", "devcontainer.local_folder", `C:\Users\x\p`), unknown},
		{"folder /homework falls through", pipelinetest.Ctr("c", "devcontainer.local_folder", "/homework/x"), unknown},
		{"folder relative home falls through", pipelinetest.Ctr("c", "devcontainer.local_folder", "home/alice/p"), unknown},
		// Rule 4; reference 11 scenarios 7 and 8.
		{"scenario 7: name uid resolves", pipelinetest.Ctr("thesis._.1001"), own("dave", pipeline.OwnerFromNameUID)},
		{"scenario 8: name uid unknown", pipelinetest.Ctr("thesis._.4242"), unknown},
		{"dots before the marker", pipelinetest.Ctr("a.b._.1001"), own("dave", pipeline.OwnerFromNameUID)},
		{"token after the last dot", pipelinetest.Ctr("x._.1001.bak"), own("bak", pipeline.OwnerFromNameUID)},
		{"token is a login name", pipelinetest.Ctr("x._.dave"), own("dave", pipeline.OwnerFromNameUID)},
		{"empty token", pipelinetest.Ctr("x._."), unknown},
		{"marker only in the middle", pipelinetest.Ctr("a._.b.1002"), own("erin", pipeline.OwnerFromNameUID)},
		{"no marker", pipelinetest.Ctr("proj.1001"), unknown},
		{"underscores are not the marker", pipelinetest.Ctr("proj_1001"), unknown},
		// Rule 5.
		{"nothing", pipelinetest.Ctr("epic_ramanujan"), unknown},
		{"nil labels", &pipeline.Container{Name: "c"}, unknown},
		{"unrelated labels", pipelinetest.Ctr("c", "com.docker.compose.project", "x", "ds01.owner", "system"), unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Owner(tt.c, fakeLookup); got != tt.want {
				t.Errorf("Owner() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOwnerNoLookup(t *testing.T) {
	// passwd_lookup = false: rule 4 is off, the earlier rules still apply.
	if got := Owner(pipelinetest.Ctr("thesis._.1001"), nil); got.Known() {
		t.Errorf("Owner() without lookup = %+v, want unknown", got)
	}
	if got := Owner(pipelinetest.Ctr("thesis._.1001", "ds01.user", "alice"), nil); got.Name != "alice" {
		t.Errorf("Owner() without lookup = %+v, want alice", got)
	}
}

func TestOwnerUnusable(t *testing.T) {
	long := strings.Repeat("a", maxOwnerLen+1)
	tests := []struct {
		name  string
		c     *pipeline.Container
		label string // named in the warning
	}{
		{"newline", pipelinetest.Ctr("c", "ds01.user", "alice\nFAKE LOG LINE"), "ds01.user"},
		{"escape", pipelinetest.Ctr("c", "ds01.user", "al\x1b[31mice"), "ds01.user"},
		{"nul", pipelinetest.Ctr("c", "aime.mlc.USER", "bo\x00b"), "aime.mlc.USER"},
		{"C1 control", pipelinetest.Ctr("c", "aime.mlc.USER", "bo\u0085b"), "aime.mlc.USER"},
		{"invalid UTF-8", pipelinetest.Ctr("c", "ds01.user", "al\xffice"), "ds01.user"},
		{"too long", pipelinetest.Ctr("c", "ds01.user", long), "ds01.user"},
		{"path", pipelinetest.Ctr("c", "ds01.user", "../../etc/passwd"), "ds01.user"},
		{"dot dot", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home/../etc"), "devcontainer.local_folder"},
		{"dot", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home/./x"), "devcontainer.local_folder"},
		{"folder control", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home/a\tb/p"), "devcontainer.local_folder"},
		{"passwd answer", pipelinetest.Ctr("x._.evil"), "name._.uid"},
	}
	lookup := func(token string) (string, bool) {
		if token == "evil" {
			return "ev\nil", true
		}
		return fakeLookup(token)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warns []string
			got := owner(tt.c, lookup, func(s string) { warns = append(warns, s) })
			if got.Name != pipeline.UnknownOwner || got.Source != pipeline.OwnerUnknown {
				t.Errorf("owner() = %+v, want unknown", got)
			}
			if len(warns) != 1 || !strings.Contains(warns[0], tt.label) {
				t.Fatalf("warnings = %q, want one naming %s", warns, tt.label)
			}
			for _, r := range warns[0] {
				if unicode.IsControl(r) {
					t.Errorf("warning %q carries a control character", warns[0])
				}
			}
		})
	}
	// At the limit is still fine.
	ok := strings.Repeat("a", maxOwnerLen)
	if got := Owner(pipelinetest.Ctr("c", "ds01.user", ok), nil); got.Name != ok {
		t.Errorf("a %d-byte name was rejected", maxOwnerLen)
	}
	// Non-ASCII printable names are kept verbatim.
	if got := Owner(pipelinetest.Ctr("c", "ds01.user", "jürgen"), nil); got.Name != "jürgen" {
		t.Errorf("Owner() = %+v, want jürgen", got)
	}
}

func TestProcess(t *testing.T) {
	var calls atomic.Int32
	st := New()
	st.Lookup = func(token string) (string, bool) {
		calls.Add(1)
		return fakeLookup(token)
	}
	b := pipelinetest.Batch(
		pipelinetest.Ctr("a", "ds01.user", "alice"),
		pipelinetest.Ctr("one._.1001"),
		pipelinetest.Ctr("two._.1001"),
		pipelinetest.Ctr("three._.4242"),
		pipelinetest.Ctr("four._.4242"),
		pipelinetest.Ctr("bad", "ds01.user", "x\ny"),
		pipelinetest.Ctr("plain"),
	)
	if err := st.Process(context.Background(), &pipeline.Env{}, b); err != nil {
		t.Fatal(err)
	}
	want := []string{"alice", "dave", "dave", "unknown", "unknown", "unknown", "unknown"}
	for i, rec := range b.Records {
		if rec.Owner.Name != want[i] {
			t.Errorf("%s: owner %+v, want %s", rec.Container.Name, rec.Owner, want[i])
		}
	}
	if got := b.Records[1].Owner.Source; got != pipeline.OwnerFromNameUID {
		t.Errorf("source = %s, want %s", got, pipeline.OwnerFromNameUID)
	}
	// One lookup per distinct token, misses included.
	if n := calls.Load(); n != 2 {
		t.Errorf("passwd lookups = %d, want 2 (cached per run)", n)
	}
	if w := b.Records[5].Warnings; len(w) != 1 || !strings.Contains(w[0], "ds01.user") {
		t.Errorf("warnings of the hostile record = %q", w)
	}
	for i, rec := range b.Records {
		if i != 5 && len(rec.Warnings) != 0 {
			t.Errorf("%s: unexpected warnings %q", rec.Container.Name, rec.Warnings)
		}
	}

	// A second run asks again: the cache lives for one run only, since
	// passwd may change between runs.
	if err := st.Process(context.Background(), &pipeline.Env{}, pipelinetest.Batch(pipelinetest.Ctr("one._.1001"))); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("passwd lookups after a second run = %d, want 3", n)
	}
}

func TestProcessPasswdLookupOff(t *testing.T) {
	st := New()
	st.PasswdLookup = false
	st.Lookup = func(string) (string, bool) {
		t.Error("lookup called with passwd_lookup = false")
		return "", false
	}
	b := pipelinetest.Batch(pipelinetest.Ctr("thesis._.1001"))
	if err := st.Process(context.Background(), nil, b); err != nil {
		t.Fatal(err)
	}
	if got := b.Records[0].Owner; got.Known() {
		t.Errorf("owner = %+v, want unknown", got)
	}
}

func TestProcessHungLookup(t *testing.T) {
	// A hung NSS backend must not hold the run past its deadline.
	release := make(chan struct{})
	defer close(release)
	st := New()
	st.Lookup = func(string) (string, bool) {
		<-release
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := st.Process(ctx, nil, pipelinetest.Batch(pipelinetest.Ctr("thesis._.1001")))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Process() = %v, want the deadline", err)
	}
}

func TestProcessCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New().Process(ctx, nil, pipelinetest.Batch(pipelinetest.Ctr("a"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Process() = %v, want context.Canceled", err)
	}
}

func TestLookupPasswd(t *testing.T) {
	// The real database: root is uid 0 on every Linux host.
	root, err := user.LookupId("0")
	if err != nil {
		t.Skipf("no passwd entry for uid 0: %v", err)
	}
	for _, token := range []string{"0", "00", root.Username} {
		if got, ok := LookupPasswd(token); !ok || got != root.Username {
			t.Errorf("LookupPasswd(%q) = %q, %v; want %q", token, got, ok, root.Username)
		}
	}
	for _, token := range []string{"", "4294967296", "99999999999999999999", "-1", "no-such-user-ds01-pipe"} {
		if got, ok := LookupPasswd(token); ok {
			t.Errorf("LookupPasswd(%q) = %q, want no match", token, got)
		}
	}
}

// load decodes a pipeline text with a registry holding only this stage.
func load(t *testing.T, src string) (*pipeline.Config, error) {
	t.Helper()
	return pipelinetest.Load(t, pipelinetest.Only(t, Kind), src)
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		body string
		want bool
	}{
		{"default", ``, true},
		{"off", `passwd_lookup = false`, false},
		{"on", `passwd_lookup = true`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, "pipeline \"p\" {\n  stage \"attribute\" {\n    "+tt.body+"\n  }\n}\n")
			if err != nil {
				t.Fatal(err)
			}
			st := cfg.Stages[0].Stage.(*Attribute)
			if st.PasswdLookup != tt.want {
				t.Errorf("PasswdLookup = %v, want %v", st.PasswdLookup, tt.want)
			}
			if st.Lookup == nil {
				t.Error("decoding lost the default Lookup")
			}
		})
	}
}

func TestDecodeSample(t *testing.T) {
	if _, err := load(t, "pipeline \"p\" {\n"+sample+"}\n"); err != nil {
		t.Fatalf("sample.hcl does not load: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, body, summary string
	}{
		{"unknown attribute", `passwd_lookups = false`, "Unsupported argument"},
		{"wrong type", `passwd_lookup = "often"`, "Unsuitable value type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, "pipeline \"p\" {\n  stage \"attribute\" {\n    "+tt.body+"\n  }\n}\n")
			var ce *pipeline.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Load() = %v, want a *pipeline.ConfigError", err)
			}
			if !pipelinetest.HasDiag(ce.Diags, tt.summary, 3) {
				t.Errorf("diagnostics %v, want %q on line 3", ce.Diags, tt.summary)
			}
		})
	}
}

func TestSpec(t *testing.T) {
	spec, _ := pipeline.DefaultRegistry.Lookup(Kind)
	attrs := spec.Attributes()
	if len(attrs) != 1 || attrs[0].Name != "passwd_lookup" || attrs[0].Type != "bool" || attrs[0].Default != "true" || attrs[0].Doc == "" || attrs[0].Required {
		t.Errorf("Attributes() = %+v", attrs)
	}
}

// checkOwner is the invariant every owner meets: "unknown" from the
// fallback, or a non-empty printable name from a rule.
func checkOwner(t *testing.T, o pipeline.Owner) {
	t.Helper()
	if o.Source == pipeline.OwnerUnknown {
		if o.Name != pipeline.UnknownOwner {
			t.Fatalf("source unknown with name %q", o.Name)
		}
		return
	}
	switch o.Source {
	case pipeline.OwnerFromUser, pipeline.OwnerFromAIME, pipeline.OwnerFromDevcontainer, pipeline.OwnerFromNameUID:
	default:
		t.Fatalf("unexpected source %q", o.Source)
	}
	if o.Name == "" || len(o.Name) > maxOwnerLen || !utf8.ValidString(o.Name) || strings.Contains(o.Name, "/") {
		t.Fatalf("unusable owner %q from %s", o.Name, o.Source)
	}
	for _, r := range o.Name {
		if unicode.IsControl(r) {
			t.Fatalf("owner %q carries a control character", o.Name)
		}
	}
}

func FuzzOwner(f *testing.F) {
	f.Add("thesis._.1001", "", "", "", "k", "v")
	f.Add("x._.1001.bak", "", "", "/Users/x/p", "", "")
	f.Add("c", "alice", "bob", "/home/carol/p", "ds01.user", "mallory")
	f.Add("c", "", "", "/home/", "", "")
	f.Add("c", "a\nb", "", "", "", "")
	f.Add("x._.a\x00b", "<no value>", "", "/home/\xff/p", "aime.mlc.USER", "z")
	f.Fuzz(func(t *testing.T, name, user, aime, folder, key, value string) {
		c := &pipeline.Container{Name: name, Labels: map[string]string{
			labelUser:   user,
			labelAIME:   aime,
			labelFolder: folder,
			key:         value, // may overwrite one of the above
		}}
		// The fake passwd echoes the token, so hostile names reach the
		// passwd branch too.
		echo := func(token string) (string, bool) { return token, token != "" && token != "4242" }
		checkOwner(t, Owner(c, echo))
		checkOwner(t, Owner(c, nil))
	})
}

func BenchmarkOwner(b *testing.B) {
	cs := []*pipeline.Container{
		pipelinetest.Ctr("a", "ds01.user", "alice", "ds01.managed", "true", "ds01.interface", "atomic"),
		pipelinetest.Ctr("b", "aime.mlc.USER", "bob"),
		pipelinetest.Ctr("vsc-proj", "devcontainer.local_folder", "/home/carol/proj", "devcontainer.metadata", "[]"),
		pipelinetest.Ctr("thesis._.1001", "org.opencontainers.image.title", "pytorch"),
		pipelinetest.Ctr("epic_ramanujan", "maintainer", "someone"),
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range cs {
			_ = Owner(c, fakeLookup)
		}
	}
}
