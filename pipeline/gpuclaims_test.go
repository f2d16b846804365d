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

// DS01's slot labels, in every form DS01 writes them, map to UUIDs through
// the GPU view; a slot the view does not know is a warning and a claim kept
// unresolved, so the container still counts as holding a GPU.
func TestSlotClaims(t *testing.T) {
	snap := &nvml.Snapshot{Available: true, Devices: []nvml.Device{
		{Index: 0, UUID: "GPU-aaaa", MIG: []nvml.MIGDevice{{Index: 0, UUID: "MIG-a0"}, {Index: 1, UUID: "MIG-a1"}}},
		{Index: 1, UUID: "GPU-bbbb", MIG: []nvml.MIGDevice{{Index: 2, UUID: "MIG-b2"}}},
	}}
	cases := []struct {
		name       string
		labels     map[string]string
		snap       *nvml.Snapshot
		want       []pipeline.GPUClaim
		wantWarns  int
		wantHasGPU bool
	}{
		{name: "schema form", labels: map[string]string{"ds01.gpu.slots": "0:0,0:1"}, snap: snap,
			want: []pipeline.GPUClaim{{UUID: "MIG-a0", Slot: "0:0", Source: pipeline.ClaimLabel}, {UUID: "MIG-a1", Slot: "0:1", Source: pipeline.ClaimLabel}}},
		{name: "allocator forms", labels: map[string]string{"ds01.gpu.slots": " 1.2 , 0 "}, snap: snap,
			want: []pipeline.GPUClaim{{UUID: "MIG-b2", Slot: "1.2", Source: pipeline.ClaimLabel}, {UUID: "GPU-aaaa", Slot: "0", Source: pipeline.ClaimLabel}}},
		{name: "legacy slot with a UUID", labels: map[string]string{"ds01.gpu_slot": "GPU-bbbb"}, snap: snap,
			want: []pipeline.GPUClaim{{UUID: "GPU-bbbb", Slot: "GPU-bbbb", Source: pipeline.ClaimLabel}}},
		{name: "legacy slot", labels: map[string]string{"ds01.gpu_slot": "0:1"}, snap: snap,
			want: []pipeline.GPUClaim{{UUID: "MIG-a1", Slot: "0:1", Source: pipeline.ClaimLabel}}},
		{name: "unknown slot", labels: map[string]string{"ds01.gpu.slots": "3.1"}, snap: snap,
			want: []pipeline.GPUClaim{{Slot: "3.1", Source: pipeline.ClaimLabel}}, wantWarns: 1},
		{name: "no GPU view", labels: map[string]string{"ds01.gpu.slots": "0"},
			want: []pipeline.GPUClaim{{Slot: "0", Source: pipeline.ClaimLabel}}, wantWarns: 1},
		{name: "garbage", labels: map[string]string{"ds01.gpu.slots": "x;y"}, snap: snap,
			want: []pipeline.GPUClaim{{Slot: "x;y", Source: pipeline.ClaimLabel}}, wantWarns: 1},
		{name: "same GPU twice", labels: map[string]string{"ds01.gpu.slots": "0", "ds01.gpu.uuid": "GPU-aaaa"}, snap: snap,
			want: []pipeline.GPUClaim{{UUID: "GPU-aaaa", Source: pipeline.ClaimLabel}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims, _, warns := pipeline.Claims(&pipeline.Container{Labels: c.labels}, c.snap)
			if diff := cmp.Diff(c.want, claims); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if len(warns) != c.wantWarns {
				t.Errorf("warnings %q, want %d", warns, c.wantWarns)
			}
			rec := &pipeline.Record{GPUs: claims}
			if !rec.HasGPU() {
				t.Error("a container with a slot label holds no GPU")
			}
			for _, u := range rec.GPUUUIDs() {
				if u == "" {
					t.Errorf("an unresolved slot listed as a UUID: %q", rec.GPUUUIDs())
				}
			}
			for _, cl := range claims {
				if cl.Enforced(&pipeline.Container{Runtime: "nvidia"}) {
					t.Errorf("label claim %+v counted as engine-enforced", cl)
				}
			}
		})
	}
}
