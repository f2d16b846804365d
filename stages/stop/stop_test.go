package stop

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

func stopping(name string, why pipeline.Reason) *pipeline.Record {
	r := pipelinetest.Running(name)
	r.Type = "atomic"
	r.GPUs = []pipeline.GPUClaim{{UUID: "GPU-" + name, Source: pipeline.ClaimLabel}, {UUID: "GPU-seen", Source: pipeline.ClaimNVML}}
	r.Verdict = pipeline.Verdict{Action: pipeline.ActionStop, Reason: why, Clock: pipeline.ClockLastActivity, Age: 45 * time.Minute, Limit: 30 * time.Minute, HasLimit: true}
	if why == pipeline.ReasonRuntimeExceeded {
		r.Verdict.Clock, r.Verdict.Age, r.Verdict.Limit = pipeline.ClockStarted, 25*time.Hour, 24*time.Hour
	}
	r.Lifecycle = &pipeline.Lifecycle{StopFor: why, StopGrace: 30 * time.Second, Idle: 45 * time.Minute, HasIdle: true, Runtime: 25 * time.Hour, HasRuntime: true}
	return r
}

func newStage(t *testing.T) (*Stage, *[]string) {
	var lines []string
	s := New()
	s.ProcRoot = t.TempDir()
	s.dial = func(tag string) (SyslogWriter, error) {
		return taggedSyslog{tag: tag, lines: &lines}, nil
	}
	return s, &lines
}

// taggedSyslog records each line with its tag.
type taggedSyslog struct {
	tag   string
	lines *[]string
}

func (t taggedSyslog) Notice(m string) error { *t.lines = append(*t.lines, t.tag+": "+m); return nil }
func (t taggedSyslog) Close() error          { return nil }

func run(t *testing.T, s *Stage, mode pipeline.Mode, recs ...*pipeline.Record) (*pipeline.Batch, *pipelinetest.Docker, []events.Event) {
	t.Helper()
	d := pipelinetest.NewDocker()
	for _, r := range recs {
		d.Add(pipelinetest.Response(r))
	}
	env, _ := pipelinetest.Env(mode, d)
	b := &pipeline.Batch{Records: recs}
	if err := s.Process(context.Background(), env, b); err != nil {
		t.Fatal(err)
	}
	return b, d, b.TakeEvents()
}

// #26: an idle stop is confirmed, logged (maintenance.idle_kill, ds01-idle)
// and handed to remove with the recorded GPUs cleared for release.
func TestIdleStopHandsOverToRemove(t *testing.T) {
	s, lines := newStage(t)
	r := stopping("idle", pipeline.ReasonIdleTimeout)
	_, d, evs := run(t, s, pipeline.ModeRun, r)
	if d.Count("stop ") != 1 {
		t.Fatalf("calls %v", d.Calls())
	}
	if r.Verdict.Action != pipeline.ActionRemove || r.Verdict.Reason != pipeline.ReasonIdleStopped || r.Outcome.Status != pipeline.OutcomeNone {
		t.Errorf("after the stop: %+v, %+v", r.Verdict, r.Outcome)
	}
	if r.Container.State != pipeline.StateExited || r.Container.FinishedAt.IsZero() {
		t.Errorf("facts not refreshed: %+v", r.Container)
	}
	if !slices.Equal(r.ReleaseGPUs, []string{"GPU-idle"}) {
		t.Errorf("release %v, want the recorded GPU only", r.ReleaseGPUs)
	}
	if len(evs) != 1 || evs[0].Type != events.IdleKill {
		t.Fatalf("events %+v", evs)
	}
	line, err := evs[0].Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(line), `"details":{"container":"idle","idle_duration":"45m","container_type":"atomic"}`) {
		t.Errorf("idle_kill line %s", line)
	}
	if len(*lines) != 1 || (*lines)[0] != "ds01-idle: Stopped idle container: idle (user: alice, idle: 2700s)" {
		t.Errorf("syslog %q", *lines)
	}
}

// #36: a runtime stop stays stopped (the cleanup holds apply).
func TestRuntimeStop(t *testing.T) {
	s, lines := newStage(t)
	r := stopping("long", pipeline.ReasonRuntimeExceeded)
	_, _, evs := run(t, s, pipeline.ModeRun, r)
	if r.Outcome.Status != pipeline.OutcomeStopped || r.Verdict.Action != pipeline.ActionStop || r.ReleaseGPUs != nil {
		t.Errorf("%+v %+v %v", r.Verdict, r.Outcome, r.ReleaseGPUs)
	}
	line, _ := evs[0].Encode()
	if !strings.Contains(string(line), `"event_type":"maintenance.runtime_kill"`) ||
		!strings.Contains(string(line), `"details":{"container":"long","runtime":"25h","max_runtime":"24h","container_type":"atomic"}`) {
		t.Errorf("runtime_kill line %s", line)
	}
	if (*lines)[0] != "ds01-maxruntime: Stopped container: long (user: alice, runtime: 25h)" {
		t.Errorf("syslog %q", *lines)
	}
}

// A container that restarted since the decision, or an exempt one, is
// not stopped; plan mode calls nothing.
func TestNotStopped(t *testing.T) {
	s, _ := newStage(t)
	restarted := stopping("restarted", pipeline.ReasonIdleTimeout)
	exempt := stopping("exempt", pipeline.ReasonIdleTimeout)
	exempt.Exempt, exempt.ExemptReason = true, "label ds01.protected=true"
	d := pipelinetest.NewDocker(pipelinetest.Response(restarted), pipelinetest.Response(exempt))
	d.Set(restarted.Container.ID, func(c *container.InspectResponse) {
		c.State.StartedAt = pipelinetest.Now.Format(time.RFC3339Nano)
	})
	env, _ := pipelinetest.Env(pipeline.ModeRun, d)
	b := &pipeline.Batch{Records: []*pipeline.Record{restarted, exempt}}
	if err := s.Process(context.Background(), env, b); err != nil {
		t.Fatal(err)
	}
	if d.Count("stop ") != 0 || restarted.Outcome.Status != pipeline.OutcomeChanged || exempt.Outcome.Status != pipeline.OutcomeNone {
		t.Errorf("calls %v, outcomes %+v %+v", d.Calls(), restarted.Outcome, exempt.Outcome)
	}

	plan := stopping("plan", pipeline.ReasonIdleTimeout)
	_, d, evs := run(t, s, pipeline.ModePlan, plan)
	if len(d.Calls()) != 0 || plan.Outcome.Status != pipeline.OutcomePlanned || len(evs) != 0 {
		t.Errorf("plan: calls %v, outcome %+v, events %d", d.Calls(), plan.Outcome, len(evs))
	}
}

// gpuAfter is a GPU backend whose snapshot shows pid on GPU-busy.
type gpuAfter struct{ pid int }

func (g gpuAfter) Name() string { return "sim" }
func (g gpuAfter) Close() error { return nil }
func (g gpuAfter) Snapshot(context.Context) (*nvml.Snapshot, error) {
	return &nvml.Snapshot{Available: true, Devices: []nvml.Device{{UUID: "GPU-busy", Processes: []nvml.Process{{PID: g.pid}}}}}, nil
}

// An idle-stopped container whose process NVML still shows on a GPU is
// not removed (gpu_busy): removing it would leave that process behind.
func TestIdleStoppedButGPUBusy(t *testing.T) {
	s, _ := newStage(t)
	r := stopping("lingering", pipeline.ReasonIdleTimeout)
	r.Container.ID = strings.Repeat("ab", 32)
	dir := filepath.Join(s.ProcRoot, "777")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/system.slice/docker-"+r.Container.ID+".scope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := pipelinetest.NewDocker(pipelinetest.Response(r))
	env, _ := pipelinetest.Env(pipeline.ModeRun, d)
	env.GPU = gpuAfter{pid: 777}
	b := &pipeline.Batch{Records: []*pipeline.Record{r}, GPU: &nvml.Snapshot{Available: true}}
	if err := s.Process(context.Background(), env, b); err != nil {
		t.Fatal(err)
	}
	if r.Verdict.Action != pipeline.ActionKeep || r.Verdict.Reason != pipeline.ReasonGPUBusy || r.Outcome.Status != pipeline.OutcomeStopped || r.ReleaseGPUs != nil {
		t.Errorf("%+v %+v %v", r.Verdict, r.Outcome, r.ReleaseGPUs)
	}
	if !strings.Contains(r.Verdict.Detail, "GPU-busy") || !strings.Contains(r.Verdict.Detail, "not removed") {
		t.Errorf("detail %q", r.Verdict.Detail)
	}
}

// A --rm container the engine removes on its stop counts as stopped
// (gone): its idle_kill is written and its GPU release recorded.
func TestIdleStopOfAutoRemoveContainer(t *testing.T) {
	s, _ := newStage(t)
	r := stopping("rm", pipeline.ReasonIdleTimeout)
	d := pipelinetest.NewDocker(pipelinetest.Response(r))
	d.AfterInspect = func(id string) { d.Delete(id) }
	env, _ := pipelinetest.Env(pipeline.ModeRun, d)
	b := &pipeline.Batch{Records: []*pipeline.Record{r}}
	if err := s.Process(context.Background(), env, b); err != nil {
		t.Fatal(err)
	}
	evs := b.TakeEvents()
	if r.Outcome.Status != pipeline.OutcomeGone || len(evs) != 1 || evs[0].Type != events.IdleKill {
		t.Errorf("outcome %+v, events %+v", r.Outcome, evs)
	}
	if !slices.Equal(r.ReleaseGPUs, []string{"GPU-rm"}) || r.Verdict.Reason != pipeline.ReasonIdleStopped {
		t.Errorf("release %v, verdict %+v", r.ReleaseGPUs, r.Verdict)
	}
}
