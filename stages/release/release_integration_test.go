package release

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
	"github.com/ds01/ds01-pipe/stages/attribute"
	"github.com/ds01/ds01-pipe/stages/discover"
	"github.com/ds01/ds01-pipe/stages/remove"
)

// These tests run against the real Docker engine (see internal/dockertest);
// dockertest fails them, never skips them, when there is none. The GPUs are
// a simulation file written by the test, but the PIDs in it are real host
// PIDs, mapped to containers through the real /proc.

const (
	itGPU0 = "GPU-11111111-2222-3333-4444-000000000000"
	itGPU1 = "GPU-11111111-2222-3333-4444-000000000001"
	itGPU2 = "GPU-11111111-2222-3333-4444-000000000002"
)

// writeSim writes a simulation file with one device per entry of procs
// (device i has UUID uuids[i] and the PIDs procs[i]) and opens it.
func writeSim(t *testing.T, uuids []string, procs [][]int) nvml.Backend {
	t.Helper()
	type p struct {
		PID  int    `json:"pid"`
		Used uint64 `json:"used_memory_mib"`
	}
	type d struct {
		Index     int    `json:"index"`
		UUID      string `json:"uuid"`
		Name      string `json:"name"`
		MemoryMiB uint64 `json:"memory_mib"`
		Processes []p    `json:"processes"`
	}
	doc := struct {
		Driver  string `json:"driver_version"`
		Devices []d    `json:"devices"`
	}{Driver: "550.54.15"}
	for i, u := range uuids {
		dev := d{Index: i, UUID: u, Name: "NVIDIA A100-SXM4-80GB", MemoryMiB: 81920, Processes: []p{}}
		for _, pid := range procs[i] {
			dev.Processes = append(dev.Processes, p{PID: pid, Used: 1024})
		}
		doc.Devices = append(doc.Devices, dev)
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gpus.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := nvml.Open(nvml.Options{Backend: nvml.BackendSim, SimFile: path})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return b
}

// discoverOn runs discover and attribute over eng's own containers.
func discoverOn(t *testing.T, eng *dockertest.Engine, env *pipeline.Env) []*pipeline.Record {
	t.Helper()
	env.Docker = eng.Client()
	key, value := eng.Label()
	batch := &pipeline.Batch{}
	d := &discover.Stage{NamePrefix: eng.Prefix(), Labels: map[string]string{key: value}, Workers: 2}
	if err := d.Process(t.Context(), env, batch); err != nil {
		t.Fatalf("discover: %v", err)
	}
	if err := attribute.New().Process(t.Context(), env, batch); err != nil {
		t.Fatalf("attribute: %v", err)
	}
	return batch.Records
}

func byName(t *testing.T, recs []*pipeline.Record, name string) *pipeline.Record {
	t.Helper()
	for _, r := range recs {
		if r.Container.Name == name {
			return r
		}
	}
	t.Fatalf("discover did not find %s", name)
	return nil
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func TestIntegrationReconcileAndKill(t *testing.T) {
	// A running container with no GPU allocation record, on the stock daemon.
	eng := dockertest.New(t)
	probe := eng.Create(t, dockertest.Spec{Name: "notebook", Labels: map[string]string{"ds01.user": "alice"}, Args: []string{"forever"}, Start: true})
	probePID := eng.PID(t, probe.ID)

	// An exited container that held GPU 1, from a daemon that runs --gpus containers.
	priv := dockertest.PrivateDaemon(t)
	held := priv.Create(t, dockertest.Spec{Name: "trained", Labels: map[string]string{"ds01.user": "bob"}, GPUs: []string{itGPU1}, Start: true, Wait: true})

	// Two host processes in no container: one on the GPU this run
	// releases, one on a GPU nobody releases.
	onReleased := startSleeper(t, "exec sleep 300")
	elsewhere := startSleeper(t, "exec sleep 300")

	gpu := writeSim(t, []string{itGPU0, itGPU1, itGPU2}, [][]int{{probePID}, {onReleased.pid()}, {elsewhere.pid()}})
	newEnv := func(mode pipeline.Mode) *pipeline.Env {
		return &pipeline.Env{Pipeline: "it", Mode: mode, Now: time.Now().UTC(), CallTimeout: 30 * time.Second, GPU: gpu, Stats: &pipeline.Stats{}, Log: quiet()}
	}
	batchFor := func(env *pipeline.Env) (*pipeline.Batch, *pipeline.Record, *pipeline.Record) {
		recs := append(discoverOn(t, eng, env), discoverOn(t, priv, env)...)
		b := &pipeline.Batch{Records: recs}
		nb := byName(t, recs, probe.Name)
		tr := byName(t, recs, held.Name)
		if tr.Container.State != pipeline.StateExited || !slices.Equal(tr.GPUUUIDs(), []string{itGPU1}) {
			t.Fatalf("GPU container: state %s, GPUs %v", tr.Container.State, tr.GPUUUIDs())
		}
		tr.Verdict = pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired, Clock: pipeline.ClockFinished, HasLimit: true}
		return b, nb, tr
	}

	s := New()
	s.KillOrphans = true
	s.KillGrace = "5s"
	// The two host processes read as a host session's, wherever the test runs.
	s.ProcRoot = mixedProc(t, map[int]bool{onReleased.pid(): false, elsewhere.pid(): false})
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}

	// Plan: the picture, nothing queued, nothing killed.
	env := newEnv(pipeline.ModePlan)
	batch, notebook, trained := batchFor(env)
	// discover took the snapshot; release works from it.
	batch.GPU, _ = gpu.Snapshot(t.Context())
	if err := s.Process(t.Context(), env, batch); err != nil {
		t.Fatalf("release (plan): %v", err)
	}
	want := map[string]pipeline.GPUStatus{itGPU0: pipeline.GPUUnrecorded, itGPU1: pipeline.GPUOrphaned, itGPU2: pipeline.GPUOrphaned}
	if got := statuses(batch); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("plan statuses %v, want %v", got, want)
	}
	if g := reportRow(t, batch, itGPU0); len(g.Processes) != 1 || g.Processes[0].ContainerID != probe.ID {
		t.Errorf("GPU 0 processes %+v, want PID %d of %s", g.Processes, probePID, probe.ID)
	}
	if notebook.Owner.Name != "alice" || !slices.Equal(notebook.GPUUUIDs(), []string{itGPU0}) {
		t.Errorf("notebook: owner %q, GPUs %v; want alice using %s", notebook.Owner.Name, notebook.GPUUUIDs(), itGPU0)
	}
	if !slices.Equal(trained.ReleaseGPUs, []string{itGPU1}) {
		t.Errorf("plan: ReleaseGPUs %v", trained.ReleaseGPUs)
	}
	if evs := batch.TakeEvents(); len(evs) != 0 {
		t.Errorf("plan queued %d events", len(evs))
	}
	if !alive(onReleased.pid()) || !alive(elsewhere.pid()) {
		t.Fatal("plan killed a process")
	}

	// Run: the orphan on the released GPU is killed, nothing else.
	env = newEnv(pipeline.ModeRun)
	batch, _, trained = batchFor(env)
	batch.GPU, _ = gpu.Snapshot(t.Context())
	if err := s.Process(t.Context(), env, batch); err != nil {
		t.Fatalf("release (run): %v", err)
	}
	if !alive(onReleased.pid()) {
		t.Fatal("the release stage signalled a process before any removal")
	}
	// The removal, then the engine's settlement: only now is the GPU
	// released and its orphan signalled.
	rm := remove.New()
	if err := rm.Process(t.Context(), env, batch); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if trained.Outcome.Status != pipeline.OutcomeRemoved {
		t.Fatalf("outcome %+v, want removed", trained.Outcome)
	}
	if sig := onReleased.wait(t); sig != syscall.SIGTERM {
		t.Errorf("orphan on the released GPU died of %v, want SIGTERM", sig)
	}
	if !elsewhere.running() {
		t.Error("the orphan on a GPU this run did not release was killed")
	}
	if !alive(probePID) || eng.Inspect(t, probe.ID).State.Status != "running" {
		t.Error("the running container's process was touched")
	}
	want = map[string]pipeline.GPUStatus{itGPU0: pipeline.GPUUnrecorded, itGPU1: pipeline.GPUReleased, itGPU2: pipeline.GPUOrphaned}
	if got := statuses(batch); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("run statuses %v, want %v", got, want)
	}
	if g := reportRow(t, batch, itGPU1); !g.Processes[0].Killed || !slices.Equal(g.ClaimedBy, []string{held.ID}) {
		t.Errorf("GPU 1 %+v, want claimed by %s with its orphan killed", g, held.ID)
	}
	if !slices.Equal(trained.ReleaseGPUs, []string{itGPU1}) {
		t.Errorf("run: ReleaseGPUs %v", trained.ReleaseGPUs)
	}
	var got []string
	for _, ev := range batch.TakeEvents() {
		got = append(got, eventText(ev))
	}
	wantEvents := []string{
		fmt.Sprintf("gpu.unrecorded user=alice source=ds01-pipe/it container=%s gpu_uuid=%s pid=%d#", probe.Name, itGPU0, probePID),
		fmt.Sprintf("gpu.orphan source=ds01-pipe/it gpu_uuid=%s pid=%d# used_memory_mib=1024", itGPU1, onReleased.pid()),
		fmt.Sprintf("gpu.orphan source=ds01-pipe/it gpu_uuid=%s pid=%d# used_memory_mib=1024", itGPU2, elsewhere.pid()),
		fmt.Sprintf("container.remove user=bob source=ds01-pipe/it container=%s reason=hold_expired stopped_duration=0h container_type=docker", held.Name),
		fmt.Sprintf("gpu.release user=bob source=ds01-pipe/it container=%s gpu_uuid=%s reason=hold_expired", held.Name, itGPU1),
		fmt.Sprintf("gpu.health_check source=ds01-pipe/it gpu_uuid=%s status=cleaned killed_processes=1#", itGPU1),
	}
	if fmt.Sprint(got) != fmt.Sprint(wantEvents) {
		t.Errorf("events:\n%q\nwant:\n%q", got, wantEvents)
	}
}

// The removal settles the release: the gpu.release event comes once the
// container is really gone, and names the GPU this stage cleared.
func TestIntegrationReleaseThenRemove(t *testing.T) {
	priv := dockertest.PrivateDaemon(t)
	held := priv.Create(t, dockertest.Spec{Name: "done", Labels: map[string]string{"ds01.user": "bob"}, GPUs: []string{itGPU0}, Start: true, Wait: true})
	gpu := writeSim(t, []string{itGPU0}, [][]int{{}})
	env := &pipeline.Env{Pipeline: "it", Mode: pipeline.ModeRun, Now: time.Now().UTC(), CallTimeout: 30 * time.Second, GPU: gpu, Stats: &pipeline.Stats{}, Log: quiet()}
	recs := discoverOn(t, priv, env)
	rec := byName(t, recs, held.Name)
	rec.Verdict = pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired}
	batch := &pipeline.Batch{Records: recs}
	if err := New().Process(t.Context(), env, batch); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := priv.Client().ContainerRemove(ctx, held.ID, client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.Outcome.Status = pipeline.OutcomeRemoved
	pipeline.SettleReleases(t.Context(), env, batch)
	evs := batch.TakeEvents()
	if len(evs) != 1 || evs[0].Type != events.GPURelease {
		t.Fatalf("events %v, want one gpu.release", evs)
	}
	if got := eventText(evs[0]); got != fmt.Sprintf("gpu.release user=bob source=ds01-pipe/it container=%s gpu_uuid=%s reason=hold_expired", held.Name, itGPU0) {
		t.Errorf("event %s", got)
	}
}
