package lifecycle

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
	"github.com/ds01/ds01-pipe/pipeline/state"
)

// seed writes entries for recs (by their ID and StartedAt) into a fresh
// store in dir, with one warning given each.
func seed(t *testing.T, dir string, extra map[string]state.Entry, recs ...*pipeline.Record) {
	t.Helper()
	st, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries := maps.Clone(extra)
	for _, r := range recs {
		c := r.Container
		entries[state.Key{ID: c.ID, StartedAt: c.StartedAt}.String()] = state.Entry{
			ContainerID: c.ID, Name: c.Name, StartedAt: c.StartedAt, FirstSeen: pipelinetest.Now.Add(-time.Hour),
			LastSeen: pipelinetest.Now.Add(-time.Hour), LastActivity: pipelinetest.Now.Add(-time.Hour),
			RuntimeWarned: pipelinetest.Now.Add(-time.Hour),
		}
	}
	if err := st.Save(entries, state.Run{Now: pipelinetest.Now.Add(-time.Hour), Pipeline: "other"}); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	st, err := state.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range c.Entries {
		out = append(out, e.Name)
	}
	slices.Sort(out)
	return out
}

// A run prunes only the entries it has grounds to drop: those of its own
// records as before, and of containers outside it only on the engine's
// word that their container run is over (gone, not live, started again).
// An engine that cannot answer keeps the entry; a record a filter held out
// keeps its own; plan asks nothing and writes nothing.
func TestPruneOutsideTheRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	now := pipelinetest.Now
	started := now.Add(-19 * time.Hour)

	judged := gpuRecord("judged", "sam", started)
	heldOut := gpuRecord("held-out", "sam", started)
	gone := gpuRecord("gone", "sam", started)
	exited := gpuRecord("exited", "sam", started)
	restarted := gpuRecord("restarted", "sam", started)
	other := gpuRecord("other-scope", "sam", started)
	paused := gpuRecord("paused", "sam", started)
	unasked := gpuRecord("unasked", "sam", started)
	seed(t, dir, map[string]state.Entry{"@bad": {Name: "no-id"}},
		judged, heldOut, gone, exited, restarted, other, paused, unasked)

	docker := pipelinetest.NewDocker()
	add := func(r *pipeline.Record, change func(*container.InspectResponse)) {
		resp := pipelinetest.Response(r)
		if change != nil {
			change(&resp)
		}
		docker.Add(resp)
	}
	add(judged, nil)
	add(heldOut, nil)
	add(exited, func(c *container.InspectResponse) {
		c.State.Status, c.State.Running = container.StateExited, false
	})
	add(restarted, func(c *container.InspectResponse) { c.State.StartedAt = now.Add(-time.Minute).Format(time.RFC3339Nano) })
	add(other, nil)
	add(paused, func(c *container.InspectResponse) { c.State.Status, c.State.Paused = container.StatePaused, true })
	add(unasked, nil)
	docker.InspectErr[unasked.Container.ID] = errors.New("connection reset by peer")

	process := func(mode pipeline.Mode) (*pipeline.Record, []string) {
		t.Helper()
		env, hook := pipelinetest.Env(mode, docker)
		env.Policy, env.Now = model(t), now
		s := New()
		s.StateDir = dir
		s.KeepAliveFile = ""
		r := gpuRecord("judged", "sam", started)
		b := &pipeline.Batch{Records: []*pipeline.Record{r}, Held: []*pipeline.Record{gpuRecord("held-out", "sam", started)}}
		if err := s.Process(context.Background(), env, b); err != nil {
			t.Fatal(err)
		}
		var warns []string
		for _, e := range hook.AllEntries() {
			if e.Level <= logrus.WarnLevel {
				warns = append(warns, e.Message)
			}
		}
		return r, warns
	}

	all := names(t, dir)
	process(pipeline.ModePlan)
	if docker.Count("inspect") != 0 {
		t.Errorf("plan asked the engine: %v", docker.Calls())
	}
	if got := names(t, dir); !slices.Equal(got, all) {
		t.Errorf("plan changed the store: %v, want %v", got, all)
	}

	r, warns := process(pipeline.ModeRun)
	if len(r.Lifecycle.Notices) != 0 {
		t.Errorf("judged: notices %+v, want none (warned an hour ago)", r.Lifecycle.Notices)
	}
	want := []string{"held-out", "judged", "other-scope", "paused", "unasked"}
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("store holds %v, want %v", got, want)
	}
	var asked []string
	for _, c := range docker.Calls() {
		if id, ok := strings.CutPrefix(c, "inspect "); ok {
			asked = append(asked, id)
		}
	}
	slices.Sort(asked)
	wantAsked := []string{gone.Container.ID, exited.Container.ID, restarted.Container.ID, other.Container.ID, paused.Container.ID, unasked.Container.ID}
	slices.Sort(wantAsked)
	if !slices.Equal(asked, wantAsked) {
		t.Errorf("inspected %v, want the containers outside the run only, once each: %v", asked, wantAsked)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "kept the state of 1 container(s)") || !strings.Contains(warns[0], "connection reset by peer") {
		t.Errorf("warnings %q, want one about the container the engine could not be asked about", warns)
	}
}

func TestPruneReason(t *testing.T) {
	t0 := pipelinetest.Now
	e := state.Entry{ContainerID: "abc", StartedAt: t0}
	live := pipeline.Container{ID: "abc", State: pipeline.StateRunning, StartedAt: t0}
	with := func(change func(*pipeline.Container)) pipeline.Container {
		c := live
		change(&c)
		return c
	}
	for _, tc := range []struct {
		name  string
		c     pipeline.Container
		err   error
		asked bool
		prune bool
	}{
		{"not asked", pipeline.Container{}, nil, false, false},
		{"transport error", pipeline.Container{}, errors.New("EOF"), true, false},
		{"deadline", pipeline.Container{}, context.DeadlineExceeded, true, false},
		{"gone", pipeline.Container{}, notFound{}, true, true},
		{"the ID names another container", with(func(c *pipeline.Container) { c.ID = "def" }), nil, true, true},
		{"exited", with(func(c *pipeline.Container) { c.State = pipeline.StateExited }), nil, true, true},
		{"dead", with(func(c *pipeline.Container) { c.State = pipeline.StateDead }), nil, true, true},
		{"paused", with(func(c *pipeline.Container) { c.State = pipeline.StatePaused }), nil, true, false},
		{"started again", with(func(c *pipeline.Container) { c.StartedAt = t0.Add(time.Second) }), nil, true, true},
		{"start time unreadable", with(func(c *pipeline.Container) { c.StartedAt = time.Time{} }), nil, true, false},
		{"same run", live, nil, true, false},
	} {
		if why := pruneReason(e, tc.c, tc.err, tc.asked); (why != "") != tc.prune {
			t.Errorf("%s: pruned %q, want pruned %v", tc.name, why, tc.prune)
		}
	}
}

// notFound is the engine's 404, as errdefs classifies it.
type notFound struct{}

func (notFound) Error() string { return "No such container" }
func (notFound) NotFound()     {}
