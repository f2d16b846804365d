package pipeline_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

func TestTally(t *testing.T) {
	rec := func(a pipeline.Action, o pipeline.OutcomeStatus) *pipeline.Record {
		r := pipelinetest.Exited("c")
		r.Verdict.Action, r.Outcome.Status = a, o
		return r
	}
	b := &pipeline.Batch{
		Records: []*pipeline.Record{
			rec(pipeline.ActionRemove, pipeline.OutcomeRemoved),
			rec(pipeline.ActionRemove, pipeline.OutcomeFailed),
			rec(pipeline.ActionRemove, pipeline.OutcomeGone),
			rec(pipeline.ActionRemove, pipeline.OutcomeChanged),
			rec(pipeline.ActionRemove, pipeline.OutcomeNone), // not acted on
			rec(pipeline.ActionStop, pipeline.OutcomeStopped),
			rec(pipeline.ActionStop, pipeline.OutcomeNone), // not acted on
			rec(pipeline.ActionKeep, pipeline.OutcomeNone),
			rec(pipeline.ActionRemove, pipeline.OutcomeKept), // release kept it
			rec(pipeline.ActionSkip, pipeline.OutcomeNone),
			rec(pipeline.ActionNone, pipeline.OutcomeNone),
		},
		GPUs: []pipeline.GPUReport{{Status: pipeline.GPUReleased}, {Status: pipeline.GPUOrphaned}, {Status: pipeline.GPUOrphaned}, {Status: pipeline.GPUFree}},
	}
	got := pipeline.TallyBatch(b)
	want := pipeline.Tally{
		Containers: 11, Removed: 1, Stopped: 1, Kept: 2, Skipped: 2, Failed: 1, Gone: 1, Changed: 1, NotActed: 2,
		Remove:       6,
		Verdicts:     map[pipeline.Action]int{"remove": 6, "stop": 2, "keep": 1, "skip": 1},
		Outcomes:     map[pipeline.OutcomeStatus]int{"removed": 1, "failed": 1, "gone": 1, "changed": 1, "stopped": 1, "kept": 1},
		GPUs:         map[pipeline.GPUStatus]int{"released": 1, "orphaned": 2, "free": 1},
		GPUsReleased: 1, GPUsOrphaned: 2,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tally (-want +got):\n%s", diff)
	}
	buckets := got.Removed + got.Stopped + got.Planned + got.Kept + got.Skipped + got.Failed + got.Gone + got.Changed + got.NotActed
	if buckets != got.Containers {
		t.Errorf("buckets hold %d records, want %d", buckets, got.Containers)
	}
	res := &pipeline.Result{Batch: b, Partial: []error{nil}}
	if res.Failed() != 2 {
		t.Errorf("Failed() = %d, want the failed outcome and the partial failure", res.Failed())
	}
}

// Without a release stage (the lifecycle pipeline) the GPUs released are
// those of the containers removed or already gone, each counted once, as
// their gpu.release lines say; a container that stayed releases nothing.
func TestTallyReleasedWithoutAView(t *testing.T) {
	rec := func(o pipeline.OutcomeStatus, gpus ...string) *pipeline.Record {
		r := pipelinetest.Exited("c")
		r.Verdict.Action, r.Outcome.Status, r.ReleaseGPUs = pipeline.ActionRemove, o, gpus
		return r
	}
	b := &pipeline.Batch{Records: []*pipeline.Record{
		rec(pipeline.OutcomeRemoved, "GPU-a", "GPU-b"),
		rec(pipeline.OutcomeGone, "gpu-A"), // the same GPU, another case
		rec(pipeline.OutcomeFailed, "GPU-c"),
		rec(pipeline.OutcomeChanged, "GPU-d"),
	}}
	if got := pipeline.TallyBatch(b).GPUsReleased; got != 2 {
		t.Errorf("GPUsReleased = %d, want 2 (GPU-a, GPU-b)", got)
	}
	b.GPUs = []pipeline.GPUReport{{UUID: "GPU-a", Status: pipeline.GPUInUse}}
	if got := pipeline.TallyBatch(b).GPUsReleased; got != 0 {
		t.Errorf("with a reconciled view GPUsReleased = %d, want the view's 0", got)
	}
}

// A GPU another container of the batch still has an allocation record on
// is not counted released (its gpu.release line is the removed
// container's record); an NVML sighting is no allocation.
func TestTallyReleasedWithoutAViewLiveClaimant(t *testing.T) {
	gone := pipelinetest.Exited("a")
	gone.Verdict.Action, gone.Outcome.Status, gone.ReleaseGPUs = pipeline.ActionRemove, pipeline.OutcomeRemoved, []string{"GPU-x", "GPU-y"}
	stays := pipelinetest.Running("b")
	stays.Verdict.Action = pipeline.ActionKeep
	stays.GPUs = []pipeline.GPUClaim{{UUID: "gpu-X", Source: pipeline.ClaimDeviceRequest}, {UUID: "GPU-y", Source: pipeline.ClaimNVML}}
	b := &pipeline.Batch{Records: []*pipeline.Record{gone, stays}}
	if got := pipeline.TallyBatch(b).GPUsReleased; got != 1 {
		t.Errorf("GPUsReleased = %d, want 1 (GPU-y: seen by NVML only)", got)
	}
}
