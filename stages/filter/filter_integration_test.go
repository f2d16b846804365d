package filter_test

import (
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
	_ "github.com/ds01/ds01-pipe/stages/all" // the stage kinds of the binary
)

// These tests run whole pipelines against the real Docker engine (see
// internal/dockertest), scoped to the test's own containers by name prefix.

func pipelineWith(filterAt, when string) string {
	stages := []string{`stage "discover" { name_prefix = var.prefix }`, `stage "attribute" {}`, `stage "classify" {}`, `stage "exempt" {}`, `stage "decide" { idle_events_file = "" }`, `stage "remove" {}`, `stage "log" {
    events_file = ""
    syslog      = false
  }`}
	filter := `stage "filter" { when = ` + when + ` }`
	var out []string
	for _, s := range stages {
		if strings.HasPrefix(s, `stage "`+filterAt+`"`) {
			out = append(out, filter)
		}
		out = append(out, s)
	}
	return "variable \"prefix\" { default = \"\" }\npipeline \"t\" {\n  gpu { backend = \"none\" }\n  " + strings.Join(out, "\n  ") + "\n}\n"
}

func exists(t *testing.T, eng *dockertest.Engine, id string) bool {
	t.Helper()
	_, err := eng.Client().ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestFilterNarrowsWhatRemoveMaySee: a filter before decide leaves bob's
// container out of the run, so remove never sees it, at an instant when
// both are far over their hold.
func TestFilterNarrowsWhatRemoveMaySee(t *testing.T) {
	eng := dockertest.New(t)
	alice := eng.Create(t, dockertest.Spec{Name: "alice", Labels: map[string]string{"ds01.user": "alice"}, Start: true, Wait: true})
	bob := eng.Create(t, dockertest.Spec{Name: "bob", Labels: map[string]string{"ds01.user": "bob", "note": "=cmd|x\nline"}, Start: true, Wait: true})
	for _, at := range []string{"decide", "remove"} {
		t.Run("before "+at, func(t *testing.T) {
			cfg, err := pipeline.Load("t.hcl", []byte(pipelineWith(at, `c.owner == "alice" || lookup(c.labels, "note", "") == "nothing"`)), pipeline.LoadOptions{Vars: map[string]string{"prefix": eng.Prefix()}})
			if err != nil {
				t.Fatal(err)
			}
			_, res, err := pipeline.Execute(t.Context(), cfg, pipeline.ExecOptions{Mode: pipeline.ModePlan, Now: time.Now().Add(240 * time.Hour), Docker: eng.Client()})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Batch.Records) != 1 || res.Batch.Records[0].Container.ID != alice.ID || res.Batch.Records[0].Verdict.Action != pipeline.ActionRemove {
				t.Fatalf("records after the run: %d, want alice's alone, to remove", len(res.Batch.Records))
			}
		})
	}
	cfg, err := pipeline.Load("t.hcl", []byte(pipelineWith("decide", `c.owner == "alice"`)), pipeline.LoadOptions{Vars: map[string]string{"prefix": eng.Prefix()}})
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := pipeline.Execute(t.Context(), cfg, pipeline.ExecOptions{Mode: pipeline.ModeRun, Now: time.Now().Add(240 * time.Hour), Docker: eng.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if exists(t, eng, alice.ID) || !exists(t, eng, bob.ID) {
		t.Errorf("after the run: alice exists %v (want removed), bob exists %v (want kept)", exists(t, eng, alice.ID), exists(t, eng, bob.ID))
	}
	if n := len(res.Batch.Records); n != 1 {
		t.Errorf("%d records in the run's report, want 1", n)
	}
}

// TestFilterOrderIsChecked: a filter on the verdict before decide cannot
// work; one on the name can.
func TestFilterOrderIsChecked(t *testing.T) {
	_, err := pipeline.Load("t.hcl", []byte(pipelineWith("decide", `c.verdict == "remove"`)), pipeline.LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "t.hcl:") || !strings.Contains(err.Error(), "verdict") {
		t.Fatalf("a verdict filter before decide: %v", err)
	}
	if _, err := pipeline.Load("t.hcl", []byte(pipelineWith("decide", `startswith(c.name, "x")`)), pipeline.LoadOptions{}); err != nil {
		t.Fatalf("a name filter before decide: %v", err)
	}
	if _, err := pipeline.Load("t.hcl", []byte(pipelineWith("remove", `c.verdict == "remove"`)), pipeline.LoadOptions{}); err != nil {
		t.Fatalf("a verdict filter after decide: %v", err)
	}
}
