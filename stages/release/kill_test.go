package release

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

// orphanOnA starts a host process (a shell script) listed by NVML on gpuA.
func orphanOnA(t *testing.T, script string) (*procRoot, *sleeper, *nvml.Snapshot) {
	t.Helper()
	p := newProcRoot(t)
	s := startSleeper(t, script)
	if strings.Contains(script, "trap") {
		time.Sleep(100 * time.Millisecond) // let the shell install the trap before it execs
	}
	p.host(s.pid())
	snap := host2()
	snap.Devices[0].Processes = procs(s.pid())
	return p, s, snap
}

// killStage is a release stage with kill_orphans and the given grace.
func killStage(t *testing.T, root, grace string) *Stage {
	t.Helper()
	s := stage(root)
	s.KillOrphans, s.KillGrace = true, grace
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Orphans are killed only on the GPUs this run released, and only after the
// removal that released them; elsewhere they are reported and left alone.
func TestKillOrphansOnReleasedGPUsOnly(t *testing.T) {
	p := newProcRoot(t)
	onReleased := startSleeper(t, "exec sleep 300")
	elsewhere := startSleeper(t, "exec sleep 300")
	p.host(onReleased.pid())
	p.host(elsewhere.pid())
	snap := host2()
	snap.Devices[0].Processes = procs(onReleased.pid())
	snap.Devices[1].Processes = procs(elsewhere.pid())
	rec := exited(1, "alice", gpuA)

	s := killStage(t, p.root, "5s")
	// The stage alone signals nothing and releases nothing.
	res := run(t, s, pipeline.ModeRun, snap, rec)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if !onReleased.running() || reportRow(t, res.batch, gpuA).Status != pipeline.GPUOrphaned {
		t.Fatalf("the release stage acted before any removal: %+v", res.batch.GPUs)
	}

	rec = exited(1, "alice", gpuA)
	res = runRemoved(t, s, pipeline.ModeRun, snap, rec)
	if sig := onReleased.wait(t); sig != syscall.SIGTERM {
		t.Errorf("the orphan died of %v, want SIGTERM", sig)
	}
	if !elsewhere.running() {
		t.Error("an orphan on a GPU this run did not release was killed")
	}
	a, b := reportRow(t, res.batch, gpuA), reportRow(t, res.batch, gpuB)
	if a.Status != pipeline.GPUReleased || !a.Processes[0].Killed {
		t.Errorf("released GPU %+v, want released with its orphan killed", a)
	}
	if b.Status != pipeline.GPUOrphaned || b.Processes[0].Killed {
		t.Errorf("other GPU %+v, want orphaned, not killed", b)
	}
	want := []string{
		fmt.Sprintf("gpu.orphan gpu_uuid=%s pid=%d# used_memory_mib=%d", gpuA, onReleased.pid(), onReleased.pid()%1000),
		fmt.Sprintf("gpu.orphan gpu_uuid=%s pid=%d# used_memory_mib=%d", gpuB, elsewhere.pid(), elsewhere.pid()%1000),
		"gpu.release user=alice container=c1 gpu_uuid=" + gpuA + " reason=hold_expired",
		"gpu.health_check gpu_uuid=" + gpuA + " status=cleaned killed_processes=1#",
	}
	if diff := cmp.Diff(want, res.events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// A removal that did not happen (changed, failed, not attempted) releases
// nothing and signals nothing.
func TestNoKillWithoutConfirmedRemoval(t *testing.T) {
	for _, outcome := range []pipeline.OutcomeStatus{pipeline.OutcomeChanged, pipeline.OutcomeFailed, pipeline.OutcomeNone, pipeline.OutcomeKept} {
		t.Run(string(outcome), func(t *testing.T) {
			p, orphan, snap := orphanOnA(t, "exec sleep 300")
			rec := exited(1, "alice", gpuA)
			res := runThen(t, killStage(t, p.root, "1s"), pipeline.ModeRun, snap,
				func(*pipeline.Record) pipeline.OutcomeStatus { return outcome }, rec)
			if !orphan.running() {
				t.Fatal("an orphan was signalled although its GPU was not released")
			}
			if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUOrphaned || g.Processes[0].Killed {
				t.Errorf("row %+v, want orphaned, nothing killed", g)
			}
			for _, ev := range res.events {
				if strings.HasPrefix(ev, "gpu.release") || strings.HasPrefix(ev, "gpu.health_check") {
					t.Errorf("event %q without a confirmed removal", ev)
				}
			}
			if len(rec.ReleaseGPUs) != 0 {
				t.Errorf("ReleaseGPUs %v after a removal that did not happen", rec.ReleaseGPUs)
			}
		})
	}
}

// Owner-written labels never make a GPU eligible for kills: the GPU is
// released with its container, but its orphan is only reported.
func TestLabelClaimsNeverKill(t *testing.T) {
	p, orphan, snap := orphanOnA(t, "exec sleep 300")
	rec := exited(1, "alice")
	rec.GPUs = []pipeline.GPUClaim{{UUID: gpuA, Source: pipeline.ClaimLabel}}
	res := runRemoved(t, killStage(t, p.root, "1s"), pipeline.ModeRun, snap, rec)
	if !orphan.running() {
		t.Fatal("an orphan was killed on a GPU claimed by a label only")
	}
	if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUOrphaned {
		t.Errorf("row %+v, want orphaned", g)
	}
	// NVIDIA_VISIBLE_DEVICES counts only under the nvidia runtime.
	env := pipeline.GPUClaim{UUID: gpuA, Source: pipeline.ClaimEnv}
	if env.Enforced(&pipeline.Container{Runtime: "runc"}) || !env.Enforced(&pipeline.Container{Runtime: "nvidia"}) {
		t.Error("NVIDIA_VISIBLE_DEVICES is enforced only by the nvidia runtime")
	}
}

// An orphan that ignores SIGTERM gets SIGKILL once the grace period is over.
func TestKillEscalatesToSIGKILL(t *testing.T) {
	p, stubborn, snap := orphanOnA(t, `trap "" TERM; exec sleep 300`)
	start := time.Now()
	res := runRemoved(t, killStage(t, p.root, "300ms"), pipeline.ModeRun, snap, exited(1, "alice", gpuA))
	if sig := stubborn.wait(t); sig != syscall.SIGKILL {
		t.Errorf("died of %v, want SIGKILL", sig)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("SIGKILL after %v, before the grace period", d)
	}
	if g := reportRow(t, res.batch, gpuA); !g.Processes[0].Killed || g.Status != pipeline.GPUReleased {
		t.Errorf("row %+v, want the process marked killed and the GPU released", g)
	}
}

// When the run's deadline ends the grace, SIGKILL is not sent, and the log
// and the health check say exactly that.
func TestDeadlineCutsTheGrace(t *testing.T) {
	p, stubborn, snap := orphanOnA(t, `trap "" TERM; exec sleep 300`)
	s := killStage(t, p.root, "1m")
	rec := exited(1, "alice", gpuA)
	env, hook := testEnv(pipeline.ModeRun, snap)
	batch := &pipeline.Batch{Records: []*pipeline.Record{rec}, GPU: snap}
	if err := s.Process(context.Background(), env, batch); err != nil {
		t.Fatal(err)
	}
	rec.Outcome.Status = pipeline.OutcomeRemoved
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	pipeline.SettleReleases(ctx, env, batch)
	if !stubborn.running() {
		t.Fatal("the process that ignores SIGTERM is gone: SIGKILL was sent after the deadline")
	}
	var health string
	for _, ev := range batch.TakeEvents() {
		if ev.Type == "gpu.health_check" {
			health = eventText(ev)
		}
	}
	want := fmt.Sprintf("gpu.health_check gpu_uuid=%s status=deadline killed_processes=0# left_processes=1# left_pids=%d "+
		"left_reason=%d: SIGTERM sent; the run's deadline ended the grace period, SIGKILL not sent", gpuA, stubborn.pid(), stubborn.pid())
	if health != want {
		t.Errorf("health check\n%s\nwant\n%s", health, want)
	}
	found := false
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "survived SIGKILL") {
			t.Errorf("log claims a SIGKILL that was never sent: %s", e.Message)
		}
		if e.Data["signals_sent"] == "SIGTERM" && strings.Contains(e.Message, "SIGKILL not sent") {
			found = true
		}
	}
	if !found {
		t.Error("no log line saying SIGTERM was sent and SIGKILL was not")
	}
	if g := reportRow(t, batch, gpuA); g.Status != pipeline.GPUOrphaned {
		t.Errorf("row %+v, want orphaned: the orphan is still there", g)
	}
}

// Just before the kill the engine re-reads /proc: a PID that now names
// another process, or that joined a container, is not signalled.
func TestKillReverifies(t *testing.T) {
	cases := []struct {
		name   string
		change func(p *procRoot, pid int)
		want   string
	}{
		{"reused PID", func(p *procRoot, pid int) { p.write(pid, "/user.slice/session-9.scope", 1) }, "another process"},
		{"now in a container", func(p *procRoot, pid int) { p.inContainer(pid, cid(5)) }, "belongs to a container"},
		{"now in a podman container", func(p *procRoot, pid int) {
			p.write(pid, "/machine.slice/libpod-"+cid(5)+".scope", uint64(100000+pid))
		}, "belongs to a container"},
		{"moved cgroup", func(p *procRoot, pid int) { p.write(pid, "/user.slice/other.scope", uint64(100000+pid)) }, "cgroup changed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, victim, snap := orphanOnA(t, "exec sleep 300")
			pid := victim.pid()
			res := runThen(t, killStage(t, p.root, "1s"), pipeline.ModeRun, snap, func(*pipeline.Record) pipeline.OutcomeStatus {
				c.change(p, pid) // between the stage and the signal
				return pipeline.OutcomeRemoved
			}, exited(1, "alice", gpuA))
			if !victim.running() {
				t.Fatal("the process was killed")
			}
			last := res.events[len(res.events)-1]
			if !strings.Contains(last, "status=kill_failed") || !strings.Contains(last, c.want) {
				t.Errorf("health check %q, want kill_failed: %s", last, c.want)
			}
		})
	}
	t.Run("already gone", func(t *testing.T) {
		p, gone, snap := orphanOnA(t, "exec sleep 300")
		res := runThen(t, killStage(t, p.root, "1s"), pipeline.ModeRun, snap, func(*pipeline.Record) pipeline.OutcomeStatus {
			_ = gone.cmd.Process.Kill()
			gone.wait(t)
			return pipeline.OutcomeRemoved
		}, exited(1, "alice", gpuA))
		if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUReleased || g.Processes[0].Killed {
			t.Errorf("row %+v, want released, the process gone without a signal", g)
		}
	})
}

// A process on several GPUs is killed only when every GPU it runs on was
// released this run, and then once. When it is not, the released GPU's
// health check says so: never cleaned while the orphan runs there.
func TestKillMultiGPUOrphan(t *testing.T) {
	t.Run("all its GPUs released", func(t *testing.T) {
		p, multi, snap := orphanOnA(t, "exec sleep 300")
		snap.Devices[1].Processes = procs(multi.pid())
		res := runRemoved(t, killStage(t, p.root, "10s"), pipeline.ModeRun, snap, exited(1, "alice", gpuA, gpuB))
		multi.wait(t)
		for _, uuid := range []string{gpuA, gpuB} {
			if g := reportRow(t, res.batch, uuid); g.Status != pipeline.GPUReleased || !g.Processes[0].Killed {
				t.Errorf("row %+v, want released with the process killed", g)
			}
		}
		health := 0
		for _, ev := range res.events {
			if strings.HasPrefix(ev, "gpu.health_check") {
				health++
				if !strings.Contains(ev, "status=cleaned killed_processes=1#") {
					t.Errorf("health check %q", ev)
				}
			}
		}
		if health != 2 {
			t.Errorf("events %v, want a health check per GPU", res.events)
		}
	})
	t.Run("one GPU not released", func(t *testing.T) {
		p := newProcRoot(t)
		multi := startSleeper(t, "exec sleep 300")
		single := startSleeper(t, "exec sleep 300")
		p.host(multi.pid())
		p.host(single.pid())
		snap := host2()
		snap.Devices[0].Processes = procs(multi.pid(), single.pid())
		snap.Devices[1].Processes = procs(multi.pid())
		res := runRemoved(t, killStage(t, p.root, "10s"), pipeline.ModeRun, snap, exited(1, "alice", gpuA))
		single.wait(t)
		if !multi.running() {
			t.Fatal("killed an orphan that also runs on a GPU this run did not release")
		}
		g := reportRow(t, res.batch, gpuA)
		if g.Status != pipeline.GPUOrphaned || g.Processes[0].Killed || !g.Processes[1].Killed {
			t.Errorf("row %+v, want orphaned, the shared process left, the other killed", g)
		}
		want := fmt.Sprintf("gpu.health_check gpu_uuid=%s status=orphaned_shared killed_processes=1# left_processes=1# left_pids=%d "+
			"left_reason=%d: it also runs on %s, which this run did not release", gpuA, multi.pid(), multi.pid(), gpuB)
		if last := res.events[len(res.events)-1]; last != want {
			t.Errorf("health check\n%s\nwant\n%s", last, want)
		}
	})
}

// In plan mode nothing is signalled, and the report shows what a run would
// release.
func TestPlanKillsNothing(t *testing.T) {
	p, orphan, snap := orphanOnA(t, "exec sleep 300")
	res := runRemoved(t, killStage(t, p.root, "1s"), pipeline.ModePlan, snap, exited(1, "alice", gpuA))
	if !orphan.running() || len(res.events) != 0 {
		t.Fatalf("plan: process running %v, events %v", orphan.running(), res.events)
	}
	if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUOrphaned {
		t.Errorf("row %+v", g)
	}
}

// testEnv is the environment run and runThen use, with its log hook.
func testEnv(mode pipeline.Mode, snap *nvml.Snapshot) (*pipeline.Env, *logtest.Hook) {
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	return &pipeline.Env{Pipeline: "t", Mode: mode, Now: now, Log: log, GPU: &fakeGPU{snap: snap}, Stats: &pipeline.Stats{}}, hook
}

func quiet() logrus.FieldLogger {
	l, _ := logtest.NewNullLogger()
	return l
}

// An exempt container's GPUs are never released and nothing on them is
// signalled, whatever its outcome says; a container already gone counts
// as confirmed.
func TestExemptNeverReleasedGoneIsConfirmed(t *testing.T) {
	p, orphan, snap := orphanOnA(t, "exec sleep 300")
	rec := exited(1, "alice", gpuA)
	s := killStage(t, p.root, "1s")
	env, _ := testEnv(pipeline.ModeRun, snap)
	batch := &pipeline.Batch{Records: []*pipeline.Record{rec}, GPU: snap}
	must(t, s.Process(context.Background(), env, batch))
	rec.Exempt, rec.ExemptReason = true, "ds01.protected=true" // as the engine marks it
	rec.Outcome.Status = pipeline.OutcomeRemoved
	pipeline.SettleReleases(context.Background(), env, batch)
	if !orphan.running() {
		t.Fatal("a process on an exempt container's GPU was signalled")
	}
	for _, ev := range batch.TakeEvents() {
		if ev.Type == "gpu.release" || ev.Type == "gpu.health_check" {
			t.Errorf("event %s for an exempt container", eventText(ev))
		}
	}
	if g := reportRow(t, batch, gpuA); g.Status == pipeline.GPUReleased {
		t.Errorf("row %+v: an exempt container's GPU released", g)
	}

	res := runThen(t, s, pipeline.ModeRun, snap, func(*pipeline.Record) pipeline.OutcomeStatus { return pipeline.OutcomeGone },
		exited(1, "alice", gpuA))
	if sig := orphan.wait(t); sig != syscall.SIGTERM {
		t.Errorf("died of %v, want SIGTERM once the container is confirmed gone", sig)
	}
	if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUReleased {
		t.Errorf("row %+v, want released", g)
	}
}
