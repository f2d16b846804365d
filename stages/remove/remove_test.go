package remove

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/events"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// fakeDocker is the test kit's in-memory engine: it records every call,
// removes what it is asked to remove, answers 404 for what it does not
// hold and 409 for a live container, as dockerd does.
type fakeDocker = pipelinetest.Docker

func newFake(cs ...container.InspectResponse) *fakeDocker { return pipelinetest.NewDocker(cs...) }

var (
	created  = time.Date(2026, 2, 14, 9, 0, 0, 0, time.UTC)
	started  = time.Date(2026, 2, 14, 9, 0, 1, 123456789, time.UTC)
	finished = time.Date(2026, 2, 15, 12, 5, 3, 987654321, time.UTC)
)

// exited is an exited container as the engine reports it.
func exited(id, name string, labels map[string]string) container.InspectResponse {
	return container.InspectResponse{
		ID:      id,
		Name:    "/" + name,
		Created: created.Format(time.RFC3339Nano),
		State: &container.State{
			Status:     container.StateExited,
			StartedAt:  started.Format(time.RFC3339Nano),
			FinishedAt: finished.Format(time.RFC3339Nano),
		},
		Config: &container.Config{Labels: labels},
	}
}

// neverStarted is a created container as the engine reports it.
func neverStarted(id, name string) container.InspectResponse {
	return container.InspectResponse{
		ID:      id,
		Name:    "/" + name,
		Created: created.Format(time.RFC3339Nano),
		State: &container.State{
			Status:     container.StateCreated,
			StartedAt:  "0001-01-01T00:00:00Z",
			FinishedAt: "0001-01-01T00:00:00Z",
		},
		Config: &container.Config{Labels: map[string]string{}},
	}
}

// facts is what discovery reads of c.
func facts(c container.InspectResponse) pipeline.Container {
	f, _ := dockerfacts.FromInspect(c)
	return f
}

// target is the record discovery, attribute, classify and decide would
// build for c, with a hold_expired remove verdict.
func target(c container.InspectResponse) *pipeline.Record {
	return &pipeline.Record{
		Container: facts(c),
		Owner:     pipeline.Owner{Name: "alice", Source: pipeline.OwnerFromUser},
		Type:      "atomic",
		Verdict: pipeline.Verdict{
			Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired,
			Clock: pipeline.ClockFinished, Age: 26*time.Hour + 55*time.Minute, Limit: 24 * time.Hour, HasLimit: true,
		},
	}
}

func testEnv(d pipeline.Docker, mode pipeline.Mode) *pipeline.Env {
	return &pipeline.Env{
		Pipeline:    "cleanup",
		Mode:        mode,
		Now:         time.Date(2026, 2, 16, 15, 0, 0, 0, time.UTC),
		Docker:      d,
		CallTimeout: 5 * time.Second,
		Stats:       &pipeline.Stats{},
	}
}

func process(t *testing.T, st *Remove, env *pipeline.Env, recs ...*pipeline.Record) (*pipeline.Batch, error) {
	t.Helper()
	if err := st.Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	b := &pipeline.Batch{Records: recs}
	err := st.Process(t.Context(), env, b)
	return b, err
}

func outcome(status pipeline.OutcomeStatus, msg string) pipeline.Outcome {
	return pipeline.Outcome{Status: status, Error: msg}
}

func wantOutcome(t *testing.T, rec *pipeline.Record, want pipeline.Outcome) {
	t.Helper()
	if rec.Outcome != want {
		t.Errorf("%s: outcome %+v, want %+v", rec.Container.Name, rec.Outcome, want)
	}
}

func TestPlanTouchesNothing(t *testing.T) {
	a, b := exited("a1", "proj-a", nil), neverStarted("b1", "proj-b")
	keep := target(exited("c1", "proj-c", nil))
	keep.Verdict = pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonWithinHold}
	f := newFake(a, b, exited("c1", "proj-c", nil))
	env := testEnv(f, pipeline.ModePlan)
	recA, recB := target(a), target(b)

	batch, err := process(t, New(), env, recA, recB, keep)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("plan mode called Docker: %v", calls)
	}
	if n := env.Stats.InspectCalls.Load() + env.Stats.RemoveCalls.Load(); n != 0 {
		t.Errorf("plan mode counted %d Docker calls", n)
	}
	wantOutcome(t, recA, outcome(pipeline.OutcomePlanned, ""))
	wantOutcome(t, recB, outcome(pipeline.OutcomePlanned, ""))
	wantOutcome(t, keep, outcome(pipeline.OutcomeNone, ""))
	if evs := batch.TakeEvents(); len(evs) != 0 {
		t.Errorf("plan mode emitted %d events", len(evs))
	}
}

// The engine's guard holds inside the stage too: whatever the verdict, an
// exempt record, a live container or a record whose facts were not read
// never reaches ContainerRemove (nor even the re-inspect).
func TestNonCandidatesAreNeverTouched(t *testing.T) {
	for _, mode := range []pipeline.Mode{pipeline.ModeRun, pipeline.ModePlan} {
		t.Run(string(mode), func(t *testing.T) {
			ok := exited("ok1", "proj-ok", nil)
			ex := exited("ex1", "proj-exempt", map[string]string{"ds01.protected": "true"})
			live := exited("live1", "proj-live", nil)
			live.State.Status = container.StateRunning
			paused := exited("paused1", "proj-paused", nil)
			paused.State.Status = container.StatePaused
			bad := exited("bad1", "proj-bad", nil)
			f := newFake(ok, ex, live, paused, bad)

			recOK, recEx, recLive, recPaused, recBad := target(ok), target(ex), target(live), target(paused), target(bad)
			recEx.Exempt, recEx.ExemptReason = true, "label ds01.protected=true"
			recBad.Incomplete = "inspect: boom"
			recBad.Outcome = outcome(pipeline.OutcomeFailed, "inspect: boom")

			if _, err := process(t, New(), testEnv(f, mode), recOK, recEx, recLive, recPaused, recBad); err != nil {
				t.Fatalf("Process: %v", err)
			}
			for _, c := range f.Calls() {
				if !strings.HasSuffix(c, " ok1") {
					t.Errorf("Docker call on a non-candidate: %q", c)
				}
			}
			for _, r := range []*pipeline.Record{recEx, recLive, recPaused} {
				wantOutcome(t, r, outcome(pipeline.OutcomeNone, ""))
			}
			wantOutcome(t, recBad, outcome(pipeline.OutcomeFailed, "inspect: boom"))
			if mode == pipeline.ModeRun {
				wantOutcome(t, recOK, outcome(pipeline.OutcomeRemoved, ""))
				for _, id := range []string{"ex1", "live1", "paused1", "bad1"} {
					if !f.Has(id) {
						t.Errorf("%s was removed", id)
					}
				}
			}
		})
	}
}

func TestOutcomes(t *testing.T) {
	tests := []struct {
		name string
		// world changes the fake after discovery, before the stage runs.
		world       func(f *fakeDocker)
		want        pipeline.Outcome
		wantRemove  bool // a ContainerRemove call is expected
		stillExists bool
	}{
		{
			name:       "unchanged is removed",
			want:       outcome(pipeline.OutcomeRemoved, ""),
			wantRemove: true,
		},
		{
			name:  "404 on re-inspect is gone",
			world: func(f *fakeDocker) { f.Delete("x1") },
			want:  outcome(pipeline.OutcomeGone, ""),
		},
		{
			name: "404 on remove is gone",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = cerrdefs.ErrNotFound.WithMessage("No such container: x1")
			},
			want:        outcome(pipeline.OutcomeGone, ""),
			wantRemove:  true,
			stillExists: true,
		},
		{
			name: "started again is changed",
			world: func(f *fakeDocker) {
				f.Set("x1", func(c *container.InspectResponse) {
					c.State.Status = container.StateRunning
					c.State.StartedAt = "2026-02-16T14:59:00.5Z"
					c.State.FinishedAt = "0001-01-01T00:00:00Z"
				})
			},
			want: outcome(pipeline.OutcomeChanged, "state exited -> running; "+
				"started again (StartedAt 2026-02-14T09:00:01.123456789Z -> 2026-02-16T14:59:00.5Z); "+
				"finished again (FinishedAt 2026-02-15T12:05:03.987654321Z -> never)"),
			stillExists: true,
		},
		{
			name: "restarted and exited again is changed",
			world: func(f *fakeDocker) {
				f.Set("x1", func(c *container.InspectResponse) {
					c.State.StartedAt = "2026-02-16T14:00:00Z"
					c.State.FinishedAt = "2026-02-16T14:30:00Z"
				})
			},
			want: outcome(pipeline.OutcomeChanged,
				"started again (StartedAt 2026-02-14T09:00:01.123456789Z -> 2026-02-16T14:00:00Z); "+
					"finished again (FinishedAt 2026-02-15T12:05:03.987654321Z -> 2026-02-16T14:30:00Z)"),
			stillExists: true,
		},
		{
			name: "relabelled is changed",
			world: func(f *fakeDocker) {
				f.Set("x1", func(c *container.InspectResponse) {
					c.Config.Labels["ds01.protected"] = "true"
					c.Config.Labels["ds01.user"] = "bob"
				})
			},
			want:        outcome(pipeline.OutcomeChanged, "relabelled: added ds01.protected; changed ds01.user"),
			stillExists: true,
		},
		{
			name: "renamed is changed",
			world: func(f *fakeDocker) {
				f.Set("x1", func(c *container.InspectResponse) { c.Name = "/keep-me" })
			},
			want:        outcome(pipeline.OutcomeChanged, "renamed proj-x -> keep-me"),
			stillExists: true,
		},
		{
			name: "remove error is failed",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = cerrdefs.ErrInternal.WithMessage("driver \"overlay2\" failed to remove root filesystem: device or resource busy")
			},
			want:        outcome(pipeline.OutcomeFailed, "remove: driver \"overlay2\" failed to remove root filesystem: device or resource busy"),
			wantRemove:  true,
			stillExists: true,
		},
		{
			name: "re-inspect error is failed",
			world: func(f *fakeDocker) {
				f.InspectErr["x1"] = cerrdefs.ErrUnavailable.WithMessage("engine overloaded")
			},
			want:        outcome(pipeline.OutcomeFailed, "re-inspect: engine overloaded"),
			stillExists: true,
		},
		{
			name: "removal in progress elsewhere is gone",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = cerrdefs.ErrConflict.WithMessage("removal of container x1 is already in progress")
			},
			want:        outcome(pipeline.OutcomeGone, ""),
			wantRemove:  true,
			stillExists: true,
		},
		{
			name: "started between re-inspect and remove is changed",
			world: func(f *fakeDocker) {
				f.AfterInspect = func(string) {
					f.AfterInspect = nil
					f.Set("x1", func(c *container.InspectResponse) { c.State.Status = container.StateRunning })
				}
			},
			want:        outcome(pipeline.OutcomeChanged, "state exited -> running"),
			wantRemove:  true,
			stillExists: true,
		},
		{
			name: "other conflict is failed",
			world: func(f *fakeDocker) {
				f.RemoveErr["x1"] = cerrdefs.ErrConflict.WithMessage("container is locked by a plugin")
			},
			want:        outcome(pipeline.OutcomeFailed, "remove: container is locked by a plugin"),
			wantRemove:  true,
			stillExists: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := exited("x1", "proj-x", map[string]string{"ds01.user": "alice"})
			f := newFake(c)
			rec := target(c) // discovery's view, before the world changes
			if tt.world != nil {
				tt.world(f)
			}
			env := testEnv(f, pipeline.ModeRun)
			batch, err := process(t, New(), env, rec)
			if err != nil {
				t.Fatalf("Process: %v", err)
			}
			wantOutcome(t, rec, tt.want)
			if got := f.Count("remove "); got != b2i(tt.wantRemove) {
				t.Errorf("%d ContainerRemove calls, want %d (calls %v)", got, b2i(tt.wantRemove), f.Calls())
			}
			if got := env.Stats.RemoveCalls.Load(); got != int64(f.Count("remove ")) {
				t.Errorf("Stats.RemoveCalls = %d, fake saw %d", got, f.Count("remove "))
			}
			if got := env.Stats.InspectCalls.Load(); got != int64(f.Count("inspect ")) {
				t.Errorf("Stats.InspectCalls = %d, fake saw %d", got, f.Count("inspect "))
			}
			if f.Has("x1") != tt.stillExists {
				t.Errorf("container exists afterwards: %v, want %v", f.Has("x1"), tt.stillExists)
			}
			evs := batch.TakeEvents()
			wantEvents := b2i(tt.want.Status == pipeline.OutcomeRemoved)
			if len(evs) != wantEvents {
				t.Errorf("%d events, want %d: %v", len(evs), wantEvents, evs)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestOneFailureDoesNotStopOthers(t *testing.T) {
	var cs []container.InspectResponse
	var recs []*pipeline.Record
	for i := range 6 {
		c := exited(fmt.Sprintf("id%d", i), fmt.Sprintf("proj-%d", i), nil)
		cs = append(cs, c)
		recs = append(recs, target(c))
	}
	f := newFake(cs...)
	f.RemoveErr["id1"] = errors.New("connection reset by peer")
	f.InspectErr["id4"] = errors.New("i/o timeout")

	batch, err := process(t, &Remove{Workers: 2, settleWait: time.Millisecond}, testEnv(f, pipeline.ModeRun), recs...)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	for i, rec := range recs {
		switch i {
		case 1:
			// No answer: looked at again, still there each time.
			wantOutcome(t, rec, outcome(pipeline.OutcomeFailed, "remove: connection reset by peer; the container is still there"))
		case 4:
			wantOutcome(t, rec, outcome(pipeline.OutcomeFailed, "re-inspect: i/o timeout"))
		default:
			wantOutcome(t, rec, outcome(pipeline.OutcomeRemoved, ""))
		}
	}
	var names []string
	for _, ev := range batch.TakeEvents() {
		names = append(names, ev.Details[0].Value.(string))
	}
	slices.Sort(names) // in the order the removals completed
	if got, want := strings.Join(names, " "), "proj-0 proj-2 proj-3 proj-5"; got != want {
		t.Errorf("container.remove events for %q, want %q", got, want)
	}
}

func TestRemoveOptions(t *testing.T) {
	for _, vols := range []bool{false, true} {
		t.Run(fmt.Sprintf("remove_volumes=%v", vols), func(t *testing.T) {
			c := exited("v1", "proj-v", nil)
			f := newFake(c)
			if _, err := process(t, &Remove{Workers: 1, RemoveVolumes: vols}, testEnv(f, pipeline.ModeRun), target(c)); err != nil {
				t.Fatalf("Process: %v", err)
			}
			want := client.ContainerRemoveOptions{RemoveVolumes: vols}
			if len(f.RemoveOpts()) != 1 || f.RemoveOpts()[0] != want {
				t.Errorf("remove options %+v, want [%+v]", f.RemoveOpts(), want)
			}
		})
	}
}

// line encodes an event as events.jsonl holds it, without the timestamp.
func line(t *testing.T, ev events.Event) string {
	t.Helper()
	b, err := ev.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	const head = `{"timestamp":"`
	rest, ok := strings.CutPrefix(s, head)
	if !ok {
		t.Fatalf("event line does not start with the timestamp: %s", s)
	}
	_, rest, ok = strings.Cut(rest, `",`)
	if !ok {
		t.Fatalf("event line has no timestamp: %s", s)
	}
	return "{" + rest
}

func TestEventLines(t *testing.T) {
	cns := neverStarted("c1", "scratch")
	recCreated := target(cns)
	recCreated.Owner = pipeline.Owner{Name: "carol", Source: pipeline.OwnerFromAIME}
	recCreated.Type = "docker"
	recCreated.Verdict = pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonCreatedNeverStarted,
		Clock: pipeline.ClockCreated, Age: 95*time.Minute + 59*time.Second, Limit: 30 * time.Minute, HasLimit: true}

	held := exited("h1", "proj._.1001", nil)
	recHeld := target(held) // alice, atomic, 26h55m: floor is 26h

	idle := exited("i1", "train", nil)
	recIdle := target(idle)
	recIdle.Owner = pipeline.Owner{Name: pipeline.UnknownOwner, Source: pipeline.OwnerUnknown}
	recIdle.Type = ""
	recIdle.Verdict = pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonIdleStopped,
		Clock: pipeline.ClockFinished, Age: 59 * time.Minute}

	fresh := exited("f1", "fresh", nil)
	recFresh := target(fresh)
	recFresh.Owner = pipeline.Owner{}
	recFresh.Verdict.Age = 0

	f := newFake(cns, held, idle, fresh)
	before := time.Now()
	batch, err := process(t, New(), testEnv(f, pipeline.ModeRun), recCreated, recHeld, recIdle, recFresh)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	evs := batch.TakeEvents()
	// In the order the removals completed.
	slices.SortFunc(evs, func(a, b events.Event) int { return strings.Compare(line(t, a), line(t, b)) })
	want := []string{
		`{"event_type":"container.remove","schema_version":"1","user":"alice","source":"ds01-pipe/cleanup","details":{"container":"proj._.1001","reason":"hold_expired","stopped_duration":"26h","container_type":"atomic"}}`,
		`{"event_type":"container.remove","schema_version":"1","user":"carol","source":"ds01-pipe/cleanup","details":{"container":"scratch","reason":"created_never_started","age":"95m"}}`,
		`{"event_type":"container.remove","schema_version":"1","user":"unknown","source":"ds01-pipe/cleanup","details":{"container":"fresh","reason":"hold_expired","stopped_duration":"0h","container_type":"atomic"}}`,
		`{"event_type":"container.remove","schema_version":"1","user":"unknown","source":"ds01-pipe/cleanup","details":{"container":"train","reason":"idle_stopped","stopped_duration":"0h","container_type":"docker"}}`,
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for i, ev := range evs {
		if got := line(t, ev); got != want[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want[i])
		}
		if ev.Time.Before(before) || ev.Time.After(time.Now()) {
			t.Errorf("event %d time %v is not the time of the run", i, ev.Time)
		}
	}
}

// A GPU is released only once its container is confirmed gone: each
// container's container.remove event (written as the removal completes)
// comes before its gpu.release events. GPUs of a container that was not
// removed stay claimed.
func TestGPUReleaseAfterContainerRemove(t *testing.T) {
	a, b, c, d := exited("a1", "gpu-a", nil), exited("b1", "gpu-b", nil), exited("c1", "gpu-c", nil), exited("d1", "gpu-d", nil)
	f := newFake(a, b, c, d)
	recA, recB, recC, recD := target(a), target(b), target(c), target(d)
	recA.ReleaseGPUs = []string{"GPU-aaaa", "MIG-aaaa-1"}
	recB.ReleaseGPUs = []string{"GPU-bbbb"}
	recC.ReleaseGPUs = []string{"GPU-cccc"}
	recD.ReleaseGPUs = []string{"GPU-dddd"}
	f.Delete("c1")                                                                  // gone: released, but no container.remove
	f.RemoveErr["d1"] = cerrdefs.ErrInternal.WithMessage("device or resource busy") // failed: GPU stays in use

	env := testEnv(f, pipeline.ModeRun)
	st := New()
	batch := &pipeline.Batch{Records: []*pipeline.Record{recA, recB, recC, recD}}
	for _, u := range []string{"GPU-aaaa", "MIG-aaaa-1", "GPU-bbbb", "GPU-cccc", "GPU-dddd"} {
		batch.GPUs = append(batch.GPUs, pipeline.GPUReport{UUID: u, Status: pipeline.GPUReleased})
	}
	if err := st.Process(t.Context(), env, batch); err != nil {
		t.Fatalf("Process: %v", err)
	}

	var got []string
	for _, ev := range batch.TakeEvents() {
		s := ev.Type + " " + ev.Details[0].Value.(string)
		if ev.Type == events.GPURelease {
			s += " " + ev.Details[1].Value.(string)
		}
		got = append(got, s)
	}
	pos := make(map[string]int, len(got))
	for i, s := range got {
		pos[s] = i
	}
	for _, s := range []string{
		"gpu.release gpu-a GPU-aaaa", "gpu.release gpu-a MIG-aaaa-1", "gpu.release gpu-b GPU-bbbb",
		"gpu.release gpu-c GPU-cccc", "container.remove gpu-a", "container.remove gpu-b",
	} {
		if _, ok := pos[s]; !ok {
			t.Errorf("missing event %q in %q", s, got)
		}
	}
	if len(got) != 6 {
		t.Errorf("events %q, want 6 (none for gpu-d, no container.remove for gone gpu-c)", got)
	}
	for _, name := range []string{"gpu-a", "gpu-b"} {
		rm, ok := pos["container.remove "+name]
		for s, i := range pos {
			if ok && strings.HasPrefix(s, "gpu.release "+name+" ") && i < rm {
				t.Errorf("%q comes before container.remove %s: %q", s, name, got)
			}
		}
	}
	wantOutcome(t, recC, outcome(pipeline.OutcomeGone, ""))
	wantOutcome(t, recD, outcome(pipeline.OutcomeFailed, "remove: device or resource busy"))
	if batch.GPUs[4].Status != pipeline.GPUInUse || recD.ReleaseGPUs != nil {
		t.Errorf("GPU of the container that stayed: status %s, ReleaseGPUs %v; want in_use, none", batch.GPUs[4].Status, recD.ReleaseGPUs)
	}
}

func TestContextCancelledMidway(t *testing.T) {
	var cs []container.InspectResponse
	var recs []*pipeline.Record
	for i := range 5 {
		c := exited(fmt.Sprintf("id%d", i), fmt.Sprintf("proj-%d", i), nil)
		cs = append(cs, c)
		recs = append(recs, target(c))
		recs[i].ReleaseGPUs = []string{fmt.Sprintf("GPU-%d", i)}
	}
	f := newFake(cs...)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	removed := 0
	f.AfterRemove = func(string) { // one worker: calls never overlap
		if removed++; removed == 2 {
			cancel()
		}
	}
	env := testEnv(f, pipeline.ModeRun)
	st := &Remove{Workers: 1}
	batch := &pipeline.Batch{Records: recs}
	err := st.Process(ctx, env, batch)
	if err == nil {
		t.Fatal("Process returned no error after its context was cancelled")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	if want := "3 of 5 containers to remove were not attempted"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	for i, rec := range recs {
		want := outcome(pipeline.OutcomeNone, "")
		if i < 2 {
			want = outcome(pipeline.OutcomeRemoved, "")
		}
		wantOutcome(t, rec, want)
	}
	if got := f.Count("remove "); got != 2 {
		t.Errorf("%d ContainerRemove calls, want 2: %v", got, f.Calls())
	}
	var got []string
	for _, ev := range batch.TakeEvents() {
		got = append(got, ev.Type+" "+ev.Details[0].Value.(string))
	}
	want := []string{"container.remove proj-0", "container.remove proj-1", "gpu.release proj-0", "gpu.release proj-1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestInit(t *testing.T) {
	if d := New(); d.Workers != DefaultWorkers || d.RemoveVolumes {
		t.Errorf("New() = %+v, want workers %d and volumes kept", d, DefaultWorkers)
	}
	for _, n := range []int{1, 4, MaxWorkers} {
		if err := (&Remove{Workers: n}).Init(); err != nil {
			t.Errorf("workers = %d: %v", n, err)
		}
	}
	for _, n := range []int{0, -1, MaxWorkers + 1} {
		err := (&Remove{Workers: n}).Init()
		var ae *pipeline.AttrError
		if !errors.As(err, &ae) || ae.Attr != "workers" {
			t.Errorf("workers = %d: error %v, want an AttrError on workers", n, err)
			continue
		}
		if want := fmt.Sprintf("workers: must be between 1 and 64, got %d", n); err.Error() != want {
			t.Errorf("workers = %d: error %q, want %q", n, err, want)
		}
	}
}

// The embedded sample decodes into the stage and passes Init, and the
// registry documents every attribute.
func TestSampleAndSpec(t *testing.T) {
	spec, ok := pipeline.DefaultRegistry.Lookup(Kind)
	if !ok {
		t.Fatalf("kind %q is not registered", Kind)
	}
	if spec.Sample != sample || !strings.Contains(sample, `stage "remove"`) {
		t.Errorf("Spec.Sample is not the embedded sample.hcl")
	}
	file, diags := hclparse.NewParser().ParseHCL([]byte(spec.Sample), "sample.hcl")
	if diags.HasErrors() {
		t.Fatalf("sample.hcl: %v", diags)
	}
	var root struct {
		Stages []struct {
			Kind string   `hcl:"kind,label"`
			Rest hcl.Body `hcl:",remain"`
		} `hcl:"stage,block"`
	}
	if diags := gohcl.DecodeBody(file.Body, nil, &root); diags.HasErrors() {
		t.Fatalf("sample.hcl: %v", diags)
	}
	if len(root.Stages) != 1 || root.Stages[0].Kind != Kind {
		t.Fatalf("sample.hcl holds %d stage blocks, want one %q", len(root.Stages), Kind)
	}
	st := spec.New().(*Remove)
	if diags := gohcl.DecodeBody(root.Stages[0].Rest, nil, st); diags.HasErrors() {
		t.Fatalf("sample.hcl: %v", diags)
	}
	if err := st.Init(); err != nil {
		t.Errorf("sample.hcl: Init: %v", err)
	}

	attrs := spec.Attributes()
	got := map[string]pipeline.AttrDoc{}
	for _, a := range attrs {
		got[a.Name] = a
		if a.Doc == "" || a.Required {
			t.Errorf("attribute %s: doc %q, required %v", a.Name, a.Doc, a.Required)
		}
	}
	if got["workers"].Default != "4" || got["workers"].Type != "number" ||
		got["remove_volumes"].Default != "false" || got["remove_volumes"].Type != "bool" || len(attrs) != 2 {
		t.Errorf("attributes %+v", attrs)
	}
}
