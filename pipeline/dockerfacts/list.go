package dockerfacts

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
)

// List lists containers with one Docker call (within one call deadline)
// and returns what the list says of each: ID, name, state and labels. From
// an engine with raw answers (pipeline.RawAnswers) the answer is read one
// container at a time, never held whole.
func List(ctx context.Context, env *pipeline.Env, opts client.ContainerListOptions) ([]pipeline.Container, error) {
	callCtx, cancel := env.Call(ctx)
	defer cancel()
	if env.Stats != nil {
		env.Stats.ListCalls.Add(1)
	}
	raw := pipeline.RawAnswersOf(env.Docker)
	if raw == nil {
		res, err := env.Docker.ContainerList(callCtx, opts)
		if err != nil {
			return nil, err
		}
		out := make([]pipeline.Container, 0, len(res.Items))
		for _, it := range res.Items {
			out = append(out, listItem{ID: it.ID, Names: it.Names, State: string(it.State), Labels: it.Labels}.facts())
		}
		return out, nil
	}
	body, err := raw.ContainerListJSON(callCtx, opts)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("reading the list answer: not a JSON array (%v)", err)
	}
	var out []pipeline.Container
	for dec.More() {
		var it listItem
		if err := dec.Decode(&it); err != nil {
			return nil, fmt.Errorf("reading the list answer: %w", err)
		}
		out = append(out, it.facts())
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("reading the list answer: %w", err)
	}
	return out, nil
}

// listItem is the part of a container summary that List keeps.
type listItem struct {
	ID     string `json:"Id"`
	Names  []string
	State  string
	Labels map[string]string
}

func (it listItem) facts() pipeline.Container {
	return pipeline.Container{ID: it.ID, Name: ownName(it.Names), State: pipeline.State(it.State), Labels: it.Labels}
}

// ownName is a listed container's own name, without the "/": a container
// linked into others has several names, and its own is the one with a
// single path element.
func ownName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	for _, n := range names {
		if strings.Count(n, "/") == 1 {
			return strings.TrimPrefix(n, "/")
		}
	}
	return strings.TrimPrefix(names[0], "/")
}
