//go:build cgo

package nvml

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// openNVML opens the real library. go-nvml dlopens libnvidia-ml.so.1 inside
// Init, not at program start, so this is where a host without a driver finds
// out: Init returns ERROR_LIBRARY_NOT_FOUND. The reason is "" on success.
func openNVML() (Backend, string) {
	b := newNVMLBackend(gonvml.New())
	b.utilization = true
	return b, b.initErr
}

// nvmlBackend reads the GPU view through go-nvml's Interface, so tests can
// hand it go-nvml's mocks.
type nvmlBackend struct {
	lib gonvml.Interface
	// initErr is set when Init failed. After a failed Init nothing else may
	// be called, not even Shutdown: a call into a library that did not load
	// ends the process (exit 127), and where it loaded but did not
	// initialise, Shutdown has nothing to undo.
	initErr string

	// mu serialises Snapshot and Close: a query after Shutdown would call
	// into an unloaded library.
	mu     sync.Mutex
	closed bool

	// utilization reads GPU utilisation too (util_cgo.go): the lifecycle's
	// evidence. The real library always does; mocks opt in.
	utilization bool
}

func newNVMLBackend(lib gonvml.Interface) *nvmlBackend {
	b := &nvmlBackend{lib: lib}
	if ret := lib.Init(); ret != gonvml.SUCCESS {
		b.initErr = "NVML: " + returnName(ret)
	}
	return b
}

func (b *nvmlBackend) Name() string { return BackendNVML }

// Close shuts NVML down once, and only if Init succeeded.
func (b *nvmlBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.initErr != "" {
		b.closed = true
		return nil
	}
	b.closed = true
	if ret := b.lib.Shutdown(); ret != gonvml.SUCCESS {
		return fmt.Errorf("nvml: shutdown: %s", returnName(ret))
	}
	return nil
}

var errClosed = errors.New("nvml: backend is closed")

// Snapshot queries every device once: handle, UUID, name, memory and MIG
// mode, then the compute processes of the whole device or, with MIG on, of
// each slice. A failure confined to one device or slice becomes a warning;
// the context is checked between devices.
func (b *nvmlBackend) Snapshot(ctx context.Context) (*Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Snapshot{Backend: BackendNVML}
	if b.initErr != "" {
		s.Unavailable = b.initErr
		return s, nil
	}
	r := &reader{lib: b.lib, snap: s, utilization: b.utilization}

	version, ret := count(&s.Queries.DeviceQueries, b.lib.SystemGetDriverVersion)
	if ret != gonvml.SUCCESS {
		r.warn("driver version: %s", returnName(ret))
	}
	s.DriverVersion = version

	n, ret := count(&s.Queries.DeviceQueries, b.lib.DeviceGetCount)
	if ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("nvml: counting devices: %s", returnName(ret))
	}
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("nvml: snapshot stopped after %d of %d devices: %w", i, n, err)
		}
		if dev, ok := r.device(i); ok {
			s.Devices = append(s.Devices, dev)
		}
	}
	s.Available = true
	return s, nil
}

// count makes one NVML call, counted in n.
func count[T any](n *int, call func() (T, gonvml.Return)) (T, gonvml.Return) {
	*n++
	return call()
}

// reader fills one snapshot.
type reader struct {
	lib         gonvml.Interface
	snap        *Snapshot
	utilization bool
}

func (r *reader) warn(format string, args ...any) {
	r.snap.Warnings = append(r.snap.Warnings, fmt.Sprintf(format, args...))
}

// device reads GPU i; ok is false when the GPU cannot be identified, and is
// then left out with a warning.
func (r *reader) device(i int) (Device, bool) {
	q := &r.snap.Queries
	d := Device{Index: i}
	q.DeviceQueries++
	h, ret := r.lib.DeviceGetHandleByIndex(i)
	if ret != gonvml.SUCCESS {
		r.warn("GPU %d: handle: %s (GPU left out)", i, returnName(ret))
		return d, false
	}
	if d.UUID, ret = count(&q.DeviceQueries, h.GetUUID); ret != gonvml.SUCCESS {
		r.warn("GPU %d: UUID: %s (GPU left out)", i, returnName(ret))
		return d, false
	}
	if d.UUID == "" {
		r.warn("GPU %d: empty UUID (GPU left out)", i)
		return d, false
	}
	if d.Name, ret = count(&q.DeviceQueries, h.GetName); ret != gonvml.SUCCESS {
		r.warn("GPU %d (%s): name: %s", i, d.UUID, returnName(ret))
	}
	if mem, ret := count(&q.DeviceQueries, h.GetMemoryInfo); ret == gonvml.SUCCESS {
		d.MemoryMiB = mem.Total >> 20
	} else {
		r.warn("GPU %d (%s): memory: %s", i, d.UUID, returnName(ret))
	}

	q.DeviceQueries++
	mode, _, ret := h.GetMigMode()
	switch {
	case ret == gonvml.SUCCESS && mode == gonvml.DEVICE_MIG_ENABLE:
		r.slices(&d, h)
		return d, true
	case ret != gonvml.SUCCESS && ret != gonvml.ERROR_NOT_SUPPORTED:
		// Mode unknown: the whole-device query below still shows the
		// processes of a GPU without MIG, the common case.
		r.warn("GPU %d (%s): MIG mode: %s", i, d.UUID, returnName(ret))
	}
	d.Processes, d.ProcessError = r.processes(h)
	if d.ProcessError != "" {
		r.warn("GPU %d (%s): %s", i, d.UUID, d.ProcessError)
	}
	if r.utilization {
		d.UtilizationGPU = r.util(h)
		r.processUtil(h, d.Processes)
	}
	return d, true
}

// slices reads the MIG slices of d. A slice that cannot be read sets the
// parent's ProcessError, since what runs on it is then unknown.
func (r *reader) slices(d *Device, h gonvml.Device) {
	q := &r.snap.Queries
	incomplete := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		r.warn("GPU %d (%s): %s", d.Index, d.UUID, msg)
		if d.ProcessError == "" {
			d.ProcessError = msg
		}
	}
	maxSlices, ret := count(&q.DeviceQueries, h.GetMaxMigDeviceCount)
	if ret != gonvml.SUCCESS {
		incomplete("MIG device count: %s", returnName(ret))
		return
	}
	for j := range maxSlices {
		q.DeviceQueries++
		mh, ret := h.GetMigDeviceHandleByIndex(j)
		if ret == gonvml.ERROR_NOT_FOUND {
			continue // no slice at this index
		}
		if ret != gonvml.SUCCESS {
			incomplete("MIG slice %d: handle: %s", j, returnName(ret))
			continue
		}
		m := MIGDevice{Index: j}
		if m.UUID, ret = count(&q.DeviceQueries, mh.GetUUID); ret != gonvml.SUCCESS {
			incomplete("MIG slice %d: UUID: %s", j, returnName(ret))
			continue
		}
		if m.UUID == "" {
			incomplete("MIG slice %d: empty UUID", j)
			continue
		}
		if name, ret := count(&q.DeviceQueries, mh.GetName); ret == gonvml.SUCCESS {
			m.Profile = migProfile(name)
		} else {
			r.warn("GPU %d MIG slice %d (%s): name: %s", d.Index, j, m.UUID, returnName(ret))
		}
		m.Processes, m.ProcessError = r.processes(mh)
		if m.ProcessError != "" {
			r.warn("GPU %d MIG slice %d (%s): %s", d.Index, j, m.UUID, m.ProcessError)
		}
		if r.utilization {
			m.UtilizationGPU = r.util(mh)
		}
		d.MIG = append(d.MIG, m)
	}
}

// notAvailable is NVML_VALUE_NOT_AVAILABLE, which NVML reports as a
// process's memory where it cannot tell (for example without permission).
const notAvailable = ^uint64(0)

func (r *reader) processes(h gonvml.Device) ([]Process, string) {
	infos, ret := count(&r.snap.Queries.ProcessQueries, h.GetComputeRunningProcesses)
	if ret != gonvml.SUCCESS {
		return nil, "compute processes: " + returnName(ret)
	}
	var out []Process
	for _, in := range infos {
		p := Process{PID: int(in.Pid)}
		if in.UsedGpuMemory != notAvailable {
			p.UsedMemoryMiB = in.UsedGpuMemory >> 20
		}
		out = append(out, p)
	}
	return out, ""
}

// migProfile takes the profile from a MIG device's name, which NVML gives as
// "NVIDIA A100-SXM4-80GB MIG 3g.40gb": one call, where reading it from the
// GPU instance would take four. "" when the name has no such suffix.
func migProfile(name string) string {
	i := strings.LastIndex(name, " MIG ")
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(name[i+len(" MIG "):])
}

// returnName spells an NVML return code as NVML's headers do. It does not
// use Return.Error, which calls into the library once it is loaded and gives
// prose ("Driver Not Loaded") where a stable name is wanted.
func returnName(r gonvml.Return) string {
	if name, ok := returnNames[r]; ok {
		return name
	}
	return "NVML return code " + strconv.Itoa(int(r))
}

// returnNames is a read-only table.
var returnNames = map[gonvml.Return]string{
	gonvml.SUCCESS:                         "SUCCESS",
	gonvml.ERROR_UNINITIALIZED:             "ERROR_UNINITIALIZED",
	gonvml.ERROR_INVALID_ARGUMENT:          "ERROR_INVALID_ARGUMENT",
	gonvml.ERROR_NOT_SUPPORTED:             "ERROR_NOT_SUPPORTED",
	gonvml.ERROR_NO_PERMISSION:             "ERROR_NO_PERMISSION",
	gonvml.ERROR_ALREADY_INITIALIZED:       "ERROR_ALREADY_INITIALIZED",
	gonvml.ERROR_NOT_FOUND:                 "ERROR_NOT_FOUND",
	gonvml.ERROR_INSUFFICIENT_SIZE:         "ERROR_INSUFFICIENT_SIZE",
	gonvml.ERROR_INSUFFICIENT_POWER:        "ERROR_INSUFFICIENT_POWER",
	gonvml.ERROR_DRIVER_NOT_LOADED:         "ERROR_DRIVER_NOT_LOADED",
	gonvml.ERROR_TIMEOUT:                   "ERROR_TIMEOUT",
	gonvml.ERROR_IRQ_ISSUE:                 "ERROR_IRQ_ISSUE",
	gonvml.ERROR_LIBRARY_NOT_FOUND:         "ERROR_LIBRARY_NOT_FOUND",
	gonvml.ERROR_FUNCTION_NOT_FOUND:        "ERROR_FUNCTION_NOT_FOUND",
	gonvml.ERROR_CORRUPTED_INFOROM:         "ERROR_CORRUPTED_INFOROM",
	gonvml.ERROR_GPU_IS_LOST:               "ERROR_GPU_IS_LOST",
	gonvml.ERROR_RESET_REQUIRED:            "ERROR_RESET_REQUIRED",
	gonvml.ERROR_OPERATING_SYSTEM:          "ERROR_OPERATING_SYSTEM",
	gonvml.ERROR_LIB_RM_VERSION_MISMATCH:   "ERROR_LIB_RM_VERSION_MISMATCH",
	gonvml.ERROR_IN_USE:                    "ERROR_IN_USE",
	gonvml.ERROR_MEMORY:                    "ERROR_MEMORY",
	gonvml.ERROR_NO_DATA:                   "ERROR_NO_DATA",
	gonvml.ERROR_VGPU_ECC_NOT_SUPPORTED:    "ERROR_VGPU_ECC_NOT_SUPPORTED",
	gonvml.ERROR_INSUFFICIENT_RESOURCES:    "ERROR_INSUFFICIENT_RESOURCES",
	gonvml.ERROR_FREQ_NOT_SUPPORTED:        "ERROR_FREQ_NOT_SUPPORTED",
	gonvml.ERROR_ARGUMENT_VERSION_MISMATCH: "ERROR_ARGUMENT_VERSION_MISMATCH",
	gonvml.ERROR_DEPRECATED:                "ERROR_DEPRECATED",
	gonvml.ERROR_NOT_READY:                 "ERROR_NOT_READY",
	gonvml.ERROR_GPU_NOT_FOUND:             "ERROR_GPU_NOT_FOUND",
	gonvml.ERROR_INVALID_STATE:             "ERROR_INVALID_STATE",
	gonvml.ERROR_RESET_TYPE_NOT_SUPPORTED:  "ERROR_RESET_TYPE_NOT_SUPPORTED",
	gonvml.ERROR_UNKNOWN:                   "ERROR_UNKNOWN",
}
