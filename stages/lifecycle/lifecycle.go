// Package lifecycle implements the "lifecycle" stage: DS01's idle and
// max-runtime decisions for running GPU containers (check-idle-containers.sh
// and enforce-max-runtime.sh), with their bugs fixed (docs/lifecycle.md).
//
// Paused containers are judged like running ones, as DS01 judged every
// `docker ps` name: a paused container keeps its GPUs (its memory stays
// allocated), its runtime clock runs (pausing leaves StartedAt alone), and
// its frozen processes do no work, so its evidence reads idle.
//
// For each running or paused, non-exempt container with a GPU it judges
// the run's evidence (from the measure stage) against the owner's
// thresholds, keeps an idle streak and an idle clock in the state store,
// and decides: keep
// (with the reason: active, in_grace_period, idle_streak, idle_warning,
// runtime_warning, exempt) or stop (idle_timeout, runtime_exceeded).
// Warnings are decided once per container run at 80 %/95 % of the idle
// timeout and 75 %/90 % of the max runtime, and a stop needs both warnings
// given at earlier runs and the full notice period since the first one.
//
// The decision itself is judge, a pure function; the stage gathers its
// inputs (state, policy, high demand, the keep-alive file) and writes the
// state back once per run (never in plan mode). The state of a container
// outside the run's records (another pipeline's scope on the same
// state_dir, or a container gone since the last run) is pruned only when
// the engine confirms that container run is over (prune.go).
package lifecycle

import (
	"context"
	_ "embed" // the sample stage block
	"errors"
	"fmt"
	"math"
	"path"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
	"github.com/ds01/ds01-pipe/pipeline/state"
	"github.com/ds01/ds01-pipe/policy"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "lifecycle"

//go:embed sample.hcl
var sample string

// Defaults.
const (
	DefaultStateDir      = "/var/lib/ds01-pipe"
	DefaultKeepAliveFile = "/workspace/.keep-alive"
	typeDevcontainer     = "devcontainer"
)

// Event types of the lifecycle (reference 9.2).
const (
	EventRuntimeExempt = "maintenance.runtime_exempt"
	EventHighDemand    = "system.high_demand"
)

// StatPather is the part of the Docker API the keep-alive check uses (the
// archive API's HEAD: no process runs in the container).
type StatPather interface {
	ContainerStatPath(ctx context.Context, id string, opts client.ContainerStatPathOptions) (client.ContainerStatPathResult, error)
}

// Stage is the lifecycle stage.
type Stage struct {
	StateDir      string `hcl:"state_dir,optional" doc:"Folder of the state store (lifecycle.db): idle streaks, last activity, warnings given, the previous stats sample, per container ID and StartedAt. Must be owned by root (or by the user running ds01-pipe) and writable by no one else; created 0700 if missing. Plan reads it and never writes it. Pipelines with different scopes may share it: the state of a container outside a run's records is dropped only when the engine confirms that container is gone, not running or started again."`
	KeepAliveFile string `hcl:"keepalive_file,optional" doc:"Path inside the container of DS01's keep-alive file: modified within policies.keepalive_max_duration_h (24h), it prevents an idle stop. Read through the Docker archive API, never by running anything in the container. \"\" turns it off."`
}

// New returns a lifecycle stage with its defaults.
func New() *Stage {
	return &Stage{StateDir: DefaultStateDir, KeepAliveFile: DefaultKeepAliveFile}
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind: Kind,
		Summary: "DS01's idle and max-runtime decisions for running (or paused) GPU containers. From the measure stage's evidence " +
			"and the state store it keeps an idle streak (idle_detection_window runs, missing evidence never counts) " +
			"and an idle clock from the last activity; it warns at 80 %/95 % of the owner's idle timeout and at " +
			"75 %/90 % of the max runtime, once per container run, and decides stop only after both warnings at " +
			"earlier runs and the full notice period. Grace period after start, devcontainers exempt from idle only, " +
			"null = no limit, lifecycle exemptions with expiry, high-demand mode (system.high_demand), keep-alive file.",
		Sample: sample,
		Contract: pipeline.Contract{
			Needs:  []pipeline.Field{pipeline.FieldFacts, pipeline.FieldLifecycle},
			Reads:  []pipeline.Field{pipeline.FieldOwner, pipeline.FieldType, pipeline.FieldExemption, pipeline.FieldGPUClaims, pipeline.FieldGPUView},
			Writes: []pipeline.Field{pipeline.FieldVerdict, pipeline.FieldEvents},
			// Signals, clocks and notices on measure's facts.
			Amends: []pipeline.Field{pipeline.FieldLifecycle},
		},
		New: func() pipeline.Stage { return New() },
	})
}

// Init checks the configuration before anything runs.
func (s *Stage) Init() error {
	if err := state.CheckDir(s.StateDir); err != nil {
		return &pipeline.AttrError{Attr: "state_dir", Err: err}
	}
	if s.KeepAliveFile != "" && !path.IsAbs(s.KeepAliveFile) {
		return &pipeline.AttrError{Attr: "keepalive_file", Err: fmt.Errorf("must be an absolute path inside the container, got %q", s.KeepAliveFile)}
	}
	return nil
}

// Process judges every running or paused GPU container.
func (s *Stage) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	if env.Now.IsZero() {
		return errors.New("lifecycle: the run has no clock (Env.Now is zero)")
	}
	now := env.Now.UTC()
	model := env.Policy
	if model == nil {
		model = policy.Default()
	}

	var store *state.Store
	var err error
	if env.Planning() {
		store, err = state.OpenReadOnly(s.StateDir)
	} else {
		store, err = state.Open(s.StateDir)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	if store != nil && store.Recovered != "" && env.Log != nil {
		env.Log.WithField("stage", Kind).Warnf("the state store was damaged and is set aside as %s; every container starts fresh", store.Recovered)
	}
	held, err := store.Load()
	if err != nil {
		return err
	}
	last, hadRun := held.LastRun()

	d := highDemand(batch, model)
	if d.On && !env.Planning() && (!hadRun || !last.HighDemand) {
		batch.Emit(highDemandEvent(env, d))
	}

	next := map[string]state.Entry{}
	// seen holds the containers this run has facts of (its records, and
	// those a filter held out): their entries are decided from those
	// facts; every other entry is left to carryOver.
	seen := map[string]bool{}
	for _, rec := range batch.Held {
		seen[rec.Container.ID] = true
		keepUnjudged(rec, held.Entries, next)
	}
	for _, rec := range batch.Records {
		if err := ctx.Err(); err != nil {
			return err
		}
		seen[rec.Container.ID] = true
		if v, skip := skipped(rec); skip {
			if rec.Verdict.Action == pipeline.ActionNone {
				rec.Verdict = v
			}
			keepUnjudged(rec, held.Entries, next)
			continue
		}
		key := state.Key{ID: rec.Container.ID, StartedAt: rec.Container.StartedAt}.String()
		var prev *state.Entry
		if e, ok := held.Entries[key]; ok {
			prev = &e
		}
		j := judge(rec, inputs{Now: now, Prev: prev, Policy: model, Demand: d})
		if j.IdleStopDue && s.KeepAliveFile != "" {
			if keep, why := s.keepAlive(ctx, env, rec, now, model.KeepAliveMax()); keep {
				j.Verdict.Action = pipeline.ActionKeep
				j.Verdict.Detail += "; " + why
				rec.Lifecycle.StopFor = ""
				if j.RuntimeStop != nil {
					// The keep-alive file holds off idle stops only.
					j.Verdict = *j.RuntimeStop
					rec.Lifecycle.StopFor = pipeline.ReasonRuntimeExceeded
				}
			}
		}
		rec.Verdict = j.Verdict
		if rec.Verdict.Action == pipeline.ActionStop {
			kind := pipeline.NoticeRuntimeStop
			if rec.Lifecycle.StopFor == pipeline.ReasonIdleTimeout {
				kind = pipeline.NoticeIdleStop
			}
			idleLimit := model.IdleTimeout(ownerOf(rec), rec.Type)
			if rec.Lifecycle.StopFor == pipeline.ReasonIdleTimeout {
				idleLimit.Duration = rec.Verdict.Limit
			}
			rec.Lifecycle.Notices = append(rec.Lifecycle.Notices,
				noticeFor(kind, rec, rec.Lifecycle, idleLimit, model.MaxRuntime(ownerOf(rec), rec.Type), d))
		}
		if j.RuntimeExempt != "" && !env.Planning() {
			batch.Emit(runtimeExemptEvent(env, rec, j.RuntimeExempt))
		}
		next[key] = j.Entry
	}
	if env.Planning() {
		return nil
	}
	carryOver(ctx, env, held.Entries, seen, next)
	return store.Save(next, state.Run{Now: now, Wall: time.Now().UTC(), Pipeline: env.Pipeline, HighDemand: d.On})
}

// keepUnjudged keeps the memory of a container the run has facts of but
// does not judge (a record skipped, or one a filter held out), from held
// into next; an entry it does not keep is pruned.
func keepUnjudged(rec *pipeline.Record, held, next map[string]state.Entry) {
	switch {
	case rec.Incomplete != "":
		// Listed but not read this run: its memory is kept for the next
		// run (its StartedAt is unknown).
		for k, e := range held {
			if e.ContainerID == rec.Container.ID {
				next[k] = e
			}
		}
	case rec.Container.State.Live():
		// Still running (or paused), not judged this run (a container
		// whose GPU is seen only through NVML processes, between two
		// jobs; one a filter left out): the same container run keeps its
		// memory, or its warnings would be given again and a stop
		// deferred each time it comes back. An entry of an earlier
		// StartedAt is pruned: that container run is over.
		key := state.Key{ID: rec.Container.ID, StartedAt: rec.Container.StartedAt}.String()
		if e, ok := held[key]; ok {
			next[key] = e
		}
	}
	// A container that is not live any more has ended its container run:
	// a later start has a new StartedAt, so its entries could never be
	// read again.
}

// skipped returns the verdict of a record the lifecycle does not judge.
func skipped(rec *pipeline.Record) (pipeline.Verdict, bool) {
	switch {
	case rec.Incomplete != "":
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotDecided, Detail: rec.Incomplete}, true
	case !judged(rec.Container.State):
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotACandidate, Detail: "container is " + string(rec.Container.State)}, true
	case rec.Exempt:
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonExempt, Detail: rec.ExemptReason}, true
	case !rec.HasGPU() && (rec.Lifecycle == nil || !rec.Lifecycle.GPUSeen):
		// GPU access means ephemeral enforcement; without a GPU a
		// container may run forever (DS01's core principle).
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNoGPU}, true
	}
	return pipeline.Verdict{}, false
}

// judged reports whether containers in state s are judged: running ones,
// and paused ones. A paused container still holds its GPUs and its clocks
// run; only a stop frees them (DS01's candidates were `docker ps` names,
// paused ones included).
func judged(s pipeline.State) bool {
	return s == pipeline.StateRunning || s == pipeline.StatePaused
}

func ownerOf(rec *pipeline.Record) string {
	if rec.Owner.Name == "" {
		return pipeline.UnknownOwner
	}
	return rec.Owner.Name
}

// keepAlive reports whether the keep-alive file prevents an idle stop. A
// file that cannot be read is no permission to stop: the container is
// kept (missing evidence never stops a container). The archive API reads
// a paused container's filesystem as a running one's: it runs nothing in
// the container, so the frozen processes do not matter.
func (s *Stage) keepAlive(ctx context.Context, env *pipeline.Env, rec *pipeline.Record, now time.Time, maxAge policy.Limit) (bool, string) {
	sp, ok := env.Docker.(StatPather)
	if !ok {
		return true, "kept: the keep-alive file cannot be checked (no archive API)"
	}
	callCtx, cancel := env.Call(ctx)
	defer cancel()
	res, err := sp.ContainerStatPath(callCtx, rec.Container.ID, client.ContainerStatPathOptions{Path: s.KeepAliveFile})
	switch {
	case cerrdefs.IsNotFound(err):
		return false, ""
	case err != nil:
		return true, fmt.Sprintf("kept: the keep-alive file could not be checked: %v", err)
	}
	age := now.Sub(res.Stat.Mtime)
	if maxAge.Unlimited || age < maxAge.Duration {
		return true, fmt.Sprintf("kept: %s was modified %s ago (within %s)", s.KeepAliveFile, human(max(age, 0)), maxAge)
	}
	return false, ""
}

// highDemand computes DS01's high-demand mode from the run's GPU view:
// the GPU units (whole GPUs, and MIG slices instead of their parent)
// claimed by running or paused containers, over all units (a paused
// container keeps its GPUs: DS01 counted it as allocated). Without NVML
// it is off.
func highDemand(batch *pipeline.Batch, m *policy.Model) demand {
	hd := m.HighDemand()
	d := demand{Reduction: hd.Reduction.Value, Threshold: hd.Threshold.Value}
	snap := batch.GPU
	if snap == nil || !snap.Available || hd.Off {
		return d
	}
	units := map[string]bool{}
	for _, dev := range snap.Devices {
		if len(dev.MIG) == 0 {
			units[strings.ToLower(dev.UUID)] = true
		}
		for _, mg := range dev.MIG {
			units[strings.ToLower(mg.UUID)] = true
		}
	}
	claimed := map[string]bool{}
	for _, rec := range batch.Records {
		if !judged(rec.Container.State) {
			continue
		}
		for _, g := range rec.GPUs {
			if g.Source == pipeline.ClaimNVML {
				continue // use without an allocation record is no allocation
			}
			if u := strings.ToLower(g.UUID); units[u] {
				claimed[u] = true
			}
		}
		if rec.GPUAll {
			for u := range units {
				claimed[u] = true
			}
		}
	}
	d.Total, d.Allocated = len(units), len(claimed)
	if d.Total == 0 {
		return d
	}
	// DS01 truncates the ratio to two decimals before comparing.
	d.Ratio = math.Floor(float64(d.Allocated)/float64(d.Total)*100) / 100
	d.On = d.Ratio >= d.Threshold
	return d
}

func highDemandEvent(env *pipeline.Env, d demand) events.Event {
	return events.Event{
		Time:   time.Now(),
		Type:   EventHighDemand,
		Source: env.Source(),
		Details: []events.Field{
			events.F("allocated", d.Allocated),
			events.F("total", d.Total),
			events.F("ratio", d.Ratio),
			events.F("threshold", d.Threshold),
			events.F("idle_reduction", d.Reduction),
		},
	}
}

func runtimeExemptEvent(env *pipeline.Env, rec *pipeline.Record, why string) events.Event {
	return events.Event{
		Time:   time.Now(),
		Type:   EventRuntimeExempt,
		User:   ownerOf(rec),
		Source: env.Source(),
		Details: []events.Field{
			events.F("container", rec.Container.Name),
			events.F("reason", why),
		},
	}
}
