package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
)

// traceLog is a pipeline whose log stage records every run.
const traceLog = `
pipeline "trace" {
  gpu { backend = "none" }
  stage "discover" {}
  stage "log" {
    events_file  = %q
    metrics_file = %q
    syslog       = false
  }
}
`

// journalStderr returns a file to use as stderr and sets JOURNAL_STREAM to
// it, as systemd does for a unit with StandardError=journal.
func journalStderr(t *testing.T) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	return f
}

var journalLine = regexp.MustCompile(`^<([0-7])>`)

// TestUnreachableRunLeavesItsTrace pins that a run that loaded its
// pipeline but never reached the engine is recorded like any other: a
// pipeline.summary line with exit code, outcome and error, metrics in
// which the failure is counted and the last success does not move, the
// JSON report with the reason; and under systemd every stderr line carries
// its journal priority, the last one being the reason at priority err.
func TestUnreachableRunLeavesItsTrace(t *testing.T) {
	dir := t.TempDir()
	eventsFile := filepath.Join(dir, "events.jsonl")
	metricsFile := filepath.Join(dir, "ds01-pipe.prom")
	file := writeFile(t, dir, "p.hcl", fmt.Sprintf(traceLog, eventsFile, metricsFile))
	sock := filepath.Join(dir, "no-docker.sock")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	stderr := journalStderr(t)

	var out bytes.Buffer
	code := Main([]string{"run", "--format", "json", file}, IOStreams{In: strings.NewReader(""), Out: &out, Err: stderr})
	if code != ExitFailure {
		t.Fatalf("exit %d, want 1", code)
	}

	text, err := os.ReadFile(stderr.Name())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	for _, l := range lines {
		if !journalLine.MatchString(l) {
			t.Errorf("line without a journal priority: %q", l)
		}
	}
	last := lines[len(lines)-1]
	if want := "<3>ds01-pipe: cannot reach the Docker engine at unix://" + sock; !strings.HasPrefix(last, want) {
		t.Errorf("last line %q, want the reason at priority err (%q...)", last, want)
	}

	var doc struct{ Summary struct{ Error string } }
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || !strings.Contains(doc.Summary.Error, sock) {
		t.Errorf("JSON report (%v): %s", err, out.String())
	}

	evs, err := os.ReadFile(eventsFile)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		EventType string `json:"event_type"`
		Details   struct {
			ExitCode int    `json:"exit_code"`
			Outcome  string `json:"outcome"`
			Error    string `json:"error"`
		} `json:"details"`
	}
	if err := json.Unmarshal(evs, &ev); err != nil {
		t.Fatalf("events file %q: %v", evs, err)
	}
	if ev.EventType != "pipeline.summary" || ev.Details.ExitCode != 1 || ev.Details.Outcome != "failed" || !strings.Contains(ev.Details.Error, sock) {
		t.Errorf("summary event %s", evs)
	}

	metrics, err := os.ReadFile(metricsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`ds01_pipe_runs_total{outcome="failed",pipeline="trace"} 1`, "ds01_pipe_last_run_exit_code{", "ds01_pipe_last_run_timestamp_seconds{"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if strings.Contains(string(metrics), "ds01_pipe_last_success_timestamp_seconds") {
		t.Errorf("a failed run set the last success:\n%s", metrics)
	}
}

func TestJournalPriorities(t *testing.T) {
	for level, want := range map[logrus.Level]string{
		logrus.ErrorLevel: "<3>", logrus.WarnLevel: "<4>", logrus.InfoLevel: "<6>", logrus.DebugLevel: "<7>",
	} {
		f := journalFormatter{&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true}}
		b, err := f.Format(&logrus.Entry{Level: level, Message: "one\ntwo"})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			if !strings.HasPrefix(l, want) {
				t.Errorf("%s: line %q does not start with %s", level, l, want)
			}
		}
	}
}
