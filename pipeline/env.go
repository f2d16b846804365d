package pipeline

import (
	"context"
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

	Docker      Docker
	CallTimeout time.Duration // deadline for each Docker call
	GPU         nvml.Backend  // may be a "none" backend, never nil
	GPURequired bool          // no GPU view is an error, not a warning
	Policy      *policy.Model

	Log   logrus.FieldLogger
	Stats *Stats
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
}

// Emit queues an event for the log stage. Stages emit only after an action
// really happened, so the log never claims what did not take place.
func (b *Batch) Emit(ev events.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
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
