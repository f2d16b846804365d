package release

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

// fakeDocker answers inspects: the IDs in exists are there, those in broken
// fail, every other ID is 404. It counts the inspects.
type fakeDocker struct {
	exists, broken map[string]bool
	inspects       int
}

func (f *fakeDocker) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	return client.ContainerListResult{}, nil
}

func (f *fakeDocker) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	f.inspects++
	switch {
	case f.exists[id]:
		return client.ContainerInspectResult{}, nil
	case f.broken[id]:
		return client.ContainerInspectResult{}, fmt.Errorf("connection reset by peer")
	}
	return client.ContainerInspectResult{}, fmt.Errorf("no such container: %s: %w", id, cerrdefs.ErrNotFound)
}

func (f *fakeDocker) ContainerRemove(context.Context, string, client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	return client.ContainerRemoveResult{}, fmt.Errorf("fakeDocker removes nothing")
}

// proc writes a process in full: its cgroup text, parent, command name and
// whether it is in a nested PID namespace.
func (p *procRoot) proc(pid, ppid int, comm, cgroup string, nested bool) {
	p.t.Helper()
	p.entry(pid, ppid, comm, cgroup, nested, uint64(100000+pid))
}

// entry writes /proc/<pid>/{stat,status,cgroup}: 52 stat fields, as Linux
// writes them (field 4 the parent, field 22 the start time), and an NSpid
// line with a second field for a nested PID namespace.
func (p *procRoot) entry(pid, ppid int, comm, cgroup string, nested bool, start uint64) {
	p.t.Helper()
	dir := filepath.Join(p.root, strconv.Itoa(pid))
	must(p.t, os.MkdirAll(dir, 0o755))
	fields := []string{strconv.Itoa(pid), "(" + comm + ")", "S", strconv.Itoa(ppid)}
	for i := 5; i <= 52; i++ {
		v := "0"
		if i == 22 {
			v = strconv.FormatUint(start, 10)
		}
		fields = append(fields, v)
	}
	nspid := strconv.Itoa(pid)
	if nested {
		nspid += "\t7"
	}
	must(p.t, os.WriteFile(filepath.Join(dir, "stat"), []byte(strings.Join(fields, " ")+"\n"), 0o644))
	must(p.t, os.WriteFile(filepath.Join(dir, "status"), []byte("NSpid:\t"+nspid+"\n"), 0o644))
	must(p.t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644))
}

// Every PID NVML lists is accounted for: whose process it is, or why that
// could not be told. Only an orphan, in no live container of any runtime,
// and only one whose container the engine confirms gone, is orphaned.
func TestEveryProcessAccountedFor(t *testing.T) {
	p := newProcRoot(t)
	gone, known, broken, elsewhere := cid(70), cid(71), cid(72), cid(73)
	p.proc(10, 1, "containerd-shim", "0::/system.slice/containerd.service\n", false)
	p.proc(101, 1, "python3", "12:memory:/ds01.slice/ds01-alice.slice/"+gone+"\n0::/\n", false) // leaked from a removed container
	p.proc(102, 1, "python3", "0::/system.slice/docker-"+known+".scope\n", false)               // a container outside the scope
	p.proc(103, 1, "python3", "0::/docker/"+broken+"\n", false)                                 // the engine could not answer
	p.proc(104, 1, "python3", "0::/docker/"+elsewhere+"\n", true)                               // 404 here, but in a live PID namespace
	p.proc(105, 10, "python3", "0::/docker/"+elsewhere+"/sub\n", false)                         // 404 here, below a shim (--pid=host)
	p.proc(106, 1, "python3", "this is not a cgroup file\n", false)                             // cannot be parsed
	p.proc(107, 999, "python3", "0::/user.slice/user-1000.slice/session-1.scope\n", false)      // its parent cannot be read
	p.proc(108, 1, "python3", "0::/machine.slice/libpod-"+cid(74)+".scope\n", false)            // podman
	p.proc(109, 1, "python3", "0::/user.slice/user-1000.slice/session-1.scope\n", false)        // a plain host process
	snap := host2()
	snap.Devices[0].Processes = procs(101)
	snap.Devices[1].Processes = procs(102, 103)
	snap.Devices[2].MIG[0].Processes = procs(104, 105, 108)
	snap.Devices[2].MIG[1].Processes = procs(106, 107, 109)
	docker := &fakeDocker{exists: map[string]bool{known: true}, broken: map[string]bool{broken: true}}
	res := runOn(t, stage(p.root), pipeline.ModeRun, docker, snap)
	if res.err != nil {
		t.Fatal(res.err)
	}
	byPID := map[int]pipeline.GPUProcess{}
	for _, g := range res.batch.GPUs {
		for _, pr := range g.Processes {
			byPID[pr.PID] = pr
		}
	}
	check := func(pid int, ok bool, what string) {
		t.Helper()
		if !ok {
			t.Errorf("PID %d: %+v, want %s", pid, byPID[pid], what)
		}
	}
	check(101, byPID[101].FormerContainerID == gone && byPID[101].ContainerID == "", "an orphan from "+gone)
	check(102, byPID[102].ContainerID == known && byPID[102].Runtime == "", "in use by "+known)
	check(103, strings.Contains(byPID[103].Unaccounted, "connection reset"), "unaccounted: the engine did not answer")
	check(104, strings.Contains(byPID[104].Runtime, "PID namespace") && byPID[104].FormerContainerID == "", "another engine's, by its PID namespace")
	check(105, strings.Contains(byPID[105].Runtime, "containerd-shim"), "another engine's, by its supervisor")
	check(106, strings.Contains(byPID[106].Unaccounted, "malformed"), "unaccounted: its cgroup cannot be parsed")
	check(107, strings.Contains(byPID[107].Unaccounted, "ancestor"), "unaccounted: its parent cannot be read")
	check(108, byPID[108].Runtime == "podman", "podman's")
	check(109, byPID[109].ContainerID == "" && byPID[109].Runtime == "" && byPID[109].Unaccounted == "", "an orphan")
	want := map[string]pipeline.GPUStatus{
		gpuA: pipeline.GPUOrphaned, gpuB: pipeline.GPUUnaccounted, gpuM: pipeline.GPUFree,
		mig0: pipeline.GPUInUse, mig1: pipeline.GPUOrphaned,
	}
	if got := statuses(res.batch); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	if docker.inspects != 4 { // gone, known, broken, elsewhere: once each
		t.Errorf("%d inspects, want 4 (one per container ID outside the batch)", docker.inspects)
	}
	wantOrphan := fmt.Sprintf("gpu.orphan gpu_uuid=%s pid=101# used_memory_mib=101 former_container_id=%s", gpuA, gone)
	if res.events[0] != wantOrphan {
		t.Errorf("event %q, want %q", res.events[0], wantOrphan)
	}
}

// An unaccounted process keeps a GPU out of free and released, and nothing
// on it is signalled.
func TestUnaccountedBlocksRelease(t *testing.T) {
	p := newProcRoot(t)
	p.proc(200, 1, "python3", "garbage\n", false)
	p.host(201)
	snap := host2()
	snap.Devices[0].Processes = procs(200, 201)
	rec := exited(1, "alice", gpuA)
	res := runRemoved(t, killStage(t, p.root, "1s"), pipeline.ModeRun, snap, rec)
	if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUOrphaned || g.Processes[1].Killed {
		t.Errorf("row %+v, want orphaned (an orphan and an unaccounted process), nothing killed", g)
	}
	for _, ev := range res.events {
		if strings.HasPrefix(ev, "gpu.health_check") {
			t.Errorf("health check %q on a GPU that was not released", ev)
		}
	}
	snap.Devices[0].Processes = procs(200)
	res = runRemoved(t, stage(p.root), pipeline.ModeRun, snap, exited(1, "alice", gpuA))
	if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUUnaccounted {
		t.Errorf("row %+v, want unaccounted", g)
	}
}

// The container's own facts come first: a process whose PID is a live
// container's, or whose cgroup lies in a live container's cgroup (any
// driver, parent or nesting), is that container's, never an orphan.
func TestLiveContainerMembership(t *testing.T) {
	p := newProcRoot(t)
	owner := running(5, "alice", gpuA)
	owner.Container.PID = 300
	// A cgroup path no parser knows: only the container's own cgroup tells.
	p.proc(300, 1, "init", "0::/custom/tenant-a/job\n", true)
	p.proc(301, 1, "worker", "0::/custom/tenant-a/job/sub\n", false)
	p.proc(302, 1, "worker", "0::/custom/tenant-a/job-2\n", false) // a sibling, not inside
	snap := host2()
	snap.Devices[0].Processes = procs(300, 301, 302)
	res := runOn(t, killStage(t, p.root, "1s"), pipeline.ModeRun, &fakeDocker{}, snap, owner)
	g := reportRow(t, res.batch, gpuA)
	for i, want := range []string{owner.Container.ID, owner.Container.ID, ""} {
		if g.Processes[i].ContainerID != want {
			t.Errorf("process %+v, want container %q", g.Processes[i], want)
		}
	}
}

// The safety property of the kill step: over generated processes of
// generated containers (live and not, any cgroup form, leaked workers,
// other runtimes, unreadable entries) and generated removals, no process of
// a live container, and none that is not a confirmed orphan on GPUs this
// run released through engine-enforced claims, is ever chosen for a signal.
func TestNeverSignalsAContainerProcess(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 11))
	chosen := 0
	forms := []func(id string) string{
		func(id string) string { return "0::/docker/" + id + "\n" },
		func(id string) string { return "0::/system.slice/docker-" + id + ".scope\n" },
		func(id string) string { return "12:memory:/ds01.slice/ds01-u.slice/" + id + "\n0::/\n" },
		func(id string) string { return "0::/ds01.slice/ds01-u.slice/docker-" + id + ".scope/init.scope\n" },
		func(id string) string { return "0::/docker/" + id + "/docker/" + cid(999) + "\n" },
	}
	for round := range 120 {
		p := newProcRoot(t)
		snap := host2()
		var recs []*pipeline.Record
		liveOf := map[int]bool{} // PIDs in live containers (of any runtime)
		exists := map[string]bool{}
		pid := 1000
		rows := []*[]nvml.Process{&snap.Devices[0].Processes, &snap.Devices[1].Processes, &snap.Devices[2].MIG[0].Processes, &snap.Devices[2].MIG[1].Processes}
		uuids := []string{gpuA, gpuB, mig0, mig1}
		list := func(pid int) {
			for range 1 + r.IntN(2) {
				row := rows[r.IntN(len(rows))]
				*row = append(*row, nvml.Process{PID: pid, UsedMemoryMiB: 1})
			}
		}
		for c := range 6 {
			id := cid(round*100 + c + 1)
			claim := uuids[r.IntN(len(uuids))]
			var rec *pipeline.Record
			live := r.IntN(2) == 0
			if live {
				rec = running(round*100+c+1, "u", claim)
			} else {
				rec = exited(round*100+c+1, "u", claim)
			}
			if r.IntN(3) == 0 {
				rec.GPUs[0].Source = pipeline.ClaimLabel
			}
			if r.IntN(4) > 0 {
				recs = append(recs, rec) // else: outside the pipeline's scope
			}
			exists[id] = true
			if !live {
				continue
			}
			for range 1 + r.IntN(2) {
				pid++
				p.proc(pid, 1, "python3", forms[r.IntN(len(forms))](id), r.IntN(2) == 0)
				liveOf[pid] = true
				if r.IntN(3) == 0 {
					list(pid)
				}
			}
		}
		for range r.IntN(3) { // other runtimes, other engines, unreadable entries
			pid++
			switch r.IntN(4) {
			case 0:
				p.proc(pid, 1, "python3", "0::/machine.slice/libpod-"+cid(5000+pid)+".scope\n", false)
			case 1:
				p.proc(pid, 1, "python3", "0::/docker/"+cid(5000+pid)+"\n", true)
			case 2:
				p.proc(pid, 1, "python3", "garbage\n", false)
			default:
				p.proc(pid, 50000, "python3", "0::/user.slice/x.scope\n", false)
			}
			liveOf[pid] = true
			list(pid)
		}
		orphans := map[int]bool{}
		for range 1 + r.IntN(3) { // host orphans and leaked workers of removed containers
			pid++
			text := "0::/user.slice/user-1000.slice/session-1.scope\n"
			if r.IntN(2) == 0 {
				text = forms[r.IntN(len(forms)-1)](cid(9000 + pid))
			}
			p.proc(pid, 1, "python3", text, false)
			orphans[pid] = true
			row := rows[r.IntN(len(rows))]
			*row = append(*row, nvml.Process{PID: pid, UsedMemoryMiB: 1})
		}
		// The plan mode of the very settlement a run makes: it names every
		// process a run would signal, and signals nothing (the PIDs here are
		// made up, and may be real processes on this host).
		s := killStage(t, p.root, "1s")
		env, hook := testEnv(pipeline.ModePlan, snap)
		env.Docker = &fakeDocker{exists: exists}
		batch := &pipeline.Batch{Records: recs, GPU: snap}
		if err := s.Process(context.Background(), env, batch); err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if removable(rec) {
				rec.Outcome.Status = pipeline.OutcomePlanned
				if r.IntN(3) == 0 {
					rec.Outcome.Status = pipeline.OutcomeChanged
				}
			}
		}
		pipeline.SettleReleases(context.Background(), env, batch)
		for _, e := range hook.AllEntries() {
			if !strings.Contains(e.Message, "would kill") {
				continue
			}
			pid, _ := e.Data["pid"].(int)
			chosen++
			if liveOf[pid] || !orphans[pid] {
				t.Fatalf("round %d: PID %d chosen for a signal but is no orphan", round, pid)
			}
		}
	}
	if chosen == 0 {
		t.Fatal("no process was ever chosen: the generator does not reach the kill step")
	}
	t.Logf("%d orphans chosen for a signal, none of them a container's", chosen)
}
