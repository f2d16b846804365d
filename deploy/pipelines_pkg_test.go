package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The Debian package lists its files one by one (nfpm.yaml), while make
// install takes every pipelines/*.hcl: a pipeline added to the repository
// must ship in the package too, where postinst copies it to /etc.
func TestPackageShipsEveryPipeline(t *testing.T) {
	root := repoRoot(t)
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nfpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pipelines, err := filepath.Glob(filepath.Join(root, "pipelines", "*.hcl"))
	if err != nil || len(pipelines) == 0 {
		t.Fatalf("no pipelines/*.hcl (%v)", err)
	}
	for _, p := range pipelines {
		name := filepath.Base(p)
		entry := "- src: pipelines/" + name + "\n    dst: /usr/share/ds01-pipe/pipelines/" + name + "\n"
		if !strings.Contains(string(conf), entry) {
			t.Errorf("deploy/nfpm.yaml does not ship pipelines/%s to /usr/share/ds01-pipe/pipelines/", name)
		}
	}
}
