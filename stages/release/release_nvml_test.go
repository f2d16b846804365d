package release

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

// cudaHelper creates a CUDA context through the driver API and keeps it, so
// that NVML lists the process as a compute process. It needs python3 and
// the driver's libcuda.so.1, both present on GPU hosts.
const cudaHelper = `
import ctypes, sys, time
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
for call, args in (("cuInit", (0,)), ("cuDeviceGet", (ctypes.byref(dev), 0)), ("cuCtxCreate_v2", (ctypes.byref(ctx), 0, dev))):
    rc = getattr(cuda, call)(*args)
    if rc != 0:
        sys.exit("%s: CUDA error %d" % (call, rc))
print("ready", flush=True)
time.sleep(300)
`

// TestRealNVML runs the stage against the real driver, wherever there is
// one, and says clearly that it did not run anywhere else. It is read-only
// for everything it did not start: the stage runs in plan mode, and the
// kill is tried on the test's own CUDA process alone.
func TestRealNVML(t *testing.T) {
	gpu, err := nvml.Open(nvml.Options{Backend: nvml.BackendNVML})
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Close()
	snap, err := gpu.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Available || len(snap.Devices) == 0 {
		// A GPU-less CI runner passes with a log line; elsewhere a skip
		// with the reason.
		why := "no real NVML on this host: " + snap.Unavailable
		if snap.Available {
			why = "NVML lists no GPU"
		}
		if os.Getenv("CI") == "true" {
			t.Logf("DID NOT RUN (no GPU here): %s", why)
			return
		}
		t.Skipf("DID NOT RUN (no GPU here): %s", why)
	}

	// Read-only: every device and slice gets a row, none unchecked unless
	// NVML could not read it.
	res := run(t, New(), pipeline.ModePlan, snap)
	if res.err != nil || !res.batch.GPUChecked {
		t.Fatalf("err %v, checked %v", res.err, res.batch.GPUChecked)
	}
	want := 0
	for _, d := range snap.Devices {
		want += 1 + len(d.MIG)
	}
	if len(res.batch.GPUs) != want {
		t.Errorf("%d rows for %d devices and slices", len(res.batch.GPUs), want)
	}
	for _, g := range res.batch.GPUs {
		t.Logf("real GPU row: index %d %s %q parent=%q status=%s processes=%+v", g.Index, g.UUID, g.Name, g.MIGParent, g.Status, g.Processes)
	}

	// A CUDA process of our own, in no container (unless the test itself
	// runs in one).
	helper := exec.Command("python3", "-c", cudaHelper)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Logf("DID NOT RUN the kill part: python3: %v", err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- helper.Wait() }()
	t.Cleanup(func() {
		_ = helper.Process.Kill()
		<-done
	})
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); !strings.HasPrefix(string(buf[:n]), "ready") {
		t.Logf("DID NOT RUN the kill part: the CUDA helper did not start (%q)", buf[:n])
		return
	}
	pid := helper.Process.Pid
	t.Logf("CUDA helper PID %d has a context", pid)

	var uuid string
	deadline := time.Now().Add(30 * time.Second)
	for uuid == "" && time.Now().Before(deadline) {
		if snap, err = gpu.Snapshot(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, d := range snap.Devices {
			if slices.ContainsFunc(d.Processes, func(p nvml.Process) bool { return p.PID == pid }) {
				uuid = d.UUID
			}
		}
		if uuid == "" {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if uuid == "" {
		t.Fatalf("NVML never listed the CUDA helper (PID %d)", pid)
	}

	// A container that held this GPU (--gpus device=...) is about to be
	// removed. The picture is taken in plan mode; then the plan is cut down
	// to the test's own process, so that whatever else runs on this GPU is
	// never signalled, and settled as after a confirmed removal.
	s := New()
	s.KillOrphans = true
	s.KillGrace = "10s"
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	rec := exited(1, "alice", uuid)
	log := quiet()
	env := &pipeline.Env{Pipeline: "t", Mode: pipeline.ModePlan, Now: now, Log: log}
	batch := &pipeline.Batch{Records: []*pipeline.Record{rec}, GPU: snap}
	v := s.reconcile(t.Context(), env, batch, snap)
	info := v.pids[pid]
	if info == nil {
		t.Fatalf("PID %d not mapped", pid)
	}
	t.Logf("the CUDA helper maps to %+v", info)
	if info.kind != kindOrphan {
		t.Logf("DID NOT RUN the kill part: the test's CUDA process is no orphan here (kind %d, container %q, runtime %q)", info.kind, info.container, info.runtime)
		return
	}
	r := v.byKey[strings.ToLower(uuid)]
	if r.report.Status != pipeline.GPUOrphaned {
		t.Fatalf("row %+v, want orphaned", r.report)
	}
	if !r.pending {
		t.Logf("DID NOT RUN the kill part: %s is in use by others too (%+v)", uuid, r.report.Processes)
		return
	}
	plan := v.plan(s)
	plan.Orphans = slices.DeleteFunc(plan.Orphans, func(o *pipeline.Orphan) bool { return o.PID != pid })
	batch.Release, batch.GPUs = plan, v.reports()
	rec.Outcome.Status = pipeline.OutcomeRemoved
	env.Mode = pipeline.ModeRun
	pipeline.SettleReleases(t.Context(), env, batch)
	select {
	case err := <-done:
		done <- err
		ws, _ := helper.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Errorf("helper ended with %v; want killed by SIGTERM", helper.ProcessState)
		}
		t.Logf("the CUDA helper (PID %d, orphaned on released %s) was killed: %v", pid, uuid, helper.ProcessState)
	case <-time.After(20 * time.Second):
		t.Fatalf("the CUDA helper survived: %+v", plan.Orphans)
	}
	if g := reportRow(t, batch, uuid); g.Status != pipeline.GPUReleased {
		t.Errorf("row %+v, want released once its orphan is gone", g)
	}
}
