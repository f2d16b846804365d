//go:build linux

package main

// Paused containers in the lifecycle pipeline (pipelines/lifecycle.hcl as
// shipped), on the real engine: DS01's idle and runtime jobs took their
// candidates from `docker ps`, paused ones included, and found a paused
// GPU container idle. A paused container keeps its GPUs, so it is judged
// like a running one: its frozen processes read 0 % CPU (the engine's
// counters do not move), its runtime clock runs, the notices and the
// keep-alive file go through the archive API, and the engine's stop
// unpauses it as it signals it. The fixture is lifecycle_test.go's.

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
)

// startPaused starts a GPU probe as f.start does and pauses it.
func (f *lifecycleFixture) startPaused(t *testing.T, name, owner, gpu string, args ...string) (dockertest.Container, time.Time) {
	t.Helper()
	c, started := f.start(t, name, owner, gpu, args...)
	f.pause(t, c)
	return c, started
}

func (f *lifecycleFixture) pause(t *testing.T, c dockertest.Container) {
	t.Helper()
	if _, err := f.eng.Client().ContainerPause(t.Context(), c.ID, client.ContainerPauseOptions{}); err != nil {
		t.Fatalf("pausing %s: %v", c.Name, err)
	}
	if st := f.eng.Inspect(t, c.ID).State; !st.Paused || st.Status != "paused" {
		t.Fatalf("%s after the pause: %+v", c.Name, st)
	}
}

// A paused idle GPU container is warned, kept by a fresh keep-alive file,
// then stopped and removed at the idle timeout like an idle running one:
// maintenance.idle_kill, its GPU released, container.remove.
func TestLifecyclePausedIdleStopAndRemove(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	// busy: while paused its processes are frozen, so its CPU reads 0.
	c, s := f.startPaused(t, "paused", "sam", "GPU-lc-0", "busy")
	f.setSim(t, map[int]simGPU{0: {util: pct(0)}})
	m := func(n int) time.Time { return s.Add(time.Duration(n) * time.Minute) }
	pause := func() { time.Sleep(300 * time.Millisecond) } // real time between stats samples
	// /workspace, for the alerts file, with a keep-alive file too old to
	// hold anything off, written into the paused container.
	putFiles(t, eng, c.ID, map[string]time.Time{"workspace/.keep-alive": m(0).Add(-30 * time.Hour)})

	rep := f.must(t, "run", m(45))
	l := rep.line(t, c)
	l.expect(t, "45m", "keep", "idle_streak", "")
	if l.State != "paused" {
		t.Errorf("45m: state %q, want paused", l.State)
	}
	for _, n := range []int{60, 75} {
		pause()
		rep = f.must(t, "run", m(n))
		l = rep.line(t, c)
		l.expect(t, fmt.Sprint(n, "m"), "keep", "idle_streak", "")
		// The engine's stats of a paused container: counters that do
		// not move, so 0 % of a CPU, evidence rather than a gap.
		if v, src := l.signal("cpu"); v == nil || *v != 0 || src != "docker_stats" {
			t.Errorf("%dm: CPU signal %s from %q, want 0 from docker_stats", n, ptrText(v), src)
		}
		if v, src := l.signal("gpu"); v == nil || *v != 0 || src != "nvml_no_process" {
			t.Errorf("%dm: GPU signal %s from %q", n, ptrText(v), src)
		}
	}
	if l.IdleStreak == nil || *l.IdleStreak != 2 {
		t.Errorf("75m: idle streak %v, want 2", l.IdleStreak)
	}

	pause()
	rep = f.must(t, "run", m(90))
	l = rep.line(t, c)
	l.expect(t, "90m", "keep", "idle_warning", "")
	if strings.Join(l.Notices, ",") != "idle_warning,idle_final_warning" || len(l.Warnings) != 0 {
		t.Errorf("90m: notices %v, warnings %v", l.Notices, l.Warnings)
	}
	// The notices were written into the paused container through the
	// archive API.
	alerts := readFileFrom(t, eng, c.ID, "/workspace/.ds01-alerts")
	for _, title := range []string{"[WARNING] IDLE CONTAINER WARNING", "[WARNING] FINAL IDLE WARNING"} {
		if !strings.Contains(alerts, title) {
			t.Errorf("alerts file of the paused container lacks %q:\n%s", title, alerts)
		}
	}

	// A fresh keep-alive file, read from the paused container through the
	// archive API, holds the stop off.
	putFiles(t, eng, c.ID, map[string]time.Time{"workspace/.keep-alive": m(105).Add(-2 * time.Hour)})
	pause()
	rep = f.must(t, "run", m(105))
	l = rep.line(t, c)
	l.expect(t, "105m keep-alive", "keep", "idle_timeout", "")
	if !strings.Contains(l.Detail, ".keep-alive was modified 2.0h ago") {
		t.Errorf("105m: detail %q does not name the keep-alive file", l.Detail)
	}
	if st := eng.Inspect(t, c.ID).State; !st.Paused {
		t.Fatalf("kept container after the run: %+v, want paused", st)
	}

	putFiles(t, eng, c.ID, map[string]time.Time{"workspace/.keep-alive": m(105).Add(-30 * time.Hour)})
	pause()
	rep = f.must(t, "run", m(106))
	rep.line(t, c).expect(t, "106m", "remove", "idle_stopped", "removed")
	if _, err := eng.Client().ContainerInspect(context.Background(), c.ID, client.ContainerInspectOptions{}); err == nil {
		t.Error("the paused idle container still exists")
	}

	evs := readEventLines(t, f.events)
	kill := eventsOfType(evs, "maintenance.idle_kill")
	if len(kill) != 1 || kill[0].User != "sam" || kill[0].Details["container"] != c.Name ||
		kill[0].Details["idle_duration"] != "1h" || kill[0].Details["container_type"] != "atomic" {
		t.Errorf("idle_kill events: %+v", kill)
	}
	if rel := eventsOfType(evs, "gpu.release"); len(rel) != 1 || rel[0].Details["gpu_uuid"] != "GPU-lc-0" {
		t.Errorf("gpu.release events: %+v", rel)
	}
	if rm := eventsOfType(evs, "container.remove"); len(rm) != 1 || rm[0].Details["reason"] != "idle_stopped" {
		t.Errorf("container.remove events: %+v", rm)
	}
}

// resumeBeforeStop is a run hook that resumes a container just before the
// stop stage: its owner unpausing it between the decision and the stop.
type resumeBeforeStop struct {
	t   *testing.T
	eng *dockertest.Engine
	id  string
}

func (h resumeBeforeStop) Before(_ *pipeline.Env, st pipeline.StageInstance, _ *pipeline.Batch) {
	if st.Ref.Kind != "stop" {
		return
	}
	if _, err := h.eng.Client().ContainerUnpause(context.Background(), h.id, client.ContainerUnpauseOptions{}); err != nil {
		h.t.Errorf("resuming before the stop: %v", err)
	}
}

func (resumeBeforeStop) After(*pipeline.Env, pipeline.StageInstance, *pipeline.Batch) {}

// runWithHook runs the shipped lifecycle pipeline with the fixture's
// variables as `run --now` does, with a hook around its stages.
func (f *lifecycleFixture) runWithHook(t *testing.T, now time.Time, hook pipeline.Hook) *pipeline.Result {
	t.Helper()
	cfg, err := pipeline.LoadFile(f.pipeline, pipeline.LoadOptions{Vars: map[string]string{
		"prefix":       f.eng.Prefix(),
		"ds01_config":  f.config,
		"events_file":  f.events,
		"lock_file":    filepath.Join(f.dir, "lifecycle.lock"),
		"gpu_backend":  "sim",
		"sim_file":     f.sim,
		"state_dir":    f.stateDir,
		"metrics_file": "",
	}})
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	env, res, err := pipeline.Execute(t.Context(), cfg, pipeline.ExecOptions{
		Mode: pipeline.ModeRun, Now: now, Log: log, Hooks: []pipeline.Hook{hook},
	})
	if rerr := pipeline.RecordEnd(env, cfg.Stages, pipeline.RunEnd{Result: res, Err: err, Ended: time.Now()}); rerr != nil {
		t.Errorf("recording the run's end: %v", rerr)
	}
	if err != nil || res == nil {
		t.Fatalf("run at %s: %v", now.Format(time.RFC3339), err)
	}
	return res
}

// A container paused when the lifecycle decided its stop and resumed by
// its owner before the stop stage reached it is not stopped (outcome
// changed): the decision read a frozen container. The next run measures
// it again; still idle, it is stopped then.
func TestLifecyclePausedResumedBeforeStop(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	c, s := f.startPaused(t, "resumed", "sam", "GPU-lc-0", "forever")
	f.setSim(t, map[int]simGPU{0: {util: pct(0)}})
	m := func(n int) time.Time { return s.Add(time.Duration(n) * time.Minute) }
	for _, n := range []int{45, 60, 75, 90} {
		f.must(t, "run", m(n))
		time.Sleep(300 * time.Millisecond)
	}
	if p := f.must(t, "plan", m(105)); p.line(t, c).Verdict != "stop" {
		t.Fatalf("plan at 105m: %+v, want the stop decided", p.line(t, c))
	}

	res := f.runWithHook(t, m(105), resumeBeforeStop{t: t, eng: eng, id: c.ID})
	var rec *pipeline.Record
	for _, r := range res.Batch.Records {
		if r.Container.ID == c.ID {
			rec = r
		}
	}
	if rec == nil {
		t.Fatal("the container is not in the run's records")
	}
	if rec.Verdict.Action != pipeline.ActionStop || rec.Verdict.Reason != pipeline.ReasonIdleTimeout ||
		rec.Outcome.Status != pipeline.OutcomeChanged || !strings.Contains(rec.Outcome.Error, "resumed") {
		t.Errorf("resumed before the stop: verdict %+v, outcome %+v; want stop/idle_timeout, changed (resumed)", rec.Verdict, rec.Outcome)
	}
	if st := eng.Inspect(t, c.ID).State; !st.Running || st.Paused {
		t.Errorf("after the run: %+v, want running (resumed, not stopped)", st)
	}
	if n := len(eventsOfType(readEventLines(t, f.events), "maintenance.idle_kill")); n != 0 {
		t.Errorf("%d idle_kill events for a container that was not stopped", n)
	}

	// Running and still idle: the next run stops and removes it (its
	// warnings were given; resuming is no activity).
	time.Sleep(300 * time.Millisecond)
	rep := f.must(t, "run", m(106))
	rep.line(t, c).expect(t, "106m", "remove", "idle_stopped", "removed")
}

// A paused container past its max runtime gets the runtime warnings and
// the runtime stop: pausing leaves StartedAt alone, so its clock runs. The
// engine's stop unpauses it; it is left stopped for the cleanup holds.
func TestLifecyclePausedRuntimeStop(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	c, s := f.startPaused(t, "long", "sam", "GPU-lc-0", "forever")
	f.setSim(t, map[int]simGPU{0: {util: pct(0)}})
	h := func(n float64) time.Time { return s.Add(time.Duration(n * float64(time.Hour))) }

	rep := f.must(t, "run", h(18))
	if l := rep.line(t, c); l.Reason != "runtime_warning" || strings.Join(l.Notices, ",") != "runtime_warning" {
		t.Errorf("18h: %s %v", l.Reason, l.Notices)
	}
	time.Sleep(300 * time.Millisecond)
	rep = f.must(t, "run", h(22))
	if l := rep.line(t, c); strings.Join(l.Notices, ",") != "runtime_final_warning" {
		t.Errorf("22h: %v", l.Notices)
	}
	if eng.Inspect(t, c.ID).State.Paused != true {
		t.Fatal("a warning run changed the paused container")
	}
	time.Sleep(300 * time.Millisecond)
	rep = f.must(t, "run", h(25))
	l := rep.line(t, c)
	l.expect(t, "25h", "stop", "runtime_exceeded", "stopped")
	if l.RuntimeS == nil || *l.RuntimeS != 25*3600 {
		t.Errorf("runtime_s = %v, want 25 h from StartedAt", l.RuntimeS)
	}
	if st := eng.Inspect(t, c.ID).State; st.Running || st.Paused || st.Status != "exited" {
		t.Errorf("after the runtime stop: %+v, want exited and kept", st)
	}
	evs := readEventLines(t, f.events)
	if kills := eventsOfType(evs, "maintenance.runtime_kill"); len(kills) != 1 || kills[0].Details["container"] != c.Name ||
		kills[0].Details["runtime"] != "25h" || kills[0].Details["max_runtime"] != "24h" {
		t.Errorf("runtime_kill events: %+v", kills)
	}
	if n := len(eventsOfType(evs, "container.remove")); n != 0 {
		t.Errorf("%d removals: a runtime stop leaves the container to the cleanup holds", n)
	}
}

// Paused containers hold their GPUs: two running and two paused GPU
// containers claim 4 of the 5 simulated GPUs, at the 80 % threshold, so
// high-demand mode is on (with the paused ones left out it would be 40 %).
func TestLifecyclePausedCountTowardHighDemand(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	r0, s := f.start(t, "run0", "sam", "GPU-lc-0", "forever")
	r1, _ := f.start(t, "run1", "sam", "GPU-lc-1", "forever")
	p2, _ := f.startPaused(t, "paused2", "sam", "GPU-lc-2", "forever")
	p3, _ := f.startPaused(t, "paused3", "sam", "GPU-lc-3", "forever")

	rep := f.must(t, "run", s.Add(45*time.Minute))
	for _, c := range []dockertest.Container{r0, r1, p2, p3} {
		if l := rep.line(t, c); l.Verdict != "keep" {
			t.Errorf("%s: %s/%s, want judged (keep)", c.Name, l.Verdict, l.Reason)
		}
	}
	hd := eventsOfType(readEventLines(t, f.events), "system.high_demand")
	if len(hd) != 1 || hd[0].Details["allocated"] != float64(4) || hd[0].Details["total"] != float64(5) {
		t.Errorf("system.high_demand events: %+v, want one with 4 of 5 allocated", hd)
	}
}
