package pipeline

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/ds01/ds01-pipe/nvml"
)

// GPU allocation labels written by DS01's own tooling.
const (
	LabelGPUUUID  = "ds01.gpu.uuid"
	LabelGPUUUIDs = "ds01.gpu.uuids"
	// LabelGPUSlots lists DS01 slots, comma-separated: "0:0,0:1" as its
	// label schema gives them (physical GPU : MIG device), "0" or "1.2" as
	// its allocator prints them, or UUIDs.
	LabelGPUSlots = "ds01.gpu.slots"
	// LabelGPUSlot is the legacy single slot; DS01's docker wrapper puts the
	// allocated UUID there.
	LabelGPUSlot = "ds01.gpu_slot"
)

var uuidPattern = regexp.MustCompile(`^(GPU|MIG)-[0-9A-Za-z-]+$`)

// Claims reads every GPU allocation record Docker keeps for a container:
// DeviceRequests (device IDs, or a count for --gpus all), DS01's
// ds01.gpu.uuid(s) and slot labels (ds01.gpu.slots, ds01.gpu_slot) and
// NVIDIA_VISIBLE_DEVICES. Indices and slots are mapped to UUIDs through the
// snapshot when one is available. Malformed values come back as warnings;
// they never stop the run. A slot the GPU view does not know stays a claim
// with no UUID (GPUClaim.Slot), so the container still counts as holding a
// GPU.
func Claims(c *Container, snap *nvml.Snapshot) (claims []GPUClaim, all bool, warnings []string) {
	seen := map[string]bool{}
	add := func(id string, src ClaimSource) {
		id = strings.TrimSpace(id)
		if id == "" {
			return
		}
		uuid, err := resolveDevice(id, snap)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v", src, err))
			return
		}
		if uuid == "all" {
			all = true
			return
		}
		if !seen[uuid] {
			seen[uuid] = true
			claims = append(claims, GPUClaim{UUID: uuid, Source: src})
		}
	}

	for _, req := range c.DeviceRequests {
		if !isGPURequest(req) {
			continue
		}
		if len(req.DeviceIDs) == 0 {
			if req.Count != 0 {
				all = true
			}
			continue
		}
		for _, id := range req.DeviceIDs {
			if strings.EqualFold(req.Driver, "cdi") {
				// CDI names look like nvidia.com/gpu=0 or nvidia.com/gpu=GPU-...
				if _, dev, ok := strings.Cut(id, "="); ok {
					id = dev
				}
			}
			add(id, ClaimDeviceRequest)
		}
	}
	if v, ok := c.Label(LabelGPUUUID); ok {
		add(v, ClaimLabel)
	}
	if v, ok := c.Label(LabelGPUUUIDs); ok {
		for _, id := range strings.Split(v, ",") {
			add(id, ClaimLabel)
		}
	}
	for _, key := range []string{LabelGPUSlots, LabelGPUSlot} {
		v, ok := c.Label(key)
		if !ok {
			continue
		}
		for _, slot := range strings.Split(v, ",") {
			slot = strings.TrimSpace(slot)
			if slot == "" {
				continue
			}
			uuid, err := resolveSlot(slot, snap)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("%s: %v; kept as an unresolved claim", key, err))
				if !seen["slot:"+slot] {
					seen["slot:"+slot] = true
					claims = append(claims, GPUClaim{Slot: slot, Source: ClaimLabel})
				}
				continue
			}
			if !seen[uuid] {
				seen[uuid] = true
				claims = append(claims, GPUClaim{UUID: uuid, Slot: slot, Source: ClaimLabel})
			}
		}
	}
	if c.HasVisibleDevices {
		switch v := strings.TrimSpace(c.VisibleDevices); v {
		case "", "none", "void":
		default:
			for _, id := range strings.Split(v, ",") {
				add(id, ClaimEnv)
			}
		}
	}
	return claims, all, warnings
}

func isGPURequest(req DeviceRequest) bool {
	d := strings.ToLower(req.Driver)
	if d == "nvidia" || d == "cdi" {
		return true
	}
	for _, caps := range req.Capabilities {
		for _, c := range caps {
			if strings.EqualFold(c, "gpu") {
				return true
			}
		}
	}
	return false
}

// slotPattern is a DS01 slot: a GPU index, optionally with a MIG device
// index after ":" (label schema) or "." (allocator).
var slotPattern = regexp.MustCompile(`^[0-9]{1,4}([:.][0-9]{1,4})?$`)

// resolveSlot maps one DS01 slot to a UUID through the GPU view.
func resolveSlot(slot string, snap *nvml.Snapshot) (string, error) {
	switch {
	case len(slot) > 128:
		return "", fmt.Errorf("slot %.32q... is too long", slot)
	case uuidPattern.MatchString(slot):
		return slot, nil
	case !slotPattern.MatchString(slot):
		return "", fmt.Errorf("%q is neither a GPU slot nor a UUID", slot)
	}
	uuid, err := resolveDevice(strings.Replace(slot, ".", ":", 1), snap)
	if err != nil {
		return "", fmt.Errorf("slot %q: %w", slot, err)
	}
	return uuid, nil
}

// resolveDevice turns one device token into a UUID, or "all".
func resolveDevice(id string, snap *nvml.Snapshot) (string, error) {
	if len(id) > 128 {
		return "", fmt.Errorf("device %.32q... is too long to be a GPU", id)
	}
	switch {
	case strings.EqualFold(id, "all"):
		return "all", nil
	case uuidPattern.MatchString(id):
		return id, nil
	}
	gpu, mig, isMIG := strings.Cut(id, ":")
	gi, err := strconv.Atoi(gpu)
	if err != nil || gi < 0 {
		return "", fmt.Errorf("%q is neither a GPU UUID nor an index", id)
	}
	mi := -1
	if isMIG {
		if mi, err = strconv.Atoi(mig); err != nil || mi < 0 {
			return "", fmt.Errorf("%q is neither a GPU UUID nor an index", id)
		}
	}
	if snap == nil || !snap.Available {
		return "", fmt.Errorf("device index %q cannot be mapped to a UUID without a GPU view", id)
	}
	for _, d := range snap.Devices {
		if d.Index != gi {
			continue
		}
		if mi < 0 {
			return d.UUID, nil
		}
		for _, m := range d.MIG {
			if m.Index == mi {
				return m.UUID, nil
			}
		}
	}
	return "", fmt.Errorf("device index %q does not exist on this host", id)
}
