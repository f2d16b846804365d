// Package dockerfacts is the one place that reads Docker's facts about a
// container: the inspect answer turned into the record's
// pipeline.Container, the Engine API's timestamps, and the fingerprint of
// the facts a decision rests on, with what changed since. discover builds
// the records with it, remove and stop re-inspect with it just before they
// act, and a plan file records its fingerprint for apply.
package dockerfacts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
)

// visibleDevices is the one environment variable the record keeps.
const visibleDevices = "NVIDIA_VISIBLE_DEVICES="

// Inspect asks the engine about one container, within one Docker call
// deadline, and returns its facts. warnings name the timestamps that did
// not parse (each then reads as "never"). Errors are the engine's, so
// cerrdefs.IsNotFound tells a container that is gone.
func Inspect(ctx context.Context, env *pipeline.Env, id string) (c pipeline.Container, warnings []string, err error) {
	callCtx, cancel := env.Call(ctx)
	defer cancel()
	res, err := env.Docker.ContainerInspect(callCtx, id, client.ContainerInspectOptions{})
	if env.Stats != nil {
		env.Stats.InspectCalls.Add(1)
	}
	if err != nil {
		return pipeline.Container{}, nil, err
	}
	c, warnings = FromInspect(res.Container)
	return c, warnings, nil
}

// FromInspect turns an inspect answer into the record's facts: identity,
// state and its times, labels, image, runtime, cgroup parent, GPU device
// requests and NVIDIA_VISIBLE_DEVICES. Nothing else is kept: the rest of
// the environment is user data no stage needs, and on a busy host it would
// cost memory. warnings name the timestamps that did not parse.
func FromInspect(in container.InspectResponse) (pipeline.Container, []string) {
	var warnings []string
	when := func(field, s string) time.Time {
		t, _, err := ParseTime(s)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v", field, err))
		}
		return t
	}
	out := pipeline.Container{
		ID:           in.ID,
		Name:         strings.TrimPrefix(in.Name, "/"),
		Created:      when("Created", in.Created),
		RestartCount: in.RestartCount,
	}
	if st := in.State; st != nil {
		out.State = pipeline.State(st.Status)
		out.ExitCode = st.ExitCode
		out.PID = st.Pid
		out.StartedAt = when("StartedAt", st.StartedAt)
		out.FinishedAt = when("FinishedAt", st.FinishedAt)
	}
	if cfg := in.Config; cfg != nil {
		out.Image = cfg.Image
		out.Labels = cfg.Labels
		for _, kv := range cfg.Env {
			if v, ok := strings.CutPrefix(kv, visibleDevices); ok {
				out.VisibleDevices, out.HasVisibleDevices = v, true
			}
		}
	}
	if hc := in.HostConfig; hc != nil {
		out.Runtime = hc.Runtime
		out.CgroupParent = hc.CgroupParent
		out.AutoRemove = hc.AutoRemove
		for _, r := range hc.DeviceRequests {
			out.DeviceRequests = append(out.DeviceRequests, pipeline.DeviceRequest{
				Driver: r.Driver, Count: r.Count, DeviceIDs: r.DeviceIDs, Capabilities: r.Capabilities,
			})
		}
	}
	return out, warnings
}
