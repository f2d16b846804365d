package remove

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
)

// Races against the real engine that remove_integration_test.go does not
// cover (started again, started after the re-inspect and removed by someone
// else are there): a container renamed between discovery and removal.

// A renamed container is someone's again (`docker rename` is how a user
// claims a container back, or how another tool hands it on): the decision
// was made about the old name, so the container is left alone and reported
// changed, with both names.
func TestIntegrationRenamedMeanwhileIsNotRemoved(t *testing.T) {
	eng := dockertest.New(t)
	c := eng.Create(t, dockertest.Spec{Name: "renamed", Args: []string{"exit", "3"}, Start: true, Wait: true})

	env := engineEnv(t, eng, eng.Client())
	batch, byName := discoverOwn(t, eng, env)
	rec := record(t, byName, c)
	decide(rec, pipeline.ReasonHoldExpired, 2*time.Hour)

	newName := c.Name + "-mine"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := eng.Client().ContainerRename(ctx, c.ID, client.ContainerRenameOptions{NewName: newName}); err != nil {
		t.Fatalf("rename behind the stage's back: %v", err)
	}

	if err := New().Process(t.Context(), env, batch); err != nil {
		t.Fatalf("remove: %v", err)
	}
	want := "renamed " + c.Name + " -> " + newName
	if rec.Outcome.Status != pipeline.OutcomeChanged || !strings.Contains(rec.Outcome.Error, want) {
		t.Errorf("outcome %+v, want changed: %s", rec.Outcome, want)
	}
	if got := env.Stats.RemoveCalls.Load(); got != 0 {
		t.Errorf("Stats.RemoveCalls = %d, want 0", got)
	}
	if !exists(t, eng, c.ID) {
		t.Error("the renamed container was removed")
	}
	if evs := batch.TakeEvents(); len(evs) != 0 {
		t.Errorf("events for a container that was not removed: %v", evs)
	}
}
