package release

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/stages/remove"
)

// createWith creates (and starts) a probe container running forever on eng
// with the host settings a dockertest.Spec cannot express: a cgroup parent,
// the host's PID namespace. It carries eng's label, so eng's cleanup
// removes it.
func createWith(t *testing.T, eng *dockertest.Engine, name string, hc container.HostConfig, gpus ...string) dockertest.Container {
	t.Helper()
	key, value := eng.Label()
	hc.NetworkMode = "none"
	if len(gpus) > 0 {
		hc.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: gpus, Capabilities: [][]string{{"gpu"}}}}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := eng.Client().ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       eng.Prefix() + name,
		Config:     &container.Config{Image: eng.Image(t), Cmd: []string{"forever"}, Labels: map[string]string{key: value}},
		HostConfig: &hc,
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	eng.Start(t, res.ID)
	return dockertest.Container{ID: res.ID, Name: eng.Prefix() + name}
}

// cgroupMounts maps each cgroup v1 controller (and "" for cgroup v2) to
// where its hierarchy is mounted, from /proc/self/mountinfo.
func cgroupMounts(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 || fields[3] != "/" {
			continue
		}
		switch tail[0] {
		case "cgroup2":
			out[""] = fields[4]
		case "cgroup":
			for _, opt := range strings.Split(tail[2], ",") {
				out[opt] = fields[4]
			}
		}
	}
	return out
}

// moveIntoCgroupOf moves pid into every cgroup of containerPID, as a worker
// that escaped its container's process tree stays in its cgroup, and
// returns the cgroup directories (to be removed once the process is gone).
// It needs root and a writable cgroup file system: the test fails, never
// skips, without them.
func moveIntoCgroupOf(t *testing.T, pid, containerPID int, id string) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", containerPID))
	if err != nil {
		t.Fatal(err)
	}
	mounts := cgroupMounts(t)
	var dirs []string
	for line := range strings.Lines(string(data)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		mnt := mounts[strings.Split(parts[1], ",")[0]]
		if parts[1] == "" {
			mnt = mounts[""]
		}
		dir := filepath.Join(mnt, parts[2])
		if mnt == "" || !strings.Contains(parts[2], id) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err == nil {
			dirs = append(dirs, dir)
		}
	}
	own, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if !strings.Contains(string(own), id) {
		t.Fatalf("could not move PID %d into the cgroup of container %.12s (needs root and a writable /sys/fs/cgroup): %s", pid, id, own)
	}
	return dirs
}

// mixedProc is a /proc for the stage: every entry of the real /proc, except
// the pinned PIDs, whose stat says their parent is PID 1 and whose status
// says they are in this /proc's PID namespace, and whose cgroup is the real
// one (realCgroup) or a host session's. So the test does not depend on where
// the test itself runs (its own cgroup, PID namespace or parents), while
// every container's process, and the real cgroup of a leaked worker, are
// read for real.
func mixedProc(t *testing.T, realCgroup map[int]bool) string {
	t.Helper()
	root := t.TempDir()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if _, pinned := realCgroup[pid]; err == nil && pinned {
			continue
		}
		if err := os.Symlink(filepath.Join("/proc", e.Name()), filepath.Join(root, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for pid, real := range realCgroup {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		end := strings.LastIndexByte(string(stat), ')')
		fields := strings.Fields(string(stat[end+1:]))
		fields[1] = "1" // the parent: init
		must(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(string(stat[:end+1])+" "+strings.Join(fields, " ")+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "status"), fmt.Appendf(nil, "Name:\tworker\nNSpid:\t%d\n", pid), 0o644))
		if real {
			must(t, os.Symlink(fmt.Sprintf("/proc/%d/cgroup", pid), filepath.Join(dir, "cgroup")))
		} else {
			must(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/user.slice/user-1000.slice/session-2.scope\n"), 0o644))
		}
	}
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The classic leak and its look-alikes, with real containers and real
// processes:
//
//   - a worker that outlived its container (still in the removed
//     container's cgroup, under a DS01-style --cgroup-parent) is an orphan,
//     reported with the container it came from, and killed once the GPU it
//     holds is released by a removal this run confirmed;
//   - a live container with a cgroup parent, and a second process in its
//     cgroup, are in use and never signalled;
//   - the containers of a second engine this run does not know (one in its
//     own PID namespace, one in the host's) are in use, never orphans, never
//     signalled, although this engine answers 404 for them.
func TestIntegrationLeakedWorkerAndOtherEngines(t *testing.T) {
	priv := dockertest.PrivateDaemon(t)
	other := dockertest.PrivateDaemon(t)
	parent := "/ds01test-" + strings.TrimPrefix(strings.TrimSuffix(priv.Prefix(), "-"), dockertest.NamePrefix)
	withParent := container.HostConfig{Resources: container.Resources{CgroupParent: parent}}

	// The job whose worker leaks: the worker joins its cgroup, then the
	// owner removes the job.
	job := createWith(t, priv, "job", withParent, itGPU0)
	worker := startSleeper(t, "exec sleep 300")
	dirs := moveIntoCgroupOf(t, worker.pid(), priv.PID(t, job.ID), job.ID)
	t.Cleanup(func() {
		_ = worker.cmd.Process.Kill()
		<-worker.done
		for _, d := range slices.Backward(dirs) {
			_ = os.Remove(d) // the engine could not remove it while the worker lived
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := priv.Client().ContainerRemove(ctx, job.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if !worker.running() {
		t.Fatal("setup: the worker died with its container")
	}

	// This run removes done0 (holding GPU 0) and done2 (GPU 2).
	done0 := priv.Create(t, dockertest.Spec{Name: "done0", Labels: map[string]string{"ds01.user": "bob"}, GPUs: []string{itGPU0}, Start: true, Wait: true})
	done2 := priv.Create(t, dockertest.Spec{Name: "done2", Labels: map[string]string{"ds01.user": "bob"}, GPUs: []string{itGPU2}, Start: true, Wait: true})
	// A live container under the same cgroup parent, with a second process
	// moved into its cgroup.
	live := createWith(t, priv, "live", withParent, itGPU1)
	livePID := priv.PID(t, live.ID)
	helper := startSleeper(t, "exec sleep 300")
	moveIntoCgroupOf(t, helper.pid(), livePID, live.ID)
	// The other engine's containers: this run's engine has never heard of them.
	foreign := other.Create(t, dockertest.Spec{Name: "foreign", Args: []string{"forever"}, Start: true})
	foreignHost := createWith(t, other, "foreign-hostpid", container.HostConfig{PidMode: "host"})
	foreignPID, foreignHostPID := other.PID(t, foreign.ID), other.PID(t, foreignHost.ID)

	gpu := writeSim(t, []string{itGPU0, itGPU1, itGPU2},
		[][]int{{worker.pid()}, {livePID, helper.pid()}, {foreignPID, foreignHostPID}})
	env := &pipeline.Env{Pipeline: "it", Mode: pipeline.ModeRun, Now: time.Now().UTC(), CallTimeout: 30 * time.Second,
		GPU: gpu, Stats: &pipeline.Stats{}, Log: quiet()}
	recs := discoverOn(t, priv, env)
	for _, name := range []string{done0.Name, done2.Name} {
		byName(t, recs, name).Verdict = pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired, Clock: pipeline.ClockFinished, HasLimit: true}
	}
	batch := &pipeline.Batch{Records: recs}
	batch.GPU, _ = gpu.Snapshot(t.Context())

	s := New()
	s.KillOrphans, s.KillGrace = true, "10s"
	s.ProcRoot = mixedProc(t, map[int]bool{worker.pid(): true, helper.pid(): true})
	must(t, s.Init())
	if err := s.Process(t.Context(), env, batch); err != nil {
		t.Fatalf("release: %v", err)
	}
	if !worker.running() {
		t.Fatal("the release stage signalled a process before any removal")
	}
	if err := remove.New().Process(t.Context(), env, batch); err != nil {
		t.Fatalf("remove: %v", err)
	}

	if sig := worker.wait(t); sig != syscall.SIGTERM {
		t.Errorf("the leaked worker died of %v, want SIGTERM", sig)
	}
	for _, c := range []struct {
		what string
		pid  int
	}{{"the live container", livePID}, {"the second process of the live container", helper.pid()},
		{"the other engine's container", foreignPID}, {"the other engine's host-PID container", foreignHostPID}} {
		if !alive(c.pid) {
			t.Errorf("%s (PID %d) was signalled", c.what, c.pid)
		}
	}
	for _, id := range []string{foreign.ID, foreignHost.ID} {
		if st := other.Inspect(t, id).State.Status; st != "running" {
			t.Errorf("the other engine's container %.12s is %s", id, st)
		}
	}

	g0, g1, g2 := reportRow(t, batch, itGPU0), reportRow(t, batch, itGPU1), reportRow(t, batch, itGPU2)
	if g0.Status != pipeline.GPUReleased || len(g0.Processes) != 1 || g0.Processes[0].FormerContainerID != job.ID ||
		g0.Processes[0].ContainerID != "" || !g0.Processes[0].Killed {
		t.Errorf("GPU 0 %+v, want released, its leaked worker from %s killed", g0, job.ID)
	}
	if g1.Status != pipeline.GPUInUse || len(g1.Processes) != 2 {
		t.Errorf("GPU 1 %+v, want in use by the live container", g1)
	}
	for _, p := range g1.Processes {
		if p.ContainerID != live.ID || p.Killed {
			t.Errorf("GPU 1 process %+v, want in container %s, not killed", p, live.ID)
		}
	}
	if g2.Status != pipeline.GPUInUse || len(g2.Processes) != 2 {
		t.Errorf("GPU 2 %+v, want in use by the other engine's containers", g2)
	}
	for _, p := range g2.Processes {
		if p.Runtime == "" || p.FormerContainerID != "" || p.Killed {
			t.Errorf("GPU 2 process %+v, want held by another runtime, not an orphan", p)
		}
	}
	var orphanEvents []string
	for _, ev := range batch.TakeEvents() {
		if ev.Type == "gpu.orphan" {
			orphanEvents = append(orphanEvents, eventText(ev))
		}
	}
	want := []string{fmt.Sprintf("gpu.orphan source=ds01-pipe/it gpu_uuid=%s pid=%d# used_memory_mib=1024 former_container_id=%s", itGPU0, worker.pid(), job.ID)}
	if !slices.Equal(orphanEvents, want) {
		t.Errorf("orphan events %q, want %q", orphanEvents, want)
	}
}
