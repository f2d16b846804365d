package pipelinetest

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
)

// Docker is an in-memory engine. It records every call, lists and
// inspects what it holds, removes what it is asked to, answers 404 for
// what it does not hold and 409 for removing a live container without
// force, as dockerd does. Stop and kill make a container exited.
type Docker struct {
	mu         sync.Mutex
	containers map[string]container.InspectResponse
	order      []string
	calls      []string
	removeOpts []client.ContainerRemoveOptions

	// InspectErr and RemoveErr, keyed by ID, fail those calls. Set them
	// before the engine is in use; FailInspect changes one during a run.
	InspectErr map[string]error
	RemoveErr  map[string]error
	// LostAnswer: the removal is done, then this error is returned, as
	// when the answer is lost on the way back (a timeout, a dropped
	// connection).
	LostAnswer map[string]error
	// AfterInspect and AfterRemove run after a call was answered (outside
	// the lock), to change the world between two calls.
	AfterInspect func(id string)
	AfterRemove  func(id string)
}

// NewDocker returns an engine holding cs.
func NewDocker(cs ...container.InspectResponse) *Docker {
	d := &Docker{
		containers: make(map[string]container.InspectResponse),
		InspectErr: make(map[string]error),
		RemoveErr:  make(map[string]error),
		LostAnswer: make(map[string]error),
	}
	for _, c := range cs {
		d.Add(c)
	}
	return d
}

// Add puts a container into the engine.
func (d *Docker) Add(c container.InspectResponse) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.containers[c.ID]; !ok {
		d.order = append(d.order, c.ID)
	}
	d.containers[c.ID] = c
}

func (d *Docker) call(s string) {
	d.mu.Lock()
	d.calls = append(d.calls, s)
	d.mu.Unlock()
}

// ContainerList lists every container held, in the order added.
func (d *Docker) ContainerList(ctx context.Context, _ client.ContainerListOptions) (client.ContainerListResult, error) {
	d.call("list")
	if err := ctx.Err(); err != nil {
		return client.ContainerListResult{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var res client.ContainerListResult
	for _, id := range d.order {
		c, ok := d.containers[id]
		if !ok {
			continue
		}
		var labels map[string]string
		if c.Config != nil {
			labels = maps.Clone(c.Config.Labels)
		}
		res.Items = append(res.Items, container.Summary{
			ID:     c.ID,
			Names:  []string{c.Name},
			Labels: labels,
			State:  c.State.Status,
		})
	}
	return res, nil
}

// ContainerInspect answers what the engine holds, a copy.
func (d *Docker) ContainerInspect(ctx context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	res, err := d.inspect(ctx, id)
	if d.AfterInspect != nil {
		d.AfterInspect(id)
	}
	return res, err
}

func (d *Docker) inspect(ctx context.Context, id string) (client.ContainerInspectResult, error) {
	d.call("inspect " + id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return client.ContainerInspectResult{}, err
	}
	if err := d.InspectErr[id]; err != nil {
		return client.ContainerInspectResult{}, err
	}
	c, ok := d.containers[id]
	if !ok {
		return client.ContainerInspectResult{}, cerrdefs.ErrNotFound.WithMessage("No such container: " + id)
	}
	return client.ContainerInspectResult{Container: clone(c)}, nil
}

// ContainerRemove removes a container that is not live (or any, forced).
func (d *Docker) ContainerRemove(ctx context.Context, id string, opts client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	err := d.remove(ctx, id, opts)
	if d.AfterRemove != nil {
		d.AfterRemove(id)
	}
	return client.ContainerRemoveResult{}, err
}

func (d *Docker) remove(ctx context.Context, id string, opts client.ContainerRemoveOptions) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "remove "+id)
	d.removeOpts = append(d.removeOpts, opts)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.RemoveErr[id]; err != nil {
		return err
	}
	c, ok := d.containers[id]
	if !ok {
		return cerrdefs.ErrNotFound.WithMessage("No such container: " + id)
	}
	if pipeline.State(c.State.Status).Live() && !opts.Force {
		return cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot remove container %q: container is %s: stop the container before removing or force remove", c.Name, c.State.Status))
	}
	delete(d.containers, id)
	return d.LostAnswer[id]
}

// ContainerStop makes a container exited.
func (d *Docker) ContainerStop(ctx context.Context, id string, _ client.ContainerStopOptions) (client.ContainerStopResult, error) {
	return client.ContainerStopResult{}, d.exit(ctx, "stop", id)
}

// ContainerKill makes a container exited.
func (d *Docker) ContainerKill(ctx context.Context, id string, _ client.ContainerKillOptions) (client.ContainerKillResult, error) {
	return client.ContainerKillResult{}, d.exit(ctx, "kill", id)
}

func (d *Docker) exit(ctx context.Context, op, id string) error {
	d.call(op + " " + id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	c, ok := d.containers[id]
	if !ok {
		return cerrdefs.ErrNotFound.WithMessage("No such container: " + id)
	}
	c = clone(c)
	c.State.Status = container.StateExited
	c.State.Running = false
	c.State.Pid = 0
	c.State.FinishedAt = Now.Format(time.RFC3339Nano)
	d.containers[id] = c
	return nil
}

// Set changes a container held by the engine.
func (d *Docker) Set(id string, change func(*container.InspectResponse)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := clone(d.containers[id])
	change(&c)
	d.containers[id] = c
}

// Delete drops a container, as another client removing it would.
func (d *Docker) Delete(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.containers, id)
}

// FailInspect makes every later inspect of id fail with err (nil: answer
// again); safe while the engine is in use.
func (d *Docker) FailInspect(id string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		delete(d.InspectErr, id)
		return
	}
	d.InspectErr[id] = err
}

// RemoveOpts returns the options of every removal asked for so far.
func (d *Docker) RemoveOpts() []client.ContainerRemoveOptions {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]client.ContainerRemoveOptions(nil), d.removeOpts...)
}

// Calls returns every call so far, as "op id" ("list" alone).
func (d *Docker) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

// Count returns how many calls start with prefix ("remove ", "inspect ").
func (d *Docker) Count(prefix string) int {
	n := 0
	for _, c := range d.Calls() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// Has reports whether the engine still holds a container.
func (d *Docker) Has(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.containers[id]
	return ok
}

func clone(c container.InspectResponse) container.InspectResponse {
	if c.State != nil {
		st := *c.State
		c.State = &st
	}
	if c.Config != nil {
		cfg := *c.Config
		cfg.Labels = maps.Clone(cfg.Labels)
		c.Config = &cfg
	}
	return c
}

// Response is what the engine reports for a container of the kit: r's
// facts (Exited, Running) as an inspect answer.
func Response(r *pipeline.Record) container.InspectResponse {
	c := r.Container
	never := "0001-01-01T00:00:00Z"
	ts := func(t time.Time) string {
		if t.IsZero() {
			return never
		}
		return t.Format(time.RFC3339Nano)
	}
	state := c.State
	if state == "" {
		state = pipeline.StateExited
	}
	return container.InspectResponse{
		ID:      c.ID,
		Name:    "/" + c.Name,
		Image:   c.Image,
		Created: ts(c.Created),
		State: &container.State{
			Status:     container.ContainerState(state),
			Running:    state == pipeline.StateRunning,
			Pid:        c.PID,
			StartedAt:  ts(c.StartedAt),
			FinishedAt: ts(c.FinishedAt),
			ExitCode:   c.ExitCode,
		},
		RestartCount: c.RestartCount,
		Config:       &container.Config{Image: c.Image, Labels: maps.Clone(c.Labels)},
		HostConfig:   &container.HostConfig{},
	}
}
