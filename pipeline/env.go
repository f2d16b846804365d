package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline/events"
	"github.com/ds01/ds01-pipe/policy"
)

// Mode says whether a run may change anything.
type Mode string

// Modes.
const (
	ModePlan Mode = "plan" // decide everything, touch nothing
	ModeRun  Mode = "run"
)

// Docker is the part of the Docker Engine API the stages use.
// *client.Client satisfies it; stages that need less declare less.
type Docker interface {
	ContainerList(ctx context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, opts client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerRemove(ctx context.Context, id string, opts client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
}

// Env is what the engine hands every stage: the run's fixed clock, its
// mode, the outside world (Docker, the GPU view) and where to report.
type Env struct {
	Pipeline string // the pipeline's name
	File     string // the pipeline file, for messages
	Mode     Mode
	Now      time.Time // every age is measured against this instant (UTC)
	Host     string
	// Started is when the run began on the wall clock (never the --now
	// clock): run durations are measured from it.
	Started time.Time

	Docker      Docker
	CallTimeout time.Duration // deadline for each Docker call
	GPU         nvml.Backend  // may be a "none" backend, never nil
	GPURequired bool          // no GPU view is an error, not a warning
	Policy      *policy.Model

	// Events appends each event to the events file as the action it
	// records completes (see EventLog). nil: events stay queued on the
	// batch for the log stage (plan mode, no events file, library use).
	Events *EventLog

	Log   logrus.FieldLogger
	Stats *Stats

	// witnessArgv starts this program as a witness (StartWitness); nil:
	// the run has none.
	witnessArgv []string
	// lock is the pipeline's lock file while the run holds it, for its
	// witness to inherit.
	lock *os.File
}

// SetLock records the pipeline's lock file, held by the caller, for a run
// driven without Execute (which sets it itself): the remove stage keeps
// its journal and starts its witness only under a lock.
func (e *Env) SetLock(f *os.File) { e.lock = f }

// LockPath is the pipeline's lock file while the run holds it, or "".
func (e *Env) LockPath() string {
	if e.lock == nil {
		return ""
	}
	return e.lock.Name()
}

// Planning reports whether the run must not change anything.
func (e *Env) Planning() bool { return e.Mode == ModePlan }

// Call gives one Docker or NVML call its own deadline inside the run's.
func (e *Env) Call(ctx context.Context) (context.Context, context.CancelFunc) {
	d := e.CallTimeout
	if d <= 0 {
		d = 30 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// Source is the events.jsonl source of this pipeline's events.
func (e *Env) Source() string { return "ds01-pipe/" + e.Pipeline }

// Stats counts what a run cost, for the debug summary and the benchmarks.
type Stats struct {
	ListCalls    atomic.Int64
	InspectCalls atomic.Int64
	RemoveCalls  atomic.Int64
}

// Batch is everything a run knows, shared by all stages.
type Batch struct {
	Records []*Record
	// Held are records a stage left out of the run (filter): nothing
	// judges or acts on them any more, but their containers still hold
	// the GPUs they claim, so release never reports such a GPU released
	// because another container that claimed it too is removed.
	Held []*Record

	// GPU is the one GPU snapshot of the run, taken by discover (nil until then).
	GPU *nvml.Snapshot
	// GPUs is the reconciled per-device view, filled by release.
	GPUs []GPUReport
	// GPUChecked is true when release cross-checked Docker records against NVML.
	GPUChecked bool
	// Timings of the stages that have finished so far, for the log stage's metrics.
	Timings []StageTiming
	// Started is when the run began (wall clock, not the --now clock).
	Started time.Time
	// Release is the release stage's plan, settled after the removals by
	// SettleReleases (nil until release runs).
	Release *ReleasePlan

	mu     sync.Mutex
	events []events.Event
	// sink, when set (Run sets Env.Events), takes every event at once
	// instead of the queue.
	sink *EventLog
}

// Emit records an event. Stages emit only after an action really
// happened, so the log never claims what did not take place. With an
// events file open for the run (Env.Events) the line is appended at once,
// so a run killed at any later point has still recorded the action;
// otherwise the event is queued for the log stage.
func (b *Batch) Emit(ev events.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sink != nil {
		// Errors are counted by the sink; the log stage reports them.
		_ = b.sink.Write(ev)
		return
	}
	b.events = append(b.events, ev)
}

// TakeEvents returns the queued events and empties the queue.
func (b *Batch) TakeEvents() []events.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := b.events
	b.events = nil
	return evs
}

// GPUStatus is the reconciled status of one GPU or MIG slice.
type GPUStatus string

// GPU statuses of the JSON report.
const (
	GPUFree       GPUStatus = "free"
	GPUInUse      GPUStatus = "in_use"
	GPUReleased   GPUStatus = "released"
	GPUOrphaned   GPUStatus = "orphaned"
	GPUUnrecorded GPUStatus = "unrecorded"
	GPUUnchecked  GPUStatus = "unchecked" // no NVML: records only, never claimed free
)

// GPUReport is one GPU or MIG slice in the reconciled view.
type GPUReport struct {
	UUID      string
	Index     int
	MIGParent string // parent GPU UUID for a MIG slice, else ""
	Name      string
	ClaimedBy []string // container IDs from Docker records
	Processes []GPUProcess
	Status    GPUStatus
}

// GPUProcess is one compute process on a GPU, mapped to its container.
type GPUProcess struct {
	PID           int
	ContainerID   string // "" when the process belongs to no container
	UsedMemoryMiB uint64
	Killed        bool
	// FormerContainerID is the container an orphan's cgroup names, which
	// the engine confirmed gone: a process that outlived its container.
	FormerContainerID string
	// Runtime says which container holds a process that is no container
	// of this engine (podman, another engine, another PID namespace).
	Runtime string
	// Unaccounted says why the process could not be explained; "" when it was.
	Unaccounted string
}

// EventLog is the run's events file, opened when the run starts (Execute,
// run mode) from the log stage's events_file, so that every stage's event
// is appended as the action it records completes, one write(2) per line,
// in DS01's exact format. It keeps count of what could not be written; the
// log stage reports that. Safe for concurrent use.
type EventLog struct {
	path string

	mu      sync.Mutex
	w       *events.Writer
	openErr error
	written int
	failed  int
	err     error // the first failure
}

// OpenEventLog opens path for appending. A file that cannot be opened is
// not an error here: every event written to it then fails and is counted,
// and the run reports it (exit 2, or 1 with fail_on_event_error), because
// the actions themselves must not wait on the audit log.
func OpenEventLog(path string) *EventLog {
	l := &EventLog{path: path}
	l.w, l.openErr = events.OpenFile(path)
	return l
}

// Path is the events file.
func (l *EventLog) Path() string { return l.path }

// file is the open events file, or nil.
func (l *EventLog) file() *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	return l.w.File()
}

// OpenErr is why the file could not be opened, or nil.
func (l *EventLog) OpenErr() error { return l.openErr }

// Write appends one event.
func (l *EventLog) Write(ev events.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.openErr
	if err == nil {
		err = l.w.Write(ev)
	}
	if err != nil {
		l.failed++
		if l.err == nil {
			l.err = err
		}
		return err
	}
	l.written++
	return nil
}

// Counts returns how many events were written, how many failed, and the
// first failure.
func (l *EventLog) Counts() (written, failed int, first error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.written, l.failed, l.err
}

// Close closes the file; later writes fail.
func (l *EventLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	err := l.w.Close()
	l.w = nil
	if l.openErr == nil {
		l.openErr = errors.New("events file " + l.path + ": closed")
	}
	return err
}

// EventsOwner is implemented by the stage kind that names the run's events
// file (the log stage). Execute opens that file when a run starts.
type EventsOwner interface {
	EventsPath() string
}

// EventsPath is the events file the first stage that names one names, or
// "" when no stage does.
func EventsPath(stages []StageInstance) string {
	for _, st := range stages {
		if o, ok := st.Stage.(EventsOwner); ok && o.EventsPath() != "" {
			return o.EventsPath()
		}
	}
	return ""
}

// RunEnd is how a run ended, once its exit code is known: what every
// EndRecorder records, whatever the outcome.
type RunEnd struct {
	// Result is nil when the run stopped before its stages ran (lock
	// held, engine unreachable, GPU configuration).
	Result   *Result
	Err      error
	ExitCode int
	// Outcome names the exit code: done, partial, failed, locked,
	// config_error.
	Outcome string
	// Ended is the wall clock at the end of the run.
	Ended time.Time
}

// EndRecorder is implemented by stages that record every run of their
// pipeline, whatever its outcome (the log stage: the pipeline.summary
// event, the metrics). RecordEnd runs them after the run, also when the
// stages never ran. The error says that the run's own record (the
// summary event) could not be written; metrics never fail a run.
type EndRecorder interface {
	RecordEnd(env *Env, end RunEnd) error
}

// RecordEnd hands the end of a run to every stage of the pipeline that
// records it, then closes the run's events file. It returns the first
// error of a recorder: the run's record is incomplete.
func RecordEnd(env *Env, stages []StageInstance, end RunEnd) error {
	var first error
	for _, st := range stages {
		if r, ok := st.Stage.(EndRecorder); ok {
			if err := r.RecordEnd(env, end); err != nil && first == nil {
				first = fmt.Errorf("stage %s: %w", st.Ref, err)
			}
		}
	}
	if env.Events != nil {
		if err := env.Events.Close(); err != nil && env.Log != nil {
			env.Log.WithError(err).Warn("closing the events file")
		}
	}
	return first
}
