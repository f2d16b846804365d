package logstage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// runStart is the run's instant; the stage's clock reads 2.5 s later.
var runStart = time.Date(2026, 2, 16, 15, 50, 0, 0, time.UTC)

// fakeSyslog records what the stage would send to syslog.
type fakeSyslog struct {
	dialErr  error
	writeErr error
	dials    []string // tags
	lines    []string
	closed   int
}

func (f *fakeSyslog) dial(tag string) (SyslogWriter, error) {
	f.dials = append(f.dials, tag)
	if f.dialErr != nil {
		return nil, f.dialErr
	}
	return f, nil
}

func (f *fakeSyslog) Notice(msg string) error {
	if f.writeErr != nil {
		return f.writeErr
	}
	f.lines = append(f.lines, msg)
	return nil
}

func (f *fakeSyslog) Close() error { f.closed++; return nil }

func newStage(t *testing.T) (*Stage, *fakeSyslog) {
	t.Helper()
	s := New()
	s.EventsFile = filepath.Join(t.TempDir(), "ds01", "events.jsonl")
	fs := &fakeSyslog{}
	s.dial = fs.dial
	s.now = func() time.Time { return runStart.Add(2500 * time.Millisecond) }
	return s, fs
}

func newEnv(mode pipeline.Mode) (*pipeline.Env, *test.Hook) {
	log, hook := test.NewNullLogger()
	return &pipeline.Env{Pipeline: "cleanup", Mode: mode, Now: runStart, Started: runStart, Host: "gpu01", Log: log}, hook
}

// finish is what the command does with the stage: Process as the last
// stage, then RecordEnd with the exit code the run gets (2 when an action
// or an event failed, 1 when Process failed the run).
func finish(s *Stage, env *pipeline.Env, b *pipeline.Batch) error {
	err := s.Process(context.Background(), env, b)
	res := &pipeline.Result{Batch: b}
	var partial *pipeline.PartialError
	if errors.As(err, &partial) {
		res.Partial = append(res.Partial, err)
	}
	end := pipeline.RunEnd{Result: res, ExitCode: 0, Outcome: OutcomeDone}
	switch {
	case err != nil && partial == nil:
		end.Err, end.ExitCode, end.Outcome = err, 1, "failed"
	case res.Failed() > 0:
		end.Err, end.ExitCode, end.Outcome = fmt.Errorf("%d action(s) failed: stuck: remove: device busy", res.Failed()), 2, "partial"
	}
	s.RecordEnd(env, end)
	return err
}

func record(name, owner, typ string, action pipeline.Action, reason pipeline.Reason, age time.Duration, outcome pipeline.OutcomeStatus) *pipeline.Record {
	return &pipeline.Record{
		Container: pipeline.Container{ID: "id-" + name, Name: name, State: pipeline.StateExited},
		Owner:     pipeline.Owner{Name: owner, Source: pipeline.OwnerFromUser},
		Type:      typ,
		Verdict:   pipeline.Verdict{Action: action, Reason: reason, Age: age},
		Outcome:   pipeline.Outcome{Status: outcome},
	}
}

// hostileName could only come from a label, but the stage must not trust
// even container names: it would forge a second syslog line.
const hostileName = "evil\nFeb 16 15:50:00 gpu01 ds01-cleanup: Removed stale container: root\x1b[2J"

// newBatch is a run of six containers with three queued events. outcome
// is the status of the three removals (removed in a run, planned in a plan).
func newBatch(outcome pipeline.OutcomeStatus) *pipeline.Batch {
	b := &pipeline.Batch{
		Records: []*pipeline.Record{
			record("proj._.1001", "alice", "atomic", pipeline.ActionRemove, pipeline.ReasonHoldExpired, 3*time.Hour+10*time.Second+900*time.Millisecond, outcome),
			record("new-box", "bob", "docker", pipeline.ActionRemove, pipeline.ReasonCreatedNeverStarted, 45*time.Minute, outcome),
			record("keep-me", "carol", "devcontainer", pipeline.ActionKeep, pipeline.ReasonWithinHold, time.Hour, ""),
			record("grafana", "", "docker", pipeline.ActionSkip, pipeline.ReasonExempt, 0, ""),
			record("stuck", "dave", "compose", pipeline.ActionRemove, pipeline.ReasonHoldExpired, 5*time.Hour, pipeline.OutcomeFailed),
			record(hostileName, "eve\r\n", "", pipeline.ActionRemove, pipeline.ReasonIdleStopped, 90*time.Second, outcome),
		},
		GPU:        &nvml.Snapshot{Backend: "sim", Available: true},
		GPUChecked: true,
		GPUs: []pipeline.GPUReport{
			{UUID: "GPU-1", Status: pipeline.GPUReleased},
			{UUID: "GPU-2", Status: pipeline.GPUOrphaned},
			{UUID: "GPU-3", Status: pipeline.GPUInUse},
		},
	}
	if outcome == pipeline.OutcomeRemoved {
		src := "ds01-pipe/cleanup"
		b.Emit(events.Event{Time: runStart.Add(time.Second), Type: events.GPURelease, User: "alice", Source: src,
			Details: []events.Field{events.F("container", "proj._.1001"), events.F("gpu_uuid", "GPU-1"), events.F("reason", "hold_expired")}})
		b.Emit(events.Event{Time: runStart.Add(1100 * time.Millisecond), Type: events.ContainerRemove, User: "alice", Source: src,
			Details: []events.Field{events.F("container", "proj._.1001"), events.F("reason", "hold_expired"), events.F("stopped_duration", "3h"), events.F("container_type", "atomic")}})
		b.Emit(events.Event{Time: runStart.Add(1200 * time.Millisecond), Type: events.ContainerRemove, User: "bob", Source: src,
			Details: []events.Field{events.F("container", "new-box"), events.F("reason", "created_never_started"), events.F("age", "45m")}})
	}
	return b
}

var wantEventLines = []string{
	`{"timestamp":"2026-02-16T15:50:01.000000Z","event_type":"gpu.release","schema_version":"1","user":"alice","source":"ds01-pipe/cleanup","details":{"container":"proj._.1001","gpu_uuid":"GPU-1","reason":"hold_expired"}}`,
	`{"timestamp":"2026-02-16T15:50:01.100000Z","event_type":"container.remove","schema_version":"1","user":"alice","source":"ds01-pipe/cleanup","details":{"container":"proj._.1001","reason":"hold_expired","stopped_duration":"3h","container_type":"atomic"}}`,
	`{"timestamp":"2026-02-16T15:50:01.200000Z","event_type":"container.remove","schema_version":"1","user":"bob","source":"ds01-pipe/cleanup","details":{"container":"new-box","reason":"created_never_started","age":"45m"}}`,
	`{"timestamp":"2026-02-16T15:50:02.500000Z","event_type":"pipeline.summary","schema_version":"1","source":"ds01-pipe/cleanup","details":{"containers":6,"removed":3,"kept":1,"skipped":1,"failed":1,"gone":0,"changed":0,"not_acted_on":0,"gpus_released":1,"gpus_orphaned":1,"gpus_unrecorded":0,"duration_s":2.5,"exit_code":2,"outcome":"partial","error":"1 action(s) failed: stuck: remove: device busy"}}`,
}

var wantSyslog = []string{
	"Removed stale container: proj._.1001 (user: alice, type: atomic, stopped: 10810s ago)",
	"Removed created-never-started container: new-box (owner: bob, age: 2700s)",
	`Removed stale container: evil\nFeb 16 15:50:00 gpu01 ds01-cleanup: Removed stale container: root\x1b[2J (user: eve\r\n, type: unknown, stopped: 90s ago)`,
}

const wantRunSummary = "cleanup (run): 6 containers, 3 removed, 1 kept, 1 skipped, 1 failed; GPUs: 1 released, 1 orphaned, 0 unrecorded; NVML cross-check: done; run partial (exit 2)"

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end in a newline: %q", path, b)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func messages(hook *test.Hook, level logrus.Level) []string {
	var out []string
	for _, e := range hook.AllEntries() {
		if e.Level == level {
			out = append(out, e.Message)
		}
	}
	return out
}

func TestProcessRun(t *testing.T) {
	s, sys := newStage(t)
	env, hook := newEnv(pipeline.ModeRun)
	batch := newBatch(pipeline.OutcomeRemoved)
	if err := finish(s, env, batch); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(withHost(t, wantEventLines), readLines(t, s.EventsFile)); diff != "" {
		t.Errorf("events file (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{TagCleanup}, sys.dials); diff != "" {
		t.Errorf("syslog tags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSyslog, sys.lines); diff != "" {
		t.Errorf("syslog lines (-want +got):\n%s", diff)
	}
	if sys.closed != 1 {
		t.Errorf("syslog closed %d times", sys.closed)
	}
	if diff := cmp.Diff([]string{wantRunSummary}, messages(hook, logrus.InfoLevel)); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	if errs := messages(hook, logrus.ErrorLevel); len(errs) > 0 {
		t.Errorf("errors logged: %v", errs)
	}
	if evs := batch.TakeEvents(); len(evs) != 0 {
		t.Errorf("%d events left queued", len(evs))
	}

	// A second run appends.
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, s.EventsFile); len(got) != 2*len(wantEventLines) {
		t.Errorf("%d lines after two runs, want %d", len(got), 2*len(wantEventLines))
	}
}

func TestProcessPlanWritesNothing(t *testing.T) {
	s, sys := newStage(t)
	s.MetricsFile = filepath.Join(t.TempDir(), "ds01.prom")
	env, hook := newEnv(pipeline.ModePlan)
	batch := newBatch(pipeline.OutcomePlanned)
	// A stage that emitted in a plan would be a bug elsewhere; the log
	// stage still must not write it.
	batch.Emit(events.Event{Time: runStart, Type: events.ContainerRemove})
	if err := finish(s, env, batch); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{s.EventsFile, filepath.Dir(s.EventsFile), s.MetricsFile} {
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("plan created %s (%v)", path, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(s.MetricsFile)); len(entries) != 0 {
		t.Errorf("plan left files in the metrics directory: %v", entries)
	}
	if len(sys.dials) != 0 || len(sys.lines) != 0 {
		t.Errorf("plan used syslog: %v %v", sys.dials, sys.lines)
	}
	want := "cleanup (plan): 6 containers, 3 to remove, 1 kept, 1 skipped, 1 failed; GPUs: 1 to release, 1 orphaned, 0 unrecorded; NVML cross-check: done"
	if diff := cmp.Diff([]string{want}, messages(hook, logrus.InfoLevel)); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

func TestProcessSummaryOff(t *testing.T) {
	s, _ := newStage(t)
	s.Summary = false
	env, hook := newEnv(pipeline.ModeRun)
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	if got := messages(hook, logrus.InfoLevel); len(got) != 0 {
		t.Errorf("summary printed: %v", got)
	}
}

func TestProcessEventsDisabled(t *testing.T) {
	s, sys := newStage(t)
	s.EventsFile = ""
	env, _ := newEnv(pipeline.ModeRun)
	dir := t.TempDir()
	t.Chdir(dir) // nothing may appear in the working directory either
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
	if len(sys.lines) != len(wantSyslog) {
		t.Errorf("syslog lines %v", sys.lines)
	}
}

func TestProcessSyslogOff(t *testing.T) {
	s, sys := newStage(t)
	s.Syslog = false
	env, _ := newEnv(pipeline.ModeRun)
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	if len(sys.dials) != 0 || len(sys.lines) != 0 {
		t.Errorf("syslog used: %v %v", sys.dials, sys.lines)
	}
	if got := readLines(t, s.EventsFile); len(got) != len(wantEventLines) {
		t.Errorf("events: %v", got)
	}
}

func TestProcessNoRemovalsNoSyslog(t *testing.T) {
	s, sys := newStage(t)
	env, _ := newEnv(pipeline.ModeRun)
	b := &pipeline.Batch{Records: []*pipeline.Record{record("keep-me", "carol", "atomic", pipeline.ActionKeep, pipeline.ReasonWithinHold, time.Hour, "")}}
	if err := finish(s, env, b); err != nil {
		t.Fatal(err)
	}
	if len(sys.dials) != 0 {
		t.Error("syslog dialled with nothing to send")
	}
}

func TestProcessSyslogUnavailable(t *testing.T) {
	s, sys := newStage(t)
	sys.dialErr = errors.New("Unix syslog delivery error")
	env, hook := newEnv(pipeline.ModeRun)
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	if warns := messages(hook, logrus.WarnLevel); len(warns) != 1 {
		t.Errorf("warnings %v, want exactly one", warns)
	}
	if got := readLines(t, s.EventsFile); len(got) != len(wantEventLines) {
		t.Errorf("events not all written without syslog: %v", got)
	}

	// A failing write warns once too, and does not go on writing.
	s, sys = newStage(t)
	sys.writeErr = errors.New("broken pipe")
	env, hook = newEnv(pipeline.ModeRun)
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	if warns := messages(hook, logrus.WarnLevel); len(warns) != 1 || sys.closed != 1 {
		t.Errorf("warnings %v, closed %d", warns, sys.closed)
	}
}

func TestProcessEventsUnwritable(t *testing.T) {
	for _, failOn := range []bool{false, true} {
		s, sys := newStage(t)
		s.EventsFile = t.TempDir() // a directory
		s.FailOnEventError = failOn
		env, hook := newEnv(pipeline.ModeRun)
		err := finish(s, env, newBatch(pipeline.OutcomeRemoved))
		errs := messages(hook, logrus.ErrorLevel)
		// The three events of the stages, then the summary at the end.
		if len(errs) != 2 || !strings.Contains(errs[0], "3 of 3 events not written") || !strings.Contains(errs[1], "pipeline.summary event not written") {
			t.Errorf("fail_on_event_error=%v: errors logged %v", failOn, errs)
		}
		if len(sys.lines) != len(wantSyslog) {
			t.Errorf("fail_on_event_error=%v: syslog skipped after the events error", failOn)
		}
		if !failOn {
			// Default: the run goes on and ends with exit 2 (partial).
			var partial *pipeline.PartialError
			if !errors.As(err, &partial) {
				t.Errorf("default: Process returned %v, want a *pipeline.PartialError", err)
			}
			continue
		}
		var werr *WriteError
		if !errors.As(err, &werr) || werr.Failed != 3 || werr.Total != 3 || werr.Path != s.EventsFile {
			t.Fatalf("fail_on_event_error: got %v (%#v)", err, werr)
		}
	}
}

func TestProcessDropsOversizedEventOnly(t *testing.T) {
	s, _ := newStage(t)
	env, hook := newEnv(pipeline.ModeRun)
	b := &pipeline.Batch{}
	b.Emit(events.Event{Time: runStart, Type: events.ContainerRemove, User: strings.Repeat("u", 5000)})
	b.Emit(events.Event{Time: runStart, Type: events.ContainerRemove, User: "alice"})
	var partial *pipeline.PartialError
	if err := finish(s, env, b); !errors.As(err, &partial) {
		t.Fatalf("want a partial failure for the dropped event, got %v", err)
	}
	if got := readLines(t, s.EventsFile); len(got) != 2 || !strings.Contains(got[0], `"user":"alice"`) {
		t.Errorf("lines %v", got)
	}
	if errs := messages(hook, logrus.ErrorLevel); len(errs) != 1 || !strings.Contains(errs[0], "1 of 2") {
		t.Errorf("errors %v", errs)
	}
}

// TestFinalizerAfterFailure runs the stage through the engine after a
// failing stage: the removals done before the failure are still recorded.
func TestFinalizerAfterFailure(t *testing.T) {
	s, sys := newStage(t)
	env, hook := newEnv(pipeline.ModeRun)
	boom := errors.New("docker went away")
	stages := []pipeline.StageInstance{
		{Ref: pipeline.StageRef{Kind: "fill"}, Stage: stageFunc(func(b *pipeline.Batch) error {
			filled := newBatch(pipeline.OutcomeRemoved)
			b.Records, b.GPU, b.GPUs, b.GPUChecked = filled.Records, filled.GPU, filled.GPUs, filled.GPUChecked
			for _, ev := range filled.TakeEvents() {
				b.Emit(ev)
			}
			return nil
		})},
		{Ref: pipeline.StageRef{Kind: "broken"}, Stage: stageFunc(func(*pipeline.Batch) error { return boom })},
		// The runner reads "finalizer" from the kind's contract.
		{Ref: pipeline.StageRef{Kind: Kind}, Stage: s, Contract: spec().Contract},
	}
	res, err := pipeline.Run(context.Background(), env, stages)
	if !errors.Is(err, boom) {
		t.Fatalf("run error %v", err)
	}
	s.RecordEnd(env, pipeline.RunEnd{Result: res, Err: err, ExitCode: 1, Outcome: "failed"})
	if got := readLines(t, s.EventsFile); len(got) != len(wantEventLines) {
		t.Errorf("events after a failure: %v", got)
	}
	if len(sys.lines) != len(wantSyslog) {
		t.Errorf("syslog after a failure: %v", sys.lines)
	}
	if got := messages(hook, logrus.InfoLevel); len(got) != 1 {
		t.Errorf("summary after a failure: %v", got)
	}
}

type stageFunc func(*pipeline.Batch) error

func spec() pipeline.Spec {
	s, _ := pipeline.DefaultRegistry.Lookup(Kind)
	return s
}

func (f stageFunc) Process(_ context.Context, _ *pipeline.Env, b *pipeline.Batch) error { return f(b) }

func TestNVMLCheck(t *testing.T) {
	tests := []struct {
		checked bool
		gpu     *nvml.Snapshot
		want    string
	}{
		{true, &nvml.Snapshot{Available: true}, "done"},
		{false, nil, "not done (no GPU snapshot)"},
		{false, &nvml.Snapshot{Unavailable: "NVML: ERROR_LIBRARY_NOT_FOUND"}, "not done (NVML: ERROR_LIBRARY_NOT_FOUND)"},
		{false, &nvml.Snapshot{}, "not done (no GPU view)"},
		{false, &nvml.Snapshot{Available: true}, "not done (GPU state not reconciled)"},
	}
	for _, tc := range tests {
		b := &pipeline.Batch{GPUChecked: tc.checked, GPU: tc.gpu}
		if got := nvmlCheck(b); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestSummaryLineExtras(t *testing.T) {
	env, _ := newEnv(pipeline.ModeRun)
	b := &pipeline.Batch{Records: []*pipeline.Record{
		record("a", "x", "atomic", pipeline.ActionRemove, pipeline.ReasonHoldExpired, 0, pipeline.OutcomeGone),
		record("b", "x", "atomic", pipeline.ActionRemove, pipeline.ReasonHoldExpired, 0, pipeline.OutcomeChanged),
		record("c", "x", "atomic", pipeline.ActionRemove, pipeline.ReasonHoldExpired, 0, ""),
		record("d", "x", "atomic", pipeline.ActionRemove, pipeline.ReasonHoldExpired, 0, pipeline.OutcomeKept),
		record("e", "x", "atomic", "", "", 0, ""),
	}}
	want := "cleanup (run): 5 containers, 0 removed, 1 kept, 1 skipped, 0 failed, 1 gone, 1 changed, 1 not acted on; GPUs: 0 released, 0 orphaned, 0 unrecorded; NVML cross-check: not done (no GPU snapshot)"
	if got := summaryLine(env, b, countBatch(b)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"proj._.1001", "proj._.1001"},
		{`with "quotes" and \ kept`, `with "quotes" and \ kept`},
		{"josé 😀", "josé 😀"},
		{"a\nb", `a\nb`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"nul\x00", `nul\x00`},
		{"del\x7f", `del\x7f`},
		{"bad\xff", `bad\xff`},
		{"ls\u2028", `ls\u2028`},
		{"c1\u0085", `c1\u0085`},
	}
	for _, tc := range tests {
		got := sanitize(tc.in)
		if got != tc.want {
			t.Errorf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Errorf("sanitize(%q) kept control %U", tc.in, r)
			}
		}
	}
}

// TestRunDuration pins that a run's duration is measured on the wall
// clock, from the engine's start (else the runner's) to the end: never
// from the --now instant, which may be anywhere.
func TestRunDuration(t *testing.T) {
	s, _ := newStage(t)
	end := runStart.Add(2500 * time.Millisecond)
	for _, tc := range []struct {
		name  string
		env   *pipeline.Env
		batch *pipeline.Batch
		want  time.Duration
		ok    bool
	}{
		{"engine start", &pipeline.Env{Started: runStart}, &pipeline.Batch{}, 2500 * time.Millisecond, true},
		{"runner start", &pipeline.Env{}, &pipeline.Batch{Started: runStart}, 2500 * time.Millisecond, true},
		{"no start", &pipeline.Env{Now: runStart}, &pipeline.Batch{}, 0, false},
		{"--now ignored", &pipeline.Env{Now: runStart.Add(-48 * time.Hour), Started: runStart}, &pipeline.Batch{}, 2500 * time.Millisecond, true},
		{"start after end", &pipeline.Env{Started: end.Add(time.Second)}, &pipeline.Batch{}, 0, false},
	} {
		d, ok := s.runDuration(tc.env, tc.batch, end)
		if d != tc.want || ok != tc.ok {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, d, ok, tc.want, tc.ok)
		}
	}
}

func TestInit(t *testing.T) {
	tests := []struct {
		name   string
		set    func(*Stage)
		attr   string // "" = valid
		detail string
	}{
		{"defaults", func(*Stage) {}, "", ""},
		{"events off", func(s *Stage) { s.EventsFile = "" }, "", ""},
		{"metrics", func(s *Stage) { s.MetricsFile = "/var/lib/node_exporter/ds01.prom" }, "", ""},
		{"events dir", func(s *Stage) { s.EventsFile = "/var/log/ds01/" }, attrEventsFile, "names a directory"},
		{"metrics not .prom", func(s *Stage) { s.MetricsFile = "/var/lib/node_exporter/ds01.txt" }, attrMetricsFile, "must end in .prom"},
		{"same file", func(s *Stage) { s.EventsFile = "/x/a.prom"; s.MetricsFile = "/x/./a.prom" }, attrMetricsFile, "same file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			tc.set(s)
			err := s.Init()
			if tc.attr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ae *pipeline.AttrError
			if !errors.As(err, &ae) || ae.Attr != tc.attr || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("got %v, want an error on %s saying %q", err, tc.attr, tc.detail)
			}
		})
	}
}

func TestRegistration(t *testing.T) {
	spec, ok := pipeline.DefaultRegistry.Lookup(Kind)
	if !ok {
		t.Fatal("log stage not registered")
	}
	if !spec.Contract.Finalizer || !spec.Contract.Terminal {
		t.Error("the log stage must be a terminal finalizer: what was done must be recorded, even after a failure")
	}
	got := map[string]string{}
	for _, a := range spec.Attributes() {
		if a.Doc == "" || a.Required {
			t.Errorf("attribute %s: doc %q, required %v", a.Name, a.Doc, a.Required)
		}
		got[a.Name] = a.Default
	}
	want := map[string]string{
		"events_file": `"/var/log/ds01/events.jsonl"`, "syslog": "true", "metrics_file": `""`,
		"summary": "true", "fail_on_event_error": "false",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}

	// The sample decodes through the real loader, and sets what it shows.
	reg := pipeline.NewRegistry()
	reg.MustRegister(spec)
	src := "pipeline \"p\" {\n" + spec.Sample + "}\n"
	cfg, err := pipeline.Load("sample.hcl", []byte(src), pipeline.LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Stages[0].Stage.(*Stage)
	if s.MetricsFile == "" || !s.Syslog || s.dial == nil || s.now == nil {
		t.Errorf("sample decoded to %+v", s)
	}

	// A bad value points at its attribute.
	src = "pipeline \"p\" {\n  stage \"log\" {\n    metrics_file = \"/tmp/x.txt\"\n  }\n}\n"
	_, err = pipeline.Load("bad.hcl", []byte(src), pipeline.LoadOptions{Registry: reg})
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) || len(ce.Diags) != 1 || ce.Diags[0].Subject == nil || ce.Diags[0].Subject.Start.Line != 3 {
		t.Fatalf("got %v", err)
	}
}

// parseMetrics reads a textfile the way node_exporter does.
func parseMetrics(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("%s does not parse: %v", path, err)
	}
	return mfs
}

// samples flattens families into "name{label=value,...}" -> value, with
// the labels sorted.
func samples(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// key is a sample's key in samples' form, with the run's pipeline.
func key(name string, labels ...string) string {
	labels = append([]string{"pipeline=cleanup"}, labels...)
	sort.Strings(labels)
	return name + "{" + strings.Join(labels, ",") + "}"
}

func TestMetrics(t *testing.T) {
	s, _ := newStage(t)
	dir := t.TempDir()
	s.MetricsFile = filepath.Join(dir, "ds01-pipe.prom")
	env, hook := newEnv(pipeline.ModeRun)
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	end := float64(runStart.Add(2500*time.Millisecond).UnixNano()) / 1e9
	want := map[string]float64{
		key("ds01_pipe_containers", "verdict=remove", "reason=hold_expired", "outcome=removed"):          1,
		key("ds01_pipe_containers", "verdict=remove", "reason=created_never_started", "outcome=removed"): 1,
		key("ds01_pipe_containers", "verdict=remove", "reason=idle_stopped", "outcome=removed"):          1,
		key("ds01_pipe_containers", "verdict=keep", "reason=within_hold", "outcome=none"):                1,
		key("ds01_pipe_containers", "verdict=skip", "reason=exempt", "outcome=none"):                     1,
		key("ds01_pipe_containers", "verdict=remove", "reason=hold_expired", "outcome=failed"):           1,
		key("ds01_pipe_gpus", "status=free"):                                                             0,
		key("ds01_pipe_gpus", "status=in_use"):                                                           1,
		key("ds01_pipe_gpus", "status=released"):                                                         1,
		key("ds01_pipe_gpus", "status=orphaned"):                                                         1,
		key("ds01_pipe_gpus", "status=unrecorded"):                                                       0,
		key("ds01_pipe_gpus", "status=unchecked"):                                                        0,
		key("ds01_pipe_gpus", "status=unaccounted"):                                                      0,
		key("ds01_pipe_run_duration_seconds"):                                                            2.5,
		key("ds01_pipe_last_run_timestamp_seconds"):                                                      end,
		key("ds01_pipe_events_written_total"):                                                            4,
		key("ds01_pipe_last_run_exit_code"):                                                              2,
		key("ds01_pipe_runs_total", "outcome=done"):                                                      0,
		key("ds01_pipe_runs_total", "outcome=partial"):                                                   1,
		key("ds01_pipe_runs_total", "outcome=failed"):                                                    0,
		key("ds01_pipe_runs_total", "outcome=locked"):                                                    0,
		// No last success: a container action failed, and no earlier run succeeded.
	}
	got := samples(parseMetrics(t, s.MetricsFile))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if st, err := os.Stat(s.MetricsFile); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("metrics file mode %v, %v: node_exporter must be able to read it", st.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if errs := messages(hook, logrus.ErrorLevel); len(errs) != 0 {
		t.Errorf("errors %v", errs)
	}

	// A run without failures sets the last success; the counter goes on.
	ok := newBatch(pipeline.OutcomeRemoved)
	ok.Records = ok.Records[:4]
	s.now = func() time.Time { return runStart.Add(time.Minute) }
	if err := finish(s, env, ok); err != nil {
		t.Fatal(err)
	}
	success := float64(runStart.Add(time.Minute).Unix())
	got = samples(parseMetrics(t, s.MetricsFile))
	if got[key("ds01_pipe_last_success_timestamp_seconds")] != success || got[key("ds01_pipe_events_written_total")] != 8 {
		t.Errorf("after a good run: %v", got)
	}

	// A failed run keeps the last success of the run before.
	s.now = func() time.Time { return runStart.Add(2 * time.Minute) }
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	got = samples(parseMetrics(t, s.MetricsFile))
	if got[key("ds01_pipe_last_success_timestamp_seconds")] != success || got[key("ds01_pipe_events_written_total")] != 12 {
		t.Errorf("after a failed run: %v", got)
	}
	if got[key("ds01_pipe_last_run_timestamp_seconds")] != float64(runStart.Add(2*time.Minute).Unix()) {
		t.Errorf("last run not updated: %v", got)
	}
}

func TestMetricsDamagedFileReplaced(t *testing.T) {
	s, _ := newStage(t)
	s.MetricsFile = filepath.Join(t.TempDir(), "ds01-pipe.prom")
	if err := os.WriteFile(s.MetricsFile, []byte("this is { not metrics\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env, hook := newEnv(pipeline.ModeRun)
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	parseMetrics(t, s.MetricsFile)
	if warns := messages(hook, logrus.WarnLevel); len(warns) != 1 {
		t.Errorf("warnings %v", warns)
	}
}

func TestMetricsFailureNeverFailsTheRun(t *testing.T) {
	s, _ := newStage(t)
	s.MetricsFile = filepath.Join(t.TempDir(), "missing", "ds01-pipe.prom")
	s.FailOnEventError = true
	env, hook := newEnv(pipeline.ModeRun)
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatalf("a metrics failure failed the run: %v", err)
	}
	if errs := messages(hook, logrus.ErrorLevel); len(errs) != 1 || !strings.Contains(errs[0], "metrics") {
		t.Errorf("errors %v", errs)
	}
	if got := readLines(t, s.EventsFile); len(got) != len(wantEventLines) {
		t.Errorf("events %v", got)
	}
}
