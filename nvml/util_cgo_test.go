//go:build cgo

package nvml

import (
	"context"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Utilisation through go-nvml: per device, per process from the latest
// sample (none: 0 %), and "not reported" where NVML refuses.
func TestNVMLUtilization(t *testing.T) {
	srv, devs := dgxA100(map[int][]gonvml.ProcessInfo{
		0: {{Pid: 10}, {Pid: 11}},
		1: {{Pid: 20}},
	})
	for i, d := range devs {
		switch i {
		case 0:
			d.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) { return gonvml.Utilization{Gpu: 93}, gonvml.SUCCESS }
			d.GetProcessUtilizationFunc = func(uint64) ([]gonvml.ProcessUtilizationSample, gonvml.Return) {
				return []gonvml.ProcessUtilizationSample{{Pid: 11, TimeStamp: 1, SmUtil: 10}, {Pid: 11, TimeStamp: 2, SmUtil: 90}}, gonvml.SUCCESS
			}
		case 1:
			d.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) { return gonvml.Utilization{}, gonvml.ERROR_NO_PERMISSION }
			d.GetProcessUtilizationFunc = func(uint64) ([]gonvml.ProcessUtilizationSample, gonvml.Return) {
				return nil, gonvml.ERROR_NOT_SUPPORTED
			}
		default:
			d.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) { return gonvml.Utilization{Gpu: 0}, gonvml.SUCCESS }
		}
	}
	b := newNVMLBackend(srv)
	b.utilization = true
	s, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d0, d1 := s.Devices[0], s.Devices[1]
	if d0.UtilizationGPU != Pct(93) || d0.Processes[0].SMUtil != Pct(0) || d0.Processes[1].SMUtil != Pct(90) {
		t.Errorf("GPU 0: %+v", d0)
	}
	if d1.UtilizationGPU.Reported || d1.Processes[0].SMUtil.Reported {
		t.Errorf("GPU 1: %+v, want nothing reported", d1)
	}
	// One utilisation query per GPU, one per-process query per GPU with processes.
	if want := 2 + 8*perDeviceQueries + 8 + 2; s.Queries.DeviceQueries != want {
		t.Errorf("device queries %d, want %d", s.Queries.DeviceQueries, want)
	}
}
