package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// The unit tests build snapshots and records by hand and map PIDs through
// a fake /proc: <root>/<pid>/cgroup and <root>/<pid>/stat written by the
// test. Only the kill tests signal real processes (children of the test).

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	gpuA = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
	gpuB = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
	gpuM = "GPU-cccccccc-0000-0000-0000-000000000000" // MIG-enabled
	mig0 = "MIG-cccccccc-0000-0000-0000-000000000010"
	mig1 = "MIG-cccccccc-0000-0000-0000-000000000011"
)

// cid is a container ID as Docker makes them: 64 lower-case hex digits.
func cid(n int) string { return fmt.Sprintf("%064x", n) }

// procRoot is a fake /proc.
type procRoot struct {
	t    *testing.T
	root string
}

func newProcRoot(t *testing.T) *procRoot {
	return &procRoot{t: t, root: t.TempDir()}
}

// write writes a host-namespace process of pid with one cgroup path;
// start is its start time in ticks.
func (p *procRoot) write(pid int, cgroupPath string, start uint64) {
	p.t.Helper()
	p.entry(pid, 0, "gpu) job", "0::"+cgroupPath+"\n", false, start)
}

// host makes pid a process in no container.
func (p *procRoot) host(pid int) {
	p.write(pid, "/user.slice/user-1000.slice/session-2.scope", uint64(100000+pid))
}

// inContainer makes pid a process of container id (systemd cgroup driver).
func (p *procRoot) inContainer(pid int, id string) {
	p.write(pid, "/system.slice/docker-"+id+".scope", uint64(100000+pid))
}

func procs(pids ...int) []nvml.Process {
	var out []nvml.Process
	for _, pid := range pids {
		out = append(out, nvml.Process{PID: pid, UsedMemoryMiB: uint64(pid % 1000)})
	}
	return out
}

// host2 is a snapshot of two plain GPUs and one MIG-enabled GPU with two slices.
func host2() *nvml.Snapshot {
	return &nvml.Snapshot{Backend: nvml.BackendSim, Available: true, Devices: []nvml.Device{
		{Index: 0, UUID: gpuA, Name: "NVIDIA A100-SXM4-80GB"},
		{Index: 1, UUID: gpuB, Name: "NVIDIA A100-SXM4-80GB"},
		{Index: 2, UUID: gpuM, Name: "NVIDIA A100-SXM4-80GB", MIG: []nvml.MIGDevice{
			{Index: 0, UUID: mig0, Profile: "3g.40gb"},
			{Index: 1, UUID: mig1, Profile: "3g.40gb"},
		}},
	}}
}

// claims are engine-enforced claims (a DeviceRequest), as --gpus device=... writes them.
func claims(uuids ...string) []pipeline.GPUClaim {
	var out []pipeline.GPUClaim
	for _, u := range uuids {
		out = append(out, pipeline.GPUClaim{UUID: u, Source: pipeline.ClaimDeviceRequest})
	}
	return out
}

// exited is an exited container whose hold expired: a remove verdict.
func exited(n int, owner string, uuids ...string) *pipeline.Record {
	return &pipeline.Record{
		Container: pipeline.Container{ID: cid(n), Name: fmt.Sprintf("c%d", n), State: pipeline.StateExited},
		Owner:     pipeline.Owner{Name: owner, Source: pipeline.OwnerFromUser},
		GPUs:      claims(uuids...),
		Verdict: pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired,
			Clock: pipeline.ClockFinished, Age: 2 * time.Hour, Limit: 30 * time.Minute, HasLimit: true},
	}
}

func running(n int, owner string, uuids ...string) *pipeline.Record {
	return &pipeline.Record{
		Container: pipeline.Container{ID: cid(n), Name: fmt.Sprintf("c%d", n), State: pipeline.StateRunning, PID: 5000 + n},
		Owner:     pipeline.Owner{Name: owner, Source: pipeline.OwnerFromUser},
		GPUs:      claims(uuids...),
		Verdict:   pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotACandidate},
	}
}

// fakeGPU is a backend that counts its snapshots.
type fakeGPU struct {
	snap  *nvml.Snapshot
	calls int
}

func (f *fakeGPU) Name() string { return "fake" }
func (f *fakeGPU) Snapshot(context.Context) (*nvml.Snapshot, error) {
	f.calls++
	return f.snap, nil
}
func (f *fakeGPU) Close() error { return nil }

type result struct {
	batch  *pipeline.Batch
	events []string
	hook   *logtest.Hook
	err    error
}

// run runs the stage once over recs, with snap as discover's snapshot.
func run(t *testing.T, s *Stage, mode pipeline.Mode, snap *nvml.Snapshot, recs ...*pipeline.Record) result {
	t.Helper()
	return runOn(t, s, mode, nil, snap, recs...)
}

// runOn runs the stage once over recs with docker as the engine to ask.
func runOn(t *testing.T, s *Stage, mode pipeline.Mode, docker pipeline.Docker, snap *nvml.Snapshot, recs ...*pipeline.Record) result {
	t.Helper()
	env, hook := testEnv(mode, snap)
	env.Docker = docker
	batch := &pipeline.Batch{Records: recs, GPU: snap}
	err := s.Process(context.Background(), env, batch)
	var evs []string
	for _, ev := range batch.TakeEvents() {
		evs = append(evs, eventText(ev))
	}
	return result{batch: batch, events: evs, hook: hook, err: err}
}

// runRemoved runs the stage, then does what a remove stage does after it:
// every record it may remove is removed (planned, in plan mode), and the
// engine settles the releases and signals.
func runRemoved(t *testing.T, s *Stage, mode pipeline.Mode, snap *nvml.Snapshot, recs ...*pipeline.Record) result {
	t.Helper()
	return runThen(t, s, mode, snap, func(*pipeline.Record) pipeline.OutcomeStatus {
		if mode == pipeline.ModePlan {
			return pipeline.OutcomePlanned
		}
		return pipeline.OutcomeRemoved
	}, recs...)
}

// runThen runs the stage, gives each record it may remove the outcome
// outcome returns, and settles.
func runThen(t *testing.T, s *Stage, mode pipeline.Mode, snap *nvml.Snapshot, outcome func(*pipeline.Record) pipeline.OutcomeStatus, recs ...*pipeline.Record) result {
	t.Helper()
	env, hook := testEnv(mode, snap)
	batch := &pipeline.Batch{Records: recs, GPU: snap}
	err := s.Process(context.Background(), env, batch)
	for _, rec := range recs {
		if removable(rec) {
			rec.Outcome.Status = outcome(rec)
		}
	}
	pipeline.SettleReleases(context.Background(), env, batch)
	var evs []string
	for _, ev := range batch.TakeEvents() {
		evs = append(evs, eventText(ev))
	}
	return result{batch: batch, events: evs, hook: hook, err: err}
}

// eventText renders an event without its time: "type user k=v k=v".
func eventText(ev events.Event) string {
	var b strings.Builder
	b.WriteString(ev.Type)
	if ev.User != "" {
		b.WriteString(" user=" + ev.User)
	}
	if ev.Source != "ds01-pipe/t" {
		b.WriteString(" source=" + ev.Source)
	}
	for _, f := range ev.Details {
		fmt.Fprintf(&b, " %s=%v", f.Key, f.Value)
		if _, isNum := f.Value.(int); isNum {
			b.WriteString("#") // a JSON number, not a string
		}
	}
	return b.String()
}

func stage(root string) *Stage {
	s := New()
	s.ProcRoot = root
	return s
}

// statuses maps each report row's UUID to its status.
func statuses(b *pipeline.Batch) map[string]pipeline.GPUStatus {
	out := map[string]pipeline.GPUStatus{}
	for _, g := range b.GPUs {
		out[g.UUID] = g.Status
	}
	return out
}

func reportRow(t *testing.T, b *pipeline.Batch, uuid string) pipeline.GPUReport {
	t.Helper()
	for _, g := range b.GPUs {
		if g.UUID == uuid {
			return g
		}
	}
	t.Fatalf("no report row for %s in %+v", uuid, b.GPUs)
	return pipeline.GPUReport{}
}

func noWarnings(t *testing.T, hook *logtest.Hook) {
	t.Helper()
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			t.Errorf("unexpected %s: %s %v", e.Level, e.Message, e.Data)
		}
	}
}

func TestReleasedOnceNVMLShowsNothing(t *testing.T) {
	p := newProcRoot(t)
	rec := exited(1, "alice", gpuA)
	// The stage alone releases nothing: the container still holds its GPU.
	res := run(t, stage(p.root), pipeline.ModeRun, host2(), rec)
	if got := statuses(res.batch)[gpuA]; got != pipeline.GPUInUse || len(res.events) != 0 {
		t.Errorf("before the removal: %s, events %v; want in_use, none", got, res.events)
	}
	rec = exited(1, "alice", gpuA)
	res = runRemoved(t, stage(p.root), pipeline.ModeRun, host2(), rec)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if !res.batch.GPUChecked {
		t.Error("GPUChecked = false with NVML available")
	}
	if diff := cmp.Diff([]string{gpuA}, rec.ReleaseGPUs); diff != "" {
		t.Errorf("ReleaseGPUs (-want +got):\n%s", diff)
	}
	if rec.Verdict.Action != pipeline.ActionRemove {
		t.Errorf("verdict changed: %+v", rec.Verdict)
	}
	want := map[string]pipeline.GPUStatus{
		gpuA: pipeline.GPUReleased, gpuB: pipeline.GPUFree, gpuM: pipeline.GPUFree,
		mig0: pipeline.GPUFree, mig1: pipeline.GPUFree,
	}
	if diff := cmp.Diff(want, statuses(res.batch)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if g := reportRow(t, res.batch, gpuA); !cmp.Equal(g.ClaimedBy, []string{cid(1)}) || g.Index != 0 || g.MIGParent != "" || g.Name == "" {
		t.Errorf("row %+v", g)
	}
	// The release is recorded once the container is gone (SettleReleases).
	if want := []string{"gpu.release user=alice container=c1 gpu_uuid=" + gpuA + " reason=hold_expired"}; !cmp.Equal(res.events, want) {
		t.Errorf("events %v, want %v", res.events, want)
	}
	noWarnings(t, res.hook)
}

func TestBusyContainerIsKept(t *testing.T) {
	p := newProcRoot(t)
	rec := exited(1, "alice", gpuA)
	p.inContainer(4242, rec.Container.ID)
	snap := host2()
	snap.Devices[0].Processes = procs(4242)
	res := run(t, stage(p.root), pipeline.ModeRun, snap, rec)
	if res.err != nil {
		t.Fatal(res.err)
	}
	want := pipeline.Verdict{
		Action: pipeline.ActionKeep, Reason: pipeline.ReasonGPUBusy,
		Clock: pipeline.ClockFinished, Age: 2 * time.Hour, Limit: 30 * time.Minute, HasLimit: true,
		Detail: "NVML shows PID 4242 still running on " + gpuA,
	}
	if diff := cmp.Diff(want, rec.Verdict); diff != "" {
		t.Errorf("verdict (-want +got):\n%s", diff)
	}
	if len(rec.ReleaseGPUs) != 0 {
		t.Errorf("ReleaseGPUs = %v, want none", rec.ReleaseGPUs)
	}
	g := reportRow(t, res.batch, gpuA)
	wantProcs := []pipeline.GPUProcess{{PID: 4242, ContainerID: rec.Container.ID, UsedMemoryMiB: 242}}
	if g.Status != pipeline.GPUInUse || !cmp.Equal(g.Processes, wantProcs) {
		t.Errorf("row %+v, want in_use with %+v", g, wantProcs)
	}
}

func TestUnrecordedUseIsAttributed(t *testing.T) {
	p := newProcRoot(t)
	rec := running(2, "bob") // no allocation record at all
	p.inContainer(4300, rec.Container.ID)
	snap := host2()
	snap.Devices[1].Processes = procs(4300)
	res := run(t, stage(p.root), pipeline.ModeRun, snap, rec)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if diff := cmp.Diff([]pipeline.GPUClaim{{UUID: gpuB, Source: pipeline.ClaimNVML}}, rec.GPUs); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if g := reportRow(t, res.batch, gpuB); g.Status != pipeline.GPUUnrecorded || len(g.ClaimedBy) != 0 {
		t.Errorf("row %+v, want unrecorded with no Docker claimant", g)
	}
	want := []string{"gpu.unrecorded user=bob container=c2 gpu_uuid=" + gpuB + " pid=4300#"}
	if diff := cmp.Diff(want, res.events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// NOTES.md (Differences from the DS01 scripts) names "unlabelled --gpus all" among the containers
// with no allocation record: their use is attributed and reported too.
func TestGPUsAllUseIsUnrecorded(t *testing.T) {
	p := newProcRoot(t)
	rec := running(2, "bob")
	rec.GPUAll = true
	p.inContainer(4300, rec.Container.ID)
	snap := host2()
	snap.Devices[0].Processes = procs(4300)
	res := run(t, stage(p.root), pipeline.ModeRun, snap, rec)
	if got := statuses(res.batch)[gpuA]; got != pipeline.GPUUnrecorded {
		t.Errorf("status %s, want unrecorded", got)
	}
	if got := rec.GPUUUIDs(); !cmp.Equal(got, []string{gpuA}) {
		t.Errorf("container GPUs %v, want [%s]", got, gpuA)
	}
}

// A claim on a MIG-enabled GPU covers the processes on its slices.
func TestParentClaimCoversSlices(t *testing.T) {
	p := newProcRoot(t)
	rec := running(2, "bob", gpuM)
	p.inContainer(4300, rec.Container.ID)
	snap := host2()
	snap.Devices[2].MIG[1].Processes = procs(4300)
	res := run(t, stage(p.root), pipeline.ModeRun, snap, rec)
	want := map[string]pipeline.GPUStatus{
		gpuA: pipeline.GPUFree, gpuB: pipeline.GPUFree, gpuM: pipeline.GPUInUse,
		mig0: pipeline.GPUFree, mig1: pipeline.GPUInUse,
	}
	if diff := cmp.Diff(want, statuses(res.batch)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if len(res.events) != 0 || len(rec.GPUs) != 1 {
		t.Errorf("events %v, claims %v: want no unrecorded use", res.events, rec.GPUs)
	}
}

func TestOrphanIsReported(t *testing.T) {
	p := newProcRoot(t)
	p.host(4400)
	snap := host2()
	snap.Devices[1].Processes = procs(4400)
	res := run(t, stage(p.root), pipeline.ModeRun, snap)
	g := reportRow(t, res.batch, gpuB)
	if g.Status != pipeline.GPUOrphaned || len(g.Processes) != 1 || g.Processes[0].ContainerID != "" || g.Processes[0].Killed {
		t.Errorf("row %+v, want orphaned, one process in no container, not killed", g)
	}
	want := []string{"gpu.orphan gpu_uuid=" + gpuB + " pid=4400# used_memory_mib=400"}
	if diff := cmp.Diff(want, res.events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// Records cover only the discover scope: a process of a container outside
// it belongs to someone, and is neither an orphan nor unrecorded.
func TestContainerOutsideScopeIsInUse(t *testing.T) {
	p := newProcRoot(t)
	p.inContainer(4500, cid(99))
	snap := host2()
	snap.Devices[0].Processes = procs(4500)
	res := run(t, stage(p.root), pipeline.ModeRun, snap, running(1, "alice"))
	g := reportRow(t, res.batch, gpuA)
	if g.Status != pipeline.GPUInUse || g.Processes[0].ContainerID != cid(99) {
		t.Errorf("row %+v, want in_use by %s", g, cid(99))
	}
	if len(res.events) != 0 {
		t.Errorf("events %v, want none", res.events)
	}
}

// A process of another runtime's container is not Docker's, but it is not
// an orphan either.
func TestForeignRuntimeIsNotAnOrphan(t *testing.T) {
	p := newProcRoot(t)
	p.write(4600, "/machine.slice/libpod-"+cid(7)+".scope", 1)
	snap := host2()
	snap.Devices[0].Processes = procs(4600)
	res := run(t, stage(p.root), pipeline.ModeRun, snap)
	if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUInUse {
		t.Errorf("row %+v, want in_use", g)
	}
	if len(res.events) != 0 {
		t.Errorf("events %v, want none", res.events)
	}
}

func TestVanishedProcessIsDropped(t *testing.T) {
	p := newProcRoot(t)
	snap := host2()
	snap.Devices[0].Processes = procs(4700) // no /proc entry: it exited
	res := run(t, stage(p.root), pipeline.ModeRun, snap)
	if g := reportRow(t, res.batch, gpuA); g.Status != pipeline.GPUFree || len(g.Processes) != 0 {
		t.Errorf("row %+v, want free with no processes", g)
	}
	noWarnings(t, res.hook)
}

func TestMIGSliceReleased(t *testing.T) {
	p := newProcRoot(t)
	rec := exited(3, "carol", mig1)
	res := runRemoved(t, stage(p.root), pipeline.ModeRun, host2(), rec)
	if !cmp.Equal(rec.ReleaseGPUs, []string{mig1}) {
		t.Errorf("ReleaseGPUs = %v, want [%s]", rec.ReleaseGPUs, mig1)
	}
	var got []string
	for _, g := range res.batch.GPUs {
		got = append(got, fmt.Sprintf("%d %s parent=%s %s %s", g.Index, g.UUID, g.MIGParent, g.Name, g.Status))
	}
	want := []string{
		"0 " + gpuA + " parent= NVIDIA A100-SXM4-80GB free",
		"1 " + gpuB + " parent= NVIDIA A100-SXM4-80GB free",
		"2 " + gpuM + " parent= NVIDIA A100-SXM4-80GB free",
		"0 " + mig0 + " parent=" + gpuM + " MIG 3g.40gb free",
		"1 " + mig1 + " parent=" + gpuM + " MIG 3g.40gb released",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

// Rows come sorted by device index and MIG index, whatever order the
// snapshot lists them in.
func TestRowsSorted(t *testing.T) {
	p := newProcRoot(t)
	snap := &nvml.Snapshot{Available: true, Devices: []nvml.Device{
		{Index: 3, UUID: "GPU-3", MIG: []nvml.MIGDevice{{Index: 2, UUID: "MIG-32"}, {Index: 0, UUID: "MIG-30"}}},
		{Index: 1, UUID: "GPU-1"},
	}}
	res := run(t, stage(p.root), pipeline.ModeRun, snap)
	var got []string
	for _, g := range res.batch.GPUs {
		got = append(got, g.UUID)
	}
	if diff := cmp.Diff([]string{"GPU-1", "GPU-3", "MIG-30", "MIG-32"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// Precedence: orphaned > unrecorded > in_use > released > free.
func TestPrecedence(t *testing.T) {
	p := newProcRoot(t)
	leaving := exited(1, "alice", gpuA, gpuB)
	other := running(2, "bob") // no claims
	p.host(4800)
	p.inContainer(4801, other.Container.ID)
	snap := host2()
	snap.Devices[0].Processes = procs(4800, 4801) // orphan + unrecorded
	snap.Devices[1].Processes = procs(4801)       // unrecorded + released
	res := run(t, stage(p.root), pipeline.ModeRun, snap, leaving, other)
	want := map[string]pipeline.GPUStatus{
		gpuA: pipeline.GPUOrphaned, gpuB: pipeline.GPUUnrecorded, gpuM: pipeline.GPUFree,
		mig0: pipeline.GPUFree, mig1: pipeline.GPUFree,
	}
	if diff := cmp.Diff(want, statuses(res.batch)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	// The leaving container's own processes are not there: its claims go.
	if !cmp.Equal(leaving.ReleaseGPUs, []string{gpuA, gpuB}) {
		t.Errorf("ReleaseGPUs = %v", leaving.ReleaseGPUs)
	}
}

// A GPU shared by a container that goes and one that stays is in use; the
// leaving container's allocation record is still released.
func TestSharedGPUStaysInUse(t *testing.T) {
	p := newProcRoot(t)
	leaving := exited(1, "alice", gpuA)
	staying := exited(2, "bob", gpuA)
	staying.Verdict = pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonWithinHold}
	res := run(t, stage(p.root), pipeline.ModeRun, host2(), leaving, staying)
	g := reportRow(t, res.batch, gpuA)
	if g.Status != pipeline.GPUInUse || !cmp.Equal(g.ClaimedBy, []string{cid(1), cid(2)}) {
		t.Errorf("row %+v, want in_use claimed by both", g)
	}
	if !cmp.Equal(leaving.ReleaseGPUs, []string{gpuA}) || len(staying.ReleaseGPUs) != 0 {
		t.Errorf("ReleaseGPUs: leaving %v, staying %v", leaving.ReleaseGPUs, staying.ReleaseGPUs)
	}
}

// Exempt and live containers are never released, whatever the verdict.
func TestOnlyCandidatesAreReleased(t *testing.T) {
	p := newProcRoot(t)
	ex := exited(1, "alice", gpuA)
	ex.Exempt, ex.ExemptReason = true, "label ds01.protected=true"
	live := exited(2, "bob", gpuB)
	live.Container.State = pipeline.StatePaused
	res := run(t, stage(p.root), pipeline.ModeRun, host2(), ex, live)
	if len(ex.ReleaseGPUs)+len(live.ReleaseGPUs) != 0 {
		t.Errorf("released %v %v", ex.ReleaseGPUs, live.ReleaseGPUs)
	}
	if s := statuses(res.batch); s[gpuA] != pipeline.GPUInUse || s[gpuB] != pipeline.GPUInUse {
		t.Errorf("statuses %v, want both in_use", s)
	}
}

func TestUnknownUUID(t *testing.T) {
	p := newProcRoot(t)
	const ghost = "GPU-deadbeef-0000-0000-0000-000000000000"
	t.Run("complete snapshot", func(t *testing.T) {
		rec := exited(1, "alice", ghost)
		res := run(t, stage(p.root), pipeline.ModeRun, host2(), rec)
		if _, ok := statuses(res.batch)[ghost]; ok {
			t.Error("a row for a GPU this host does not have")
		}
		want := []string{"claims GPU " + ghost + " which this host does not have"}
		if diff := cmp.Diff(want, rec.Warnings); diff != "" {
			t.Errorf("warnings (-want +got):\n%s", diff)
		}
		// The allocation record goes with the container all the same.
		if !cmp.Equal(rec.ReleaseGPUs, []string{ghost}) {
			t.Errorf("ReleaseGPUs = %v", rec.ReleaseGPUs)
		}
	})
	t.Run("device left out of the snapshot", func(t *testing.T) {
		snap := host2()
		snap.Warnings = []string{"GPU 3: handle: ERROR_GPU_IS_LOST (GPU left out)"}
		rec := exited(1, "alice", ghost)
		res := runRemoved(t, stage(p.root), pipeline.ModeRun, snap, rec)
		g := res.batch.GPUs[len(res.batch.GPUs)-1]
		if g.UUID != ghost || g.Index != -1 || g.Status != pipeline.GPUReleased {
			t.Errorf("last row %+v, want %s at index -1, released on the records", g, ghost)
		}
		if len(rec.Warnings) != 1 || !strings.Contains(rec.Warnings[0], "records alone") {
			t.Errorf("warnings %v", rec.Warnings)
		}
		if e := res.hook.AllEntries(); len(e) == 0 || !strings.Contains(e[0].Message, "ERROR_GPU_IS_LOST") || e[0].Level != logrus.WarnLevel {
			t.Error("the snapshot's warning was not logged")
		}
		keep := running(2, "bob", ghost)
		res = run(t, stage(p.root), pipeline.ModeRun, snap, keep)
		if got := statuses(res.batch)[ghost]; got != pipeline.GPUUnchecked {
			t.Errorf("claimed unknown device: %s, want unchecked", got)
		}
	})
}

func TestProcessErrorNeverFree(t *testing.T) {
	p := newProcRoot(t)
	snap := host2()
	snap.Devices[0].ProcessError = "compute processes: ERROR_UNKNOWN"
	snap.Devices[1].ProcessError = "compute processes: ERROR_UNKNOWN"
	snap.Devices[2].MIG[0].ProcessError = "compute processes: ERROR_NO_PERMISSION"
	rec := exited(1, "alice", gpuA)
	res := runRemoved(t, stage(p.root), pipeline.ModeRun, snap, rec)
	want := map[string]pipeline.GPUStatus{
		gpuA: pipeline.GPUReleased, gpuB: pipeline.GPUUnchecked, gpuM: pipeline.GPUFree,
		mig0: pipeline.GPUUnchecked, mig1: pipeline.GPUFree,
	}
	if diff := cmp.Diff(want, statuses(res.batch)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if !cmp.Equal(rec.ReleaseGPUs, []string{gpuA}) || len(rec.Warnings) != 1 || !strings.Contains(rec.Warnings[0], "ERROR_UNKNOWN") {
		t.Errorf("ReleaseGPUs %v, warnings %v: want released on the records, with a warning", rec.ReleaseGPUs, rec.Warnings)
	}
}

func TestNoNVML(t *testing.T) {
	p := newProcRoot(t)
	snap := &nvml.Snapshot{Backend: nvml.BackendSim, Unavailable: "NVML: ERROR_LIBRARY_NOT_FOUND"}
	leaving := exited(1, "alice", gpuA)
	staying := running(2, "bob", gpuB)
	res := runRemoved(t, stage(p.root), pipeline.ModeRun, snap, leaving, staying)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.batch.GPUChecked {
		t.Error("GPUChecked = true without NVML")
	}
	want := []pipeline.GPUReport{
		{UUID: gpuA, Index: -1, ClaimedBy: []string{cid(1)}, Status: pipeline.GPUReleased},
		{UUID: gpuB, Index: -1, ClaimedBy: []string{cid(2)}, Status: pipeline.GPUUnchecked},
	}
	if diff := cmp.Diff(want, res.batch.GPUs); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if !cmp.Equal(leaving.ReleaseGPUs, []string{gpuA}) {
		t.Errorf("ReleaseGPUs = %v, want released on Docker's records", leaving.ReleaseGPUs)
	}
	var warned int
	for _, e := range res.hook.AllEntries() {
		if e.Level == logrus.WarnLevel && e.Message == "NVML cross-check not done: NVML: ERROR_LIBRARY_NOT_FOUND" {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("want the cross-check warning once, got %d: %v", warned, res.hook.AllEntries())
	}

	t.Run("required", func(t *testing.T) {
		log, _ := logtest.NewNullLogger()
		env := &pipeline.Env{Pipeline: "t", Mode: pipeline.ModeRun, Now: now, Log: log, GPURequired: true}
		err := stage(p.root).Process(context.Background(), env, &pipeline.Batch{GPU: snap, Records: []*pipeline.Record{exited(1, "alice", gpuA)}})
		if err == nil || !strings.Contains(err.Error(), "ERROR_LIBRARY_NOT_FOUND") {
			t.Errorf("err = %v, want the reason the GPU view is unavailable", err)
		}
	})
}

func TestAuditReleasesNothing(t *testing.T) {
	p := newProcRoot(t)
	rec := exited(1, "alice", gpuA)
	p.host(4400)
	snap := host2()
	snap.Devices[0].Processes = procs(4400)
	s := stage(p.root)
	s.Mode = string(ModeAudit)
	res := run(t, s, pipeline.ModeRun, snap, rec)
	if len(rec.ReleaseGPUs) != 0 {
		t.Errorf("audit released %v", rec.ReleaseGPUs)
	}
	g := reportRow(t, res.batch, gpuA)
	if g.Status != pipeline.GPUOrphaned || g.Processes[0].Killed {
		t.Errorf("row %+v, want orphaned, not killed", g)
	}
	if len(res.events) != 1 || !strings.HasPrefix(res.events[0], "gpu.orphan") {
		t.Errorf("events %v, want the orphan reported", res.events)
	}

	// Without the orphan the device simply stays in use.
	res = run(t, s, pipeline.ModeRun, host2(), exited(1, "alice", gpuA))
	if got := statuses(res.batch)[gpuA]; got != pipeline.GPUInUse {
		t.Errorf("status %s, want in_use", got)
	}
}

func TestPlanEmitsNothing(t *testing.T) {
	p := newProcRoot(t)
	rec := exited(1, "alice", gpuA)
	other := running(2, "bob")
	p.host(4400)
	p.inContainer(4401, other.Container.ID)
	snap := host2()
	snap.Devices[0].Processes = procs(4400)
	snap.Devices[1].Processes = procs(4401)
	s := stage(p.root)
	s.KillOrphans = true
	res := runRemoved(t, s, pipeline.ModePlan, snap, rec, other)
	if len(res.events) != 0 {
		t.Errorf("plan queued events %v", res.events)
	}
	// The plan still shows what a run would do.
	if !cmp.Equal(rec.ReleaseGPUs, []string{gpuA}) {
		t.Errorf("ReleaseGPUs = %v", rec.ReleaseGPUs)
	}
	want := map[string]pipeline.GPUStatus{
		gpuA: pipeline.GPUOrphaned, gpuB: pipeline.GPUUnrecorded, gpuM: pipeline.GPUFree,
		mig0: pipeline.GPUFree, mig1: pipeline.GPUFree,
	}
	if diff := cmp.Diff(want, statuses(res.batch)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	var wouldKill bool
	for _, e := range res.hook.AllEntries() {
		wouldKill = wouldKill || strings.Contains(e.Message, "would kill")
	}
	if !wouldKill {
		t.Error("plan does not say which orphan a run would kill")
	}
}

// The stage takes the snapshot itself when discover did not, once, and
// never changes the snapshot it was given.
func TestSnapshot(t *testing.T) {
	p := newProcRoot(t)
	snap := host2()
	snap.Devices[0].Processes = procs(4242)
	p.inContainer(4242, cid(1))
	gpu := &fakeGPU{snap: snap}
	env := &pipeline.Env{Pipeline: "t", Mode: pipeline.ModeRun, Now: now, GPU: gpu}
	batch := &pipeline.Batch{Records: []*pipeline.Record{running(1, "alice")}}
	if err := stage(p.root).Process(context.Background(), env, batch); err != nil {
		t.Fatal(err)
	}
	if gpu.calls != 1 || batch.GPU != snap {
		t.Errorf("snapshot calls %d, stored %p, want 1 and %p", gpu.calls, batch.GPU, snap)
	}
	if diff := cmp.Diff(host2().Devices[1:], snap.Devices[1:]); diff != "" || len(snap.Devices[0].Processes) != 1 {
		t.Errorf("the snapshot was changed:\n%s", diff)
	}
}

func TestInit(t *testing.T) {
	s := New()
	if err := s.Init(); err != nil || s.grace != DefaultKillGrace {
		t.Errorf("defaults: %v, grace %v", err, s.grace)
	}
	for _, g := range []string{"0s", "250ms", "5m"} {
		s := New()
		s.KillGrace = g
		if err := s.Init(); err != nil {
			t.Errorf("kill_grace %q: %v", g, err)
		}
	}
	s = New()
	s.Mode = string(ModeAudit)
	if err := s.Init(); err != nil {
		t.Errorf("audit: %v", err)
	}
}

func TestInitFail(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Stage)
		attr string
	}{
		{"unknown mode", func(s *Stage) { s.Mode = "dry-run" }, attrMode},
		{"audit kills", func(s *Stage) { s.Mode, s.KillOrphans = "audit", true }, attrKillOrphans},
		{"grace not a duration", func(s *Stage) { s.KillGrace = "10" }, attrKillGrace},
		{"negative grace", func(s *Stage) { s.KillGrace = "-1s" }, attrKillGrace},
		{"grace too long", func(s *Stage) { s.KillGrace = "1h" }, attrKillGrace},
		{"relative proc root", func(s *Stage) { s.ProcRoot = "proc" }, attrProcRoot},
		{"empty proc root", func(s *Stage) { s.ProcRoot = "" }, attrProcRoot},
	}
	for _, tt := range tests {
		s := New()
		tt.edit(s)
		err := s.Init()
		var ae *pipeline.AttrError
		if !errors.As(err, &ae) || ae.Attr != tt.attr {
			t.Errorf("%s: Init() = %v, want an *AttrError on %s", tt.name, err, tt.attr)
		}
	}
}

// TestSample decodes sample.hcl as the loader does: it must show the
// defaults, and README.md must carry it unchanged.
func TestSample(t *testing.T) {
	f, diags := hclsyntax.ParseConfig([]byte(sample), "sample.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	content, diags := f.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "stage", LabelNames: []string{"kind"}}}})
	if diags.HasErrors() || len(content.Blocks) != 1 || content.Blocks[0].Labels[0] != Kind {
		t.Fatalf("sample.hcl must hold one stage %q block: %v", Kind, diags)
	}
	s := &Stage{}
	if diags := gohcl.DecodeBody(content.Blocks[0].Body, nil, s); diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	if *s != *New() {
		t.Errorf("sample.hcl gives %+v, want the defaults %+v", *s, *New())
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```hcl\n"+sample+"```") {
		t.Error("README.md's sample block differs from sample.hcl")
	}
	spec, ok := pipeline.DefaultRegistry.Lookup(Kind)
	if !ok || spec.Sample != sample {
		t.Fatalf("kind %q not registered with its sample", Kind)
	}
	if _, ok := spec.New().(*Stage); !ok {
		t.Fatalf("spec.New() = %T", spec.New())
	}
}

// sleeper starts a child process that stays until it is killed; cleanup
// kills it if the test did not. exitedCh is closed once it has exited, with
// its state.
type sleeper struct {
	cmd    *exec.Cmd
	done   chan struct{}
	status *os.ProcessState
}

func startSleeper(t *testing.T, script string) *sleeper {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sleeper{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		s.status = cmd.ProcessState
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	return s
}

func (s *sleeper) pid() int { return s.cmd.Process.Pid }

func (s *sleeper) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *sleeper) wait(t *testing.T) syscall.Signal {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d still running", s.pid())
	}
	ws, _ := s.status.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		t.Fatalf("pid %d exited with %v, not by a signal", s.pid(), s.status)
	}
	return ws.Signal()
}

// A container a filter left out of the run still holds the GPUs it
// claims: another container's removal never reports such a GPU released,
// with NVML or without it.
func TestHeldClaimStaysInUse(t *testing.T) {
	p := newProcRoot(t)
	for _, snap := range []*nvml.Snapshot{host2(), {Backend: nvml.BackendSim, Unavailable: "NVML: ERROR_LIBRARY_NOT_FOUND"}} {
		leaving := exited(1, "alice", gpuA)
		held := exited(2, "bob", gpuA)
		held.Exempt, held.ExemptReason = true, "label ds01.protected=true"
		env, _ := testEnv(pipeline.ModeRun, snap)
		batch := &pipeline.Batch{Records: []*pipeline.Record{leaving}, Held: []*pipeline.Record{held}, GPU: snap}
		if err := stage(p.root).Process(context.Background(), env, batch); err != nil {
			t.Fatal(err)
		}
		if batch.Release == nil {
			t.Fatal("no release plan")
		}
		for _, g := range batch.Release.Pending {
			if strings.EqualFold(g.UUID, gpuA) {
				t.Errorf("%s: %s waits to be released, but the filtered-out container still claims it", snap.Backend, gpuA)
			}
		}
		if s := statuses(batch)[gpuA]; s == pipeline.GPUReleased || s == pipeline.GPUFree {
			t.Errorf("%s: status %s, want it held", snap.Backend, s)
		}
	}
}
