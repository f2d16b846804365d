package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

// A plan that cannot be saved ends with exit 1, and the JSON report, still
// printed in full, says why in summary.error (docs/exit-codes.md): a
// script reading the report must not see a clean plan behind the exit 1.
func TestPlanOutUnsavedSaysWhyInReport(t *testing.T) {
	eng := dockertest.New(t)
	dir := t.TempDir()
	file := writeFile(t, dir, "apply.hcl", applyPipeline)
	vars := []string{"--var", "prefix=" + eng.Prefix(), "--var", "events=" + filepath.Join(dir, "events.jsonl"), "--var", "lock=" + filepath.Join(dir, "apply.lock")}
	plan := filepath.Join(dir, "missing", "cleanup.plan.json")

	code, out, errOut := cli(t, append(append([]string{"plan", "--format", "json", "--out", plan}, vars...), file)...)
	if code != ExitFailure {
		t.Fatalf("exit %d, want %d\n%s", code, ExitFailure, errOut)
	}
	var rep struct {
		Summary struct {
			Error string `json:"error"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if !strings.Contains(rep.Summary.Error, "saving the plan") {
		t.Errorf("summary.error %q, want it to say the plan was not saved", rep.Summary.Error)
	}
}
