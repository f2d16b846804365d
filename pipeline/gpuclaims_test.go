package pipeline_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

func TestClaims(t *testing.T) {
	snap := &nvml.Snapshot{Available: true, Devices: []nvml.Device{
		{Index: 0, UUID: "GPU-aaaa"},
		{Index: 1, UUID: "GPU-bbbb", MIG: []nvml.MIGDevice{{Index: 0, UUID: "MIG-cccc"}, {Index: 1, UUID: "MIG-dddd"}}},
	}}
	gpuReq := func(driver string, count int, ids ...string) []pipeline.DeviceRequest {
		return []pipeline.DeviceRequest{{Driver: driver, Count: count, DeviceIDs: ids, Capabilities: [][]string{{"gpu"}}}}
	}
	cases := []struct {
		name      string
		c         pipeline.Container
		snap      *nvml.Snapshot
		want      []string
		wantAll   bool
		wantWarns int
	}{
		{name: "no gpu", c: pipeline.Container{}},
		{name: "device uuid", c: pipeline.Container{DeviceRequests: gpuReq("", 0, "GPU-aaaa")}, want: []string{"GPU-aaaa"}},
		{name: "index mapped", c: pipeline.Container{DeviceRequests: gpuReq("nvidia", 0, "1")}, snap: snap, want: []string{"GPU-bbbb"}},
		{name: "mig index mapped", c: pipeline.Container{DeviceRequests: gpuReq("nvidia", 0, "1:1")}, snap: snap, want: []string{"MIG-dddd"}},
		{name: "index without gpu view", c: pipeline.Container{DeviceRequests: gpuReq("nvidia", 0, "0")}, wantWarns: 1},
		{name: "gpus all", c: pipeline.Container{DeviceRequests: gpuReq("", -1)}, wantAll: true},
		{name: "cdi", c: pipeline.Container{DeviceRequests: []pipeline.DeviceRequest{{Driver: "cdi", DeviceIDs: []string{"nvidia.com/gpu=GPU-aaaa"}}}}, want: []string{"GPU-aaaa"}},
		{name: "non-gpu request ignored", c: pipeline.Container{DeviceRequests: []pipeline.DeviceRequest{{Driver: "other", DeviceIDs: []string{"x"}}}}},
		{name: "labels", c: pipeline.Container{Labels: map[string]string{"ds01.gpu.uuid": "MIG-cccc", "ds01.gpu.uuids": "GPU-aaaa, GPU-bbbb"}}, want: []string{"MIG-cccc", "GPU-aaaa", "GPU-bbbb"}},
		{name: "no value label", c: pipeline.Container{Labels: map[string]string{"ds01.gpu.uuid": "<no value>"}}},
		{name: "env list", c: pipeline.Container{HasVisibleDevices: true, VisibleDevices: "GPU-aaaa,0"}, snap: snap, want: []string{"GPU-aaaa"}},
		{name: "env all", c: pipeline.Container{HasVisibleDevices: true, VisibleDevices: "all"}, wantAll: true},
		{name: "env none", c: pipeline.Container{HasVisibleDevices: true, VisibleDevices: "void"}},
		{name: "garbage env", c: pipeline.Container{HasVisibleDevices: true, VisibleDevices: "GPU-aaaa,\x1b[31mred,;rm -rf"}, want: []string{"GPU-aaaa"}, wantWarns: 2},
		{name: "dedupe across sources", c: pipeline.Container{DeviceRequests: gpuReq("", 0, "GPU-aaaa"), Labels: map[string]string{"ds01.gpu.uuid": "GPU-aaaa"}}, want: []string{"GPU-aaaa"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims, all, warns := pipeline.Claims(&c.c, c.snap)
			var got []string
			for _, cl := range claims {
				got = append(got, cl.UUID)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if all != c.wantAll || len(warns) != c.wantWarns {
				t.Errorf("all=%v warnings=%q", all, warns)
			}
		})
	}
}
