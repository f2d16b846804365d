// Package discover is the first stage of every pipeline: it lists the
// containers in scope with one Docker API call, inspects each of them once
// on a bounded pool, and takes the run's one snapshot of GPU state.
package discover

import (
	"context"
	_ "embed"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
)

//go:embed sample.hcl
var sample string

// Kind is the stage kind.
const Kind = "discover"

// DefaultWorkers is the inspect pool size. Measured on a 2-core host with
// Engine 20.10: more parallel inspects than this only queue inside dockerd.
const DefaultWorkers = 8

var validStates = []string{"created", "running", "paused", "restarting", "removing", "exited", "dead"}

// Stage is the discover stage.
type Stage struct {
	NamePrefix string            `hcl:"name_prefix,optional" doc:"only containers whose name starts with this text (anchored, not a regular expression)"`
	Labels     map[string]string `hcl:"labels,optional" doc:"only containers carrying all of these labels with these values"`
	States     []string          `hcl:"states,optional" doc:"only containers in these states (default: all)"`
	Workers    int               `hcl:"workers,optional" doc:"parallel inspect calls"`
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind: Kind,
		Summary: "Lists the containers in scope with one Docker API call and inspects each once on a bounded pool, " +
			"building one record per container (state, UTC timestamps, labels, GPU requests, NVIDIA_VISIBLE_DEVICES). " +
			"It also takes the run's single GPU snapshot and reads each container's GPU allocation records. " +
			"A container that vanishes between the list and its inspect is dropped, not an error.",
		Sample: sample,
		New:    func() pipeline.Stage { return &Stage{Workers: DefaultWorkers} },
		Contract: pipeline.Contract{
			Writes: []pipeline.Field{pipeline.FieldFacts, pipeline.FieldGPUClaims, pipeline.FieldGPUView},
			// A container whose inspect failed gets a skip verdict and a
			// failed outcome at once.
			Amends: []pipeline.Field{pipeline.FieldVerdict, pipeline.FieldOutcome},
		},
	})
}

// Init checks the configuration.
func (s *Stage) Init() error {
	if s.Workers < 1 || s.Workers > 256 {
		return &pipeline.AttrError{Attr: "workers", Err: fmt.Errorf("must be between 1 and 256, got %d", s.Workers)}
	}
	for _, st := range s.States {
		if !slices.Contains(validStates, st) {
			return &pipeline.AttrError{Attr: "states", Err: fmt.Errorf("unknown state %q (one of %s)", st, strings.Join(validStates, ", "))}
		}
	}
	return nil
}

// Process lists, inspects and snapshots.
func (s *Stage) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	filters := make(client.Filters)
	if s.NamePrefix != "" {
		// Docker matches names as unanchored regular expressions against
		// "/name"; anchoring it here narrows the list, and the exact prefix
		// test below makes the scope precise.
		filters.Add("name", "^/"+regexp.QuoteMeta(s.NamePrefix))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		filters.Add("label", k+"="+s.Labels[k])
	}
	if len(s.States) > 0 {
		filters.Add("status", s.States...)
	}
	list, err := dockerfacts.List(ctx, env, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}

	// A second discover stage widens the scope; a container both scopes
	// hold stays one record, or it would be judged, removed and logged
	// twice.
	known := make(map[string]bool, len(batch.Records))
	for _, r := range batch.Records {
		known[r.Container.ID] = true
	}
	var recs []*pipeline.Record
	for _, c := range list {
		if s.inScope(c) && !known[c.ID] {
			recs = append(recs, &pipeline.Record{Container: c})
		}
	}

	vanished := make([]bool, len(recs))
	index := make(map[*pipeline.Record]int, len(recs))
	for i, r := range recs {
		index[r] = i
	}
	err = pipeline.ForEach(ctx, recs, s.Workers, func(ctx context.Context, rec *pipeline.Record) {
		facts, warnings, err := dockerfacts.Inspect(ctx, env, rec.Container.ID)
		switch {
		case cerrdefs.IsNotFound(err):
			vanished[index[rec]] = true
		case err != nil:
			rec.Incomplete = fmt.Sprintf("inspect: %v", err)
			if env.Log != nil {
				env.Log.WithField("container", rec.Container.ID).WithError(err).Warn("inspect failed; container not judged")
			}
			// A failed inspect is a failed action of this run: exit 2.
			rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: rec.Incomplete}
			rec.Verdict = pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotDecided, Detail: "could not inspect"}
		default:
			rec.Container = facts
			for _, w := range warnings {
				rec.Warn(w)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("inspecting containers: %w", err)
	}
	for i, r := range recs {
		if !vanished[i] {
			batch.Records = append(batch.Records, r)
		} else if env.Log != nil {
			env.Log.WithField("container", r.Container.Name).Debug("container vanished before inspect")
		}
	}
	sort.Slice(batch.Records, func(i, j int) bool { return batch.Records[i].Container.Name < batch.Records[j].Container.Name })

	snap, err := env.GPU.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("GPU snapshot: %w", err)
	}
	if !snap.Available && env.GPURequired {
		return fmt.Errorf("GPU view required but unavailable: %s", snap.Unavailable)
	}
	batch.GPU = snap
	for _, rec := range batch.Records {
		claims, all, warnings := pipeline.Claims(&rec.Container, snap)
		rec.GPUs, rec.GPUAll = claims, all
		for _, w := range warnings {
			rec.Warn(w)
		}
	}
	return nil
}

func (s *Stage) inScope(c pipeline.Container) bool {
	if !strings.HasPrefix(c.Name, s.NamePrefix) {
		return false
	}
	for k, v := range s.Labels {
		if c.Labels[k] != v {
			return false
		}
	}
	return true
}
