package measure

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

func cid(c byte) string { return strings.Repeat(string(c), 64) }

// fakeProc writes <root>/<pid>/cgroup for each pid: a Docker container's
// cgroup, or a host process's for "".
func fakeProc(t *testing.T, pids map[int]string) nvml.ProcFS {
	t.Helper()
	root := t.TempDir()
	for pid, id := range pids {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		line := "0::/user.slice\n"
		if id != "" {
			line = "0::/system.slice/docker-" + id + ".scope\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return nvml.ProcFS{Root: root}
}

func rec(id string, claims ...string) *pipeline.Record {
	r := &pipeline.Record{Container: pipeline.Container{ID: id, State: pipeline.StateRunning}}
	for _, u := range claims {
		r.GPUs = append(r.GPUs, pipeline.GPUClaim{UUID: u, Source: pipeline.ClaimLabel})
	}
	return r
}

func TestGPUSignal(t *testing.T) {
	a, b, c := cid('a'), cid('b'), cid('c')
	procfs := fakeProc(t, map[int]string{10: a, 11: b, 12: c, 13: c, 20: ""})
	snap := &nvml.Snapshot{Available: true, Devices: []nvml.Device{
		// Shared by a (idle) and b (busy), per-process figures reported.
		{UUID: "GPU-0", UtilizationGPU: nvml.Pct(90), Processes: []nvml.Process{{PID: 10, SMUtil: nvml.Pct(0)}, {PID: 11, SMUtil: nvml.Pct(88)}}},
		// c alone, no per-process figures: the device's.
		{UUID: "GPU-1", UtilizationGPU: nvml.Pct(3), Processes: []nvml.Process{{PID: 12}}},
		// A MIG parent ([N/A]) with a slice whose utilisation is not reported.
		{UUID: "GPU-2", MIG: []nvml.MIGDevice{{UUID: "MIG-2a", Processes: []nvml.Process{{PID: 13}}}}},
		// A host process only.
		{UUID: "GPU-3", UtilizationGPU: nvml.Pct(70), Processes: []nvml.Process{{PID: 20}}},
		{UUID: "GPU-4", ProcessError: "ERROR_UNKNOWN"},
	}}
	v := newGPUView(snap, procfs)
	for _, tc := range []struct {
		name   string
		rec    *pipeline.Record
		known  bool
		value  float64
		source string
	}{
		{"idle beside a busy one", rec(a, "GPU-0"), true, 0, pipeline.SourceNVMLProcess},
		{"busy one", rec(b), true, 88, pipeline.SourceNVMLProcess}, // no record: NVML alone finds it
		{"slice not reported", rec(c, "GPU-1"), false, 0, ""},      // MIG-2a has c's process and no figure
		{"claimed, nothing of its own there", rec(cid('d'), "GPU-3"), true, 0, pipeline.SourceNVMLNoProc},
		{"unreadable device", rec(cid('e'), "GPU-4"), false, 0, ""},
		{"--gpus all, no process", &pipeline.Record{Container: pipeline.Container{ID: cid('f')}, GPUAll: true}, false, 0, ""},
	} {
		s := v.signal(tc.rec)
		if s.Known != tc.known || s.Value != tc.value || s.Source != tc.source {
			t.Errorf("%s: %+v, want known %v value %v source %q", tc.name, s, tc.known, tc.value, tc.source)
		}
	}
	seen := v.containers()
	if !seen[a] || !seen[b] || !seen[c] || len(seen) != 3 {
		t.Errorf("containers seen on GPUs: %v", seen)
	}

	// Without NVML there is no GPU evidence at all.
	s := newGPUView(&nvml.Snapshot{Unavailable: "NVML: ERROR_LIBRARY_NOT_FOUND"}, procfs).signal(rec(a, "GPU-0"))
	if s.Known || !strings.Contains(s.Missing, "LIBRARY_NOT_FOUND") {
		t.Errorf("no NVML: %+v", s)
	}
}

// #33: a --gpus all container's GPU evidence is its processes' figures.
func TestGPUSignalGPUsAll(t *testing.T) {
	a := cid('a')
	procfs := fakeProc(t, map[int]string{10: a})
	snap := &nvml.Snapshot{Available: true, Devices: []nvml.Device{
		{UUID: "GPU-0", UtilizationGPU: nvml.Pct(40), Processes: []nvml.Process{{PID: 10}}},
		{UUID: "GPU-1", UtilizationGPU: nvml.Pct(0)},
	}}
	r := &pipeline.Record{Container: pipeline.Container{ID: a}, GPUAll: true}
	s := newGPUView(snap, procfs).signal(r)
	if !s.Known || s.Value != 40 || s.Source != pipeline.SourceNVMLDevice {
		t.Errorf("--gpus all: %+v", s)
	}
}

// hangingStats never answers until the call's deadline.
type hangingStats struct{ *pipelinetest.Docker }

func (hangingStats) ContainerStats(ctx context.Context, _ string, _ client.ContainerStatsOptions) (client.ContainerStatsResult, error) {
	<-ctx.Done()
	return client.ContainerStatsResult{}, ctx.Err()
}

// A stats call that hangs ends at the per-call deadline: the run goes on,
// and the container has no CPU or network evidence this run.
func TestStatsCallThatHangs(t *testing.T) {
	r := rec(cid('a'), "GPU-0")
	env, _ := pipelinetest.Env(pipeline.ModeRun, hangingStats{pipelinetest.NewDocker()})
	env.CallTimeout = 50 * time.Millisecond
	b := &pipeline.Batch{Records: []*pipeline.Record{r}, GPU: &nvml.Snapshot{Available: true, Devices: []nvml.Device{{UUID: "GPU-0"}}}}
	start := time.Now()
	s := New()
	s.ProcRoot = t.TempDir()
	if err := s.Process(context.Background(), env, b); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("measure took %v", time.Since(start))
	}
	if r.Lifecycle == nil || r.Lifecycle.Stats != nil || !strings.Contains(r.Lifecycle.StatsError, "deadline") {
		t.Errorf("lifecycle facts %+v", r.Lifecycle)
	}
	if !r.Lifecycle.GPU.Known {
		t.Errorf("GPU evidence lost with the stats call: %+v", r.Lifecycle.GPU)
	}
}
