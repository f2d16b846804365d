package lifecycle

import (
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// A paused container is judged like a running one (DS01's candidates were
// `docker ps` names, paused ones included); other states are not.
func TestPausedIsJudged(t *testing.T) {
	for _, tc := range []struct {
		state pipeline.State
		skip  bool
	}{
		{pipeline.StateRunning, false},
		{pipeline.StatePaused, false},
		{pipeline.StateRestarting, true},
		{pipeline.StateExited, true},
		{pipeline.StateCreated, true},
	} {
		r := gpuRecord("c", "sam", pipelinetest.Now.Add(-time.Hour), claim("GPU-0", pipeline.ClaimLabel))
		r.Container.State = tc.state
		v, skip := skipped(r)
		if skip != tc.skip || (skip && v.Reason != pipeline.ReasonNotACandidate) {
			t.Errorf("%s: skipped %v (%+v), want %v", tc.state, skip, v, tc.skip)
		}
	}
}

// A paused container keeps its GPUs allocated: its claims count toward
// high demand as a running one's do (DS01 counted it).
func TestPausedCountsTowardHighDemand(t *testing.T) {
	m := model(t) // threshold 0.8
	snap := &nvml.Snapshot{Available: true, Devices: []nvml.Device{{UUID: "GPU-0"}, {UUID: "GPU-1"}, {UUID: "GPU-2"}, {UUID: "GPU-3"}, {UUID: "GPU-4"}}}
	recs := func(states ...pipeline.State) []*pipeline.Record {
		var out []*pipeline.Record
		for i, s := range states {
			r := gpuRecord("c", "sam", pipelinetest.Now.Add(-time.Hour), claim("GPU-"+string(rune('0'+i)), pipeline.ClaimLabel))
			r.Container.State = s
			out = append(out, r)
		}
		return out
	}
	run, paused, exited := pipeline.StateRunning, pipeline.StatePaused, pipeline.StateExited
	for _, tc := range []struct {
		states    []pipeline.State
		allocated int
		on        bool
	}{
		{[]pipeline.State{run, run, run, run}, 4, true},
		{[]pipeline.State{run, run, paused, paused}, 4, true},
		{[]pipeline.State{paused, paused, paused, paused, paused}, 5, true},
		{[]pipeline.State{run, run, run, exited}, 3, false},
	} {
		d := highDemand(&pipeline.Batch{Records: recs(tc.states...), GPU: snap}, m)
		if d.Allocated != tc.allocated || d.Total != 5 || d.On != tc.on {
			t.Errorf("%v: %d of %d allocated, on %v; want %d, on %v", tc.states, d.Allocated, d.Total, d.On, tc.allocated, tc.on)
		}
	}
}
