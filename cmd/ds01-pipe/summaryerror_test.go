package main

import (
	"encoding/json"
	"os"
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
	if got := summaryError(t, out); !strings.Contains(got, "saving the plan") {
		t.Errorf("summary.error %q, want it to say the plan was not saved", got)
	}
}

// A run whose own pipeline.summary line cannot be written exits 2, and the
// report's summary.error says why: nothing else in it would.
func TestRunSummaryUnwrittenSaysWhyInReport(t *testing.T) {
	eng := dockertest.New(t)
	dir := t.TempDir()
	file := writeFile(t, dir, "apply.hcl", applyPipeline)
	events := filepath.Join(dir, "events.jsonl")
	// An events file the writer refuses: a second name of another file.
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(other, events); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, "run", "--format", "json", "--var", "prefix="+eng.Prefix(), "--var", "events="+events,
		"--var", "lock="+filepath.Join(dir, "apply.lock"), file)
	if code != ExitPartial {
		t.Fatalf("exit %d, want %d\n%s", code, ExitPartial, errOut)
	}
	if got := summaryError(t, out); !strings.Contains(got, "pipeline.summary") {
		t.Errorf("summary.error %q, want it to say the summary line was not written", got)
	}
}

// summaryError is the report's summary.error; stdout must be one JSON
// document.
func summaryError(t *testing.T, out string) string {
	t.Helper()
	var rep struct {
		Summary struct {
			Error string `json:"error"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	return rep.Summary.Error
}
