package remove

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
	"github.com/ds01/ds01-pipe/stages/discover"
)

// These tests run the stage against the real Docker engine (see
// internal/dockertest); dockertest fails them, never skips them, when there is none.
// Records come from the real discover stage, scoped to the test's own
// containers by name prefix and label.

func engineEnv(t *testing.T, eng *dockertest.Engine, docker pipeline.Docker) *pipeline.Env {
	t.Helper()
	gpu, err := nvml.Open(nvml.Options{Backend: nvml.BackendNone})
	if err != nil {
		t.Fatalf("GPU backend: %v", err)
	}
	return &pipeline.Env{
		Pipeline:    "it",
		Mode:        pipeline.ModeRun,
		Now:         time.Now().UTC(),
		Docker:      docker,
		CallTimeout: 30 * time.Second,
		GPU:         gpu,
		Stats:       &pipeline.Stats{},
	}
}

// discoverOwn runs the discover stage over this test's containers only and
// returns the records by container name.
func discoverOwn(t *testing.T, eng *dockertest.Engine, env *pipeline.Env) (*pipeline.Batch, map[string]*pipeline.Record) {
	t.Helper()
	key, value := eng.Label()
	d := &discover.Stage{NamePrefix: eng.Prefix(), Labels: map[string]string{key: value}, Workers: 2}
	batch := &pipeline.Batch{}
	if err := d.Process(t.Context(), env, batch); err != nil {
		t.Fatalf("discover: %v", err)
	}
	byName := make(map[string]*pipeline.Record, len(batch.Records))
	for _, rec := range batch.Records {
		if !strings.HasPrefix(rec.Container.Name, eng.Prefix()) {
			t.Fatalf("discover returned a container that is not this test's: %s", rec.Container.Name)
		}
		byName[rec.Container.Name] = rec
	}
	return batch, byName
}

// decide gives a record the verdict the decide stage would give it.
func decide(rec *pipeline.Record, reason pipeline.Reason, age time.Duration) {
	rec.Owner = pipeline.Owner{Name: "alice", Source: pipeline.OwnerFromUser}
	rec.Type = "docker"
	rec.Verdict = pipeline.Verdict{Action: pipeline.ActionRemove, Reason: reason, Age: age, HasLimit: true}
}

func record(t *testing.T, byName map[string]*pipeline.Record, c dockertest.Container) *pipeline.Record {
	t.Helper()
	rec := byName[c.Name]
	if rec == nil {
		t.Fatalf("discover did not find %s", c.Name)
	}
	return rec
}

func exists(t *testing.T, eng *dockertest.Engine, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := eng.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return err == nil
}

func TestIntegrationRemovesStaleContainers(t *testing.T) {
	eng := dockertest.New(t)
	done := eng.Create(t, dockertest.Spec{Name: "exited", Args: []string{"exit", "3"}, Start: true, Wait: true})
	fresh := eng.Create(t, dockertest.Spec{Name: "created"})
	kept := eng.Create(t, dockertest.Spec{Name: "kept", Start: true, Wait: true})

	env := engineEnv(t, eng, eng.Client())
	batch, byName := discoverOwn(t, eng, env)
	recDone, recFresh, recKept := record(t, byName, done), record(t, byName, fresh), record(t, byName, kept)
	decide(recDone, pipeline.ReasonHoldExpired, 3*time.Hour+59*time.Minute)
	decide(recFresh, pipeline.ReasonCreatedNeverStarted, 31*time.Minute)
	recKept.Verdict = pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonWithinHold}

	if err := New().Process(t.Context(), env, batch); err != nil {
		t.Fatalf("remove: %v", err)
	}
	wantOutcome(t, recDone, outcome(pipeline.OutcomeRemoved, ""))
	wantOutcome(t, recFresh, outcome(pipeline.OutcomeRemoved, ""))
	wantOutcome(t, recKept, outcome(pipeline.OutcomeNone, ""))
	if exists(t, eng, done.ID) || exists(t, eng, fresh.ID) {
		t.Error("a removed container is still there")
	}
	if !exists(t, eng, kept.ID) {
		t.Error("the container with a keep verdict was removed")
	}
	if got := env.Stats.RemoveCalls.Load(); got != 2 {
		t.Errorf("Stats.RemoveCalls = %d, want 2", got)
	}

	var got []string
	for _, ev := range batch.TakeEvents() {
		got = append(got, line(t, ev))
	}
	slices.Sort(got) // in the order the removals completed
	// Sorted: "…-created" before "…-exited".
	want := []string{
		`{"event_type":"container.remove","schema_version":"1","user":"alice","source":"ds01-pipe/it","details":{"container":"` + fresh.Name + `","reason":"created_never_started","age":"31m"}}`,
		`{"event_type":"container.remove","schema_version":"1","user":"alice","source":"ds01-pipe/it","details":{"container":"` + done.Name + `","reason":"hold_expired","stopped_duration":"3h","container_type":"docker"}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A container started again between discovery and removal belongs to its
// user again: it is reported changed and keeps running.
func TestIntegrationStartedAgainIsNotRemoved(t *testing.T) {
	eng := dockertest.New(t)
	c := eng.Create(t, dockertest.Spec{Name: "again", Args: []string{"forever"}})

	env := engineEnv(t, eng, eng.Client())
	batch, byName := discoverOwn(t, eng, env)
	rec := record(t, byName, c)
	if rec.Container.State != pipeline.StateCreated {
		t.Fatalf("discovered state %s, want created", rec.Container.State)
	}
	decide(rec, pipeline.ReasonCreatedNeverStarted, time.Hour)

	eng.Start(t, c.ID)
	if err := New().Process(t.Context(), env, batch); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if rec.Outcome.Status != pipeline.OutcomeChanged || !strings.HasPrefix(rec.Outcome.Error, "state created -> running; started again") {
		t.Errorf("outcome %+v, want changed: state created -> running; started again ...", rec.Outcome)
	}
	if got := env.Stats.RemoveCalls.Load(); got != 0 {
		t.Errorf("Stats.RemoveCalls = %d, want 0", got)
	}
	if st := eng.Inspect(t, c.ID).State; st == nil || !st.Running {
		t.Errorf("the container is no longer running: %+v", st)
	}
	if evs := batch.TakeEvents(); len(evs) != 0 {
		t.Errorf("events for a container that was not removed: %v", evs)
	}
}

// staleInspect answers the first inspect of each container with what it
// looked like at discovery, as if the container was started right after
// the stage's re-inspect. Every other call goes to the real engine.
type staleInspect struct {
	pipeline.Docker
	mu    sync.Mutex
	stale map[string]container.InspectResponse
}

func (s *staleInspect) ContainerInspect(ctx context.Context, id string, opts client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	s.mu.Lock()
	c, ok := s.stale[id]
	delete(s.stale, id)
	s.mu.Unlock()
	if ok {
		return client.ContainerInspectResult{Container: c}, nil
	}
	return s.Docker.ContainerInspect(ctx, id, opts)
}

// The last line of defence: a container that starts after the re-inspect
// is refused by the engine (409, never forced), and reported changed.
func TestIntegrationStartedAfterReinspectIsNotForced(t *testing.T) {
	eng := dockertest.New(t)
	c := eng.Create(t, dockertest.Spec{Name: "race", Args: []string{"forever"}})
	before := eng.Inspect(t, c.ID)

	docker := &staleInspect{Docker: eng.Client(), stale: map[string]container.InspectResponse{}}
	env := engineEnv(t, eng, docker)
	batch, byName := discoverOwn(t, eng, env)
	rec := record(t, byName, c)
	decide(rec, pipeline.ReasonCreatedNeverStarted, time.Hour)
	docker.stale[c.ID] = before // only the stage's re-inspect is stale

	eng.Start(t, c.ID)
	if err := New().Process(t.Context(), env, batch); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if rec.Outcome.Status != pipeline.OutcomeChanged || !strings.HasPrefix(rec.Outcome.Error, "state created -> running") {
		t.Errorf("outcome %+v, want changed: state created -> running ...", rec.Outcome)
	}
	if got := env.Stats.RemoveCalls.Load(); got != 1 {
		t.Errorf("Stats.RemoveCalls = %d, want 1 (refused by the engine)", got)
	}
	if st := eng.Inspect(t, c.ID).State; st == nil || !st.Running {
		t.Errorf("the container is no longer running: %+v", st)
	}
	if evs := batch.TakeEvents(); len(evs) != 0 {
		t.Errorf("events for a container that was not removed: %v", evs)
	}
}

// A container someone else removed after discovery is gone: not a
// failure, and no container.remove event (this run removed nothing).
func TestIntegrationRemovedMeanwhileIsGone(t *testing.T) {
	eng := dockertest.New(t)
	c := eng.Create(t, dockertest.Spec{Name: "meanwhile", Start: true, Wait: true})

	env := engineEnv(t, eng, eng.Client())
	batch, byName := discoverOwn(t, eng, env)
	rec := record(t, byName, c)
	decide(rec, pipeline.ReasonHoldExpired, 2*time.Hour)
	rec.ReleaseGPUs = []string{"GPU-0000"} // a GPU of a gone container is released

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := eng.Client().ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{}); err != nil {
		t.Fatalf("remove behind the stage's back: %v", err)
	}
	if err := New().Process(t.Context(), env, batch); err != nil {
		t.Fatalf("remove: %v", err)
	}
	wantOutcome(t, rec, outcome(pipeline.OutcomeGone, ""))
	evs := batch.TakeEvents()
	if len(evs) != 1 || evs[0].Type != events.GPURelease {
		t.Errorf("events %v, want one gpu.release and no container.remove", evs)
	}
}

// Anonymous volumes are kept unless remove_volumes is set; named volumes
// are never removed by Docker at all.
func TestIntegrationVolumes(t *testing.T) {
	for _, removeVolumes := range []bool{false, true} {
		name := "vol-keep"
		if removeVolumes {
			name = "vol-remove"
		}
		t.Run(name, func(t *testing.T) {
			eng := dockertest.New(t)
			id, volume := createWithVolume(t, eng, name)

			env := engineEnv(t, eng, eng.Client())
			batch, byName := discoverOwn(t, eng, env)
			rec := record(t, byName, dockertest.Container{ID: id, Name: eng.Prefix() + name})
			decide(rec, pipeline.ReasonCreatedNeverStarted, time.Hour)

			if err := (&Remove{Workers: 1, RemoveVolumes: removeVolumes}).Process(t.Context(), env, batch); err != nil {
				t.Fatalf("remove: %v", err)
			}
			wantOutcome(t, rec, outcome(pipeline.OutcomeRemoved, ""))
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, err := eng.Client().VolumeInspect(ctx, volume, client.VolumeInspectOptions{})
			if err != nil && !cerrdefs.IsNotFound(err) {
				t.Fatalf("inspect volume %s: %v", volume, err)
			}
			if kept := err == nil; kept == removeVolumes {
				t.Errorf("remove_volumes = %v: anonymous volume kept = %v", removeVolumes, kept)
			}
		})
	}
}

// createWithVolume creates a never-started probe container with one
// anonymous volume, named and labelled for eng, and registers the
// volume's removal. The harness has no volumes, so this calls the API.
func createWithVolume(t *testing.T, eng *dockertest.Engine, name string) (id, volume string) {
	t.Helper()
	key, value := eng.Label()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := eng.Client().ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: eng.Prefix() + name,
		Config: &container.Config{
			Image:   eng.Image(t),
			Labels:  map[string]string{key: value},
			Volumes: map[string]struct{}{"/data": {}},
		},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	mounts := eng.Inspect(t, res.ID).Mounts
	if len(mounts) != 1 || mounts[0].Name == "" {
		t.Fatalf("container %s has mounts %+v, want one anonymous volume", name, mounts)
	}
	volume = mounts[0].Name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The harness removes the container first only if it still exists;
		// a volume in use cannot be removed, so remove the container here too.
		_, _ = eng.Client().ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true})
		if _, err := eng.Client().VolumeRemove(ctx, volume, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove volume %s: %v", volume, err)
		}
	})
	return res.ID, volume
}
