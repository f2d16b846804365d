package planfile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

var t0 = time.Date(2026, 2, 16, 15, 50, 3, 412345678, time.UTC)

func container(id, name string, state pipeline.State, labels map[string]string) pipeline.Container {
	c := pipeline.Container{ID: id, Name: name, State: state, Labels: labels, Created: t0.Add(-3 * time.Hour)}
	if state != pipeline.StateCreated {
		c.StartedAt = t0.Add(-2 * time.Hour)
		c.FinishedAt = t0.Add(-time.Hour)
	}
	return c
}

func remove(c pipeline.Container) *pipeline.Record {
	return &pipeline.Record{
		Container: c,
		Owner:     pipeline.Owner{Name: "alice", Source: pipeline.OwnerFromUser},
		Type:      "docker",
		Verdict:   pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired},
	}
}

// decideAll sets a remove verdict on every record, as a decide stage would.
func decideAll(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
	for _, rec := range b.Records {
		rec.Verdict = pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired}
	}
	return nil
}

func TestGate(t *testing.T) {
	same := container("same", "same", pipeline.StateExited, map[string]string{"k": "v"})
	moved := container("moved", "moved", pipeline.StateExited, nil)
	gone := container("gone", "gone", pipeline.StateExited, nil)
	env := &pipeline.Env{Pipeline: "p", Mode: pipeline.ModePlan, Now: t0, Host: "h"}
	planBatch := &pipeline.Batch{Records: []*pipeline.Record{remove(same), remove(moved), remove(gone)}}
	plan, err := New(env, planBatch, Source{File: "p.hcl", Text: []byte("pipeline"), Vars: nil}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Containers) != 3 || plan.FileSHA256 != Hash([]byte("pipeline")) || !filepath.IsAbs(plan.File) || plan.Vars == nil {
		t.Fatalf("plan: %+v", plan)
	}

	// At apply time: "moved" was started again, "gone" was removed, and
	// "extra" became due after the plan.
	movedNow := moved
	movedNow.State = pipeline.StateRunning
	movedNow.StartedAt = t0
	extra := container("extra", "extra", pipeline.StateExited, nil)
	discover := func(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
		b.Records = []*pipeline.Record{{Container: same}, {Container: movedNow}, {Container: extra}}
		return nil
	}
	gate := plan.Gate()
	res, err := pipeline.Run(context.Background(), env, []pipeline.StageInstance{
		pipelinetest.Stage("discover", pipeline.Contract{Writes: []pipeline.Field{pipeline.FieldFacts}}, discover),
		pipelinetest.Stage("decide", pipeline.Contract{Writes: []pipeline.Field{pipeline.FieldVerdict}}, decideAll),
	}, gate)
	if err != nil {
		t.Fatal(err)
	}
	batch := res.Batch

	byID := map[string]*pipeline.Record{}
	for _, rec := range batch.Records {
		byID[rec.Container.ID] = rec
	}
	if v := byID["same"].Verdict; v.Action != pipeline.ActionRemove {
		t.Errorf("unchanged planned container: verdict %+v, want remove", v)
	}
	if r := byID["moved"]; r.Verdict.Action != pipeline.ActionSkip || r.Verdict.Reason != ReasonChangedSincePlan ||
		r.Outcome.Status != pipeline.OutcomeChanged || !strings.Contains(r.Outcome.Error, "state exited -> running") {
		t.Errorf("changed planned container: verdict %+v outcome %+v", r.Verdict, r.Outcome)
	}
	if r := byID["extra"]; r.Verdict.Action != pipeline.ActionSkip || r.Verdict.Reason != ReasonNotInPlan || r.Outcome.Status != pipeline.OutcomeNone {
		t.Errorf("unplanned container: verdict %+v outcome %+v", r.Verdict, r.Outcome)
	}
	if m := gate.Missing(); len(m) != 1 || m[0].ID != "gone" {
		t.Errorf("Missing = %+v, want the gone container", m)
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.json")
	env := &pipeline.Env{Pipeline: "p", Now: t0, Host: "h"}
	plan, err := New(env, &pipeline.Batch{Records: []*pipeline.Record{remove(container("c", "c", pipeline.StateExited, nil))}},
		Source{File: filepath.Join(dir, "p.hcl"), Text: []byte("x"), Vars: map[string]string{"prefix": "a"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := plan.Write(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != FileMode {
		t.Fatalf("mode %v (%v), want 0600 even over an existing 0644 file", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Pipeline != "p" || !got.Created.Equal(t0) || len(got.Containers) != 1 || got.Vars["prefix"] != "a" ||
		got.Containers[0].Fingerprint != dockerfacts.Of(container("c", "c", pipeline.StateExited, nil)) {
		t.Errorf("read back: %+v", got)
	}

	for name, text := range map[string]string{
		"empty":      "",
		"not json":   "plan",
		"format 2":   `{"format":2,"pipeline":"p","file":"/p","file_sha256":"x","created":"2026-01-01T00:00:00Z"}`,
		"no file":    `{"format":1,"pipeline":"p","file_sha256":"x","created":"2026-01-01T00:00:00Z"}`,
		"blank id":   `{"format":1,"pipeline":"p","file":"/p","file_sha256":"x","created":"2026-01-01T00:00:00Z","containers":[{"id":""}]}`,
		"no created": `{"format":1,"pipeline":"p","file":"/p","file_sha256":"x"}`,
	} {
		bad := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(bad, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(bad); !IsInvalid(err) {
			t.Errorf("%s: Read = %v, want an InvalidError", name, err)
		}
	}
}

func TestChecks(t *testing.T) {
	p := &Plan{Pipeline: "cleanup", File: "/etc/p.hcl", FileSHA256: "abc", Host: "gpu1", Created: t0}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"fresh", p.CheckAge("f", t0.Add(59*time.Minute), time.Hour), ""},
		{"old", p.CheckAge("f", t0.Add(61*time.Minute), time.Hour), "older than --max-age 1h0m0s"},
		{"any age", p.CheckAge("f", t0.Add(1000*time.Hour), 0), ""},
		{"future", p.CheckAge("f", t0.Add(-time.Hour), time.Hour), "in the future"},
		{"same source", p.CheckSource("f", "gpu1", "cleanup", "abc"), ""},
		{"other host", p.CheckSource("f", "gpu2", "cleanup", "abc"), `made on host "gpu1"`},
		{"other pipeline", p.CheckSource("f", "gpu1", "audit", "abc"), "made by another pipeline"},
		{"edited", p.CheckSource("f", "gpu1", "cleanup", "abd"), "changed since the plan was made"},
	}
	for _, c := range cases {
		switch {
		case c.want == "" && c.err != nil:
			t.Errorf("%s: %v", c.name, c.err)
		case c.want != "" && (!IsInvalid(c.err) || !strings.Contains(c.err.Error(), c.want)):
			t.Errorf("%s: %v, want an InvalidError saying %q", c.name, c.err, c.want)
		}
	}
}
