package dockertest

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"
)

// ProbeImage is Engine.Image for programs that are not tests: it returns
// the reference of the probe image ("ds01-pipe-probe:<hash>") in the engine
// cli talks to, building the probe and importing it first if the engine
// does not have it. The build, the tag and the import lock are Engine.Image's,
// so a benchmark and the tests share one image per engine.
//
// It is the one entry point of this package meant for a non-test binary
// (the benchmark driver in internal/bench); the rest needs a testing.TB.
func ProbeImage(ctx context.Context, cli *client.Client) (string, error) {
	arch, err := buildProbe()
	if err != nil {
		return "", fmt.Errorf("build the probe image: %w", err)
	}
	ref := ImageRepo + ":" + arch.tag
	ctx, cancel := context.WithTimeout(ctx, importTimeout)
	defer cancel()
	if err := ensureImage(ctx, cli, ref, arch.tar); err != nil {
		return "", fmt.Errorf("import the probe image %s into %s: %w", ref, cli.DaemonHost(), err)
	}
	return ref, nil
}
