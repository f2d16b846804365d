package lifecycle

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
	"github.com/ds01/ds01-pipe/pipeline/state"
)

func gpuRecord(name, owner string, started time.Time, claims ...pipeline.GPUClaim) *pipeline.Record {
	r := pipelinetest.Running(name)
	r.Owner = pipeline.Owner{Name: owner, Source: pipeline.OwnerFromUser}
	r.Type = "atomic"
	r.Container.StartedAt = started
	r.Verdict = pipeline.Verdict{}
	r.GPUs = claims
	r.Lifecycle = &pipeline.Lifecycle{GPU: pipeline.Signal{Name: pipeline.SignalGPU, Known: true, Source: pipeline.SourceNVMLDevice, Value: 90}}
	return r
}

func claim(uuid string, src pipeline.ClaimSource) pipeline.GPUClaim {
	return pipeline.GPUClaim{UUID: uuid, Source: src}
}

// The stage: who is skipped and why, one state entry per judged container
// run written in run mode only, system.high_demand when the mode turns on
// (not every run), maintenance.runtime_exempt once per container run.
func TestStage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	m := model(t)
	now := pipelinetest.Now
	snap := &nvml.Snapshot{Available: true, Devices: []nvml.Device{{UUID: "GPU-0"}, {UUID: "GPU-1"},
		{UUID: "GPU-2", MIG: []nvml.MIGDevice{{UUID: "MIG-2a"}, {UUID: "MIG-2b"}}}}}

	batch := func() []*pipeline.Record {
		noGPU := pipelinetest.Running("nogpu")
		noGPU.Verdict = pipeline.Verdict{}
		monitoring := gpuRecord("monitoring", "sam", now.Add(-time.Hour), claim("GPU-0", pipeline.ClaimLabel))
		monitoring.Exempt, monitoring.ExemptReason = true, "label ds01.monitoring=true" // #19
		// #42 fixed: a native multi-GPU container (ds01.gpu.uuids, no
		// DeviceRequests) is judged; it holds three of the four units.
		multi := gpuRecord("multi", "rex", now.Add(-500*time.Hour), claim("GPU-1", pipeline.ClaimLabel), claim("MIG-2a", pipeline.ClaimLabel), claim("MIG-2b", pipeline.ClaimLabel))
		return []*pipeline.Record{noGPU, monitoring, multi}
	}
	run := func(mode pipeline.Mode, at time.Time) (*pipeline.Batch, []string) {
		env, _ := pipelinetest.Env(mode, pipelinetest.NewDocker())
		env.Policy, env.Now = m, at
		s := New()
		s.StateDir = dir
		b := &pipeline.Batch{Records: batch(), GPU: snap}
		if err := s.Process(context.Background(), env, b); err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, ev := range b.TakeEvents() {
			types = append(types, ev.Type)
		}
		return b, types
	}

	b, evs := run(pipeline.ModePlan, now)
	if len(evs) != 0 {
		t.Errorf("plan emitted %v", evs)
	}
	if r := b.Records[0]; r.Verdict.Action != pipeline.ActionSkip || r.Verdict.Reason != pipeline.ReasonNoGPU {
		t.Errorf("no GPU: %+v", r.Verdict)
	}
	if r := b.Records[1]; r.Verdict.Reason != pipeline.ReasonExempt {
		t.Errorf("monitoring: %+v", r.Verdict)
	}
	if st, _ := state.OpenReadOnly(dir); st != nil {
		st.Close()
		t.Fatal("plan created the state store")
	}

	b, evs = run(pipeline.ModeRun, now)
	if r := b.Records[2]; r.Verdict.Reason != pipeline.ReasonExempt || !r.Lifecycle.HighDemand {
		t.Errorf("multi: %+v", r.Verdict)
	}
	if len(evs) != 2 || evs[0] != EventHighDemand || evs[1] != EventRuntimeExempt {
		t.Errorf("first run's events %v, want high demand (all 4 units claimed, the exempt container's too) and one runtime_exempt", evs)
	}
	_, evs = run(pipeline.ModeRun, now.Add(time.Hour))
	if len(evs) != 0 {
		t.Errorf("second run's events %v, want none", evs)
	}

	st, err := state.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Load()
	st.Close()
	if err != nil || len(c.Entries) != 1 || len(c.Runs) != 2 || !c.Runs[1].HighDemand {
		t.Errorf("store: %+v, %v", c, err)
	}
}

// A running container that is not judged in one run (its GPU is seen only
// through NVML processes, and none ran then) keeps its state: when it is
// judged again in the same container run, the runtime warning already
// given is not given again, and the stop is not deferred anew.
func TestSkippedRunKeepsState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	m := model(t)
	now := pipelinetest.Now
	started := now.Add(-19 * time.Hour) // sam: 24 h limit, warned from 18 h
	run := func(at time.Time, gpuSeen bool) *pipeline.Record {
		t.Helper()
		env, _ := pipelinetest.Env(pipeline.ModeRun, pipelinetest.NewDocker())
		env.Policy, env.Now = m, at
		s := New()
		s.StateDir = dir
		r := gpuRecord("nvmlonly", "sam", started) // no GPU claim of its own
		r.Lifecycle.GPUSeen = gpuSeen
		if err := s.Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{r}}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := run(now, true)
	if len(r.Lifecycle.Notices) != 1 || r.Lifecycle.Notices[0].Kind != pipeline.NoticeRuntimeWarning {
		t.Fatalf("first run: notices %+v, want one runtime warning", r.Lifecycle.Notices)
	}
	if r = run(now.Add(time.Hour), false); r.Verdict.Reason != pipeline.ReasonNoGPU {
		t.Fatalf("no GPU process: %+v", r.Verdict)
	}
	r = run(now.Add(2*time.Hour), true)
	if len(r.Lifecycle.Notices) != 0 {
		t.Errorf("back on the GPU: notices %+v, want none (warned two hours ago)", r.Lifecycle.Notices)
	}
	if r.Verdict.Reason != pipeline.ReasonRuntimeWarning || !strings.Contains(r.Verdict.Detail, stamp(now)) {
		t.Errorf("verdict %+v, want runtime_warning warned at %s", r.Verdict, stamp(now))
	}
}
