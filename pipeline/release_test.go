package pipeline_test

import (
	"context"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
)

// A GPU waiting on two removals is released only when both are confirmed;
// each confirmed container gets its gpu.release, the other keeps its GPU;
// the settlement runs once.
func TestSettleReleasesWaitsForEveryContainer(t *testing.T) {
	mk := func(name string, outcome pipeline.OutcomeStatus) *pipeline.Record {
		return &pipeline.Record{
			Container:   pipeline.Container{ID: name + "-id", Name: name, State: pipeline.StateExited},
			Owner:       pipeline.Owner{Name: "alice"},
			Verdict:     pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired},
			ReleaseGPUs: []string{"GPU-shared"},
			Outcome:     pipeline.Outcome{Status: outcome},
		}
	}
	for _, tc := range []struct {
		name       string
		mode       pipeline.Mode
		a, b       pipeline.OutcomeStatus
		wantStatus pipeline.GPUStatus
		wantEvents int
	}{
		{"both removed", pipeline.ModeRun, pipeline.OutcomeRemoved, pipeline.OutcomeGone, pipeline.GPUReleased, 2},
		{"one changed", pipeline.ModeRun, pipeline.OutcomeRemoved, pipeline.OutcomeChanged, pipeline.GPUInUse, 1},
		{"one failed", pipeline.ModeRun, pipeline.OutcomeFailed, pipeline.OutcomeRemoved, pipeline.GPUInUse, 1},
		{"plan", pipeline.ModePlan, pipeline.OutcomePlanned, pipeline.OutcomePlanned, pipeline.GPUReleased, 0},
		{"run does not trust planned", pipeline.ModeRun, pipeline.OutcomePlanned, pipeline.OutcomeRemoved, pipeline.GPUInUse, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := mk("a", tc.a), mk("b", tc.b)
			batch := &pipeline.Batch{
				Records: []*pipeline.Record{a, b},
				GPUs:    []pipeline.GPUReport{{UUID: "GPU-shared", Status: pipeline.GPUInUse}},
				Release: &pipeline.ReleasePlan{Pending: []*pipeline.PendingGPU{{UUID: "GPU-shared", Waiting: []*pipeline.Record{a, b}}}},
			}
			env := &pipeline.Env{Pipeline: "t", Mode: tc.mode}
			pipeline.SettleReleases(context.Background(), env, batch)
			pipeline.SettleReleases(context.Background(), env, batch) // once only
			if got := batch.GPUs[0].Status; got != tc.wantStatus {
				t.Errorf("status %s, want %s", got, tc.wantStatus)
			}
			if evs := batch.TakeEvents(); len(evs) != tc.wantEvents {
				t.Errorf("%d events, want %d: %+v", len(evs), tc.wantEvents, evs)
			}
		})
	}
}
