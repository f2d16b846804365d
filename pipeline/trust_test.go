package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/pipeline"
)

// hostGroup is a group of this host other than root's, to play DS01's
// ds-admin.
func hostGroup(t *testing.T) (string, int) {
	t.Helper()
	for _, name := range []string{"adm", "users", "staff", "daemon"} {
		if g, err := user.LookupGroup(name); err == nil {
			if gid, _ := strconv.Atoi(g.Gid); gid != 0 {
				return name, gid
			}
		}
	}
	t.Fatal("no group besides root's on this host")
	return "", 0
}

// DS01's documented layout: /opt/ds01-infra owned root:ds-admin and
// group-writable. Accepted when the pipeline names the group in
// trusted_groups, refused otherwise; a group the host does not know is
// simply not trusted.
func TestTrustedGroups(t *testing.T) {
	needRoot(t)
	name, gid := hostGroup(t)
	dir := filepath.Join(t.TempDir(), "ds01-infra")
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("config/resource-limits.yaml", "defaults:\n  container_hold_after_stop_h: 24\ngroups:\n  student: {}\n")
	write("config/groups/student.members", "alice\n")
	// Group-writable by the admins' group, from the top folder down.
	for _, rel := range []string{"", "config", "config/groups", "config/resource-limits.yaml", "config/groups/student.members"} {
		p := filepath.Join(dir, rel)
		if err := os.Chown(p, 0, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, map[bool]os.FileMode{true: 0o775, false: 0o664}[rel == "" || !strings.Contains(rel, ".")]); err != nil {
			t.Fatal(err)
		}
	}
	pipelineFile := func(groups string) string {
		p := filepath.Join(t.TempDir(), "p.hcl")
		text := `pipeline "p" {
  ` + groups + `
  policy {
    limits_file = "` + dir + `/config/resource-limits.yaml"
    groups_dir  = "` + dir + `/config/groups"
  }
  gpu { backend = "none" }
  stage "discover" {}
}
`
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	strict := pipeline.LoadOptions{StrictFiles: true}

	cfg, err := pipeline.LoadFile(pipelineFile(`trusted_groups = ["`+name+`"]`), strict)
	if err != nil {
		t.Fatalf("files group-writable by a trusted group refused: %v", err)
	}
	if len(cfg.Trust.Groups) != 1 || cfg.Trust.Groups[0].GID != uint32(gid) {
		t.Errorf("Trust = %+v, want the group %s (%d)", cfg.Trust, name, gid)
	}
	for _, groups := range []string{``, `trusted_groups = ["ds01-no-such-group"]`} {
		_, err := pipeline.LoadFile(pipelineFile(groups), strict)
		if !pipeline.IsConfigError(err) || !strings.Contains(err.Error(), "Insecure policy file") || !strings.Contains(err.Error(), "not trusted") {
			t.Errorf("%q: want an insecure policy file, got %v", groups, err)
		}
	}
	if _, err := pipeline.LoadFile(pipelineFile(``), pipeline.LoadOptions{}); err != nil {
		t.Errorf("without StrictFiles (--allow-insecure-files): %v", err)
	}
}

// The loader hands stages that read files at run time the pipeline's
// trust rule and the events file of its events writer.
func TestLoadWiresFileSettings(t *testing.T) {
	reg := pipeline.NewRegistry()
	var got []pipeline.FileSettings
	reg.MustRegister(pipeline.Spec{Kind: "reader", New: func() pipeline.Stage { return &fileReader{got: &got} }})
	reg.MustRegister(pipeline.Spec{Kind: "writer", New: func() pipeline.Stage { return &eventsWriter{} }})
	src := `pipeline "p" {
  trusted_groups = ["ds01-no-such-group"]
  gpu { backend = "none" }
  stage "reader" {}
  stage "writer" { events_file = "/srv/events.jsonl" }
}
`
	if _, err := pipeline.Load("p.hcl", []byte(src), pipeline.LoadOptions{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].HasEventsWriter || got[0].EventsFile != "/srv/events.jsonl" || got[0].Trust.Enforce {
		t.Errorf("settings %+v, want the writer's events file and no enforcement", got)
	}
}

type fileReader struct{ got *[]pipeline.FileSettings }

func (r *fileReader) Process(context.Context, *pipeline.Env, *pipeline.Batch) error { return nil }
func (r *fileReader) UseFiles(fs pipeline.FileSettings)                             { *r.got = append(*r.got, fs) }

type eventsWriter struct {
	EventsFile string `hcl:"events_file,optional"`
}

func (w *eventsWriter) Process(context.Context, *pipeline.Env, *pipeline.Batch) error { return nil }
func (w *eventsWriter) EventsPath() string                                            { return w.EventsFile }

// The lock is never taken through a planted link or in a folder others
// can add entries to, and a lock file that is not root's is refused.
func TestLockTrust(t *testing.T) {
	needRoot(t)
	strict := safefile.Trust{Enforce: true}
	run := func(lockPath string, trust safefile.Trust) error {
		cfg := &pipeline.Config{Name: "p", Timeout: 60e9, LockFile: lockPath, Trust: trust, GPU: pipeline.GPUConfig{Backend: "none"}}
		_, _, err := pipeline.Execute(t.Context(), cfg, pipeline.ExecOptions{Mode: pipeline.ModeRun, Docker: noDocker{}})
		return err
	}
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(open, 0o1777); err != nil { // sticky, as /tmp
		t.Fatal(err)
	}
	if err := run(filepath.Join(open, "cleanup.lock"), strict); err == nil || !strings.Contains(err.Error(), "is a folder with mode 0777") {
		t.Errorf("lock in a sticky folder anyone can write: %v", err)
	}
	if _, err := os.Stat(filepath.Join(open, "cleanup.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the lock file was created in a folder that is not trusted")
	}

	private := filepath.Join(base, "private")
	if err := os.Mkdir(private, 0o755); err != nil {
		t.Fatal(err)
	}
	nobodys := filepath.Join(private, "nobody.lock")
	if err := os.WriteFile(nobodys, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(nobodys, nobody, 0); err != nil {
		t.Fatal(err)
	}
	if err := run(nobodys, strict); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("lock file owned by nobody: %v", err)
	}
	fifo := filepath.Join(private, "fifo.lock")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	var nr *safefile.NotRegularError
	if err := run(fifo, safefile.Trust{}); !errors.As(err, &nr) {
		t.Errorf("lock path is a FIFO: %v, want a *safefile.NotRegularError", err)
	}
}

// The lock's missing folders are created only below folders and links
// root owns: MkdirAll follows links, so a user's link on the way would
// make root create folders wherever it points, before the lock is refused.
func TestLockCreatesNoFolderThroughAUsersLink(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	target := filepath.Join(base, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cfg := &pipeline.Config{Name: "p", Timeout: 60e9, LockFile: filepath.Join(link, "made", "by", "root", "p.lock"),
		Trust: safefile.Trust{Enforce: true}, GPU: pipeline.GPUConfig{Backend: "none"}}
	_, _, err := pipeline.Execute(t.Context(), cfg, pipeline.ExecOptions{Mode: pipeline.ModeRun, Docker: noDocker{}})
	if err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("lock through a link of uid 65534: %v, want refused", err)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("root created folders where the user's link points: %v", entries)
	}
}

// A lock held by another process is reported with the holder it wrote.
func TestLockHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cleanup.lock")
	// The holder is this process (its flock below): the text names it, as a
	// run's own text does (a text naming another PID is replaced by the
	// kernel's answer: TestLockedNamesTheLiveHolder).
	holder := fmt.Sprintf("pid %d, started 2026-01-01T00:00:00Z, pipeline p", os.Getpid())
	if err := os.WriteFile(path, []byte(holder+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	cfg := &pipeline.Config{Name: "p", Timeout: 60e9, LockFile: path, GPU: pipeline.GPUConfig{Backend: "none"}}
	_, _, err = pipeline.Execute(t.Context(), cfg, pipeline.ExecOptions{Mode: pipeline.ModeRun, Docker: noDocker{}})
	var le *pipeline.LockedError
	if !errors.As(err, &le) || le.Holder != holder {
		t.Errorf("err = %v, want a *LockedError naming the holder", err)
	}
}

// Every shipped pipeline trusts DS01's ds-admin, so a DS01 host's
// root:ds-admin, group-writable configuration works as installed.
func TestShippedPipelinesTrustDS01Admins(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "pipelines", "*.hcl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped pipelines: %v", err)
	}
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := pipeline.Load(file, src, pipeline.LoadOptions{})
		if err != nil {
			// Loading reads the policy files the pipeline names, which
			// need not exist here; the attribute is still checked below.
			if !strings.Contains(string(src), `trusted_groups = ["ds-admin"]`) {
				t.Errorf("%s: no trusted_groups = [\"ds-admin\"] (and it does not load here: %v)", file, err)
			}
			continue
		}
		if !slices.Equal(cfg.TrustedGroups, []string{"ds-admin"}) {
			t.Errorf("%s: trusted_groups = %q, want [ds-admin]", file, cfg.TrustedGroups)
		}
	}
}
