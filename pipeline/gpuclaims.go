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
)

var uuidPattern = regexp.MustCompile(`^(GPU|MIG)-[0-9A-Za-z-]+$`)

// Claims reads every GPU allocation record Docker keeps for a container:
// DeviceRequests (device IDs, or a count for --gpus all), DS01's
// ds01.gpu.uuid(s) labels and NVIDIA_VISIBLE_DEVICES. Indices are mapped
// to UUIDs through the snapshot when one is available. Malformed values
// come back as warnings; they never stop the run.
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
