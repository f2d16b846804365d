// Package stop implements the "stop" stage: it stops the running (or
// paused) containers the lifecycle decided to stop, gracefully (docker
// stop with the type's sigterm_grace_s), on a bounded pool. Each container
// is inspected just before its stop and left alone if it is not the same
// container run any more. A stop counts only once the engine confirms the
// container is no longer running; only then is its event queued.
//
// The engine's stop of a paused container sends the signal and unpauses
// it so that the signal is handled; after the grace it kills it as it
// kills a running one.
//
// An idle-stopped container is handed on for removal in the same run: its
// verdict becomes remove (reason idle_stopped), so the remove stage that
// follows re-checks and removes it, and the release stage between them
// releases its GPUs (DS01 removed idle-stopped containers at once). A
// runtime-stopped container is only stopped: the cleanup holds apply.
package stop

import (
	"context"
	_ "embed" // the sample stage block
	"errors"
	"fmt"
	"log/syslog"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/ds01/ds01-pipe/internal/printable"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "stop"

//go:embed sample.hcl
var sample string

// Defaults and bounds.
const (
	// DefaultWorkers is high because a stop mostly waits: a container
	// whose main process ignores SIGTERM (a shell as PID 1) takes its
	// whole grace, up to a minute, and the run has a deadline.
	DefaultWorkers = 16
	MaxWorkers     = 64
	// MaxGrace bounds a stop's grace: a run has a deadline of minutes.
	MaxGrace = 10 * time.Minute
)

// DS01's syslog tags and event types (reference 9.2, 9.3).
const (
	TagIdle            = "ds01-idle"
	TagMaxRuntime      = "ds01-maxruntime"
	EventRuntimeKill   = "maintenance.runtime_kill"
	defaultContainerTy = "docker"
)

// Stopper is the part of the Docker API the stage uses.
type Stopper interface {
	ContainerStop(ctx context.Context, id string, opts client.ContainerStopOptions) (client.ContainerStopResult, error)
}

// SyslogWriter is the part of *syslog.Writer the stage uses.
type SyslogWriter interface {
	Notice(m string) error
	Close() error
}

// Stage is the stop stage.
type Stage struct {
	Workers int  `hcl:"workers,optional" doc:"Containers stopped in parallel (1 to 64)."`
	Syslog  bool `hcl:"syslog,optional" doc:"Send DS01's syslog line for each confirmed stop: ds01-idle for idle stops, ds01-maxruntime for runtime stops (facility user, priority notice)."`
	// ProcRoot is where /proc is mounted, for the GPU check after idle stops.
	ProcRoot string `hcl:"proc_root,optional" doc:"Where /proc is mounted (an absolute path): after idle stops, GPU processes are mapped to containers through <proc_root>/<pid>/cgroup to confirm nothing of a stopped container still runs on its GPUs."`

	dial func(tag string) (SyslogWriter, error)
}

// New returns a stop stage with its defaults.
func New() *Stage { return &Stage{Workers: DefaultWorkers, Syslog: true, ProcRoot: "/proc"} }

func init() {
	pipeline.Register(pipeline.Spec{
		Kind: Kind,
		Summary: "Stops the running (or paused) containers decided for a stop, gracefully: docker stop with the type's " +
			"sigterm_grace_s, the call's deadline covering that grace. Each container is inspected first and left alone " +
			"(outcome \"changed\") if it is not the same run any more; a stop counts (outcome \"stopped\") only when the " +
			"engine confirms it, and only then are maintenance.idle_kill / maintenance.runtime_kill queued and the " +
			"ds01-idle / ds01-maxruntime syslog lines sent. An idle-stopped container gets a remove verdict (idle_stopped) " +
			"for the remove stage that follows; a runtime-stopped one is left to the cleanup holds. Never forced, never on " +
			"an exempt container; in plan mode it only marks the containers \"planned\".",
		Sample: sample,
		Contract: pipeline.Contract{
			Needs:  []pipeline.Field{pipeline.FieldFacts, pipeline.FieldVerdict},
			Reads:  []pipeline.Field{pipeline.FieldOwner, pipeline.FieldType, pipeline.FieldExemption, pipeline.FieldLifecycle},
			Writes: []pipeline.Field{pipeline.FieldOutcome, pipeline.FieldEvents, pipeline.FieldRelease},
			// Read from the engine after the stops: a stopped container's
			// facts say so, the GPU view is taken again, and an
			// idle-stopped container is handed to remove (remove verdict).
			Amends: []pipeline.Field{pipeline.FieldFacts, pipeline.FieldVerdict, pipeline.FieldGPUView},
			Acts:   true,
		},
		New: func() pipeline.Stage { return New() },
	})
}

// Init checks the configuration.
func (s *Stage) Init() error {
	if s.Workers < 1 || s.Workers > MaxWorkers {
		return &pipeline.AttrError{Attr: "workers", Err: fmt.Errorf("must be between 1 and %d, got %d", MaxWorkers, s.Workers)}
	}
	if !filepath.IsAbs(s.ProcRoot) {
		return &pipeline.AttrError{Attr: "proc_root", Err: fmt.Errorf("must be an absolute path, got %q", s.ProcRoot)}
	}
	return nil
}

// Targets are the records the stage acts on: a stop verdict on a running
// or paused, non-exempt container whose facts were read completely.
func Targets(recs []*pipeline.Record) []*pipeline.Record {
	var out []*pipeline.Record
	for _, rec := range recs {
		if rec.Verdict.Action == pipeline.ActionStop && !rec.Exempt && rec.Incomplete == "" &&
			stoppable(rec.Container.State) {
			out = append(out, rec)
		}
	}
	return out
}

// Process stops the targets.
func (s *Stage) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	targets := Targets(batch.Records)
	if env.Planning() {
		for _, rec := range targets {
			rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomePlanned}
		}
		return nil
	}
	if len(targets) == 0 {
		return nil
	}
	stopper, ok := env.Docker.(Stopper)
	if !ok {
		return errors.New("stop: the Docker client cannot stop containers")
	}
	poolErr := pipeline.ForEach(ctx, targets, s.Workers, func(ctx context.Context, rec *pipeline.Record) {
		s.stopOne(ctx, env, stopper, rec)
	})

	var lines []line
	var idleStopped []*pipeline.Record
	for _, rec := range targets {
		if rec.Outcome.Status != pipeline.OutcomeStopped && rec.Outcome.Status != pipeline.OutcomeGone {
			continue
		}
		idle := rec.Lifecycle != nil && rec.Lifecycle.StopFor == pipeline.ReasonIdleTimeout
		batch.Emit(Event(env, rec, time.Now()))
		lines = append(lines, syslogLine(rec, idle))
		if idle {
			// Gone too: a --rm container the engine removed on its stop
			// still has its GPU release recorded.
			idleStopped = append(idleStopped, rec)
		}
	}
	if len(idleStopped) > 0 {
		refreshGPU(ctx, env, batch)
		s.handOver(batch.GPU, idleStopped)
	}
	if s.Syslog {
		s.sendSyslog(env, lines)
	}
	return pipeline.NotAttempted(ctx, poolErr, targets, "containers to stop", func(rec *pipeline.Record) bool {
		return rec.Outcome.Status == pipeline.OutcomeNone && rec.Verdict.Action == pipeline.ActionStop
	})
}

// stopOne re-inspects one container, stops it and confirms the stop.
func (s *Stage) stopOne(ctx context.Context, env *pipeline.Env, stopper Stopper, rec *pipeline.Record) {
	if ctx.Err() != nil {
		return
	}
	before, err := inspect(ctx, env, rec.Container.ID)
	switch {
	case cerrdefs.IsNotFound(err):
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeChanged, Error: "container is gone"}
		return
	case err != nil && ctx.Err() != nil:
		return
	case err != nil:
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: "re-inspect: " + err.Error()}
		return
	}
	idleStop := rec.Lifecycle == nil || rec.Lifecycle.StopFor != pipeline.ReasonRuntimeExceeded
	if what, changed := sameRun(rec.Container, before, idleStop); changed {
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeChanged, Error: what}
		return
	}

	grace := time.Duration(0)
	if rec.Lifecycle != nil {
		grace = min(max(rec.Lifecycle.StopGrace, 0), MaxGrace)
	}
	secs := int(grace / time.Second)
	// The engine waits the grace, then kills: the call's deadline must
	// cover both, or a slow container would read as a failed stop.
	callCtx, cancel := context.WithTimeout(ctx, grace+callTimeout(env))
	_, err = stopper.ContainerStop(callCtx, rec.Container.ID, client.ContainerStopOptions{Timeout: &secs})
	cancel()
	switch {
	case cerrdefs.IsNotFound(err):
		// Removed while stopping (--rm): it is not running any more.
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeGone}
		rec.Container.State = pipeline.StateRemoving
		return
	case err != nil:
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: "stop: " + err.Error()}
		return
	}

	after, err := inspect(ctx, env, rec.Container.ID)
	switch {
	case cerrdefs.IsNotFound(err):
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeGone}
		rec.Container.State = pipeline.StateRemoving
	case err != nil:
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: "stop not confirmed: " + err.Error()}
	case after.State.Live():
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: "stop not confirmed: container is " + string(after.State)}
	default:
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeStopped}
		// The facts now describe the stopped container, as the remove
		// stage's re-inspect will see it.
		rec.Container.State = after.State
		rec.Container.FinishedAt = after.FinishedAt
		rec.Container.PID = 0
	}
}

func callTimeout(env *pipeline.Env) time.Duration {
	if env.CallTimeout > 0 {
		return env.CallTimeout
	}
	return 30 * time.Second
}

func inspect(ctx context.Context, env *pipeline.Env, id string) (pipeline.Container, error) {
	c, _, err := dockerfacts.Inspect(ctx, env, id)
	return c, err
}

// stoppable reports whether a container in state s is one the lifecycle
// stops: running, or paused (it holds its GPUs as a running one does).
func stoppable(s pipeline.State) bool {
	return s == pipeline.StateRunning || s == pipeline.StatePaused
}

// sameRun reports what makes now a different container run than the one
// decided on: a stop acts only on the run the decision was about.
//
// Between a pause and its resumption the run is the same (StartedAt does
// not move), but the two directions are not alike. A container paused at
// the decision and running now was resumed by its owner: the decision
// read a frozen container, and a resumption is the owner's hand on it, so
// it is left for the next run to measure again. A container running at
// the decision and paused now is stopped: pausing is no activity (its
// processes are frozen, so the idle evidence the decision rests on still
// holds, and the runtime clock runs on), and a stop it escaped by a pause
// would be the next run's decision anyway.
//
// A resume counts only against an idle stop (resumed is no longer idle):
// a runtime stop is about the container run's age, which a pause and a
// resume do not change, and an owner who paused whenever a run looked and
// resumed it after would otherwise never be stopped.
func sameRun(before, now pipeline.Container, idleStop bool) (string, bool) {
	switch {
	case !stoppable(now.State):
		return fmt.Sprintf("state %s -> %s", before.State, now.State), true
	case idleStop && before.State == pipeline.StatePaused && now.State == pipeline.StateRunning:
		return "resumed since the decision (state paused -> running)", true
	case !before.StartedAt.Equal(now.StartedAt):
		return "started again", true
	case before.Name != now.Name:
		return fmt.Sprintf("renamed %s -> %s", before.Name, now.Name), true
	}
	if what, changed := dockerfacts.Changed(pipeline.Container{Labels: before.Labels}, pipeline.Container{Labels: now.Labels}); changed {
		return what, true
	}
	return "", false
}

// handOver gives the idle-stopped containers to the remove stage: removed
// at once, no hold (NOTES.md, Differences from the DS01 scripts), re-checked by remove against the
// facts stop confirmed. Their recorded GPUs are cleared for release, as
// the release stage does for removals, only when the GPU snapshot taken
// after the stops shows nothing of the container still running on a GPU;
// a container whose process is still there stays (gpu_busy): removing it
// would leave that process behind. The remove stage settles the releases
// (gpu.release events) once the container is gone.
func (s *Stage) handOver(snap *nvml.Snapshot, recs []*pipeline.Record) {
	busy := busyContainers(snap, nvml.ProcFS{Root: s.ProcRoot})
	for _, rec := range recs {
		v := rec.Verdict
		detail := fmt.Sprintf("stopped in this run for idle_timeout (idle %s, limit %s): %s", v.Age.Round(time.Second), v.Limit, v.Detail)
		if uuid, still := busy[rec.Container.ID]; still {
			rec.Verdict = pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonGPUBusy, Rule: v.Rule,
				Detail: detail + "; NVML still shows its process on " + uuid + ": not removed"}
			continue
		}
		// Measured from the stop just made, with no hold: the remove
		// stage's container.remove says stopped_duration 0h, as the
		// cleanup pipeline says for an idle-stopped container.
		rec.Verdict = pipeline.Verdict{
			Action: pipeline.ActionRemove, Reason: pipeline.ReasonIdleStopped,
			Rule: v.Rule, Clock: pipeline.ClockFinished, HasLimit: true, Detail: detail,
		}
		if rec.Outcome.Status == pipeline.OutcomeStopped {
			rec.Outcome = pipeline.Outcome{} // the remove stage's to set
		}
		rec.ReleaseGPUs = nil
		for _, g := range rec.GPUs {
			if g.Source != pipeline.ClaimNVML && !slices.Contains(rec.ReleaseGPUs, g.UUID) {
				rec.ReleaseGPUs = append(rec.ReleaseGPUs, g.UUID)
			}
		}
	}
}

// busyContainers maps each container with a process in the snapshot to
// one GPU it runs on. A process whose container cannot be read counts
// for no one here: it cannot be this run's stopped container's, whose
// processes the engine confirmed gone.
func busyContainers(snap *nvml.Snapshot, procfs nvml.ProcFS) map[string]string {
	out := map[string]string{}
	if snap == nil || !snap.Available {
		return out
	}
	add := func(uuid string, procs []nvml.Process) {
		for _, p := range procs {
			if id, err := procfs.ContainerID(p.PID); err == nil && id != "" {
				if _, ok := out[id]; !ok {
					out[id] = uuid
				}
			}
		}
	}
	for _, d := range snap.Devices {
		add(d.UUID, d.Processes)
		for _, m := range d.MIG {
			add(m.UUID, m.Processes)
		}
	}
	return out
}

// refreshGPU takes a new GPU snapshot after idle stops: the processes of
// a stopped container are gone, and the release stage must see that
// before it clears the container's GPUs. On failure the old snapshot
// stays, and release keeps the container (gpu_busy): never a wrong release.
func refreshGPU(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) {
	if env.GPU == nil || batch.GPU == nil || !batch.GPU.Available {
		return
	}
	callCtx, cancel := env.Call(ctx)
	defer cancel()
	snap, err := env.GPU.Snapshot(callCtx)
	if err != nil || snap == nil {
		if env.Log != nil {
			env.Log.WithError(err).Warn("GPU snapshot after stops failed; the stopped containers' GPUs are checked against the earlier one")
		}
		return
	}
	batch.GPU = snap
}

// Event returns DS01's event for a confirmed stop: maintenance.idle_kill
// (container, idle_duration, container_type) or maintenance.runtime_kill
// (container, runtime, max_runtime, container_type).
func Event(env *pipeline.Env, rec *pipeline.Record, at time.Time) events.Event {
	typ := rec.Type
	if typ == "" {
		typ = defaultContainerTy
	}
	user := rec.Owner.Name
	if user == "" {
		user = pipeline.UnknownOwner
	}
	ev := events.Event{Time: at, User: user, Source: env.Source()}
	lc := rec.Lifecycle
	if lc != nil && lc.StopFor == pipeline.ReasonIdleTimeout {
		ev.Type = events.IdleKill
		ev.Details = []events.Field{
			events.F("container", rec.Container.Name),
			events.F("idle_duration", idleDuration(lc.Idle)),
			events.F("container_type", typ),
		}
		return ev
	}
	ev.Type = EventRuntimeKill
	runtime := time.Duration(0)
	if lc != nil {
		runtime = lc.Runtime
	}
	ev.Details = []events.Field{
		events.F("container", rec.Container.Name),
		events.F("runtime", strconv.FormatInt(int64(runtime/time.Hour), 10)+"h"),
		events.F("max_runtime", limitHours(rec.Verdict)),
		events.F("container_type", typ),
	}
	return ev
}

// idleDuration is DS01's format: whole hours from one hour up, else minutes.
func idleDuration(d time.Duration) string {
	if d >= time.Hour {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
}

// limitHours is the configured limit in hours; DS01 wrote the literal
// text "configured_limit".
func limitHours(v pipeline.Verdict) string {
	if !v.HasLimit {
		return "configured_limit"
	}
	return strconv.FormatFloat(v.Limit.Hours(), 'f', -1, 64) + "h"
}

type line struct{ tag, msg string }

func syslogLine(rec *pipeline.Record, idle bool) line {
	user := rec.Owner.Name
	if user == "" {
		user = pipeline.UnknownOwner
	}
	name, user := clean(rec.Container.Name), clean(user)
	if idle {
		secs := int64(0)
		if rec.Lifecycle != nil {
			secs = int64(rec.Lifecycle.Idle / time.Second)
		}
		return line{TagIdle, fmt.Sprintf("Stopped idle container: %s (user: %s, idle: %ds)", name, user, secs)}
	}
	hours := int64(0)
	if rec.Lifecycle != nil {
		hours = int64(rec.Lifecycle.Runtime / time.Hour)
	}
	return line{TagMaxRuntime, fmt.Sprintf("Stopped container: %s (user: %s, runtime: %dh)", name, user, hours)}
}

// clean escapes what could forge a second syslog line or rewrite a terminal.
func clean(s string) string { return printable.Escape(s) }

// sendSyslog is best effort, as DS01's logger calls were.
func (s *Stage) sendSyslog(env *pipeline.Env, lines []line) {
	dial := s.dial
	if dial == nil {
		dial = func(tag string) (SyslogWriter, error) { return syslog.New(syslog.LOG_USER|syslog.LOG_NOTICE, tag) }
	}
	writers := map[string]SyslogWriter{}
	defer func() {
		for _, w := range writers {
			_ = w.Close()
		}
	}()
	for _, l := range lines {
		w, ok := writers[l.tag]
		if !ok {
			var err error
			if w, err = dial(l.tag); err != nil {
				if env.Log != nil {
					env.Log.WithError(err).Warn("syslog unavailable; stops are not sent to syslog")
				}
				return
			}
			writers[l.tag] = w
		}
		if err := w.Notice(l.msg); err != nil && env.Log != nil {
			env.Log.WithError(err).Warn("syslog write failed")
		}
	}
}
