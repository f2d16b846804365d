package pipeline

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"
)

// The lifecycle stages reach these Docker calls by type assertion: the
// guard passes the reading ones through and refuses a write into a
// container no stage may change (a notice file, through the archive API).

func (g *guardedDocker) ContainerStats(ctx context.Context, id string, opts client.ContainerStatsOptions) (client.ContainerStatsResult, error) {
	s, ok := g.Docker.(interface {
		ContainerStats(context.Context, string, client.ContainerStatsOptions) (client.ContainerStatsResult, error)
	})
	if !ok {
		return client.ContainerStatsResult{}, fmt.Errorf("stats %s: the Docker client offers no stats", id)
	}
	return s.ContainerStats(ctx, id, opts)
}

func (g *guardedDocker) ContainerStatPath(ctx context.Context, id string, opts client.ContainerStatPathOptions) (client.ContainerStatPathResult, error) {
	s, ok := g.Docker.(interface {
		ContainerStatPath(context.Context, string, client.ContainerStatPathOptions) (client.ContainerStatPathResult, error)
	})
	if !ok {
		return client.ContainerStatPathResult{}, fmt.Errorf("stat %s: the Docker client has no archive API", id)
	}
	return s.ContainerStatPath(ctx, id, opts)
}

func (g *guardedDocker) CopyFromContainer(ctx context.Context, id string, opts client.CopyFromContainerOptions) (client.CopyFromContainerResult, error) {
	c, ok := g.Docker.(interface {
		CopyFromContainer(context.Context, string, client.CopyFromContainerOptions) (client.CopyFromContainerResult, error)
	})
	if !ok {
		return client.CopyFromContainerResult{}, fmt.Errorf("copy from %s: the Docker client has no archive API", id)
	}
	return c.CopyFromContainer(ctx, id, opts)
}

func (g *guardedDocker) CopyToContainer(ctx context.Context, id string, opts client.CopyToContainerOptions) (client.CopyToContainerResult, error) {
	if why := g.check(id, false); why != "" {
		return client.CopyToContainerResult{}, &RefusedError{Op: "copy to", ID: id, Why: why}
	}
	c, ok := g.Docker.(interface {
		CopyToContainer(context.Context, string, client.CopyToContainerOptions) (client.CopyToContainerResult, error)
	})
	if !ok {
		return client.CopyToContainerResult{}, fmt.Errorf("copy to %s: the Docker client has no archive API", id)
	}
	return c.CopyToContainer(ctx, id, opts)
}
