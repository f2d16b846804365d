package dockerfacts_test

import (
	"context"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
)

// The undecoded answers of a run's engine (pipeline.Engine) give exactly
// the facts the client's decoded answers give, on a real engine: the list
// and each container's inspect, GPU requests, environment and times
// included.
func TestRawAnswersGiveTheSameFacts(t *testing.T) {
	eng := dockertest.New(t)
	key, val := eng.Label()
	eng.Create(t, dockertest.Spec{Name: "gpu", GPUs: []string{"GPU-5678", "1"},
		Labels: map[string]string{"ds01.user": "alice", "odd key": "ü"}, Env: []string{"A=1", "NVIDIA_VISIBLE_DEVICES=GPU-5678"}})
	eng.Create(t, dockertest.Spec{Name: "exited", Args: []string{"exit", "3"}, Start: true, Wait: true})
	eng.Create(t, dockertest.Spec{Name: "all", GPUsAll: true})

	cli := eng.Client()
	decoded := &pipeline.Env{Docker: cli, Stats: &pipeline.Stats{}}
	raw := &pipeline.Env{Docker: pipeline.NewEngine(cli), Stats: &pipeline.Stats{}}
	if pipeline.RawAnswersOf(raw.Docker) == nil {
		t.Fatal("pipeline.Engine has no raw answers")
	}
	opts := client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", key+"="+val)}
	ctx := context.Background()
	want, err := dockerfacts.List(ctx, decoded, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dockerfacts.List(ctx, raw, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 3 {
		t.Fatalf("listed %d containers, want 3", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List: raw differs from decoded (-decoded +raw):\n%s", diff)
	}
	for _, c := range want {
		w, ww, err := dockerfacts.Inspect(ctx, decoded, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		g, gw, err := dockerfacts.Inspect(ctx, raw, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, g); diff != "" || !cmp.Equal(ww, gw) {
			t.Errorf("Inspect %s: raw differs from decoded (-decoded +raw):\n%s", c.Name, diff)
		}
		if g.Created.IsZero() || g.Name != c.Name || g.ID != c.ID {
			t.Errorf("Inspect %s: %+v", c.Name, g)
		}
		if c.Name == eng.Prefix()+"gpu" && (g.VisibleDevices != "GPU-5678" || len(g.DeviceRequests) != 1 || g.Labels["odd key"] != "ü") {
			t.Errorf("GPU facts: %+v", g)
		}
	}
	if _, _, err := dockerfacts.Inspect(ctx, raw, "no-such-container-"+val); !cerrdefs.IsNotFound(err) {
		t.Errorf("raw inspect of a missing container: %v, want not found", err)
	}
	if n, m := raw.Stats.ListCalls.Load(), raw.Stats.InspectCalls.Load(); n != 1 || m != 4 {
		t.Errorf("counted %d list and %d inspect calls, want 1 and 4", n, m)
	}
}
