package release

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

// hostDocker is an engine with live containers: it lists them (honouring
// only a status filter) and answers inspects from their facts. broken
// inspects fail with a transport error, gone ones are 404; listErr fails
// the list. It counts both calls.
type hostDocker struct {
	live    []pipeline.Container
	broken  map[string]bool
	gone    map[string]bool
	listErr error

	mu               sync.Mutex
	lists, inspects  int
	inspected        []string
	listedWithStatus []string
}

func (h *hostDocker) ContainerList(_ context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lists++
	if h.listErr != nil {
		return client.ContainerListResult{}, h.listErr
	}
	var states []string
	for s := range opts.Filters["status"] {
		states = append(states, s)
	}
	slices.Sort(states)
	h.listedWithStatus = states
	var out client.ContainerListResult
	for _, c := range h.live {
		if len(states) > 0 && !slices.Contains(states, string(c.State)) {
			continue
		}
		out.Items = append(out.Items, container.Summary{ID: c.ID, Names: []string{"/" + c.Name}, State: container.ContainerState(c.State), Labels: c.Labels})
	}
	return out, nil
}

func (h *hostDocker) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inspects++
	h.inspected = append(h.inspected, id)
	switch {
	case h.broken[id]:
		return client.ContainerInspectResult{}, fmt.Errorf("connection reset by peer")
	case h.gone[id]:
		return client.ContainerInspectResult{}, fmt.Errorf("no such container: %s: %w", id, cerrdefs.ErrNotFound)
	}
	for _, c := range h.live {
		if c.ID != id {
			continue
		}
		env := []string{}
		if c.HasVisibleDevices {
			env = append(env, "NVIDIA_VISIBLE_DEVICES="+c.VisibleDevices)
		}
		raw, err := json.Marshal(map[string]any{
			"Id": c.ID, "Name": "/" + c.Name, "Created": "2026-03-01T10:00:00Z",
			"State":      map[string]any{"Status": string(c.State), "Pid": c.PID, "StartedAt": "2026-03-01T10:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"},
			"Config":     map[string]any{"Image": "img", "Labels": c.Labels, "Env": env},
			"HostConfig": map[string]any{"Runtime": c.Runtime, "DeviceRequests": c.DeviceRequests},
		})
		if err != nil {
			return client.ContainerInspectResult{}, err
		}
		return client.ContainerInspectResult{Raw: raw}, nil
	}
	return client.ContainerInspectResult{}, fmt.Errorf("no such container: %s: %w", id, cerrdefs.ErrNotFound)
}

func (h *hostDocker) ContainerRemove(context.Context, string, client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	return client.ContainerRemoveResult{}, fmt.Errorf("hostDocker removes nothing")
}

// liveOutside is a running container outside the batch that claims uuids
// with a DeviceRequest (--gpus device=...).
func liveOutside(n int, uuids ...string) pipeline.Container {
	c := pipeline.Container{ID: cid(n), Name: fmt.Sprintf("other%d", n), State: pipeline.StateRunning, PID: 7000 + n}
	if len(uuids) > 0 {
		c.DeviceRequests = []pipeline.DeviceRequest{{Driver: "nvidia", DeviceIDs: uuids, Capabilities: [][]string{{"gpu"}}}}
	}
	return c
}

// runScoped runs the stage over recs with h as the engine, settles as a
// remove stage would after removing every container it may remove, and
// returns the batch with the log.
func runScoped(t *testing.T, mode pipeline.Mode, h *hostDocker, snap *nvml.Snapshot, recs ...*pipeline.Record) result {
	t.Helper()
	env, hook := testEnv(mode, snap)
	env.Docker = h
	batch := &pipeline.Batch{Records: recs, GPU: snap}
	err := stage(newProcRoot(t).root).Process(context.Background(), env, batch)
	for _, rec := range recs {
		if removable(rec) {
			rec.Outcome.Status = pipeline.OutcomeRemoved
			if mode == pipeline.ModePlan {
				rec.Outcome.Status = pipeline.OutcomePlanned
			}
		}
	}
	pipeline.SettleReleases(context.Background(), env, batch)
	var evs []string
	for _, ev := range batch.TakeEvents() {
		evs = append(evs, eventText(ev))
	}
	if env.Stats.ListCalls.Load() != int64(h.lists) || env.Stats.InspectCalls.Load() != int64(h.inspects) {
		t.Errorf("Stats list=%d inspect=%d, engine saw %d and %d", env.Stats.ListCalls.Load(), env.Stats.InspectCalls.Load(), h.lists, h.inspects)
	}
	return result{batch: batch, events: evs, hook: hook, err: err}
}

// viewName names a snapshot in a subtest's name.
func viewName(snap *nvml.Snapshot) string {
	if snap.Available {
		return "nvml"
	}
	return "no-nvml"
}

func noNVML() *nvml.Snapshot {
	return &nvml.Snapshot{Backend: nvml.BackendSim, Unavailable: "NVML: ERROR_LIBRARY_NOT_FOUND"}
}

func logged(hook interface{ AllEntries() []*logrus.Entry }, level logrus.Level, msg string) *logrus.Entry {
	for _, e := range hook.AllEntries() {
		if e.Level == level && strings.Contains(e.Message, msg) {
			return e
		}
	}
	return nil
}

// A GPU that a removed container and a live container outside the
// pipeline's scope both claim stays in use, with NVML and without it: the
// removed container's own allocation goes with it (gpu.release), the GPU
// is not released, and the outside claimant is named.
func TestOutsideClaimantKeepsGPUInUse(t *testing.T) {
	for _, snap := range []*nvml.Snapshot{host2(), noNVML()} {
		for _, mode := range []pipeline.Mode{pipeline.ModeRun, pipeline.ModePlan} {
			t.Run(viewName(snap)+"/"+string(mode), func(t *testing.T) {
				h := &hostDocker{live: []pipeline.Container{liveOutside(9, gpuA), liveOutside(8)}}
				leaving := exited(1, "alice", gpuA, gpuB)
				res := runScoped(t, mode, h, snap, leaving)
				must(t, res.err)

				want := pipeline.GPUInUse
				if !snap.Available {
					want = pipeline.GPUUnchecked
				}
				if got := reportRow(t, res.batch, gpuA); got.Status != want || !slices.Contains(got.ClaimedBy, cid(9)) {
					t.Errorf("%s: %+v, want %s claimed by the outside container too", gpuA, got, want)
				}
				if got := reportRow(t, res.batch, gpuB).Status; got != pipeline.GPUReleased {
					t.Errorf("%s: %s, want released (nobody else claims it)", gpuB, got)
				}
				for _, p := range res.batch.Release.Pending {
					if strings.EqualFold(p.UUID, gpuA) {
						t.Errorf("%s waits to be released", gpuA)
					}
				}
				if tally := pipeline.TallyBatch(res.batch); tally.GPUsReleased != 1 {
					t.Errorf("gpus_released %d, want 1 (%s only)", tally.GPUsReleased, gpuB)
				}
				if mode == pipeline.ModeRun {
					wantEvents := []string{
						"gpu.release user=alice container=c1 gpu_uuid=" + gpuA + " reason=hold_expired",
						"gpu.release user=alice container=c1 gpu_uuid=" + gpuB + " reason=hold_expired",
					}
					if !slices.Equal(res.events, wantEvents) {
						t.Errorf("events %q, want %q", res.events, wantEvents)
					}
				}
				if e := logged(res.hook, logrus.InfoLevel, "outside this pipeline's scope claims it"); e == nil || e.Data["container"] != "other9" || e.Data["gpu_uuid"] != gpuA {
					t.Errorf("no log line naming other9 on %s: %v", gpuA, e)
				}
				if h.lists != 1 || h.inspects != 2 || !slices.Equal(h.listedWithStatus, []string{"paused", "restarting", "running"}) {
					t.Errorf("list %d (status %v), inspect %d: want one list of the live containers and one inspect each", h.lists, h.listedWithStatus, h.inspects)
				}
			})
		}
	}
}

// Every way a live container records a GPU counts, as it does for a record
// of the batch: a DeviceRequest, a ds01.gpu.uuid label, a slot label,
// NVIDIA_VISIBLE_DEVICES. --gpus all is no claim on one GPU (as in the
// batch), and neither is a GPU another claimant holds.
func TestOutsideClaimForms(t *testing.T) {
	label := func(n int, k, v string) pipeline.Container {
		c := liveOutside(n)
		c.Labels = map[string]string{k: v}
		return c
	}
	visible := liveOutside(13)
	visible.VisibleDevices, visible.HasVisibleDevices = "1", true // index 1: gpuB
	all := liveOutside(14)
	all.DeviceRequests = []pipeline.DeviceRequest{{Driver: "nvidia", Count: -1, Capabilities: [][]string{{"gpu"}}}}
	paused := liveOutside(15, mig1)
	paused.State = pipeline.StatePaused
	h := &hostDocker{live: []pipeline.Container{
		label(11, pipeline.LabelGPUUUID, "GPU-"+strings.ToUpper(strings.TrimPrefix(gpuA, "GPU-"))), label(12, pipeline.LabelGPUSlots, "2:0"), visible, all, paused,
	}}
	leaving := exited(1, "alice", gpuA, gpuB, mig0, mig1, gpuM)
	res := runScoped(t, pipeline.ModeRun, h, host2(), leaving)
	must(t, res.err)
	want := map[string]pipeline.GPUStatus{
		gpuA: pipeline.GPUInUse, gpuB: pipeline.GPUInUse, mig0: pipeline.GPUInUse, mig1: pipeline.GPUInUse,
		gpuM: pipeline.GPUReleased, // only --gpus all, which claims no one GPU
	}
	for uuid, w := range want {
		if got := statuses(res.batch)[uuid]; got != w {
			t.Errorf("%s: %s, want %s", uuid, got, w)
		}
	}
}

// An inspect that fails (other than 404) or a list that fails leaves every
// GPU about to be released unchecked, never released: that container may
// claim it. A claimant found elsewhere still reads in_use; a 404 is a
// container gone since the list, which holds nothing.
func TestOutsideUnreadableFailsSafe(t *testing.T) {
	for _, c := range []struct {
		name string
		h    *hostDocker
	}{
		{"inspect", &hostDocker{live: []pipeline.Container{liveOutside(9, gpuA), liveOutside(8)}, broken: map[string]bool{cid(8): true}}},
		{"list", &hostDocker{listErr: fmt.Errorf("connection refused")}},
	} {
		for _, snap := range []*nvml.Snapshot{host2(), noNVML()} {
			t.Run(c.name+"/"+viewName(snap), func(t *testing.T) {
				h := &hostDocker{live: c.h.live, broken: c.h.broken, listErr: c.h.listErr}
				leaving := exited(1, "alice", gpuA, gpuB)
				res := runScoped(t, pipeline.ModeRun, h, snap, leaving)
				must(t, res.err)
				if len(res.batch.Release.Pending) != 0 {
					t.Errorf("pending %+v, want none", res.batch.Release.Pending)
				}
				if n := pipeline.TallyBatch(res.batch).GPUsReleased; n != 0 {
					t.Errorf("gpus_released %d, want 0", n)
				}
				wantB := pipeline.GPUUnchecked
				wantA := pipeline.GPUUnchecked
				if c.name == "inspect" && snap.Available {
					wantA = pipeline.GPUInUse // other9's claim was read
				}
				if got := statuses(res.batch); got[gpuA] != wantA || got[gpuB] != wantB {
					t.Errorf("statuses %v, want %s %s and %s %s", got, gpuA, wantA, gpuB, wantB)
				}
				if logged(res.hook, logrus.WarnLevel, "outside this pipeline's scope may claim it") == nil {
					t.Error("no warning")
				}
				// The removed container's own allocation went with it.
				if len(res.events) != 2 {
					t.Errorf("events %q, want the two gpu.release of c1", res.events)
				}
			})
		}
	}

	h := &hostDocker{live: []pipeline.Container{liveOutside(8, gpuA)}, gone: map[string]bool{cid(8): true}}
	res := runScoped(t, pipeline.ModeRun, h, host2(), exited(1, "alice", gpuA))
	must(t, res.err)
	if got := statuses(res.batch)[gpuA]; got != pipeline.GPUReleased {
		t.Errorf("a container gone since the list: %s, want released", got)
	}
}

// Without a GPU view an index or slot names no UUID, so an outside
// container that claims GPUs that way may claim the one being released.
func TestOutsideIndexClaimWithoutNVML(t *testing.T) {
	c := liveOutside(9, "0")
	h := &hostDocker{live: []pipeline.Container{c}}
	res := runScoped(t, pipeline.ModeRun, h, noNVML(), exited(1, "alice", gpuA))
	must(t, res.err)
	if len(res.batch.Release.Pending) != 0 || pipeline.TallyBatch(res.batch).GPUsReleased != 0 {
		t.Errorf("released %+v", res.batch.GPUs)
	}
}

// The cost: nothing to release asks nothing; every live container in the
// batch (a whole-host pipeline) or held out of it by a filter costs one
// list and no inspect; a GPU released all the same.
func TestOutsideCheckCost(t *testing.T) {
	live := running(2, "bob")
	held := running(3, "carol")
	engine := func() *hostDocker {
		return &hostDocker{live: []pipeline.Container{live.Container, held.Container}}
	}

	h := engine()
	res := runScoped(t, pipeline.ModeRun, h, host2(), live, running(4, "dan", gpuA))
	must(t, res.err)
	if h.lists != 0 || h.inspects != 0 {
		t.Errorf("nothing to release: list %d inspect %d, want none", h.lists, h.inspects)
	}

	h = engine()
	s := New()
	s.Mode = string(ModeAudit)
	env, _ := testEnv(pipeline.ModeRun, host2())
	env.Docker = h
	must(t, s.Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{exited(1, "alice", gpuA)}, GPU: host2()}))
	if h.lists != 0 || h.inspects != 0 {
		t.Errorf("audit: list %d inspect %d, want none", h.lists, h.inspects)
	}

	for _, snap := range []*nvml.Snapshot{host2(), noNVML()} {
		h = engine()
		env, _ := testEnv(pipeline.ModeRun, snap)
		env.Docker = h
		batch := &pipeline.Batch{Records: []*pipeline.Record{exited(1, "alice", gpuA), live}, Held: []*pipeline.Record{held}, GPU: snap}
		must(t, stage(newProcRoot(t).root).Process(context.Background(), env, batch))
		if h.lists != 1 || h.inspects != 0 {
			t.Errorf("%s: every live container in the batch: list %d inspect %d, want 1 and 0", viewName(snap), h.lists, h.inspects)
		}
		if len(batch.Release.Pending) != 1 {
			t.Errorf("%s: pending %+v, want %s", viewName(snap), batch.Release.Pending, gpuA)
		}
	}
}
