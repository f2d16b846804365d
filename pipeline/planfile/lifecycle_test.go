package planfile

import (
	"context"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// A lifecycle plan lists its stops, and apply stops only what it lists,
// unchanged: a stop decided at apply time for another container, or for
// a planned one that restarted since, becomes a skip.
func TestGateStops(t *testing.T) {
	idle := container("idle", "idle", pipeline.StateRunning, nil)
	restarted := container("restarted", "restarted", pipeline.StateRunning, nil)
	paused := container("paused", "paused", pipeline.StatePaused, nil) // judged like a running one
	stop := func(c pipeline.Container) *pipeline.Record {
		return &pipeline.Record{Container: c, Verdict: pipeline.Verdict{Action: pipeline.ActionStop, Reason: pipeline.ReasonIdleTimeout}}
	}
	env := &pipeline.Env{Pipeline: "lifecycle", Mode: pipeline.ModePlan, Now: t0, Host: "h"}
	plan, err := New(env, &pipeline.Batch{Records: []*pipeline.Record{stop(idle), stop(restarted), stop(paused)}}, Source{File: "l.hcl", Text: []byte("pipeline")}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Containers) != 3 || plan.Containers[0].Verdict != "stop" || plan.Containers[2].ID != "paused" {
		t.Fatalf("plan lists %+v, want the three stops", plan.Containers)
	}

	restartedNow := restarted
	restartedNow.StartedAt = t0
	extra := container("extra", "extra", pipeline.StateRunning, nil)
	discover := func(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
		b.Records = []*pipeline.Record{{Container: idle}, {Container: restartedNow}, {Container: extra}, {Container: paused}}
		return nil
	}
	decide := func(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
		for _, r := range b.Records {
			r.Verdict = pipeline.Verdict{Action: pipeline.ActionStop, Reason: pipeline.ReasonIdleTimeout}
		}
		return nil
	}
	res, err := pipeline.Run(context.Background(), env, []pipeline.StageInstance{
		pipelinetest.Stage("discover", pipeline.Contract{Writes: []pipeline.Field{pipeline.FieldFacts}}, discover),
		pipelinetest.Stage("lifecycle", pipeline.Contract{Writes: []pipeline.Field{pipeline.FieldVerdict}}, decide),
	}, plan.Gate())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]pipeline.Verdict{}
	for _, r := range res.Batch.Records {
		got[r.Container.ID] = r.Verdict
	}
	if got["idle"].Action != pipeline.ActionStop {
		t.Errorf("planned stop: %+v", got["idle"])
	}
	if got["paused"].Action != pipeline.ActionStop {
		t.Errorf("planned stop of a paused container: %+v", got["paused"])
	}
	if v := got["restarted"]; v.Action != pipeline.ActionSkip || v.Reason != ReasonChangedSincePlan {
		t.Errorf("restarted since the plan: %+v", v)
	}
	if v := got["extra"]; v.Action != pipeline.ActionSkip || v.Reason != ReasonNotInPlan {
		t.Errorf("not in the plan: %+v", v)
	}
}
