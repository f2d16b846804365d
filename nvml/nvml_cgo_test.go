//go:build cgo

package nvml

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"
)

// dgxA100 is go-nvml's simulated DGX A100 (8 GPUs, MIG off), with process
// lists set (the mock server has none): procs[i] runs on GPU i.
func dgxA100(procs map[int][]gonvml.ProcessInfo) (*server.Server, []*server.Device) {
	srv := dgxa100.New()
	devs := make([]*server.Device, len(srv.Devices))
	for i, d := range srv.Devices {
		devs[i] = d.(*server.Device)
		devs[i].GetComputeRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) {
			return procs[i], gonvml.SUCCESS
		}
	}
	return srv, devs
}

// perDeviceQueries is what a GPU without MIG costs: handle, UUID, name,
// memory and MIG mode.
const perDeviceQueries = 5

func TestNVMLDevicesWithProcesses(t *testing.T) {
	srv, devs := dgxA100(map[int][]gonvml.ProcessInfo{
		0: {{Pid: 4242, UsedGpuMemory: 1 << 30}, {Pid: 4250, UsedGpuMemory: 512 << 20}},
		// NVML_VALUE_NOT_AVAILABLE: memory unknown, reported as 0.
		3: {{Pid: 99, UsedGpuMemory: ^uint64(0)}},
	})
	b := newNVMLBackend(srv)
	s, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := &Snapshot{
		Backend:       BackendNVML,
		Available:     true,
		DriverVersion: "550.54.15",
		Queries:       QueryStats{DeviceQueries: 2 + 8*perDeviceQueries, ProcessQueries: 8},
	}
	for i, d := range devs {
		want.Devices = append(want.Devices, Device{
			Index: i, UUID: d.UUID, Name: d.Config.Name, MemoryMiB: 40960,
		})
	}
	want.Devices[0].Processes = []Process{{PID: 4242, UsedMemoryMiB: 1024}, {PID: 4250, UsedMemoryMiB: 512}}
	want.Devices[3].Processes = []Process{{PID: 99}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
	}
	for i, d := range devs {
		if n := len(d.GetUUIDCalls()) + len(d.GetComputeRunningProcessesCalls()); n != 2 {
			t.Errorf("GPU %d: %d UUID and process queries, want one each", i, n)
		}
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want once", n)
	}
	if _, err := b.Snapshot(context.Background()); !errors.Is(err, errClosed) {
		t.Errorf("Snapshot after Close = %v, want errClosed", err)
	}
}

func TestNVMLMIGDevice(t *testing.T) {
	srv, devs := dgxA100(nil)
	parent := devs[1]
	if ret, _ := parent.SetMigMode(gonvml.DEVICE_MIG_ENABLE); ret != gonvml.SUCCESS {
		t.Fatal(ret)
	}
	// The parent's whole-device process list must not be read with MIG on.
	parent.GetComputeRunningProcessesFunc = nil
	slices := map[int]*mock.Device{
		0: migSlice("MIG-3e1a5c7b-9d2f-5e4a-8b6c-1f0d2e3a4b51", "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
			gonvml.ProcessInfo{Pid: 4343, UsedGpuMemory: 256 << 20}, gonvml.ProcessInfo{Pid: 4344}),
		// Index 1 is free: NVML answers ERROR_NOT_FOUND there.
		2: migSlice("MIG-7b4d2a9e-1c3f-5a6b-9d8e-2f1a0b3c4d52", "NVIDIA A100-SXM4-40GB MIG 1g.5gb"),
	}
	parent.GetMaxMigDeviceCountFunc = func() (int, gonvml.Return) { return 7, gonvml.SUCCESS }
	parent.GetMigDeviceHandleByIndexFunc = func(j int) (gonvml.Device, gonvml.Return) {
		if m, ok := slices[j]; ok {
			return m, gonvml.SUCCESS
		}
		return nil, gonvml.ERROR_NOT_FOUND
	}

	s, err := newNVMLBackend(srv).Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Device{
		Index: 1, UUID: parent.UUID, Name: parent.Config.Name, MemoryMiB: 40960,
		MIG: []MIGDevice{
			{Index: 0, UUID: "MIG-3e1a5c7b-9d2f-5e4a-8b6c-1f0d2e3a4b51", Profile: "3g.20gb",
				Processes: []Process{{PID: 4343, UsedMemoryMiB: 256}, {PID: 4344}}},
			{Index: 2, UUID: "MIG-7b4d2a9e-1c3f-5a6b-9d8e-2f1a0b3c4d52", Profile: "1g.5gb"},
		},
	}
	if diff := cmp.Diff(want, s.Devices[1]); diff != "" {
		t.Errorf("MIG device mismatch (-want +got):\n%s", diff)
	}
	if len(s.Devices) != 8 || len(s.Warnings) != 0 {
		t.Errorf("%d devices, warnings %q; want 8 and none", len(s.Devices), s.Warnings)
	}
	// One process query per non-MIG GPU and per slice; the MIG parent
	// costs its five queries, the slice count, 7 handle lookups and a UUID
	// and a name per slice.
	wantQ := QueryStats{
		DeviceQueries:  2 + 8*perDeviceQueries + 1 + 7 + 2*2,
		ProcessQueries: 7 + 2,
	}
	if s.Queries != wantQ {
		t.Errorf("queries = %+v, want %+v", s.Queries, wantQ)
	}
	for j, m := range slices {
		if n := len(m.GetComputeRunningProcessesCalls()); n != 1 {
			t.Errorf("slice %d: %d process queries, want 1", j, n)
		}
	}
}

func migSlice(uuid, name string, procs ...gonvml.ProcessInfo) *mock.Device {
	return &mock.Device{
		GetUUIDFunc: func() (string, gonvml.Return) { return uuid, gonvml.SUCCESS },
		GetNameFunc: func() (string, gonvml.Return) { return name, gonvml.SUCCESS },
		GetComputeRunningProcessesFunc: func() ([]gonvml.ProcessInfo, gonvml.Return) {
			return procs, gonvml.SUCCESS
		},
	}
}

// TestNVMLInitFails checks the rule that matters most on hosts without a
// driver: after a failed Init, nothing at all is called (a call into a
// library that did not load ends the process with exit 127).
func TestNVMLInitFails(t *testing.T) {
	tests := []struct {
		ret  gonvml.Return
		want string
	}{
		{gonvml.ERROR_LIBRARY_NOT_FOUND, "NVML: ERROR_LIBRARY_NOT_FOUND"},
		{gonvml.ERROR_DRIVER_NOT_LOADED, "NVML: ERROR_DRIVER_NOT_LOADED"},
		{gonvml.ERROR_LIB_RM_VERSION_MISMATCH, "NVML: ERROR_LIB_RM_VERSION_MISMATCH"},
		{gonvml.Return(77), "NVML: NVML return code 77"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			// Every other method of this mock panics when called.
			lib := &mock.Interface{InitFunc: func() gonvml.Return { return tt.ret }}
			b := newNVMLBackend(lib)
			s, err := b.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := &Snapshot{Backend: BackendNVML, Unavailable: tt.want}
			if diff := cmp.Diff(want, s); diff != "" {
				t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
			}
			if err := b.Close(); err != nil {
				t.Error(err)
			}
			for name, n := range callCounts(lib) {
				if name == "Init" && n != 1 || name != "Init" && n != 0 {
					t.Errorf("%s called %d times after a failed Init", name, n)
				}
			}
		})
	}
}

// callCounts reads every <Method>Calls() helper of a go-nvml mock.
func callCounts(m any) map[string]int {
	counts := make(map[string]int)
	v := reflect.ValueOf(m)
	for i := range v.NumMethod() {
		name := v.Type().Method(i).Name
		method := v.Method(i)
		if !strings.HasSuffix(name, "Calls") || method.Type().NumIn() != 0 || method.Type().NumOut() != 1 {
			continue
		}
		if out := method.Call(nil)[0]; out.Kind() == reflect.Slice {
			counts[strings.TrimSuffix(name, "Calls")] = out.Len()
		}
	}
	return counts
}

func TestNVMLPerDeviceErrors(t *testing.T) {
	srv, devs := dgxA100(map[int][]gonvml.ProcessInfo{0: {{Pid: 10}}})
	handle := srv.DeviceGetHandleByIndexFunc
	srv.DeviceGetHandleByIndexFunc = func(i int) (gonvml.Device, gonvml.Return) {
		if i == 1 {
			return nil, gonvml.ERROR_GPU_IS_LOST
		}
		return handle(i)
	}
	devs[2].GetUUIDFunc = func() (string, gonvml.Return) { return "", gonvml.ERROR_GPU_IS_LOST }
	devs[4].GetMigModeFunc = func() (int, int, gonvml.Return) { return 0, 0, gonvml.ERROR_NOT_SUPPORTED }
	devs[5].GetComputeRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) {
		return nil, gonvml.ERROR_NO_PERMISSION
	}
	devs[6].GetMemoryInfoFunc = func() (gonvml.Memory, gonvml.Return) { return gonvml.Memory{}, gonvml.ERROR_UNKNOWN }
	devs[7].GetMigModeFunc = func() (int, int, gonvml.Return) { return 1, 1, gonvml.SUCCESS }
	devs[7].GetMaxMigDeviceCountFunc = func() (int, gonvml.Return) { return 2, gonvml.SUCCESS }
	devs[7].GetMigDeviceHandleByIndexFunc = func(j int) (gonvml.Device, gonvml.Return) {
		if j == 0 {
			return migSlice("MIG-a", "NVIDIA A100-SXM4-40GB MIG 7g.40gb"), gonvml.SUCCESS
		}
		return nil, gonvml.ERROR_UNKNOWN
	}

	s, err := newNVMLBackend(srv).Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantWarnings := []string{
		"GPU 1: handle: ERROR_GPU_IS_LOST (GPU left out)",
		"GPU 2: UUID: ERROR_GPU_IS_LOST (GPU left out)",
		"GPU 5 (" + devs[5].UUID + "): compute processes: ERROR_NO_PERMISSION",
		"GPU 6 (" + devs[6].UUID + "): memory: ERROR_UNKNOWN",
		"GPU 7 (" + devs[7].UUID + "): MIG slice 1: handle: ERROR_UNKNOWN",
	}
	if diff := cmp.Diff(wantWarnings, s.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	var indices []int
	byIndex := make(map[int]Device)
	for _, d := range s.Devices {
		indices = append(indices, d.Index)
		byIndex[d.Index] = d
	}
	if diff := cmp.Diff([]int{0, 3, 4, 5, 6, 7}, indices); diff != "" {
		t.Errorf("devices in the snapshot (-want +got):\n%s", diff)
	}
	if !s.Available || len(byIndex[0].Processes) != 1 {
		t.Errorf("the healthy GPUs should still be read: %+v", s)
	}
	if got := byIndex[5].ProcessError; got != "compute processes: ERROR_NO_PERMISSION" {
		t.Errorf("GPU 5 ProcessError = %q", got)
	}
	if got := byIndex[6]; got.MemoryMiB != 0 || got.ProcessError != "" {
		t.Errorf("GPU 6 = %+v, want memory 0 and processes read", got)
	}
	if got := byIndex[7]; got.ProcessError != "MIG slice 1: handle: ERROR_UNKNOWN" || len(got.MIG) != 1 {
		t.Errorf("GPU 7 = %+v, want one slice and an incomplete process picture", got)
	}
}

func TestNVMLDeviceCountFails(t *testing.T) {
	srv, _ := dgxA100(nil)
	srv.DeviceGetCountFunc = func() (int, gonvml.Return) { return 0, gonvml.ERROR_UNKNOWN }
	if _, err := newNVMLBackend(srv).Snapshot(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "ERROR_UNKNOWN") {
		t.Errorf("Snapshot = %v, want an error naming ERROR_UNKNOWN", err)
	}
}

func TestNVMLContextStopsBetweenDevices(t *testing.T) {
	srv, devs := dgxA100(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	uuid := devs[1].GetUUIDFunc
	devs[1].GetUUIDFunc = func() (string, gonvml.Return) {
		cancel() // the deadline passes while GPU 1 is read
		return uuid()
	}
	_, err := newNVMLBackend(srv).Snapshot(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Snapshot = %v, want context.Canceled", err)
	}
	if n := len(devs[2].GetUUIDCalls()); n != 0 {
		t.Errorf("GPU 2 was queried %d times after the context ended", n)
	}
}

func TestMIGProfile(t *testing.T) {
	tests := map[string]string{
		"NVIDIA A100-SXM4-80GB MIG 3g.40gb":    "3g.40gb",
		"NVIDIA H100 80GB HBM3 MIG 1g.10gb":    "1g.10gb",
		"NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb": "1c.3g.20gb",
		"NVIDIA A100-SXM4-80GB":                "",
		"":                                     "",
	}
	for name, want := range tests {
		if got := migProfile(name); got != want {
			t.Errorf("migProfile(%q) = %q, want %q", name, got, want)
		}
	}
}
