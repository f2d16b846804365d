// Package remove implements the "remove" stage: it removes the containers
// the pipeline decided to remove, on a bounded pool. Each container is
// inspected once more just before its removal and left alone if it changed
// since discovery (started again, restarted, renamed, relabelled). A running
// container is never forced, anonymous volumes are kept unless configured,
// and a container that is already gone counts as gone, not as a failure.
package remove

import (
	"context"
	_ "embed" // the sample stage block
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "remove"

//go:embed sample.hcl
var sample string

// Pool bounds and default.
const (
	DefaultWorkers = 4
	MaxWorkers     = 64
)

// Attribute names, for error messages.
const attrWorkers = "workers"

// Detail keys and values of DS01's container.remove event
// (docs/events.md).
const (
	detailContainer       = "container"
	detailReason          = "reason"
	detailAge             = "age"
	detailStoppedDuration = "stopped_duration"
	detailContainerType   = "container_type"

	defaultContainerType = "docker"
)

// Remove is the remove stage.
type Remove struct {
	Workers       int  `hcl:"workers,optional" doc:"Containers re-inspected and removed in parallel (1 to 64)."`
	RemoveVolumes bool `hcl:"remove_volumes,optional" doc:"Also remove the container's anonymous volumes (docker rm -v). Named volumes are never removed. Off by default: an anonymous volume may hold a user's only copy of their results."`

	// settleWait is settle's first pause; tests shorten it.
	settleWait time.Duration
}

// New returns a remove stage with its defaults.
func New() *Remove {
	return &Remove{Workers: DefaultWorkers}
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind: Kind,
		Summary: "Removes the containers decided for removal, on a bounded pool. Each is inspected again just before " +
			"its removal and left alone (outcome \"changed\") if its state, start or finish time, restart count, name " +
			"or labels differ from what discovery saw. A running container is never forced; anonymous volumes are " +
			"kept unless remove_volumes is set; a container already removed counts as \"gone\". Each removal's DS01 " +
			"container.remove event is written as it completes; after the removals it settles the GPU releases " +
			"(gpu.release events). Under the pipeline's lock, a journal beside the events file and a witness process " +
			"record the removals the engine carries out after the run died. In plan mode it only marks the " +
			"containers \"planned\".",
		Sample: sample,
		New:    func() pipeline.Stage { return New() },
		Contract: pipeline.Contract{
			Needs:  []pipeline.Field{pipeline.FieldFacts},
			Reads:  []pipeline.Field{pipeline.FieldOwner, pipeline.FieldType, pipeline.FieldExemption, pipeline.FieldVerdict, pipeline.FieldRelease},
			Writes: []pipeline.Field{pipeline.FieldRemoval, pipeline.FieldOutcome, pipeline.FieldEvents},
			// Settling the releases: a GPU whose container stayed goes
			// back to in_use.
			Amends: []pipeline.Field{pipeline.FieldRelease, pipeline.FieldGPUView},
			Acts:   true,
		},
		Witness: witness,
	})
}

// Init checks the configuration.
func (r *Remove) Init() error {
	if r.Workers < 1 || r.Workers > MaxWorkers {
		return &pipeline.AttrError{Attr: attrWorkers, Err: fmt.Errorf("must be between 1 and %d, got %d", MaxWorkers, r.Workers)}
	}
	return nil
}

// Targets returns the records the stage acts on, in batch order: a remove
// verdict on a record the engine lets anyone act on (not exempt, not live,
// facts read completely).
func Targets(recs []*pipeline.Record) []*pipeline.Record {
	var out []*pipeline.Record
	for _, rec := range recs {
		if rec.Verdict.Action == pipeline.ActionRemove && rec.Candidate() {
			out = append(out, rec)
		}
	}
	return out
}

// Process removes the targets. Per-container results go to Outcome; it
// returns an error only when ctx ended before every target was attempted.
func (r *Remove) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	targets := Targets(batch.Records)
	if env.Planning() {
		for _, rec := range targets {
			rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomePlanned}
		}
		pipeline.SettleReleases(ctx, env, batch) // the report shows what a run would release
		return nil
	}

	workers := r.Workers
	if workers < 1 {
		workers = DefaultWorkers
	}
	// Earlier runs' removals first: the engine may have carried out a
	// request after its run died (pending.go).
	reconcile(ctx, env)
	var journal *pendingJournal
	if len(targets) > 0 {
		journal = openPending(env)
	}
	defer func() {
		if journal.close() {
			compactPending(env)
		}
	}()
	poolErr := pipeline.ForEach(ctx, targets, workers, func(ctx context.Context, rec *pipeline.Record) {
		learnt := r.removeOne(ctx, env, rec, journal)
		logOutcome(env, rec)
		if rec.Outcome.Status == pipeline.OutcomeRemoved {
			// Recorded as soon as it happened (the run's events file takes
			// each line at once), so a run killed at any later point has
			// still recorded this removal.
			batch.Emit(Event(env, rec, time.Now()))
		}
		// Only after the line: a run killed in between leaves the
		// removal to its witness, which may then record it twice, never
		// not at all. A container gone with GPUs cleared for release
		// still owes their gpu.release lines, which SettleReleases
		// writes below.
		gone := rec.Outcome.Status == pipeline.OutcomeRemoved || rec.Outcome.Status == pipeline.OutcomeGone
		switch {
		case !learnt:
		case gone && len(rec.ReleaseGPUs) > 0:
			journal.gone(rec.Container.ID)
		default:
			journal.settled(rec.Container.ID)
		}
	})

	// Whatever happened to the run, the GPUs of the containers confirmed
	// gone are released now, and only theirs: each gpu.release line comes
	// after its container's removal.
	// Processes are signalled (kill_orphans) only here, after that
	// confirmation, and only on the GPUs released.
	pipeline.SettleReleases(ctx, env, batch)
	journal.settleGone()

	return pipeline.NotAttempted(ctx, poolErr, targets, "containers to remove", func(rec *pipeline.Record) bool {
		return rec.Outcome.Status == pipeline.OutcomeNone
	})
}

// removeOne re-inspects one container and removes it if nothing changed.
// It leaves Outcome empty when ctx ended before anything was asked of
// Docker for this container. It reports whether it asked for a removal
// and learnt its fate (the journal's entry is then settled).
func (r *Remove) removeOne(ctx context.Context, env *pipeline.Env, rec *pipeline.Record, journal *pendingJournal) bool {
	if ctx.Err() != nil {
		return false
	}
	now, err := inspect(ctx, env, rec.Container.ID)
	switch {
	case cerrdefs.IsNotFound(err):
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeGone}
		return false
	case err != nil && ctx.Err() != nil:
		return false // the run ended during the inspect: nothing was done
	case err != nil:
		rec.Outcome = failed("re-inspect", err)
		return false
	}
	if what, changed := dockerfacts.Changed(rec.Container, now); changed {
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeChanged, Error: what}
		return false
	}
	if ctx.Err() != nil {
		return false
	}

	// Noted before the request goes out: if this run dies before the
	// answer, the next run finds out what the engine did (pending.go).
	journal.asked(rec.Container.ID, Event(env, rec, time.Now()), rec.ReleaseGPUs)
	callCtx, cancel := env.Call(ctx)
	_, err = env.Docker.ContainerRemove(callCtx, rec.Container.ID, client.ContainerRemoveOptions{
		RemoveVolumes: r.RemoveVolumes,
		Force:         false, // never: a container that started again is the user's again
	})
	cancel()
	env.Stats.RemoveCalls.Add(1)
	switch {
	case err == nil:
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeRemoved}
	case cerrdefs.IsNotFound(err):
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeGone}
	case cerrdefs.IsConflict(err):
		rec.Outcome = conflict(ctx, env, rec, err)
	case answered(err):
		rec.Outcome = failed("remove", err)
	default:
		// No answer (the call timed out, the connection dropped): the
		// request may still have reached the engine and removed the
		// container.
		var known bool
		rec.Outcome, known = r.settle(ctx, env, rec, err)
		return known
	}
	return true
}

// answered reports whether an error is the engine's own answer to the
// request (an HTTP status it chose), which settles the request's fate.
// Anything else (a deadline, a refused or dropped connection, a broken
// answer, a proxy's 502 or 504) leaves the fate unknown.
func answered(err error) bool {
	for _, is := range []func(error) bool{
		cerrdefs.IsInvalidArgument, cerrdefs.IsNotFound, cerrdefs.IsConflict, cerrdefs.IsPermissionDenied,
		cerrdefs.IsUnauthorized, cerrdefs.IsFailedPrecondition, cerrdefs.IsInternal, cerrdefs.IsNotImplemented,
		cerrdefs.IsUnavailable, cerrdefs.IsResourceExhausted, cerrdefs.IsNotModified,
	} {
		if is(err) {
			return true
		}
	}
	return false
}

// Bounds of settle: how long it keeps asking (at least minSettle, or
// settleCalls Docker call deadlines), and how many answers "still there"
// it takes to conclude the removal did not happen.
const (
	settleCalls = 10
	minSettle   = 30 * time.Second
	settleLooks = 3
	// settleFirstWait is the pause before the second look; it doubles up
	// to settleMaxWait.
	settleFirstWait = 200 * time.Millisecond
	settleMaxWait   = 2 * time.Second
)

// settle finds out what became of a container whose removal got no
// answer. The engine may have removed it and lost the answer (a timeout or
// a dropped connection after the work was done, or a request still queued
// in a stalled engine), so a failure is never assumed: the engine is asked
// until it answers, for as long as the run's time allows. 404 means the
// removal happened: outcome removed, with its event. A container that
// changed meanwhile is left alone; one that is still there, unchanged,
// look after look, was not removed (the next run tries again). When the
// engine never answers, the removal failed with its fate unknown, and says
// so. The removal is never sent twice: one request, one truth. It reports
// whether the fate is known for good: a container removed or changed; not
// one still there, which the unanswered request may yet remove.
func (r *Remove) settle(ctx context.Context, env *pipeline.Env, rec *pipeline.Record, removeErr error) (pipeline.Outcome, bool) {
	sctx, cancel := settleContext(ctx, env)
	defer cancel()
	wait := r.settleWait
	if wait <= 0 {
		wait = settleFirstWait
	}
	looks := 0
	lastErr := removeErr
	for {
		now, err := inspect(sctx, env, rec.Container.ID)
		switch {
		case cerrdefs.IsNotFound(err):
			return pipeline.Outcome{Status: pipeline.OutcomeRemoved}, true
		case err != nil:
			lastErr = err // no answer yet: ask again
		case now.State == pipeline.StateRemoving:
			// A removal is under way: look again until it is done.
		default:
			if what, changed := dockerfacts.Changed(rec.Container, now); changed {
				return pipeline.Outcome{Status: pipeline.OutcomeChanged, Error: what}, true
			}
			if looks++; looks == settleLooks {
				// Failed for this run; but a request that got no answer
				// may still wait in the engine and be carried out later,
				// so its journal entry stays open for the witness and the
				// next run.
				return failed("remove", fmt.Errorf("%w; the container is still there", removeErr)), false
			}
		}
		if sctx.Err() != nil {
			break
		}
		select {
		case <-sctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, settleMaxWait)
	}
	// Left unsettled in the journal: the next run looks again.
	return failed("remove", fmt.Errorf("%w; whether the engine removed the container is unknown (it did not answer again: %v; the next run looks again)", removeErr, lastErr)), false
}

// settleContext bounds settle: while the run goes on, by the longer of
// settleCalls Docker call deadlines and minSettle (within the run's own
// deadline); after the run ended, by one more call deadline on a context
// of its own, so that a removal cut by the deadline still gets its look.
func settleContext(ctx context.Context, env *pipeline.Env) (context.Context, context.CancelFunc) {
	call := env.CallTimeout
	if call <= 0 {
		call = 30 * time.Second
	}
	if ctx.Err() != nil {
		return context.WithTimeout(context.WithoutCancel(ctx), call)
	}
	return context.WithTimeout(ctx, max(settleCalls*call, minSettle))
}

// conflictInProgress is the engine's text for a second removal of a
// container that is being removed ("removal of container X is already in
// progress", unchanged since Engine 1.x). The engine gives the two
// conflicts of a removal no distinct error class, so this one is told
// apart by its text; the other (the container is running, paused or
// restarting) is confirmed by asking the engine again.
const conflictInProgress = "already in progress"

// conflict classifies a 409 from ContainerRemove. Someone else removing
// the container means it is gone; a container that became live between
// the re-inspect and the removal is "changed"; anything else failed.
func conflict(ctx context.Context, env *pipeline.Env, rec *pipeline.Record, removeErr error) pipeline.Outcome {
	if strings.Contains(removeErr.Error(), conflictInProgress) {
		return pipeline.Outcome{Status: pipeline.OutcomeGone}
	}
	now, err := inspect(ctx, env, rec.Container.ID)
	switch {
	case cerrdefs.IsNotFound(err):
		return pipeline.Outcome{Status: pipeline.OutcomeGone}
	case err == nil && now.State.Live():
		what, _ := dockerfacts.Changed(rec.Container, now)
		return pipeline.Outcome{Status: pipeline.OutcomeChanged, Error: what}
	default:
		return failed("remove", removeErr)
	}
}

func inspect(ctx context.Context, env *pipeline.Env, id string) (pipeline.Container, error) {
	c, _, err := dockerfacts.Inspect(ctx, env, id)
	return c, err
}

func failed(op string, err error) pipeline.Outcome {
	return pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: op + ": " + err.Error()}
}

func logOutcome(env *pipeline.Env, rec *pipeline.Record) {
	if env.Log == nil || rec.Outcome.Status == pipeline.OutcomeNone {
		return
	}
	l := env.Log.WithField("container", rec.Container.Name).WithField("outcome", string(rec.Outcome.Status))
	if rec.Outcome.Error != "" {
		l = l.WithField("detail", rec.Outcome.Error)
	}
	if rec.Outcome.Status == pipeline.OutcomeFailed {
		l.Warn("remove failed")
		return
	}
	l.Debug("remove")
}

// Event returns DS01's container.remove event for a removed container
// (docs/events.md), with details in DS01's order. A
// created-never-started container has its age in whole minutes; any other
// reason has the time since it stopped in whole hours (rounded down) and
// the container type.
func Event(env *pipeline.Env, rec *pipeline.Record, at time.Time) events.Event {
	user := rec.Owner.Name
	if user == "" {
		user = pipeline.UnknownOwner
	}
	details := []events.Field{
		events.F(detailContainer, rec.Container.Name),
		events.F(detailReason, string(rec.Verdict.Reason)),
	}
	if rec.Verdict.Reason == pipeline.ReasonCreatedNeverStarted {
		details = append(details, events.F(detailAge, fmt.Sprintf("%dm", int64(rec.Verdict.Age/time.Minute))))
	} else {
		typ := rec.Type
		if typ == "" {
			typ = defaultContainerType
		}
		details = append(details,
			events.F(detailStoppedDuration, fmt.Sprintf("%dh", int64(rec.Verdict.Age/time.Hour))),
			events.F(detailContainerType, typ),
		)
	}
	return events.Event{
		Time:    at,
		Type:    events.ContainerRemove,
		User:    user,
		Source:  env.Source(),
		Details: details,
	}
}
