//go:build cgo

package nvml

import gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

// util reads the utilisation of a GPU or MIG slice: one query. A MIG
// parent answers ERROR_NOT_SUPPORTED (nvidia-smi's [N/A]), as do slices on
// most drivers, and a query without permission fails: all "not reported",
// never 0 %.
func (r *reader) util(h gonvml.Device) Percent {
	u, ret := count(&r.snap.Queries.DeviceQueries, h.GetUtilizationRates)
	if ret != gonvml.SUCCESS {
		return Percent{}
	}
	return Pct(min(u.Gpu, 100))
}

// processUtil sets the SM utilisation of a whole GPU's compute processes
// from the driver's recent per-process samples: one query. Each process
// gets its latest sample; a process with none in the driver's buffer ran
// no kernel lately (0 %). When the driver keeps no per-process figures,
// they stay "not reported".
func (r *reader) processUtil(h gonvml.Device, procs []Process) {
	if len(procs) == 0 {
		return
	}
	samples, ret := count(&r.snap.Queries.DeviceQueries, func() ([]gonvml.ProcessUtilizationSample, gonvml.Return) {
		return h.GetProcessUtilization(0)
	})
	switch ret {
	case gonvml.SUCCESS:
	case gonvml.ERROR_NOT_FOUND:
		samples = nil // no process sampled: none was busy
	default:
		return
	}
	latest := make(map[uint32]gonvml.ProcessUtilizationSample, len(samples))
	for _, s := range samples {
		if cur, ok := latest[s.Pid]; !ok || s.TimeStamp > cur.TimeStamp {
			latest[s.Pid] = s
		}
	}
	for i := range procs {
		procs[i].SMUtil = Pct(0)
		if s, ok := latest[uint32(procs[i].PID)]; ok {
			procs[i].SMUtil = Pct(min(s.SmUtil, 100))
		}
	}
}
