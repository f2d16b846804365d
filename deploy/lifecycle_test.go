package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The lifecycle pipeline runs from the same template (ds01-pipe@lifecycle):
// its state_dir and lock_file defaults must be writable under
// ProtectSystem=strict, and the state folder root-only, which the
// pipeline checks before it runs.
func TestUnitsServeTheLifecyclePipeline(t *testing.T) {
	root := repoRoot(t)
	svc := readUnit(t, filepath.Join(root, "deploy", "systemd", serviceFile))
	src, err := os.ReadFile(filepath.Join(root, "pipelines", "lifecycle.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	def := func(name string) string {
		re := regexp.MustCompile(`(?s)variable "` + name + `" \{[^}]*?default\s*=\s*"([^"]*)"`)
		m := re.FindSubmatch(src)
		if m == nil {
			t.Fatalf("lifecycle.hcl: no default for variable %q", name)
		}
		return string(m[1])
	}
	if got, want := def("state_dir"), "/var/lib/"+svc.one(t, "Service", "StateDirectory"); got != want {
		t.Errorf("state_dir default %q, but the service's StateDirectory makes %q", got, want)
	}
	if mode := svc.one(t, "Service", "StateDirectoryMode"); mode != "0700" {
		t.Errorf("StateDirectoryMode=%s: the lifecycle stage refuses a state_dir others can write", mode)
	}
	if got, want := filepath.Dir(def("lock_file")), "/run/"+svc.one(t, "Service", "RuntimeDirectory"); got != want {
		t.Errorf("lock_file default in %q, but the service's RuntimeDirectory is %q", got, want)
	}
}
