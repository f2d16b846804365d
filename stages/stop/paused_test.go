package stop

import (
	"context"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// A pause or a resumption between the decision and the stop: a container
// paused at the decision is stopped if still paused and left alone if its
// owner resumed it; one running at the decision and paused now is stopped
// (pausing is no activity, and its clocks ran on).
func TestPausedBetweenDecisionAndStop(t *testing.T) {
	run, paused := pipeline.StateRunning, pipeline.StatePaused
	idle, runtime := pipeline.ReasonIdleTimeout, pipeline.ReasonRuntimeExceeded
	for _, tc := range []struct {
		name        string
		reason      pipeline.Reason
		decided, at pipeline.State
		want        pipeline.OutcomeStatus
	}{
		{"paused, still paused", runtime, paused, paused, pipeline.OutcomeStopped},
		{"idle: paused, resumed", idle, paused, run, pipeline.OutcomeChanged},
		// A runtime stop is about the run's age: pausing while the
		// lifecycle looks and resuming after dodges nothing.
		{"runtime: paused, resumed", runtime, paused, run, pipeline.OutcomeStopped},
		{"running, paused since", runtime, run, paused, pipeline.OutcomeStopped},
		{"paused, restarting now", runtime, paused, pipeline.StateRestarting, pipeline.OutcomeChanged},
		{"paused, exited now", runtime, paused, pipeline.StateExited, pipeline.OutcomeChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStage(t)
			r := stopping("c", tc.reason)
			r.Container.State = tc.decided
			d := pipelinetest.NewDocker(pipelinetest.Response(r))
			d.Set(r.Container.ID, func(c *container.InspectResponse) {
				c.State.Status = container.ContainerState(tc.at)
				c.State.Running = tc.at == run || tc.at == paused
				c.State.Paused = tc.at == paused
			})
			env, _ := pipelinetest.Env(pipeline.ModeRun, d)
			b := &pipeline.Batch{Records: []*pipeline.Record{r}}
			if err := s.Process(context.Background(), env, b); err != nil {
				t.Fatal(err)
			}
			stops := d.Count("stop ")
			if r.Outcome.Status != tc.want || (stops == 1) != (tc.want == pipeline.OutcomeStopped) {
				t.Errorf("outcome %+v after %d stop call(s), want %s", r.Outcome, stops, tc.want)
			}
			if tc.want == pipeline.OutcomeChanged && r.Outcome.Error == "" {
				t.Error("a changed container without the reason")
			}
			if tc.want == pipeline.OutcomeStopped && (r.Container.State != pipeline.StateExited || r.Container.FinishedAt.IsZero()) {
				t.Errorf("facts after the stop: %+v", r.Container)
			}
		})
	}
}

// Plan mode marks a paused container's stop as planned, as a running one's.
func TestPausedStopPlanned(t *testing.T) {
	s, _ := newStage(t)
	r := stopping("p", pipeline.ReasonIdleTimeout)
	r.Container.State = pipeline.StatePaused
	_, d, evs := run(t, s, pipeline.ModePlan, r)
	if len(d.Calls()) != 0 || r.Outcome.Status != pipeline.OutcomePlanned || len(evs) != 0 {
		t.Errorf("plan: calls %v, outcome %+v, events %d", d.Calls(), r.Outcome, len(evs))
	}
}
