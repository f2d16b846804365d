package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sourcegraph/conc/pool"
)

// StageRef names a stage of a pipeline: its kind and, when one pipeline
// uses a kind twice, a name.
type StageRef struct {
	Kind string
	Name string
}

func (r StageRef) String() string {
	if r.Name == "" {
		return r.Kind
	}
	return r.Kind + "." + r.Name
}

// StageInstance is a configured stage of a loaded pipeline.
type StageInstance struct {
	Ref     StageRef
	Stage   Stage
	Timeout time.Duration // 0: bounded only by the run's deadline
	// Contract is the stage's declared contract (Spec.ContractOf), set by
	// the loader. The runner reads Finalizer from it, and brings stages
	// that write the exemption forward (see Run).
	Contract Contract
}

// finalizes reports whether the stage runs even after a failure: a
// property of its kind (Contract.Finalizer), not of the stage value.
func (st StageInstance) finalizes() bool { return st.Contract.Finalizer }

// StageTiming is how long a stage took.
type StageTiming struct {
	Ref      StageRef
	Duration time.Duration
	Err      error
}

// Result is what a run produced.
type Result struct {
	Batch   *Batch
	Timings []StageTiming
	Started time.Time
	Elapsed time.Duration
	// Partial lists the problems that did not stop the run but mean it
	// did not do everything it should (exit code 2).
	Partial []error
}

// PartialError is returned by a stage whose problem must not stop the
// run, but must make it end as "done, but something failed" (exit 2): an
// audit line that could not be written after the removals happened.
type PartialError struct {
	Err error
}

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Failed counts the containers whose action failed and the stages that
// reported a partial failure.
func (r *Result) Failed() int {
	return r.Tally().Failed + len(r.Partial)
}

// finalizeTimeout bounds the stages that run after a failure.
const finalizeTimeout = 30 * time.Second

// Run runs the stages in order over one batch. The context carries the
// run's deadline. When a stage fails, later stages are skipped except
// finalizers (the log stage), which still record what was done.
//
// The engine keeps the invariants no stage may break, whatever the
// pipeline's stages and their order (see enforceInvariants): before and
// after every stage, a container labelled ds01.protected=true or
// ds01.monitoring=true is exempt, an exempt or half-read container keeps
// no acting verdict (remove, stop), and a live container keeps no remove
// verdict. As soon as a stage has written the facts (discover), the stages
// of the pipeline that write the exemption (exempt) are applied too,
// wherever they stand, so their configured exemptions hold before any
// later stage acts. And the Docker client stages get refuses to remove or
// stop a container that is exempt, or that this run did not discover, and
// refuses both to any stage whose contract does not say it acts.
//
// Hooks observe every stage (progress lines, the apply gate): Before runs
// just before it, After right after it returned and before the engine
// enforces its invariants, so a hook may narrow verdicts but never widen
// what the invariants allow.
func Run(ctx context.Context, env *Env, stages []StageInstance, hooks ...Hook) (*Result, error) {
	started := time.Now()
	res := &Result{Batch: &Batch{Started: started, sink: env.Events}, Started: started}
	var guard *guardedDocker
	if env.Docker != nil {
		guard = &guardedDocker{Docker: env.Docker}
		env.Docker = guard
		defer func() { env.Docker = guard.Docker }()
	}
	return run(ctx, env, stages, hooks, res, guard)
}

// Hook observes a run around every stage. Progress and the apply gate
// are hooks, so stages stay what the pipeline file says they are.
type Hook interface {
	Before(env *Env, st StageInstance, b *Batch)
	After(env *Env, st StageInstance, b *Batch)
}

// stageEnv is the environment one stage gets: the run's, with a logger
// tagged with the stage, so every line a stage logs says which it was.
func stageEnv(env *Env, st StageInstance) *Env {
	if env.Log == nil {
		return env
	}
	e := *env
	e.Log = env.Log.WithField("stage", st.Ref.String())
	return &e
}

func run(ctx context.Context, env *Env, stages []StageInstance, hooks []Hook, res *Result, guard *guardedDocker) (*Result, error) {
	var runErr error
	for i, st := range stages {
		if runErr != nil && !st.finalizes() {
			continue
		}
		enforceInvariants(res.Batch)
		guard.watch(res.Batch.Records, st)
		senv := stageEnv(env, st)
		for _, h := range hooks {
			h.Before(senv, st, res.Batch)
		}
		// Timed from before its deadline is set: a stage cut by its own
		// timeout then shows at least that long (timedOutStage names it).
		start := time.Now()
		stageCtx, cancel := stageContext(ctx, st, runErr != nil)
		err := st.Stage.Process(stageCtx, senv, res.Batch)
		if err == nil && st.Contract.writes(FieldFacts) {
			err = applyExemptions(stageCtx, env, res.Batch, stages[i+1:])
		}
		cancel()
		for _, h := range hooks {
			h.After(senv, st, res.Batch)
		}
		enforceInvariants(res.Batch)
		if err == nil && runErr == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			err = fmt.Errorf("stage %s: %w", st.Ref, err)
		}
		var partial *PartialError
		if errors.As(err, &partial) {
			res.Partial = append(res.Partial, err)
			err = nil
		}
		res.Timings = append(res.Timings, StageTiming{Ref: st.Ref, Duration: time.Since(start), Err: err})
		res.Batch.Timings = res.Timings
		if env.Log != nil {
			env.Log.WithField("stage", st.Ref.String()).WithField("duration", time.Since(start).Round(time.Millisecond)).Debug("stage done")
		}
		if err != nil && runErr == nil {
			runErr = err
		}
	}
	res.Elapsed = time.Since(res.Started)
	return res, runErr
}

// applyExemptions runs, right after the facts are known, the later stages
// that write the exemption. Exemptions only ever get added (no stage
// clears one), so running such a stage early, and again in its place, is
// safe; what it buys is that its configured exemptions hold even when the
// pipeline puts it after a stage that acts.
func applyExemptions(ctx context.Context, env *Env, b *Batch, later []StageInstance) error {
	for _, st := range later {
		if !st.Contract.writes(FieldExemption) {
			continue
		}
		if err := st.Stage.Process(ctx, stageEnv(env, st), b); err != nil {
			return fmt.Errorf("exemptions of stage %s: %w", st.Ref, err)
		}
	}
	return nil
}

func stageContext(ctx context.Context, st StageInstance, finalizing bool) (context.Context, context.CancelFunc) {
	if finalizing {
		// The run's own context may be dead already; what was done must
		// still be logged, so give the finalizer a short deadline of its own.
		return context.WithTimeout(context.WithoutCancel(ctx), finalizeTimeout)
	}
	if st.Timeout > 0 {
		return context.WithTimeout(ctx, st.Timeout)
	}
	return context.WithCancel(ctx)
}

// DS01's protection labels. The engine reads them itself: a container
// carrying either, with the value "true" exactly, is exempt in every
// pipeline, with or without an exempt stage.
const (
	LabelMonitoring = "ds01.monitoring"
	LabelProtected  = "ds01.protected"
)

// protectionReason returns why the labels alone exempt a container.
func protectionReason(c *Container) (string, bool) {
	for _, key := range []string{LabelMonitoring, LabelProtected} {
		if c.LabelTrue(key) {
			return "label " + key + "=true", true
		}
	}
	return "", false
}

// enforceInvariants is the engine's guarantee, independent of any stage's
// code: protected and monitoring containers are exempt; an exempt or
// half-read container keeps no acting verdict; a live container is never
// removed (stopping one is what the lifecycle pipeline does).
func enforceInvariants(b *Batch) {
	for _, rec := range b.Records {
		if !rec.Exempt {
			if reason, ok := protectionReason(&rec.Container); ok {
				rec.Exempt, rec.ExemptReason = true, reason
			}
		}
		if !rec.Verdict.Action.Acts() {
			continue
		}
		switch {
		case rec.Exempt:
			rec.Verdict = Verdict{Action: ActionSkip, Reason: ReasonExempt, Detail: rec.ExemptReason}
		case rec.Incomplete != "":
			rec.Verdict = Verdict{Action: ActionSkip, Reason: ReasonNotDecided, Detail: "facts incomplete: " + rec.Incomplete}
		case rec.Verdict.Action == ActionRemove && rec.Container.State.Live():
			rec.Verdict = Verdict{Action: ActionSkip, Reason: ReasonNotACandidate, Detail: "container is " + string(rec.Container.State)}
		}
	}
}

// ForEach runs fn for every record on a pool of at most workers goroutines.
// It stops submitting once ctx is done and returns ctx's error then; fn
// reports per-record problems on the record itself.
func ForEach(ctx context.Context, recs []*Record, workers int, fn func(context.Context, *Record)) error {
	if workers < 1 {
		workers = 1
	}
	p := pool.New().WithContext(ctx).WithMaxGoroutines(workers)
	for _, rec := range recs {
		if ctx.Err() != nil {
			break
		}
		p.Go(func(ctx context.Context) error {
			fn(ctx, rec)
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// ErrDeadline reports whether err came from the run's deadline.
func ErrDeadline(err error) bool {
	return errors.Is(err, context.DeadlineExceeded)
}

// NotAttempted is the error of an acting stage whose pool ended before it
// tried every target: how many of targets are still pending, out of all,
// and why (the context's end, else the pool's error). It is nil when none
// is pending. what names the action, as in "containers to remove".
func NotAttempted(ctx context.Context, poolErr error, targets []*Record, what string, pending func(*Record) bool) error {
	n := 0
	for _, rec := range targets {
		if pending(rec) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	cause := ctx.Err()
	if cause == nil {
		cause = poolErr
	}
	if cause == nil {
		// A target is skipped only when ctx has ended; never nil in practice.
		cause = errors.New("stopped early")
	}
	return fmt.Errorf("%d of %d %s were not attempted: %w", n, len(targets), what, cause)
}
