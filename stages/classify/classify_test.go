package classify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

func TestType(t *testing.T) {
	tests := []struct {
		name string
		c    *pipeline.Container
		want string
	}{
		// Rule 1.
		{"container_type", pipelinetest.Ctr("c", "ds01.container_type", "orchestration"), "orchestration"},
		{"container_type verbatim", pipelinetest.Ctr("c", "ds01.container_type", "Custom Type"), "Custom Type"},
		{"container_type unknown", pipelinetest.Ctr("c", "ds01.container_type", "unknown"), "unknown"},
		{"container_type infrastructure", pipelinetest.Ctr("c", "ds01.container_type", "infrastructure", "com.docker.compose.project", "monitoring"), "infrastructure"},
		{"container_type wins over all", pipelinetest.Ctr("x._.1001", "ds01.container_type", "api", "ds01.interface", "atomic", "devcontainer.local_folder", "/home/a"), "api"},
		{"container_type empty falls through", pipelinetest.Ctr("c", "ds01.container_type", "", "ds01.interface", "atomic"), "atomic"},
		{"container_type <no value> falls through", pipelinetest.Ctr("c", "ds01.container_type", "<no value>"), Docker},
		// Rule 2.
		{"interface", pipelinetest.Ctr("c", "ds01.interface", "orchestration"), "orchestration"},
		{"interface vscode", pipelinetest.Ctr("c", "ds01.interface", "vscode", "devcontainer.metadata", "[]"), "vscode"},
		{"interface wins over name", pipelinetest.Ctr("x._.1001", "ds01.interface", "api"), "api"},
		{"interface empty falls through", pipelinetest.Ctr("x._.1001", "ds01.interface", ""), Atomic},
		// DS01's regex matched ds01.interface in any value or as a look-alike
		// key and then yielded "<no value>"; only the real key counts here.
		{"interface only in a value", pipelinetest.Ctr("c", "note", "see ds01.interface"), Docker},
		{"interface look-alike key", pipelinetest.Ctr("c", "ds01xinterface", "atomic"), Docker},
		{"interface prefix key", pipelinetest.Ctr("c", "ds01.interface.old", "atomic"), Docker},
		// Rule 3.
		{"atomic name", pipelinetest.Ctr("thesis._.1001"), Atomic},
		{"atomic name wins over devcontainer", pipelinetest.Ctr("thesis._.1001", "devcontainer.local_folder", "/home/a/p"), Atomic},
		{"underscores are not the marker", pipelinetest.Ctr("proj_1_1"), Docker},
		// Rule 4.
		{"devcontainer key", pipelinetest.Ctr("c", "devcontainer.local_folder", "/home/carol/p"), Devcontainer},
		{"devcontainer bare key", pipelinetest.Ctr("c", "devcontainer", ""), Devcontainer},
		{"devcontainer in a value", pipelinetest.Ctr("c", "org.opencontainers.image.source", "https://github.com/x/my-devcontainer"), Devcontainer},
		{"devcontainer in a multi-line value", pipelinetest.Ctr("c", "description", "line one\nbuilt for devcontainer use"), Devcontainer},
		{"devcontainer wins over compose", pipelinetest.Ctr("c", "com.docker.compose.project", "p", "devcontainer.metadata", "[]"), Devcontainer},
		{"devcontainer is case-sensitive", pipelinetest.Ctr("c", "name", "DevContainer"), Docker},
		// Rule 5.
		{"compose key", pipelinetest.Ctr("c", "com.docker.compose.project", "web"), Compose},
		{"compose key with prefix", pipelinetest.Ctr("c", "x.com.docker.compose.service", "db"), Compose},
		{"compose only in a value", pipelinetest.Ctr("c", "note", "com.docker.compose.project"), Docker},
		// Rule 6.
		{"no labels", pipelinetest.Ctr("epic_ramanujan"), Docker},
		{"nil labels", &pipeline.Container{Name: "c"}, Docker},
		{"unrelated labels", pipelinetest.Ctr("c", "maintainer", "someone", "ds01.user", "alice"), Docker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Type(tt.c); got != tt.want {
				t.Errorf("Type() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTypeUnusable(t *testing.T) {
	long := strings.Repeat("t", maxTypeLen+1)
	tests := []struct {
		name  string
		c     *pipeline.Container
		want  string
		warns []string // labels named by the warnings, in order
	}{
		{"container_type newline", pipelinetest.Ctr("c", "ds01.container_type", "docker\nFAKE"), Docker, []string{"ds01.container_type"}},
		{"container_type falls to interface", pipelinetest.Ctr("c", "ds01.container_type", "a\x1bb", "ds01.interface", "api"), "api", []string{"ds01.container_type"}},
		{"both bad, falls to name", pipelinetest.Ctr("x._.1", "ds01.container_type", "\x00", "ds01.interface", "a\rb"), Atomic, []string{"ds01.container_type", "ds01.interface"}},
		{"interface invalid UTF-8", pipelinetest.Ctr("c", "ds01.interface", "\xfe", "devcontainer", "x"), Devcontainer, []string{"ds01.interface"}},
		{"interface too long", pipelinetest.Ctr("c", "ds01.interface", long), Docker, []string{"ds01.interface"}},
		{"C1 control", pipelinetest.Ctr("c", "ds01.container_type", "x\u009by"), Docker, []string{"ds01.container_type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warns []string
			got := classify(tt.c, func(s string) { warns = append(warns, s) })
			if got != tt.want {
				t.Errorf("classify() = %q, want %q", got, tt.want)
			}
			if len(warns) != len(tt.warns) {
				t.Fatalf("warnings = %q, want ones naming %q", warns, tt.warns)
			}
			for i, w := range warns {
				if !strings.Contains(w, tt.warns[i]) {
					t.Errorf("warning %q does not name %s", w, tt.warns[i])
				}
			}
		})
	}
	// Exactly at the limit, and printable non-ASCII, are kept.
	ok := strings.Repeat("t", maxTypeLen)
	if got := Type(pipelinetest.Ctr("c", "ds01.container_type", ok)); got != ok {
		t.Errorf("a %d-byte type was rejected", maxTypeLen)
	}
	if got := Type(pipelinetest.Ctr("c", "ds01.container_type", "gerät")); got != "gerät" {
		t.Errorf("Type() = %q, want gerät", got)
	}
}

func TestProcess(t *testing.T) {
	b := &pipeline.Batch{}
	for _, c := range []*pipeline.Container{
		pipelinetest.Ctr("a", "ds01.container_type", "orchestration"),
		pipelinetest.Ctr("thesis._.1001"),
		pipelinetest.Ctr("vsc", "devcontainer.local_folder", "/home/carol/p"),
		pipelinetest.Ctr("web-1", "com.docker.compose.project", "web"),
		pipelinetest.Ctr("bad", "ds01.container_type", "x\ny"),
		pipelinetest.Ctr("epic_ramanujan"),
	} {
		b.Records = append(b.Records, &pipeline.Record{Container: *c})
	}
	if err := New().Process(context.Background(), &pipeline.Env{}, b); err != nil {
		t.Fatal(err)
	}
	want := []string{"orchestration", Atomic, Devcontainer, Compose, Docker, Docker}
	for i, rec := range b.Records {
		if rec.Type != want[i] {
			t.Errorf("%s: type %q, want %q", rec.Container.Name, rec.Type, want[i])
		}
		if wantWarn := i == 4; (len(rec.Warnings) == 1) != wantWarn || len(rec.Warnings) > 1 {
			t.Errorf("%s: warnings %q", rec.Container.Name, rec.Warnings)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New().Process(ctx, nil, b); !errors.Is(err, context.Canceled) {
		t.Errorf("Process() with a cancelled context = %v", err)
	}
}

// load decodes a pipeline text with a registry holding only this stage.
func load(t *testing.T, src string) (*pipeline.Config, error) {
	t.Helper()
	return pipelinetest.Load(t, pipelinetest.Only(t, Kind), src)
}

func TestDecode(t *testing.T) {
	cfg, err := load(t, "pipeline \"p\" {\n  stage \"classify\" {}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Stages[0].Stage.(*Classify); !ok {
		t.Errorf("stage is %T", cfg.Stages[0].Stage)
	}
	if _, err := load(t, "pipeline \"p\" {\n"+sample+"}\n"); err != nil {
		t.Errorf("sample.hcl does not load: %v", err)
	}
}

func TestDecodeUnknownAttribute(t *testing.T) {
	_, err := load(t, "pipeline \"p\" {\n  stage \"classify\" {\n    types = [\"x\"]\n  }\n}\n")
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Load() = %v, want a *pipeline.ConfigError", err)
	}
	if !pipelinetest.HasDiag(ce.Diags, "Unsupported argument", 3) {
		t.Errorf("diagnostics %v, want \"Unsupported argument\" on line 3", ce.Diags)
	}
}

func FuzzType(f *testing.F) {
	f.Add("thesis._.1001", "", "", "k", "v")
	f.Add("c", "orchestration", "atomic", "", "")
	f.Add("c", "<no value>", "", "devcontainer.local_folder", "/home/a")
	f.Add("c", "a\nb", "\xff", "com.docker.compose.project", "p")
	f.Add("c", "", "", "ds01.container_type", "x\x00y")
	f.Fuzz(func(t *testing.T, name, ctype, iface, key, value string) {
		c := &pipeline.Container{Name: name, Labels: map[string]string{
			labelContainerType: ctype,
			labelInterface:     iface,
			key:                value, // may overwrite one of the above
		}}
		var warns []string
		got := classify(c, func(s string) { warns = append(warns, s) })
		if got != Type(c) {
			t.Fatalf("classify() = %q, Type() = %q", got, Type(c))
		}
		if got == "" || got == "<no value>" || len(got) > maxTypeLen || !utf8.ValidString(got) {
			t.Fatalf("unusable type %q", got)
		}
		for _, r := range got {
			if unicode.IsControl(r) {
				t.Fatalf("type %q carries a control character", got)
			}
		}
		if len(warns) > 2 {
			t.Fatalf("%d warnings for two labels", len(warns))
		}
	})
}

func BenchmarkType(b *testing.B) {
	cs := []*pipeline.Container{
		pipelinetest.Ctr("a", "ds01.user", "alice", "ds01.container_type", "orchestration"),
		pipelinetest.Ctr("b", "ds01.interface", "atomic", "ds01.managed", "true"),
		pipelinetest.Ctr("thesis._.1001", "org.opencontainers.image.title", "pytorch"),
		pipelinetest.Ctr("vsc-proj", "devcontainer.local_folder", "/home/carol/proj", "devcontainer.metadata", "[]"),
		pipelinetest.Ctr("web-1", "com.docker.compose.project", "web", "com.docker.compose.service", "app", "com.docker.compose.version", "2"),
		pipelinetest.Ctr("epic_ramanujan", "maintainer", "someone", "org.opencontainers.image.version", "1.0", "org.opencontainers.image.source", "https://example.org/x"),
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range cs {
			_ = Type(c)
		}
	}
}
