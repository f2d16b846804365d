package pipeline

import (
	"strings"
	"time"
)

// State is a Docker container state as the engine reports it.
type State string

// Docker container states.
const (
	StateCreated    State = "created"
	StateRunning    State = "running"
	StatePaused     State = "paused"
	StateRestarting State = "restarting"
	StateRemoving   State = "removing"
	StateExited     State = "exited"
	StateDead       State = "dead"
)

// Live reports whether processes of the container may exist. Live containers
// are never removed: ds01-pipe never forces a removal.
func (s State) Live() bool {
	return s == StateRunning || s == StatePaused || s == StateRestarting
}

// Container holds the Docker facts of one container, as discovered once per run.
// Timestamps are UTC; a zero time means "never" (Docker's 0001-01-01T00:00:00Z).
type Container struct {
	ID           string
	Name         string // without the leading "/"
	Image        string
	State        State
	ExitCode     int
	Created      time.Time
	StartedAt    time.Time
	FinishedAt   time.Time
	RestartCount int
	PID          int // host PID of the main process while running, else 0
	Labels       map[string]string
	Runtime      string
	CgroupParent string
	AutoRemove   bool

	// VisibleDevices is NVIDIA_VISIBLE_DEVICES from the container's environment.
	// Only this variable is kept: the rest of the environment is user data that
	// no stage needs, and keeping it would cost memory on busy hosts.
	VisibleDevices    string
	HasVisibleDevices bool

	DeviceRequests []DeviceRequest
}

// DeviceRequest mirrors HostConfig.DeviceRequests[i].
type DeviceRequest struct {
	Driver       string
	Count        int // -1 = all
	DeviceIDs    []string
	Capabilities [][]string
}

// Label returns the value of a label, treating an empty value and the
// literal "<no value>" (what docker's Go templates print) as absent, as DS01 does.
func (c *Container) Label(key string) (string, bool) {
	v, ok := c.Labels[key]
	if !ok || v == "" || v == "<no value>" {
		return "", false
	}
	return v, true
}

// LabelTrue reports whether a label is exactly "true" (DS01's rule).
func (c *Container) LabelTrue(key string) bool {
	return c.Labels[key] == "true"
}

// OwnerSource says which rule of the owner chain found the owner.
type OwnerSource string

// Owner chain rules, in DS01's order. The values are the label keys, so a
// report reader sees exactly where the owner came from.
const (
	OwnerFromUser         OwnerSource = "ds01.user"
	OwnerFromAIME         OwnerSource = "aime.mlc.USER"
	OwnerFromDevcontainer OwnerSource = "devcontainer.local_folder"
	OwnerFromNameUID      OwnerSource = "name._.uid"
	OwnerUnknown          OwnerSource = "unknown"
)

// UnknownOwner is the owner name of a container nobody can be attributed to.
const UnknownOwner = "unknown"

// Owner is the attributed owner of a container.
type Owner struct {
	Name   string
	Source OwnerSource
}

// Known reports whether a rule other than the fallback found the owner.
func (o Owner) Known() bool {
	return o.Source != "" && o.Source != OwnerUnknown && o.Name != "" && o.Name != UnknownOwner
}

// Action is what a pipeline decided to do with a container.
type Action string

// Verdict actions of the JSON report.
const (
	ActionNone   Action = ""
	ActionRemove Action = "remove"
	ActionKeep   Action = "keep"
	ActionSkip   Action = "skip"
	// ActionStop stops a running container (the lifecycle pipeline: idle
	// timeout, max runtime; docs/lifecycle.md).
	ActionStop Action = "stop"
)

// Acts reports whether the action changes a container (remove or stop).
// The engine's invariants apply to every acting verdict.
func (a Action) Acts() bool { return a == ActionRemove || a == ActionStop }

// Reason explains a verdict. The values are part of the JSON contract.
type Reason string

// Verdict reasons.
const (
	ReasonCreatedNeverStarted Reason = "created_never_started"
	ReasonHoldExpired         Reason = "hold_expired"
	ReasonIdleStopped         Reason = "idle_stopped"
	ReasonWithinHold          Reason = "within_hold"
	ReasonIndefiniteHold      Reason = "indefinite_hold"
	ReasonExempt              Reason = "exempt"
	ReasonNotACandidate       Reason = "not_a_candidate"
	ReasonNoFinishTime        Reason = "no_finish_time"
	ReasonGPUBusy             Reason = "gpu_busy"
	ReasonNotDecided          Reason = "not_decided"

	// Lifecycle reasons (docs/lifecycle.md).
	ReasonIdleTimeout     Reason = "idle_timeout"
	ReasonRuntimeExceeded Reason = "runtime_exceeded"
	ReasonIdleWarning     Reason = "idle_warning"
	ReasonRuntimeWarning  Reason = "runtime_warning"
	ReasonActive          Reason = "active"
	ReasonNoGPU           Reason = "no_gpu"
	ReasonInGracePeriod   Reason = "in_grace_period"
	ReasonIdleStreak      Reason = "idle_streak"
)

// Clock names the timestamp an age was measured from.
type Clock string

// Clocks.
const (
	ClockCreated  Clock = "created"
	ClockFinished Clock = "finished"
	ClockStarted  Clock = "started"
)

// Verdict is a decision about one container, with everything needed to explain it.
type Verdict struct {
	Action Action
	Reason Reason
	Rule   string // the policy setting that applied, e.g. "groups.researcher.container_hold_after_stop_h"
	Clock  Clock
	Age    time.Duration
	// Limit is meaningful only when HasLimit; no limit (null, "never") leaves HasLimit false.
	Limit    time.Duration
	HasLimit bool
	Detail   string // free text for humans
}

// Left is the time until the limit is reached (negative once past it).
func (v Verdict) Left() (time.Duration, bool) {
	if !v.HasLimit {
		return 0, false
	}
	return v.Limit - v.Age, true
}

// ClaimSource says where a GPU allocation record came from.
type ClaimSource string

// Sources of GPU claims.
const (
	ClaimDeviceRequest ClaimSource = "device_request"
	ClaimLabel         ClaimSource = "label"
	ClaimEnv           ClaimSource = "env"
	ClaimNVML          ClaimSource = "nvml" // no record: seen running on the device
)

// GPUClaim is one GPU or MIG slice a container holds.
type GPUClaim struct {
	UUID   string // "" for a DS01 slot the GPU view could not map
	Source ClaimSource
	// Slot is the DS01 slot label value the claim came from ("0:1", "1.2"),
	// "" for other sources.
	Slot string
}

// Enforced reports whether the engine enforces the claim: a DeviceRequest,
// or NVIDIA_VISIBLE_DEVICES under the nvidia runtime. Labels are written by
// the container's owner and prove nothing about the devices it had.
func (c GPUClaim) Enforced(container *Container) bool {
	switch c.Source {
	case ClaimDeviceRequest:
		return true
	case ClaimEnv:
		return strings.EqualFold(container.Runtime, "nvidia")
	}
	return false
}

// OutcomeStatus is what happened when a pipeline acted on a container.
type OutcomeStatus string

// Outcomes of the JSON report.
const (
	OutcomeNone    OutcomeStatus = ""
	OutcomePlanned OutcomeStatus = "planned"
	OutcomeRemoved OutcomeStatus = "removed"
	OutcomeGone    OutcomeStatus = "gone"
	OutcomeChanged OutcomeStatus = "changed"
	OutcomeFailed  OutcomeStatus = "failed"
	OutcomeKept    OutcomeStatus = "kept"    // the engine refused an action (exempt, live, GPU still busy)
	OutcomeStopped OutcomeStatus = "stopped" // the lifecycle stop stage confirmed the stop
)

// Outcome records the result of an action.
type Outcome struct {
	Status OutcomeStatus
	Error  string
}

// Record is one container flowing through the stages. Stages work on the
// whole batch, so a record is shared by pointer. Each group of members is
// one field of the stage contract (Field, in brackets below): a stage kind
// declares which it writes (Spec.Contract), the loader orders the stages by
// those declarations, and a test runs every kind and fails when one
// changes a field it did not declare. Any stage may add Warnings.
type Record struct {
	// [facts] discover: the Docker facts, read once per run; amended by
	// stop with what the engine shows after a confirmed stop.
	Container Container

	Owner Owner  // [owner] attribute
	Type  string // [type] classify

	// [exemption] exempt, and the engine itself for the ds01.protected and
	// ds01.monitoring labels; nothing clears it. The engine never lets an
	// exempt record keep an acting verdict.
	Exempt       bool
	ExemptReason string

	// [verdict] decide (cleanup) or lifecycle; amended by discover (skip a
	// half-read container), release (keep a container whose GPU is busy),
	// stop (an idle-stopped container handed to remove) and the engine (an acting verdict that breaks an invariant becomes a
	// skip).
	Verdict Verdict

	// [gpu-claims] discover from Docker records; amended by release with
	// GPU use NVML shows and no record names.
	GPUs   []GPUClaim
	GPUAll bool // --gpus all / count request: every device, no IDs recorded
	// [gpu-release] release, and stop: the UUIDs cleared for release. They count
	// as released (and get their gpu.release events) only once the
	// container is really gone: see SettleReleases.
	ReleaseGPUs []string

	// [outcome] remove (its removal part: removed, gone) and stop;
	// amended by discover (a failed inspect).
	Outcome  Outcome
	Warnings []string // per-container oddities that did not stop the run

	// [facts] discover: why the container's facts could not be read (an
	// inspect that failed); such a record is never decided or acted on.
	Incomplete string

	// [lifecycle] the idle and runtime facts of a running container:
	// measure writes them, lifecycle amends them (signals, clocks,
	// notices), notify and stop read them; nil elsewhere.
	Lifecycle *Lifecycle
}

// Warn records a per-container warning.
func (r *Record) Warn(msg string) {
	r.Warnings = append(r.Warnings, msg)
}

// Candidate reports whether the record may be acted on at all: it is not
// exempt, its container is not live, and its facts were read completely.
func (r *Record) Candidate() bool {
	return !r.Exempt && !r.Container.State.Live() && r.Incomplete == ""
}

// GPUUUIDs lists the UUIDs the container holds, without duplicates.
func (r *Record) GPUUUIDs() []string {
	out := make([]string, 0, len(r.GPUs))
	seen := make(map[string]bool, len(r.GPUs))
	for _, g := range r.GPUs {
		if g.UUID != "" && !seen[g.UUID] {
			seen[g.UUID] = true
			out = append(out, g.UUID)
		}
	}
	return out
}

// HasGPU reports whether the container holds or uses any GPU (NOTES.md, Differences from the DS01 scripts: B-6).
func (r *Record) HasGPU() bool {
	return len(r.GPUs) > 0 || r.GPUAll
}
