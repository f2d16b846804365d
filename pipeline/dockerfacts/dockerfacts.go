// Package dockerfacts is the one place that reads Docker's facts about a
// container: the inspect answer turned into the record's
// pipeline.Container, the Engine API's timestamps, and the fingerprint of
// the facts a decision rests on, with what changed since. discover builds
// the records with it, remove and stop re-inspect with it just before they
// act, and a plan file records its fingerprint for apply.
package dockerfacts

import (
	"context"
	"encoding/json"
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
// cerrdefs.IsNotFound tells a container that is gone. From an engine with
// raw answers (pipeline.Engine, the engine of every run) only the fields
// the record keeps are decoded: the rest of Docker's answer (mounts,
// networks, the whole environment, the graph driver) is skipped instead of
// built and thrown away.
func Inspect(ctx context.Context, env *pipeline.Env, id string) (c pipeline.Container, warnings []string, err error) {
	callCtx, cancel := env.Call(ctx)
	defer cancel()
	if env.Stats != nil {
		env.Stats.InspectCalls.Add(1)
	}
	var a inspectAnswer
	if raw := pipeline.RawAnswersOf(env.Docker); raw != nil {
		body, err := raw.ContainerInspectJSON(callCtx, id)
		if err != nil {
			return pipeline.Container{}, nil, err
		}
		defer body.Close()
		if err := json.NewDecoder(body).Decode(&a); err != nil {
			return pipeline.Container{}, nil, fmt.Errorf("reading the inspect answer: %w", err)
		}
	} else {
		res, err := env.Docker.ContainerInspect(callCtx, id, client.ContainerInspectOptions{})
		if err != nil {
			return pipeline.Container{}, nil, err
		}
		if err := a.from(res); err != nil {
			return pipeline.Container{}, nil, err
		}
	}
	c, warnings = a.facts()
	return c, warnings, nil
}

// FromInspect turns an inspect answer into the record's facts, as Inspect
// does.
func FromInspect(in container.InspectResponse) (pipeline.Container, []string) {
	var a inspectAnswer
	if err := a.from(client.ContainerInspectResult{Container: in}); err != nil {
		// An InspectResponse always encodes; nothing is known otherwise.
		return pipeline.Container{ID: in.ID}, []string{err.Error()}
	}
	return a.facts()
}

// inspectAnswer is the part of Docker's inspect answer that the record
// keeps, under Docker's names: decoding into it skips everything else.
// (Docker's HostConfig carries CgroupParent and DeviceRequests at its top
// level.)
type inspectAnswer struct {
	ID           string `json:"Id"`
	Name         string
	Created      string
	RestartCount int
	State        *struct {
		Status     string
		ExitCode   int
		Pid        int
		StartedAt  string
		FinishedAt string
	}
	Config *struct {
		Image  string
		Labels map[string]string
		Env    []string
	}
	HostConfig *struct {
		Runtime        string
		CgroupParent   string
		AutoRemove     bool
		DeviceRequests []pipeline.DeviceRequest
	}
}

// from reads a decoded answer (an engine without raw answers: a test's,
// or a wrapped client) through the same fields: its raw JSON when the
// client kept it, else the answer encoded again.
func (a *inspectAnswer) from(res client.ContainerInspectResult) error {
	raw := []byte(res.Raw)
	if len(raw) == 0 {
		var err error
		if raw, err = json.Marshal(res.Container); err != nil {
			return fmt.Errorf("reading the inspect answer: %w", err)
		}
	}
	if err := json.Unmarshal(raw, a); err != nil {
		return fmt.Errorf("reading the inspect answer: %w", err)
	}
	return nil
}

// facts is the record's Container of an answer: identity, state and its
// times, labels, image, runtime, cgroup parent, GPU device requests and
// NVIDIA_VISIBLE_DEVICES. The rest of the environment is user data that no
// stage needs. warnings name the timestamps that did not parse.
func (a *inspectAnswer) facts() (pipeline.Container, []string) {
	var warnings []string
	when := func(field, s string) time.Time {
		t, _, err := ParseTime(s)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v", field, err))
		}
		return t
	}
	out := pipeline.Container{
		ID:           a.ID,
		Name:         strings.TrimPrefix(a.Name, "/"),
		Created:      when("Created", a.Created),
		RestartCount: a.RestartCount,
	}
	if st := a.State; st != nil {
		out.State = pipeline.State(st.Status)
		out.ExitCode = st.ExitCode
		out.PID = st.Pid
		out.StartedAt = when("StartedAt", st.StartedAt)
		out.FinishedAt = when("FinishedAt", st.FinishedAt)
	}
	if cfg := a.Config; cfg != nil {
		out.Image = cfg.Image
		out.Labels = cfg.Labels
		for _, kv := range cfg.Env {
			if v, ok := strings.CutPrefix(kv, visibleDevices); ok {
				out.VisibleDevices, out.HasVisibleDevices = v, true
			}
		}
	}
	if hc := a.HostConfig; hc != nil {
		out.Runtime = hc.Runtime
		out.CgroupParent = hc.CgroupParent
		out.AutoRemove = hc.AutoRemove
		out.DeviceRequests = hc.DeviceRequests
	}
	return out, warnings
}
