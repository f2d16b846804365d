package pipeline

import "time"

// Lifecycle facts of a running container: what the measure stage read,
// what the lifecycle stage decided from it, and what notify and stop act
// on (docs/lifecycle.md). Record.Lifecycle is nil in pipelines without
// those stages.

// Signal names, in the order the report lists them.
const (
	SignalGPU     = "gpu"
	SignalCPU     = "cpu"
	SignalNetwork = "network"
)

// Signal sources.
const (
	SourceNVMLProcess = "nvml_process" // per-process utilisation of the container's own processes
	SourceNVMLDevice  = "nvml_device"  // the utilisation of devices only this container uses
	SourceNVMLShared  = "nvml_shared"  // the utilisation of a device shared with others: an upper bound
	SourceNVMLNoProc  = "nvml_no_process"
	SourceDockerStats = "docker_stats"
)

// ClockLastActivity is the idle clock: the last run that saw the container
// active, or the first run that saw it at all.
const ClockLastActivity Clock = "last_activity"

// Signal is one piece of idle evidence for one run.
type Signal struct {
	Name string
	// Value is a percentage for gpu (of the device or slice) and cpu (of one
	// CPU), and the bytes received since the previous run for network.
	Value float64
	// Known is false when there is no evidence this run; Missing says why.
	// Missing evidence never advances an idle streak.
	Known     bool
	Missing   string
	Source    string
	Threshold float64
	// Active is true when the value shows activity: gpu at or above its
	// threshold, cpu and network above theirs (DS01's comparisons).
	Active bool
}

// StatsSample is one Docker stats reading: cumulative counters and
// Docker's own time of reading.
type StatsSample struct {
	Read       time.Time
	CPUTotalNs uint64
	RxBytes    uint64
}

// NoticeKind names one owner notice.
type NoticeKind string

// Notices, with DS01's titles (reference 9.4).
const (
	NoticeIdleWarning         NoticeKind = "idle_warning"
	NoticeIdleFinalWarning    NoticeKind = "idle_final_warning"
	NoticeIdleStop            NoticeKind = "idle_stop"
	NoticeIdleExempt          NoticeKind = "idle_exempt"
	NoticeRuntimeWarning      NoticeKind = "runtime_warning"
	NoticeRuntimeFinalWarning NoticeKind = "runtime_final_warning"
	NoticeRuntimeStop         NoticeKind = "runtime_stop"
)

// Notice is one message to a container's owner.
type Notice struct {
	Kind     NoticeKind
	Severity string // WARNING, STOPPED or NOTICE
	Title    string
	Body     string
}

// Lifecycle is what the lifecycle stages know about one running container.
type Lifecycle struct {
	// Written by measure.
	Stats      *StatsSample // nil when the stats call failed (StatsError)
	StatsError string
	GPU        Signal // the GPU evidence, judged against its threshold by lifecycle
	// GPUSeen is set when NVML shows the container's processes on a GPU,
	// allocation record or not: GPU use makes it a lifecycle candidate.
	GPUSeen bool

	// Written by lifecycle.
	Signals    []Signal // gpu, cpu, network as judged this run
	Idle       time.Duration
	HasIdle    bool
	Runtime    time.Duration
	HasRuntime bool
	IdleStreak int
	HighDemand bool
	// StopFor is the reason of a stop verdict; StopGrace the docker stop
	// grace of the container's type.
	StopFor   Reason
	StopGrace time.Duration
	Notices   []Notice
}

// FieldLifecycle is Record.Lifecycle in stage contracts: measure writes
// it, lifecycle amends it (signals, clocks, notices), notify and stop read it.
const FieldLifecycle Field = "lifecycle"
