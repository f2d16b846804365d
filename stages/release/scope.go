package release

import (
	"context"
	"fmt"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
)

// scopeWorkers bounds the inspects of live containers outside the batch,
// as discover's pool does (DefaultWorkers there).
const scopeWorkers = 8

// maxNamed bounds the failed inspects a warning names.
const maxNamed = 3

// liveStates are the states listed when looking for claimants outside
// the batch: those of pipeline.State.Live.
var liveStates = []string{string(pipeline.StateRunning), string(pipeline.StatePaused), string(pipeline.StateRestarting)}

// outside is what the engine says of the live containers outside the
// batch, for the GPUs about to be released.
type outside struct {
	// holders maps a lower-case UUID to the live containers outside the
	// batch whose Docker records claim it.
	holders map[string][]pipeline.Container
	// unknown says why some live container's claims could not be read
	// ("" when every one was): any GPU about to be released may then be
	// its, so none is reported released.
	unknown string
}

// outsideHolders finds the live containers (running, paused, restarting)
// that are neither in the batch nor held out of it by a filter, and reads
// the GPU allocation records of each, for the UUIDs in want (lower case).
//
// discover lists only its scope (name_prefix, labels, states), and
// DeviceRequests are only in inspect answers, so a GPU claimed by a
// container about to be removed and by a live one outside that scope would
// otherwise read released. It costs one list call; a live container outside
// the batch (none in a whole-host pipeline) costs one inspect, on a bounded
// pool, each within one call deadline. The claims are read the way discover
// reads them (pipeline.Claims), and count as they do for a record of the
// batch: a recorded claim on the UUID itself. Without an engine to ask (a
// test's environment) there is nothing to find.
func outsideHolders(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch, snap *nvml.Snapshot, want map[string]bool, log logrus.FieldLogger) outside {
	out := outside{holders: map[string][]pipeline.Container{}}
	if env.Docker == nil || len(want) == 0 {
		return out
	}
	inBatch := make(map[string]bool, len(batch.Records)+len(batch.Held))
	for _, rec := range batch.Records {
		inBatch[rec.Container.ID] = true
	}
	for _, rec := range batch.Held {
		inBatch[rec.Container.ID] = true
	}
	list, err := dockerfacts.List(ctx, env, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("status", liveStates...)})
	if err != nil {
		out.unknown = fmt.Sprintf("listing the live containers: %v", err)
		return out
	}
	var others []*pipeline.Record
	for _, c := range list {
		if !inBatch[c.ID] {
			others = append(others, &pipeline.Record{Container: c})
		}
	}
	if len(others) == 0 {
		return out
	}
	log.WithField("containers", len(others)).Debug("reading the GPU claims of live containers outside this pipeline's scope")

	type answer struct {
		facts pipeline.Container
		err   error
	}
	answers := make([]answer, len(others))
	index := make(map[*pipeline.Record]int, len(others))
	for i, r := range others {
		index[r] = i
	}
	poolErr := pipeline.ForEach(ctx, others, min(scopeWorkers, len(others)), func(ctx context.Context, rec *pipeline.Record) {
		facts, _, err := dockerfacts.Inspect(ctx, env, rec.Container.ID)
		answers[index[rec]] = answer{facts: facts, err: err}
	})
	if poolErr != nil {
		out.unknown = fmt.Sprintf("reading the live containers outside this pipeline's scope: %v", poolErr)
		return out
	}
	var failed []string
	for i, a := range answers {
		name := others[i].Container.Name
		switch {
		case cerrdefs.IsNotFound(a.err):
			continue // gone since the list: it holds nothing
		case a.err != nil:
			failed = append(failed, fmt.Sprintf("inspect %s: %v", name, a.err))
			continue
		}
		claims, _, warnings := pipeline.Claims(&a.facts, snap)
		if (snap == nil || !snap.Available) && (len(warnings) > 0 || slices.ContainsFunc(claims, func(g pipeline.GPUClaim) bool { return g.UUID == "" })) {
			// Without a GPU view an index or slot names no UUID: it may
			// be any of them.
			failed = append(failed, fmt.Sprintf("%s claims GPUs by index or slot, which cannot be mapped to UUIDs without a GPU view", name))
			continue
		}
		for _, g := range claims {
			key := strings.ToLower(g.UUID)
			if g.UUID != "" && want[key] && !slices.ContainsFunc(out.holders[key], func(c pipeline.Container) bool { return c.ID == a.facts.ID }) {
				out.holders[key] = append(out.holders[key], a.facts)
			}
		}
	}
	if len(failed) > maxNamed {
		failed = append(failed[:maxNamed], fmt.Sprintf("and %d more", len(failed)-maxNamed))
	}
	out.unknown = strings.Join(failed, "; ")
	return out
}
