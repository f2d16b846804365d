package discover

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

func TestInitRejectsBadConfig(t *testing.T) {
	for _, s := range []*Stage{{Workers: 0}, {Workers: 8, States: []string{"stopped"}}} {
		if err := s.Init(); err == nil {
			t.Errorf("%+v: want an error", s)
		}
	}
}

// TestDiscoverRealEngine checks scoping by prefix and labels, one list call
// and one inspect per container, and the facts read from the engine.
func TestDiscoverRealEngine(t *testing.T) {
	eng := dockertest.New(t)
	key, val := eng.Label()
	a := eng.Create(t, dockertest.Spec{Name: "a", Labels: map[string]string{"team": "x"}, Env: []string{"NVIDIA_VISIBLE_DEVICES=GPU-1234"}})
	b := eng.Create(t, dockertest.Spec{Name: "b", Args: []string{"exit", "2"}, Start: true, Wait: true})
	// A stock daemon can create but not start a GPU container.
	c := eng.Create(t, dockertest.Spec{Name: "c", GPUs: []string{"GPU-5678"}})
	other := dockertest.New(t) // different prefix: out of scope
	other.Create(t, dockertest.Spec{Name: "a"})

	gpu, err := nvml.Open(nvml.Options{Backend: "none"})
	if err != nil {
		t.Fatal(err)
	}
	env := &pipeline.Env{Now: time.Now(), Docker: eng.Client(), GPU: gpu, Log: logrus.New(), Stats: &pipeline.Stats{}}
	batch := &pipeline.Batch{}
	s := &Stage{NamePrefix: eng.Prefix(), Labels: map[string]string{key: val}, Workers: 4}
	if err := s.Process(context.Background(), env, batch); err != nil {
		t.Fatal(err)
	}
	if len(batch.Records) != 3 {
		t.Fatalf("%d records, want 3", len(batch.Records))
	}
	if env.Stats.ListCalls.Load() != 1 || env.Stats.InspectCalls.Load() != 3 {
		t.Errorf("list=%d inspect=%d, want 1 and 3", env.Stats.ListCalls.Load(), env.Stats.InspectCalls.Load())
	}
	byID := map[string]*pipeline.Record{}
	for _, r := range batch.Records {
		byID[r.Container.ID] = r
	}
	ra, rb, rc := byID[a.ID], byID[b.ID], byID[c.ID]
	if ra == nil || rb == nil || rc == nil {
		t.Fatalf("records %v", byID)
	}
	if ra.Container.State != pipeline.StateCreated || !ra.Container.StartedAt.IsZero() || ra.Container.Created.IsZero() || ra.Container.Labels["team"] != "x" {
		t.Errorf("created container: %+v", ra.Container)
	}
	if !ra.Container.HasVisibleDevices || ra.Container.VisibleDevices != "GPU-1234" || len(ra.GPUs) != 1 {
		t.Errorf("env GPU claim not read: %+v %+v", ra.Container, ra.GPUs)
	}
	if rb.Container.State != pipeline.StateExited || rb.Container.ExitCode != 2 || rb.Container.FinishedAt.IsZero() || rb.Container.StartedAt.IsZero() {
		t.Errorf("exited container: %+v", rb.Container)
	}
	if rb.Container.FinishedAt.Location() != time.UTC || rb.Container.FinishedAt.Nanosecond() == 0 && rb.Container.StartedAt.Nanosecond() == 0 {
		t.Errorf("timestamps should be UTC with sub-second precision: %v %v", rb.Container.StartedAt, rb.Container.FinishedAt)
	}
	if len(rc.GPUs) != 1 || rc.GPUs[0].UUID != "GPU-5678" || rc.GPUs[0].Source != pipeline.ClaimDeviceRequest {
		t.Errorf("device request claim: %+v", rc.GPUs)
	}
	if batch.GPU == nil || batch.GPU.Available {
		t.Errorf("GPU snapshot %+v", batch.GPU)
	}
}

// TestSecondDiscoverAddsOnlyNewContainers: a pipeline may hold two
// discover stages to widen its scope; a container both scopes hold is one
// record, never two (two records would be judged, removed and logged
// twice, the second removal reported as gone).
func TestSecondDiscoverAddsOnlyNewContainers(t *testing.T) {
	eng := dockertest.New(t)
	key, val := eng.Label()
	a := eng.Create(t, dockertest.Spec{Name: "a", Labels: map[string]string{"team": "x"}})
	b := eng.Create(t, dockertest.Spec{Name: "b"})
	gpu, err := nvml.Open(nvml.Options{Backend: "none"})
	if err != nil {
		t.Fatal(err)
	}
	env := &pipeline.Env{Now: time.Now(), Docker: eng.Client(), GPU: gpu, Log: logrus.New(), Stats: &pipeline.Stats{}}
	batch := &pipeline.Batch{}
	first := &Stage{NamePrefix: eng.Prefix(), Labels: map[string]string{key: val, "team": "x"}, Workers: 2}
	second := &Stage{NamePrefix: eng.Prefix(), Labels: map[string]string{key: val}, Workers: 2}
	for _, s := range []*Stage{first, second} {
		if err := s.Process(context.Background(), env, batch); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for _, r := range batch.Records {
		seen[r.Container.ID]++
	}
	if len(batch.Records) != 2 || seen[a.ID] != 1 || seen[b.ID] != 1 {
		t.Errorf("%d records (%v), want a and b once each", len(batch.Records), seen)
	}
}
