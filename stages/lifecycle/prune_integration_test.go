package lifecycle

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// The stage against the real engine, with runs of different scopes (each
// given the records of some containers only, as a narrower discover or a
// filter would): the state of a container outside a run is kept while the
// engine says its container run goes on, and while the engine cannot be
// asked at all (an unreachable socket: a real transport error); it is
// pruned once the engine says the container was stopped, started again or
// removed.
func TestPruneAgainstTheEngine(t *testing.T) {
	eng := dockertest.New(t)
	m := model(t)
	dir := filepath.Join(t.TempDir(), "state")
	ctx := context.Background()

	start := func(name string) dockertest.Container {
		return eng.Create(t, dockertest.Spec{Name: name, Labels: map[string]string{"ds01.user": "sam"}, Args: []string{"forever"}, Start: true})
	}
	kept, stopped, restarted, removed := start("kept"), start("stopped"), start("restarted"), start("removed")
	all := []dockertest.Container{kept, stopped, restarted, removed}
	facts := map[string]pipeline.Container{}
	var first time.Time // the latest start: the runs' clock counts from it
	for _, c := range all {
		env, _ := pipelinetest.Env(pipeline.ModePlan, eng.Client())
		f, _, err := dockerfacts.Inspect(ctx, env, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		facts[c.ID] = f
		if f.StartedAt.After(first) {
			first = f.StartedAt
		}
	}
	records := func(cs ...dockertest.Container) []*pipeline.Record {
		var out []*pipeline.Record
		for _, c := range cs {
			r := gpuRecord(c.Name, "sam", facts[c.ID].StartedAt, claim("GPU-"+c.Name, pipeline.ClaimLabel))
			r.Container = facts[c.ID]
			out = append(out, r)
		}
		return out
	}
	// run processes one run at first+19h+n minutes (sam: 24 h max runtime,
	// warned from 18 h) with the records of cs alone, and returns the
	// notices given and the warnings logged.
	run := func(docker pipeline.Docker, n int, cs ...dockertest.Container) (map[string][]pipeline.NoticeKind, []string) {
		t.Helper()
		env, hook := pipelinetest.Env(pipeline.ModeRun, docker)
		env.Policy, env.Now = m, first.Add(19*time.Hour+time.Duration(n)*time.Minute)
		s := New()
		s.StateDir = dir
		s.KeepAliveFile = ""
		b := &pipeline.Batch{Records: records(cs...)}
		if err := s.Process(ctx, env, b); err != nil {
			t.Fatal(err)
		}
		notices := map[string][]pipeline.NoticeKind{}
		for _, r := range b.Records {
			for _, nt := range r.Lifecycle.Notices {
				notices[r.Container.Name] = append(notices[r.Container.Name], nt.Kind)
			}
		}
		var warns []string
		for _, e := range hook.AllEntries() {
			if e.Level <= logrus.WarnLevel {
				warns = append(warns, e.Message)
			}
		}
		return notices, warns
	}
	stored := func() []string {
		t.Helper()
		var out []string
		for _, n := range names(t, dir) {
			out = append(out, strings.TrimPrefix(n, eng.Prefix()))
		}
		return out
	}

	notices, _ := run(eng.Client(), 0, all...)
	for _, c := range all {
		if got := notices[c.Name]; len(got) != 1 || got[0] != pipeline.NoticeRuntimeWarning {
			t.Fatalf("first run, %s: notices %v, want one runtime warning", c.Name, got)
		}
	}

	// An engine that cannot be asked keeps every entry outside the run.
	unreachable, err := client.New(client.WithHost("unix://" + filepath.Join(t.TempDir(), "no-engine.sock")))
	if err != nil {
		t.Fatal(err)
	}
	defer unreachable.Close()
	if _, warns := run(unreachable, 5); len(warns) != 1 || !strings.Contains(warns[0], "kept the state of 4 container(s)") {
		t.Errorf("unreachable engine: warnings %q, want one saying 4 entries were kept", warns)
	}
	if got, want := stored(), []string{"kept", "removed", "restarted", "stopped"}; !slices.Equal(got, want) {
		t.Fatalf("after a run that could not ask the engine: store holds %v, want %v", got, want)
	}

	// The engine answers: running in the same container run, kept.
	run(eng.Client(), 10, kept)
	if notices, _ := run(eng.Client(), 15, stopped, restarted, removed); len(notices) != 0 {
		t.Errorf("after a run of another scope: notices %v, want none (all warned in the first run)", notices)
	}
	if notices, _ := run(eng.Client(), 20, kept); len(notices) != 0 {
		t.Errorf("kept, after a run of another scope: notices %v, want none", notices)
	}

	// Stopped, started again, removed: each container run is over.
	timeout := 5
	if _, err := eng.Client().ContainerStop(ctx, stopped.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Client().ContainerStop(ctx, restarted.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	eng.Start(t, restarted.ID)
	if _, err := eng.Client().ContainerRemove(ctx, removed.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, warns := run(eng.Client(), 25, kept); len(warns) != 0 {
		t.Errorf("warnings %q, want none", warns)
	}
	if got, want := stored(), []string{"kept"}; !slices.Equal(got, want) {
		t.Errorf("after stop, restart and removal outside the run: store holds %v, want %v", got, want)
	}
}
