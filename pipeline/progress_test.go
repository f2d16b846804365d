package pipeline

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

type sleepStage struct {
	d         time.Duration
	finalizer bool
}

func (s sleepStage) Process(ctx context.Context, env *Env, _ *Batch) error {
	env.Stats.InspectCalls.Add(7)
	time.Sleep(s.d)
	return nil
}

func (s sleepStage) Finalize() bool { return s.finalizer }

// A stage that runs longer than the period gets progress lines and a last
// line; a quick one stays silent; a finalizer stays a finalizer.
func TestProgress(t *testing.T) {
	log, hook := test.NewNullLogger()
	env := &Env{Log: log, Stats: &Stats{}}
	stages := withProgress([]StageInstance{
		{Ref: StageRef{Kind: "discover"}, Stage: sleepStage{d: 120 * time.Millisecond}},
		{Ref: StageRef{Kind: "log"}, Stage: sleepStage{finalizer: true}},
	}, 50*time.Millisecond)
	for _, st := range stages {
		if err := st.Stage.Process(context.Background(), env, &Batch{}); err != nil {
			t.Fatal(err)
		}
	}
	var lines []string
	for _, e := range hook.AllEntries() {
		if e.Level != logrus.InfoLevel {
			t.Errorf("progress at level %v", e.Level)
		}
		lines = append(lines, e.Message)
	}
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "discover: running for") || !strings.Contains(text, "7 inspect") ||
		!strings.Contains(text, "discover: done in") || strings.Contains(text, "log:") {
		t.Errorf("progress lines:\n%s", text)
	}
	if f, ok := stages[1].Stage.(Finalizer); !ok || !f.Finalize() {
		t.Error("a wrapped finalizer is no longer one")
	}
}
