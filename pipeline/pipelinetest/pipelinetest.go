// Package pipelinetest is the test kit of the engine and the stages:
// stages made of functions, registries of fake kinds, an in-memory Docker
// engine, builders of records and containers, and loading a pipeline from
// a string. It is imported by tests only.
package pipelinetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

// Func is a stage made of a function.
type Func func(ctx context.Context, env *pipeline.Env, b *pipeline.Batch) error

// Process calls f.
func (f Func) Process(ctx context.Context, env *pipeline.Env, b *pipeline.Batch) error {
	return f(ctx, env, b)
}

// Stage is a configured stage instance of kind made of fn, with the given
// contract (the runner reads Finalizer and the exemption writers from it).
func Stage(kind string, c pipeline.Contract, fn Func) pipeline.StageInstance {
	return pipeline.StageInstance{Ref: pipeline.StageRef{Kind: kind}, Stage: fn, Contract: c}
}

// Kind is a fake stage kind: a spec whose stages do nothing, with the
// given contract.
func Kind(kind string, c pipeline.Contract) pipeline.Spec {
	return pipeline.Spec{
		Kind:     kind,
		Summary:  "A fake stage kind for tests.",
		Contract: c,
		New:      func() pipeline.Stage { return &Nop{} },
	}
}

// Nop is a stage that does nothing. Its one optional attribute lets
// loader tests write a body.
type Nop struct {
	Note string `hcl:"note,optional" doc:"Ignored."`
}

// Process does nothing.
func (*Nop) Process(context.Context, *pipeline.Env, *pipeline.Batch) error { return nil }

// Registry returns a registry holding specs, failing the test on a
// duplicate kind.
func Registry(t testing.TB, specs ...pipeline.Spec) *pipeline.Registry {
	t.Helper()
	reg := pipeline.NewRegistry()
	for _, s := range specs {
		if err := reg.Register(s); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// Only returns a registry holding the default registry's specs of the
// given kinds (a stage package's tests load pipelines of their own kind).
func Only(t testing.TB, kinds ...string) *pipeline.Registry {
	t.Helper()
	specs := make([]pipeline.Spec, 0, len(kinds))
	for _, k := range kinds {
		s, ok := pipeline.DefaultRegistry.Lookup(k)
		if !ok {
			t.Fatalf("stage kind %q is not registered", k)
		}
		specs = append(specs, s)
	}
	return Registry(t, specs...)
}

// Load writes src to a file of a temporary folder and loads it with reg
// (nil: the default registry).
func Load(t testing.TB, reg *pipeline.Registry, src string) (*pipeline.Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return pipeline.LoadFile(path, pipeline.LoadOptions{Registry: reg})
}

// HasDiag reports whether diags hold one with summary on line.
func HasDiag(diags hcl.Diagnostics, summary string, line int) bool {
	for _, d := range diags {
		if d.Summary == summary && d.Subject != nil && d.Subject.Start.Line == line {
			return true
		}
	}
	return false
}

// Now is the fixed clock of the kit's environments and records.
var Now = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// Env is an environment for mode with docker (may be nil), no GPU, the
// fixed clock Now and a logger whose entries the returned hook keeps.
func Env(mode pipeline.Mode, docker pipeline.Docker) (*pipeline.Env, *logtest.Hook) {
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	gpu, _ := nvml.Open(nvml.Options{Backend: nvml.BackendNone})
	return &pipeline.Env{
		Pipeline:    "test",
		File:        "test.hcl",
		Mode:        mode,
		Now:         Now,
		Host:        "testhost",
		Docker:      docker,
		CallTimeout: 5 * time.Second,
		GPU:         gpu,
		Log:         log,
		Stats:       &pipeline.Stats{},
	}, hook
}

// Ctr is a container with a name (without "/") and label key, value
// pairs; its ID is derived from the name.
func Ctr(name string, labels ...string) *pipeline.Container {
	c := &pipeline.Container{ID: "id-" + name, Name: name, Labels: map[string]string{}}
	for i := 0; i+1 < len(labels); i += 2 {
		c.Labels[labels[i]] = labels[i+1]
	}
	return c
}

// Batch is a batch of one record per container.
func Batch(cs ...*pipeline.Container) *pipeline.Batch {
	b := &pipeline.Batch{}
	for _, c := range cs {
		b.Records = append(b.Records, &pipeline.Record{Container: *c})
	}
	return b
}

// Exited is a record of a container that exited a day before Now, with a
// remove verdict: what a cleanup pipeline would act on.
func Exited(name string, labels ...string) *pipeline.Record {
	c := Ctr(name, labels...)
	c.State = pipeline.StateExited
	c.Created = Now.Add(-48 * time.Hour)
	c.StartedAt = Now.Add(-47 * time.Hour)
	c.FinishedAt = Now.Add(-24 * time.Hour)
	return &pipeline.Record{
		Container: *c,
		Owner:     pipeline.Owner{Name: "alice", Source: pipeline.OwnerFromUser},
		Type:      "docker",
		Verdict:   pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired, Clock: pipeline.ClockFinished, Age: 24 * time.Hour, Limit: time.Hour, HasLimit: true},
	}
}

// Running is Exited's record for a running container (no finish time).
func Running(name string, labels ...string) *pipeline.Record {
	r := Exited(name, labels...)
	r.Container.State = pipeline.StateRunning
	r.Container.FinishedAt = time.Time{}
	r.Container.PID = 4242
	return r
}
