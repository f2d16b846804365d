package pipeline

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

type sleepStage struct{ d time.Duration }

func (s sleepStage) Process(_ context.Context, env *Env, _ *Batch) error {
	env.Stats.InspectCalls.Add(7)
	time.Sleep(s.d)
	return nil
}

// A stage that runs longer than the period gets progress lines and a last
// line; a quick one stays silent. Progress is a hook: the stages the
// runner runs are the pipeline's own, so a finalizer stays a finalizer.
func TestProgress(t *testing.T) {
	log, hook := test.NewNullLogger()
	env := &Env{Log: log, Stats: &Stats{}}
	stages := []StageInstance{
		{Ref: StageRef{Kind: "discover"}, Stage: sleepStage{d: 120 * time.Millisecond}},
		{Ref: StageRef{Kind: "log"}, Stage: sleepStage{}, Contract: Contract{Finalizer: true}},
	}
	if _, err := Run(context.Background(), env, stages, NewProgress(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range hook.AllEntries() {
		if e.Level != logrus.InfoLevel {
			continue // the runner's own debug lines
		}
		if e.Data["stage"] != "discover" {
			t.Errorf("progress line not tagged with its stage: %v %q", e.Data, e.Message)
		}
		lines = append(lines, e.Message)
	}
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "discover: running for") || !strings.Contains(text, "7 inspect") ||
		!strings.Contains(text, "discover: done in") || strings.Contains(text, "log:") {
		t.Errorf("progress lines:\n%s", text)
	}
}

// Every stage logs through a logger tagged with the stage.
func TestStageLoggerTagged(t *testing.T) {
	log, hook := test.NewNullLogger()
	env := &Env{Log: log, Stats: &Stats{}}
	say := stageFunc(func(_ context.Context, env *Env, _ *Batch) error {
		env.Log.Warn("hello")
		return nil
	})
	stages := []StageInstance{{Ref: StageRef{Kind: "decide", Name: "strict"}, Stage: say}}
	if _, err := Run(context.Background(), env, stages); err != nil {
		t.Fatal(err)
	}
	e := hook.LastEntry()
	for _, e2 := range hook.AllEntries() {
		if e2.Message == "hello" {
			e = e2
		}
	}
	if e == nil || e.Message != "hello" || e.Data["stage"] != "decide.strict" {
		t.Errorf("entry %+v", e)
	}
	if env.Log != log {
		t.Error("the run's own logger was changed")
	}
}

type stageFunc func(context.Context, *Env, *Batch) error

func (f stageFunc) Process(ctx context.Context, env *Env, b *Batch) error { return f(ctx, env, b) }
