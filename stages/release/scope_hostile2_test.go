package release

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
)

// An owner's container outside the scope with a hostile claim label: a
// 64 KiB ds01.gpu.uuids of junk, indices that do not exist and lower-case
// look-alikes, with one real UUID buried in it, and a name with control
// characters. With a GPU view the junk claims nothing and blocks nothing:
// the real UUID stays in use, the other GPU is released, and the check
// costs one list and one inspect.
func TestOutsideHostileClaimLabel(t *testing.T) {
	var parts []string
	for i := 0; len(strings.Join(parts, ",")) < 64<<10; i++ {
		switch i % 4 {
		case 0:
			parts = append(parts, fmt.Sprintf("junk-%d", i))
		case 1:
			parts = append(parts, fmt.Sprintf("%d", 100+i)) // an index this host lacks
		case 2:
			parts = append(parts, strings.ToLower(gpuB)) // not a UUID form the engine writes
		default:
			parts = append(parts, " , ")
		}
	}
	parts = append(parts[:len(parts)/2], append([]string{gpuA}, parts[len(parts)/2:]...)...)
	c := liveOutside(9)
	c.Name = "evil\n\x1b[31mname"
	c.Labels = map[string]string{pipeline.LabelGPUUUIDs: strings.Join(parts, ",")}

	h := &hostDocker{live: []pipeline.Container{c}}
	res := runScoped(t, pipeline.ModeRun, h, host2(), exited(1, "alice", gpuA, gpuB))
	must(t, res.err)
	if got := reportRow(t, res.batch, gpuA).Status; got != pipeline.GPUInUse {
		t.Errorf("%s: %s, want in_use (the buried claim counts)", gpuA, got)
	}
	if got := reportRow(t, res.batch, gpuB).Status; got != pipeline.GPUReleased {
		t.Errorf("%s: %s, want released (junk and look-alikes claim nothing with a view)", gpuB, got)
	}
	if h.lists != 1 || h.inspects != 1 {
		t.Errorf("list %d, inspect %d, want 1 and 1", h.lists, h.inspects)
	}
}
