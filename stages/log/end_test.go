package logstage

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// TestRecordEndWithoutStages pins that a run that never reached its stages
// (engine unreachable, lock held, deadline during the list) still leaves
// its trace: a pipeline.summary line with the exit code, the outcome and
// the error, and metrics in which the last run moves on, the run is counted
// by outcome, and the last success stays where the last good run left it.
func TestRecordEndWithoutStages(t *testing.T) {
	s, _ := newStage(t)
	s.MetricsFile = filepath.Join(t.TempDir(), "ds01-pipe.prom")
	env, _ := newEnv(pipeline.ModeRun)

	// A good run first.
	good := runStart.Add(time.Minute)
	s.RecordEnd(env, pipeline.RunEnd{Result: &pipeline.Result{Batch: &pipeline.Batch{}}, ExitCode: 0, Outcome: OutcomeDone, Ended: good})

	for i, tc := range []struct {
		code    int
		outcome string
		err     error
	}{
		{1, "failed", errors.New("cannot reach the Docker engine at unix:///var/run/docker.sock: connection refused")},
		{3, "locked", errors.New("another run holds /run/ds01-pipe/cleanup.lock (pid 42); nothing done")},
	} {
		ended := good.Add(time.Duration(i+1) * time.Minute)
		s.RecordEnd(env, pipeline.RunEnd{Err: tc.err, ExitCode: tc.code, Outcome: tc.outcome, Ended: ended})

		lines := readLines(t, s.EventsFile)
		last := lines[len(lines)-1]
		var ev struct {
			EventType string `json:"event_type"`
		}
		if err := json.Unmarshal([]byte(last), &ev); err != nil {
			t.Fatalf("%s: %v", last, err)
		}
		if ev.EventType != string(events.PipelineSummary) {
			t.Fatalf("last line is %s, want the summary", ev.EventType)
		}
		for _, want := range []string{`"containers":0`, `"exit_code":` + strconv.Itoa(tc.code), `"outcome":"` + tc.outcome + `"`, `"error":"` + tc.err.Error() + `"`} {
			if !strings.Contains(last, want) {
				t.Errorf("summary %s lacks %s", last, want)
			}
		}

		got := samples(parseMetrics(t, s.MetricsFile))
		if got[key("ds01_pipe_last_success_timestamp_seconds")] != float64(good.Unix()) {
			t.Errorf("%s run moved the last success: %v", tc.outcome, got)
		}
		if got[key("ds01_pipe_last_run_timestamp_seconds")] != float64(ended.Unix()) {
			t.Errorf("%s run left the last run where it was: %v", tc.outcome, got)
		}
		if got[key("ds01_pipe_last_run_exit_code")] != float64(tc.code) {
			t.Errorf("exit code metric %v, want %d", got[key("ds01_pipe_last_run_exit_code")], tc.code)
		}
		if got[key("ds01_pipe_runs_total", "outcome="+tc.outcome)] != 1 || got[key("ds01_pipe_runs_total", "outcome=done")] != 1 {
			t.Errorf("runs by outcome: %v", got)
		}
	}
	if n := len(readLines(t, s.EventsFile)); n != 3 {
		t.Errorf("%d summary lines, want one per run (3)", n)
	}
}

// TestProcessUsesTheRunsEventsFile checks that with the engine's events
// file (Env.Events) the stage writes through it, counts what it wrote in
// the metrics, and opens nothing of its own.
func TestProcessUsesTheRunsEventsFile(t *testing.T) {
	s, _ := newStage(t)
	s.MetricsFile = filepath.Join(t.TempDir(), "ds01-pipe.prom")
	env, _ := newEnv(pipeline.ModeRun)
	env.Events = pipeline.OpenEventLog(s.EventsFile)
	if err := env.Events.OpenErr(); err != nil {
		t.Fatal(err)
	}
	defer env.Events.Close()
	b := newBatch(pipeline.OutcomeRemoved)
	if err := finish(s, env, b); err != nil {
		t.Fatal(err)
	}
	if s.own != nil {
		t.Error("the stage opened the events file a second time")
	}
	if written, failed, _ := env.Events.Counts(); written != len(wantEventLines) || failed != 0 {
		t.Errorf("run's events file: %d written, %d failed", written, failed)
	}
	if got := samples(parseMetrics(t, s.MetricsFile))[key("ds01_pipe_events_written_total")]; got != float64(len(wantEventLines)) {
		t.Errorf("events written metric %v", got)
	}
}

// TestRecordEndReportsAMissingSummary pins that a run whose own record
// could not be written does not end as a clean "done": RecordEnd returns
// the error, and the command turns exit 0 into 2.
func TestRecordEndReportsAMissingSummary(t *testing.T) {
	s, _ := newStage(t)
	// The events file's folder is a regular file: nothing can be appended.
	blocker := filepath.Join(t.TempDir(), "not-a-folder")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.EventsFile = filepath.Join(blocker, "events.jsonl")
	env, _ := newEnv(pipeline.ModeRun)
	err := s.RecordEnd(env, pipeline.RunEnd{Result: &pipeline.Result{Batch: &pipeline.Batch{}}, ExitCode: 0, Outcome: OutcomeDone, Ended: runStart})
	if err == nil || !strings.Contains(err.Error(), "pipeline.summary") {
		t.Fatalf("RecordEnd = %v, want the unwritten summary reported", err)
	}

	// A plan records nothing, so nothing can be missing.
	plan, _ := newEnv(pipeline.ModePlan)
	if err := s.RecordEnd(plan, pipeline.RunEnd{Result: &pipeline.Result{Batch: &pipeline.Batch{}}}); err != nil {
		t.Errorf("plan: RecordEnd = %v, want nil", err)
	}
}
