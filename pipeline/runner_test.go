package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// Contracts of the fake stages below, as the real kinds declare them.
var (
	discoverContract = pipeline.Contract{Writes: []pipeline.Field{pipeline.FieldFacts}}
	exemptContract   = pipeline.Contract{Needs: []pipeline.Field{pipeline.FieldFacts}, Writes: []pipeline.Field{pipeline.FieldExemption}}
	decideContract   = pipeline.Contract{Needs: []pipeline.Field{pipeline.FieldFacts}, Writes: []pipeline.Field{pipeline.FieldVerdict}}
	actContract      = pipeline.Contract{Needs: []pipeline.Field{pipeline.FieldFacts}, Reads: []pipeline.Field{pipeline.FieldVerdict}, Writes: []pipeline.Field{pipeline.FieldOutcome}, Acts: true}
	logContract      = pipeline.Contract{Terminal: true, Finalizer: true}
)

// world is an engine holding recs, and a discover stage that puts copies
// of recs (facts only) into the batch.
func world(recs ...*pipeline.Record) (*pipelinetest.Docker, pipeline.StageInstance) {
	d := pipelinetest.NewDocker()
	for _, r := range recs {
		d.Add(pipelinetest.Response(r))
	}
	discover := pipelinetest.Stage("discover", discoverContract, func(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
		for _, r := range recs {
			b.Records = append(b.Records, &pipeline.Record{Container: r.Container})
		}
		return nil
	})
	return d, discover
}

// decideAll gives every record the action, whatever it is: a stage that
// ignores exemptions and states.
func decideAll(action pipeline.Action) pipeline.StageInstance {
	return pipelinetest.Stage("decide", decideContract, func(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
		for _, rec := range b.Records {
			rec.Verdict = pipeline.Verdict{Action: action, Reason: pipeline.ReasonHoldExpired}
		}
		return nil
	})
}

// actOnVerdicts removes (or stops) every record whose verdict says so,
// checking nothing else.
func actOnVerdicts() pipeline.StageInstance {
	return pipelinetest.Stage("remove", actContract, func(ctx context.Context, env *pipeline.Env, b *pipeline.Batch) error {
		for _, rec := range b.Records {
			act(ctx, env, rec, rec.Verdict.Action)
		}
		return nil
	})
}

func act(ctx context.Context, env *pipeline.Env, rec *pipeline.Record, a pipeline.Action) {
	var err error
	switch a {
	case pipeline.ActionRemove:
		_, err = env.Docker.ContainerRemove(ctx, rec.Container.ID, client.ContainerRemoveOptions{})
	case pipeline.ActionStop:
		s := env.Docker.(interface {
			ContainerStop(context.Context, string, client.ContainerStopOptions) (client.ContainerStopResult, error)
		})
		_, err = s.ContainerStop(ctx, rec.Container.ID, client.ContainerStopOptions{})
	default:
		return
	}
	if err != nil {
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: err.Error()}
		return
	}
	rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeRemoved}
}

// exemptByName marks one container exempt, as a configured exempt stage.
func exemptByName(name string) pipeline.StageInstance {
	return pipelinetest.Stage("exempt", exemptContract, func(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
		for _, rec := range b.Records {
			if rec.Container.Name == name && !rec.Exempt {
				rec.Exempt, rec.ExemptReason = true, "name listed in names"
			}
		}
		return nil
	})
}

func byName(t *testing.T, b *pipeline.Batch, name string) *pipeline.Record {
	t.Helper()
	for _, rec := range b.Records {
		if rec.Container.Name == name {
			return rec
		}
	}
	t.Fatalf("no record %s", name)
	return nil
}

// The invariants hold in pipelines with no exempt stage, with the exempt
// stage after the acting one, and with stages that decide blindly.
func TestRunInvariantsWhateverTheStages(t *testing.T) {
	protected := pipelinetest.Exited("prot", "ds01.protected", "true")
	monitoring := pipelinetest.Exited("mon", "ds01.monitoring", "true")
	notQuite := pipelinetest.Exited("notquite", "ds01.protected", "True") // DS01 compares exactly
	named := pipelinetest.Exited("named")
	running := pipelinetest.Running("busy")
	plain := pipelinetest.Exited("plain")
	all := []*pipeline.Record{protected, monitoring, notQuite, named, running, plain}

	for _, tc := range []struct {
		name   string
		stages func(discover pipeline.StageInstance) []pipeline.StageInstance
		// namedKept: the configured exemption holds (an exempt stage is present).
		namedKept bool
	}{
		{"no exempt stage", func(d pipeline.StageInstance) []pipeline.StageInstance {
			return []pipeline.StageInstance{d, decideAll(pipeline.ActionRemove), actOnVerdicts()}
		}, false},
		{"exempt after the acting stage", func(d pipeline.StageInstance) []pipeline.StageInstance {
			return []pipeline.StageInstance{d, decideAll(pipeline.ActionRemove), actOnVerdicts(), exemptByName("named")}
		}, true},
		{"exempt before decide", func(d pipeline.StageInstance) []pipeline.StageInstance {
			return []pipeline.StageInstance{d, exemptByName("named"), decideAll(pipeline.ActionRemove), actOnVerdicts()}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docker, discover := world(all...)
			env, _ := pipelinetest.Env(pipeline.ModeRun, docker)
			res, err := pipeline.Run(context.Background(), env, tc.stages(discover))
			if err != nil {
				t.Fatal(err)
			}
			kept := map[string]bool{"prot": true, "mon": true, "busy": true, "named": tc.namedKept}
			for _, rec := range all {
				name := rec.Container.Name
				got := byName(t, res.Batch, name)
				if kept[name] {
					if !docker.Has(rec.Container.ID) {
						t.Errorf("%s was removed", name)
					}
					if got.Verdict.Action.Acts() {
						t.Errorf("%s keeps verdict %q", name, got.Verdict.Action)
					}
					if docker.Count("remove "+rec.Container.ID) != 0 {
						t.Errorf("%s: removal reached Docker", name)
					}
				} else if docker.Has(rec.Container.ID) {
					t.Errorf("%s was not removed: %+v", name, got.Outcome)
				}
			}
			for name, reason := range map[string]string{"prot": "label ds01.protected=true", "mon": "label ds01.monitoring=true"} {
				if r := byName(t, res.Batch, name); !r.Exempt || r.ExemptReason != reason || r.Verdict.Reason != pipeline.ReasonExempt {
					t.Errorf("%s: exempt %v (%q), verdict %+v", name, r.Exempt, r.ExemptReason, r.Verdict)
				}
			}
			if r := byName(t, res.Batch, "busy"); r.Verdict.Reason != pipeline.ReasonNotACandidate {
				t.Errorf("running container: verdict %+v", r.Verdict)
			}
			if env.Docker != docker {
				t.Error("Run did not give the Docker client back")
			}
		})
	}
}

// A stage that sets an acting verdict and acts in the same breath meets
// the engine's guard on the Docker client.
func TestRunGuardRefusesActionsOnProtected(t *testing.T) {
	protected := pipelinetest.Exited("prot", "ds01.protected", "true")
	running := pipelinetest.Running("busy")
	plain := pipelinetest.Exited("plain")
	docker, discover := world(protected, running, plain)
	docker.Add(pipelinetest.Response(pipelinetest.Exited("stranger"))) // not discovered
	env, _ := pipelinetest.Env(pipeline.ModeRun, docker)

	var errs = map[string]error{}
	rogue := pipelinetest.Stage("rogue", actContract, func(ctx context.Context, env *pipeline.Env, b *pipeline.Batch) error {
		for _, rec := range b.Records {
			rec.Verdict = pipeline.Verdict{Action: pipeline.ActionRemove}
			_, errs[rec.Container.Name] = env.Docker.ContainerRemove(ctx, rec.Container.ID, client.ContainerRemoveOptions{})
		}
		_, errs["stranger"] = env.Docker.ContainerRemove(ctx, "id-stranger", client.ContainerRemoveOptions{})
		_, errs["forced"] = env.Docker.ContainerRemove(ctx, "id-plain", client.ContainerRemoveOptions{Force: true})
		return nil
	})
	if _, err := pipeline.Run(context.Background(), env, []pipeline.StageInstance{discover, rogue}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"prot", "busy", "stranger", "forced"} {
		var refused *pipeline.RefusedError
		if !errors.As(errs[name], &refused) {
			t.Errorf("%s: want a refusal, got %v", name, errs[name])
		}
	}
	if errs["plain"] != nil || docker.Has("id-plain") {
		t.Errorf("plain: %v, still there: %v", errs["plain"], docker.Has("id-plain"))
	}
	for _, id := range []string{"id-prot", "id-busy", "id-stranger"} {
		if !docker.Has(id) {
			t.Errorf("%s removed", id)
		}
	}
}

// Stop is an acting verdict too: never on an exempt container, allowed on
// a live one (that is what the lifecycle pipeline does).
func TestRunStopVerdicts(t *testing.T) {
	protected := pipelinetest.Running("prot", "ds01.protected", "true")
	running := pipelinetest.Running("busy")
	docker, discover := world(protected, running)
	env, _ := pipelinetest.Env(pipeline.ModeRun, docker)
	res, err := pipeline.Run(context.Background(), env, []pipeline.StageInstance{discover, decideAll(pipeline.ActionStop), actOnVerdicts()})
	if err != nil {
		t.Fatal(err)
	}
	if r := byName(t, res.Batch, "prot"); r.Verdict.Action != pipeline.ActionSkip || docker.Count("stop id-prot") != 0 {
		t.Errorf("protected: verdict %+v, calls %v", r.Verdict, docker.Calls())
	}
	if r := byName(t, res.Batch, "busy"); r.Verdict.Action != pipeline.ActionStop || docker.Count("stop id-busy") != 1 {
		t.Errorf("running: verdict %+v, calls %v", r.Verdict, docker.Calls())
	}
}

// A record whose facts could not be read keeps no acting verdict.
func TestRunIncompleteNeverActed(t *testing.T) {
	half := pipelinetest.Exited("half")
	docker, _ := world(half)
	discover := pipelinetest.Stage("discover", discoverContract, func(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
		b.Records = append(b.Records, &pipeline.Record{Container: half.Container, Incomplete: "inspect: boom"})
		return nil
	})
	env, _ := pipelinetest.Env(pipeline.ModeRun, docker)
	res, err := pipeline.Run(context.Background(), env, []pipeline.StageInstance{discover, decideAll(pipeline.ActionRemove), actOnVerdicts()})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Batch.Records[0]; r.Verdict.Action != pipeline.ActionSkip || !docker.Has("id-half") {
		t.Errorf("verdict %+v, calls %v", r.Verdict, docker.Calls())
	}
}

// A stage that fails: the stages after it are skipped, except the
// finalizer, which runs with a deadline of its own and sees the batch.
func TestRunFailureBeforeFinalizer(t *testing.T) {
	plain := pipelinetest.Exited("plain")
	docker, discover := world(plain)
	env, _ := pipelinetest.Env(pipeline.ModeRun, docker)
	boom := errors.New("boom")
	var ran []string
	mark := func(name string, c pipeline.Contract, err error) pipeline.StageInstance {
		return pipelinetest.Stage(name, c, func(ctx context.Context, _ *pipeline.Env, b *pipeline.Batch) error {
			ran = append(ran, name)
			if name == "log" {
				if ctx.Err() != nil {
					t.Error("the finalizer got a dead context")
				}
				if len(b.Records) != 1 {
					t.Errorf("the finalizer sees %d records", len(b.Records))
				}
			}
			return err
		})
	}
	stages := []pipeline.StageInstance{discover, decideAll(pipeline.ActionRemove), mark("fails", decideContract, boom), actOnVerdicts(), mark("log", logContract, nil)}
	res, err := pipeline.Run(context.Background(), env, stages)
	if !errors.Is(err, boom) {
		t.Fatalf("want boom, got %v", err)
	}
	if want := []string{"fails", "log"}; len(ran) != 2 || ran[0] != want[0] || ran[1] != want[1] {
		t.Errorf("ran %v, want %v", ran, want)
	}
	if !docker.Has("id-plain") {
		t.Error("the acting stage ran after the failure")
	}
	if n := len(res.Timings); n != 4 {
		t.Errorf("%d timings, want 4 (discover, decide, fails, log)", n)
	}
}

// A stage that overruns its own timeout: the run fails with the
// deadline, later stages are skipped, the finalizer still runs.
func TestRunStageOverrunsItsTimeout(t *testing.T) {
	docker, discover := world(pipelinetest.Exited("plain"))
	env, _ := pipelinetest.Env(pipeline.ModeRun, docker)
	slow := pipelinetest.Stage("slow", decideContract, func(ctx context.Context, _ *pipeline.Env, _ *pipeline.Batch) error {
		<-ctx.Done() // a stage that only stops when told
		return ctx.Err()
	})
	slow.Timeout = 20 * time.Millisecond
	logged := false
	log := pipelinetest.Stage("log", logContract, func(ctx context.Context, _ *pipeline.Env, _ *pipeline.Batch) error {
		logged = ctx.Err() == nil
		return nil
	})
	res, err := pipeline.Run(context.Background(), env, []pipeline.StageInstance{discover, decideAll(pipeline.ActionRemove), slow, actOnVerdicts(), log})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the stage's deadline, got %v", err)
	}
	if !logged {
		t.Error("the finalizer did not run with a live context")
	}
	if !docker.Has("id-plain") {
		t.Error("the acting stage ran after the overrun")
	}
	last := res.Timings[len(res.Timings)-2]
	if last.Ref.Kind != "slow" || last.Err == nil || last.Duration < slow.Timeout {
		t.Errorf("timing of the slow stage: %+v", last)
	}
}

// The finalizer runs even when the run's own deadline is gone.
func TestRunFinalizerAfterRunDeadline(t *testing.T) {
	docker, discover := world(pipelinetest.Exited("plain"))
	env, _ := pipelinetest.Env(pipeline.ModeRun, docker)
	ctx, cancel := context.WithCancel(context.Background())
	stop := pipelinetest.Stage("stop", decideContract, func(context.Context, *pipeline.Env, *pipeline.Batch) error {
		cancel()
		return nil
	})
	logged := false
	log := pipelinetest.Stage("log", logContract, func(ctx context.Context, _ *pipeline.Env, _ *pipeline.Batch) error {
		logged = ctx.Err() == nil
		return nil
	})
	_, err := pipeline.Run(ctx, env, []pipeline.StageInstance{discover, stop, actOnVerdicts(), log})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want the run's cancellation, got %v", err)
	}
	if !logged {
		t.Error("the finalizer did not run")
	}
}

// A stage whose contract does not say it acts cannot change a container,
// even one the run could remove.
func TestRunGuardRefusesNonActingStages(t *testing.T) {
	docker, discover := world(pipelinetest.Exited("plain"), pipelinetest.Running("busy"))
	env, _ := pipelinetest.Env(pipeline.ModeRun, docker)
	var removeErr, stopErr error
	sneaky := pipelinetest.Stage("decide", decideContract, func(ctx context.Context, env *pipeline.Env, _ *pipeline.Batch) error {
		_, removeErr = env.Docker.ContainerRemove(ctx, "id-plain", client.ContainerRemoveOptions{})
		s := env.Docker.(interface {
			ContainerStop(context.Context, string, client.ContainerStopOptions) (client.ContainerStopResult, error)
		})
		_, stopErr = s.ContainerStop(ctx, "id-busy", client.ContainerStopOptions{})
		return nil
	})
	if _, err := pipeline.Run(context.Background(), env, []pipeline.StageInstance{discover, sneaky}); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{"remove": removeErr, "stop": stopErr} {
		var refused *pipeline.RefusedError
		if !errors.As(err, &refused) || !strings.Contains(err.Error(), "stage decide does not act on containers") {
			t.Errorf("%s by a deciding stage: %v", name, err)
		}
	}
	if docker.Count("remove ") != 0 || docker.Count("stop ") != 0 {
		t.Errorf("calls reached Docker: %v", docker.Calls())
	}
}
