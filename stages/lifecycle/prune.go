package lifecycle

import (
	"context"
	"slices"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/sourcegraph/conc/pool"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/state"
)

// pruneWorkers bounds the inspects of stored containers outside the run's
// records, as discover's default pool does. There are few of them: the
// containers gone since the last run, or those of another pipeline with a
// different scope that shares the state_dir.
const pruneWorkers = 8

// carryOver adds to next the entries of held whose container is not in
// the run's records (seen) unless the engine confirms that container run
// is over: the container is gone (404), is not live any more, or was
// started again (a new StartedAt, so a new key). Such entries belong to
// containers outside this run's scope (a narrower name prefix or label
// filter than another pipeline's on the same state_dir), or to containers
// gone since the last run. An engine that cannot be asked (a transport
// error, the run's deadline) keeps the entry: more memory is never less
// notice, and the next run that can ask prunes it.
func carryOver(ctx context.Context, env *pipeline.Env, held map[string]state.Entry, seen map[string]bool, next map[string]state.Entry) {
	byID := map[string][]string{} // container ID -> its keys outside the run
	for k, e := range held {
		if seen[e.ContainerID] || e.ContainerID == "" {
			// Decided from the run's facts; an entry with no ID names no
			// container and is pruned.
			continue
		}
		byID[e.ContainerID] = append(byID[e.ContainerID], k)
	}
	if len(byID) == 0 {
		return
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	type answer struct {
		c     pipeline.Container
		err   error
		asked bool
	}
	answers := make([]answer, len(ids)) // each task writes its own; Wait publishes them
	p := pool.New().WithContext(ctx).WithMaxGoroutines(pruneWorkers)
	for i, id := range ids {
		if ctx.Err() != nil {
			break // not asked: kept
		}
		p.Go(func(ctx context.Context) error {
			c, _, err := dockerfacts.Inspect(ctx, env, id)
			answers[i] = answer{c: c, err: err, asked: true}
			return nil
		})
	}
	_ = p.Wait() // the tasks return no error; one not run leaves its entries kept

	var unknown int
	var firstErr error
	for i, id := range ids {
		a := answers[i]
		for _, k := range byID[id] {
			e := held[k]
			why := pruneReason(e, a.c, a.err, a.asked)
			if why == "" {
				next[k] = e
				continue
			}
			if env.Log != nil {
				env.Log.WithField("stage", Kind).WithField("container", e.Name).
					Debugf("state of %s (started %s) pruned: %s", id, e.StartedAt.UTC().Format(time.RFC3339), why)
			}
		}
		if !a.asked || (a.err != nil && !cerrdefs.IsNotFound(a.err)) {
			unknown++
			if firstErr == nil {
				firstErr = a.err
			}
		}
	}
	if unknown > 0 && env.Log != nil {
		if firstErr == nil {
			firstErr = ctx.Err() // not asked: the run ended first
		}
		env.Log.WithField("stage", Kind).Warnf("kept the state of %d container(s) outside this run, which the engine could not be asked about (%v); the next run asks again", unknown, firstErr)
	}
}

// pruneReason says why the entry e of a container outside the run is
// pruned, given the engine's answer about that container now (c, or err;
// asked false: not asked), or "" to keep it. Anything short of the
// engine's confirmation keeps it.
func pruneReason(e state.Entry, c pipeline.Container, err error, asked bool) string {
	switch {
	case !asked:
		return ""
	case cerrdefs.IsNotFound(err):
		return "the container is gone"
	case err != nil:
		return ""
	case c.ID != e.ContainerID:
		// The ID named another container (a name or prefix equal to the
		// old ID): the one the entry was about is gone.
		return "the container is gone"
	case !c.State.Live():
		// Its container run ended; a later start has a new StartedAt,
		// hence a new key, so the entry could never be read again.
		return "the container is " + string(c.State)
	case c.StartedAt.IsZero():
		// A live container always has a start; one that did not parse is
		// no evidence.
		return ""
	case !c.StartedAt.Equal(e.StartedAt):
		return "the container was started again"
	}
	return ""
}
