package planfile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/pipeline"
)

// writePlan writes a valid plan made with vars and returns its path.
func writePlan(t *testing.T, dir string, vars map[string]string) string {
	t.Helper()
	env := &pipeline.Env{Pipeline: "p", Now: t0, Host: "h"}
	plan, err := New(env, &pipeline.Batch{}, Source{File: filepath.Join(dir, "p.hcl"), Text: []byte("x"), Vars: vars}, t0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cleanup.plan")
	if err := plan.Write(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// The plan's vars are pinned: editing them (they reconfigure the pipeline:
// its paths, its prefix) makes the plan unusable.
func TestVarsPinned(t *testing.T) {
	dir := t.TempDir()
	path := writePlan(t, dir, map[string]string{"events_file": "/var/log/ds01/events.jsonl"})
	p, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.VarsSHA256 != VarsHash(p.Vars) || p.VarsSHA256 == VarsHash(nil) {
		t.Errorf("vars_sha256 = %s, want the hash of the vars", p.VarsSHA256)
	}
	edit := func(f func(m map[string]any)) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		if data, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edit(func(m map[string]any) { m["vars"].(map[string]any)["events_file"] = "/tmp/chosen/evil.log" })
	if _, err := Read(path); !IsInvalid(err) || !strings.Contains(err.Error(), "its vars changed since the plan was made") {
		t.Errorf("edited vars: %v, want an InvalidError", err)
	}
	edit(func(m map[string]any) { delete(m, "vars_sha256") })
	if _, err := Read(path); !IsInvalid(err) || !strings.Contains(err.Error(), "vars_sha256") {
		t.Errorf("no vars_sha256: %v, want an InvalidError", err)
	}
}

// A plan is read like every other input: a FIFO or device is refused at
// once, and as root a plan a user could have written is refused.
func TestReadTrusted(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "plan.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero", dir} {
		done := make(chan error, 1)
		go func() { _, err := Read(path); done <- err }()
		select {
		case err := <-done:
			if !IsInvalid(err) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: %v, want an InvalidError saying it is not a regular file", path, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Read blocked", path)
		}
	}

	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (to chown the plan); CI runs the tests as root")
		}
		t.Skip("needs root to give the plan to another user")
	}
	path := writePlan(t, dir, nil)
	strict := safefile.Trust{Enforce: true}
	if _, err := ReadTrusted(path, strict); err != nil {
		t.Fatalf("root's plan: %v", err)
	}
	if err := os.Chown(path, 65534, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTrusted(path, strict); !IsInvalid(err) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("a plan owned by nobody: %v, want an InvalidError", err)
	}
	if _, err := ReadTrusted(path, safefile.Trust{}); err != nil {
		t.Errorf("not enforced (--allow-insecure-files): %v", err)
	}
}
