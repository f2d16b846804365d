package nvml

import (
	"context"
	"slices"
)

// Backend names, as the pipeline's gpu block spells them.
const (
	BackendAuto = "auto"
	BackendNVML = "nvml"
	BackendSim  = "sim"
	BackendNone = "none"
)

// Snapshot is the GPU view of one run: every device, every MIG slice and the
// compute processes on each, read once.
//
// A device missing from Devices (see Warnings) is unknown, not idle, and so
// is a device or slice whose ProcessError is set: a caller that releases GPUs
// must not take either for free.
type Snapshot struct {
	Backend       string // "nvml", "sim" or "none"
	Available     bool   // false: no GPU view (driver missing, init failed, backend none)
	Unavailable   string // why, when !Available, e.g. "NVML: ERROR_LIBRARY_NOT_FOUND"
	DriverVersion string
	Devices       []Device
	Queries       QueryStats // how many NVML calls the snapshot cost
	// Warnings lists what could not be read without spoiling the rest of the
	// snapshot (a lost GPU, a refused process query), one line each.
	Warnings []string
}

// QueryStats counts the backend calls behind a snapshot. For NVML,
// ProcessQueries counts GetComputeRunningProcesses calls (one per device or
// MIG slice at most) and DeviceQueries every other call, including the
// driver version and device count. The simulator counts one device query and
// one process query per device and per MIG slice it serves.
type QueryStats struct {
	DeviceQueries  int
	ProcessQueries int
}

// Device is one physical GPU.
type Device struct {
	Index     int
	UUID      string
	Name      string
	MemoryMiB uint64
	Processes []Process   // compute processes on the whole device (non-MIG)
	MIG       []MIGDevice // MIG slices; empty when MIG is off
	// ProcessError says why Processes is incomplete ("" when it was read):
	// the process query failed, or on a MIG device a slice could not be read.
	ProcessError string
	// UtilizationGPU is the device's GPU utilisation over NVML's last
	// sample period. Not reported on MIG-enabled parents (NVML's [N/A]) and
	// where the driver refuses the query: never read that as 0 %.
	UtilizationGPU Percent
}

// MIGDevice is one MIG slice of a Device.
type MIGDevice struct {
	Index     int
	UUID      string
	Profile   string // such as "3g.40gb"; "" when unknown
	Processes []Process
	// ProcessError says why Processes could not be read ("" when it was).
	ProcessError string
	// UtilizationGPU is the slice's GPU utilisation, where reported.
	UtilizationGPU Percent
}

// Process is a compute process as NVML reports it: a host PID.
type Process struct {
	PID           int
	UsedMemoryMiB uint64
	// SMUtil is the process's share of the streaming multiprocessors, where
	// the driver reports per-process utilisation.
	SMUtil Percent
}

// Percent is a utilisation reading. Reported is false when NVML gave no
// value ("not reported" is not 0 %: a MIG parent answers [N/A]).
type Percent struct {
	Value    uint32
	Reported bool
}

// Pct is a reported utilisation of v percent.
func Pct(v uint32) Percent { return Percent{Value: v, Reported: true} }

// Backend is one source of GPU truth, queried once per run.
type Backend interface {
	Name() string
	// Snapshot reads the GPU view. An unavailable GPU view is not an error:
	// it is a snapshot with Available=false and the reason. Errors are for
	// failures mid-query (a cancelled context, a closed backend).
	Snapshot(ctx context.Context) (*Snapshot, error)
	Close() error
}

// clone returns a deep copy, so that a caller editing its snapshot cannot
// change what the backend hands out next.
func (s *Snapshot) clone() *Snapshot {
	c := *s
	c.Warnings = slices.Clone(s.Warnings)
	c.Devices = slices.Clone(s.Devices)
	for i := range c.Devices {
		d := &c.Devices[i]
		d.Processes = slices.Clone(d.Processes)
		d.MIG = slices.Clone(d.MIG)
		for j := range d.MIG {
			d.MIG[j].Processes = slices.Clone(d.MIG[j].Processes)
		}
	}
	return &c
}

// unavailable is a backend with no GPU view: backend "none", or "auto" or
// "nvml" where the library cannot be used.
type unavailable struct {
	name   string
	reason string
}

func (u unavailable) Name() string { return u.name }

func (u unavailable) Snapshot(ctx context.Context) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &Snapshot{Backend: u.name, Unavailable: u.reason}, nil
}

func (u unavailable) Close() error { return nil }
