package nvml

import (
	"strings"
	"testing"
)

// The simulation file's utilisation keys are optional: absent means "not
// reported" (NVML's [N/A] on a MIG parent), never 0 %.
func TestParseSimUtilization(t *testing.T) {
	data := []byte(`{
  "devices": [
    {"index": 0, "uuid": "GPU-a", "utilization_gpu": 0,
     "processes": [{"pid": 10, "used_memory_mib": 1, "sm_util": 37}, {"pid": 11, "used_memory_mib": 1}]},
    {"index": 1, "uuid": "GPU-b",
     "mig": [{"index": 0, "uuid": "MIG-b0", "utilization_gpu": 64}, {"index": 1, "uuid": "MIG-b1"}]}
  ]
}`)
	s, err := ParseSim("util.json", data)
	if err != nil {
		t.Fatal(err)
	}
	d0, d1 := s.Devices[0], s.Devices[1]
	if d0.UtilizationGPU != Pct(0) {
		t.Errorf("GPU-a utilization = %+v, want a reported 0", d0.UtilizationGPU)
	}
	if d0.Processes[0].SMUtil != Pct(37) || d0.Processes[1].SMUtil.Reported {
		t.Errorf("sm_util = %+v, %+v; want 37 and not reported", d0.Processes[0].SMUtil, d0.Processes[1].SMUtil)
	}
	if d1.UtilizationGPU.Reported {
		t.Errorf("MIG parent utilization = %+v, want not reported", d1.UtilizationGPU)
	}
	if d1.MIG[0].UtilizationGPU != Pct(64) || d1.MIG[1].UtilizationGPU.Reported {
		t.Errorf("MIG utilization = %+v, %+v", d1.MIG[0].UtilizationGPU, d1.MIG[1].UtilizationGPU)
	}
}

func TestParseSimUtilizationBad(t *testing.T) {
	for name, tc := range map[string]struct {
		data string
		want string
	}{
		"over 100": {`{"devices": [{"index": 0, "uuid": "GPU-a",
 "utilization_gpu": 101}]}`, `util.json:2:21: devices[0].utilization_gpu: 101 is not a whole percentage`},
		"negative sm": {`{"devices": [{"index": 0, "uuid": "GPU-a", "processes": [
 {"pid": 3, "sm_util": -1}]}]}`, `util.json:2:24: devices[0].processes[0].sm_util: -1 is not a whole percentage`},
		"fraction": {`{"devices": [{"index": 0, "uuid": "GPU-a", "mig": [
 {"index": 0, "uuid": "MIG-x", "utilization_gpu": 2.5}]}]}`, `devices[0].mig[0].utilization_gpu: 2.5 is not a whole percentage`},
		"string": {`{"devices": [{"index": 0, "uuid": "GPU-a", "utilization_gpu": "[N/A]"}]}`, `utilization_gpu`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSim("util.json", []byte(tc.data))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
