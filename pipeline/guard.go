package pipeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/moby/moby/client"
)

// guardedDocker is the Docker client the runner hands to stages. Calls
// that change a container (remove, stop, kill) are refused unless the
// container is one this run discovered and may act on; every other call
// passes through. It is the last line of the engine's invariants: a stage
// that sets an acting verdict and acts in the same breath still cannot
// touch a protected container, and a stage whose contract does not say it
// acts (Contract.Acts) cannot change any container at all.
type guardedDocker struct {
	Docker

	mu    sync.RWMutex
	byID  map[string]*Record
	stage StageInstance // the stage running now
}

// watch points the guard at the run's records and the stage about to
// run; the runner calls it before every stage (discover adds records).
func (g *guardedDocker) watch(recs []*Record, st StageInstance) {
	if g == nil {
		return
	}
	byID := make(map[string]*Record, len(recs))
	for _, rec := range recs {
		byID[rec.Container.ID] = rec
	}
	g.mu.Lock()
	g.byID = byID
	g.stage = st
	g.mu.Unlock()
}

// acting says why the running stage may not change containers, or "".
func (g *guardedDocker) acting() string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.stage.Contract.Acts {
		return ""
	}
	return fmt.Sprintf("stage %s does not act on containers (its kind's contract)", g.stage.Ref)
}

// RefusedError says the engine refused a call that would have changed a
// container no stage may change.
type RefusedError struct {
	Op, ID, Why string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s %s refused by the engine: %s", e.Op, e.ID, e.Why)
}

// check says why a container must not be changed, or "".
func (g *guardedDocker) check(id string, remove bool) string {
	g.mu.RLock()
	rec := g.byID[id]
	g.mu.RUnlock()
	switch {
	case rec == nil:
		return "not a container this run discovered"
	case rec.Exempt:
		return "exempt (" + rec.ExemptReason + ")"
	case rec.Incomplete != "":
		return "its facts could not be read"
	}
	if reason, ok := protectionReason(&rec.Container); ok {
		return "exempt (" + reason + ")"
	}
	if remove && rec.Container.State.Live() {
		return "container is " + string(rec.Container.State)
	}
	return ""
}

func (g *guardedDocker) ContainerRemove(ctx context.Context, id string, opts client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	if opts.Force {
		return client.ContainerRemoveResult{}, &RefusedError{Op: "remove", ID: id, Why: "a removal is never forced"}
	}
	if why := firstReason(g.acting(), g.check(id, true)); why != "" {
		return client.ContainerRemoveResult{}, &RefusedError{Op: "remove", ID: id, Why: why}
	}
	return g.Docker.ContainerRemove(ctx, id, opts)
}

// ContainerStop is guarded for stages that reach it by a type assertion
// (the lifecycle's stop stage) as well as through Docker.
func (g *guardedDocker) ContainerStop(ctx context.Context, id string, opts client.ContainerStopOptions) (client.ContainerStopResult, error) {
	if why := firstReason(g.acting(), g.check(id, false)); why != "" {
		return client.ContainerStopResult{}, &RefusedError{Op: "stop", ID: id, Why: why}
	}
	s, ok := g.Docker.(interface {
		ContainerStop(context.Context, string, client.ContainerStopOptions) (client.ContainerStopResult, error)
	})
	if !ok {
		return client.ContainerStopResult{}, fmt.Errorf("stop %s: the Docker client cannot stop containers", id)
	}
	return s.ContainerStop(ctx, id, opts)
}

// ContainerKill is guarded like ContainerStop.
func (g *guardedDocker) ContainerKill(ctx context.Context, id string, opts client.ContainerKillOptions) (client.ContainerKillResult, error) {
	if why := firstReason(g.acting(), g.check(id, false)); why != "" {
		return client.ContainerKillResult{}, &RefusedError{Op: "kill", ID: id, Why: why}
	}
	k, ok := g.Docker.(interface {
		ContainerKill(context.Context, string, client.ContainerKillOptions) (client.ContainerKillResult, error)
	})
	if !ok {
		return client.ContainerKillResult{}, fmt.Errorf("kill %s: the Docker client cannot signal containers", id)
	}
	return k.ContainerKill(ctx, id, opts)
}

// firstReason returns the first non-empty reason.
func firstReason(reasons ...string) string {
	for _, r := range reasons {
		if r != "" {
			return r
		}
	}
	return ""
}
