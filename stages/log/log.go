// Package logstage implements the "log" stage: it records what a run did
// the way DS01's own scripts do (events.jsonl lines, syslog lines under the
// DS01 tags), prints a summary, and optionally writes Prometheus textfile
// metrics.
//
// The package is not called log because that would shadow the standard
// library's log package wherever it is imported; the stage kind is "log".
package logstage

import (
	"context"
	_ "embed" // the sample stage block
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ds01/ds01-pipe/internal/printable"

	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "log"

//go:embed sample.hcl
var sample string

// DefaultEventsFile is where DS01 keeps its audit log.
const DefaultEventsFile = "/var/log/ds01/events.jsonl"

// TagCleanup is DS01's syslog tag for container removals (reference 9.3).
const TagCleanup = "ds01-cleanup"

// Attribute names, for error messages.
const (
	attrEventsFile  = "events_file"
	attrMetricsFile = "metrics_file"
)

// Stage is the log stage.
type Stage struct {
	EventsFile       string `hcl:"events_file,optional" doc:"DS01 events.jsonl to append one line per action to, plus a pipeline.summary line per run. \"\" writes no events."`
	Syslog           bool   `hcl:"syslog,optional" doc:"Send DS01's ds01-cleanup syslog line for every removed container (facility user, priority notice)."`
	MetricsFile      string `hcl:"metrics_file,optional" doc:"Prometheus textfile (must end in .prom) written atomically after each run, for node_exporter's textfile collector. \"\" writes none."`
	Summary          bool   `hcl:"summary,optional" doc:"Log a one-line summary of the run on stderr."`
	FailOnEventError bool   `hcl:"fail_on_event_error,optional" doc:"Fail the run when an event cannot be written. By default the run goes on and ends with exit 2 (partial failure): the removals already happened."`

	// dial opens the syslog connection; tests replace it.
	dial func(tag string) (SyslogWriter, error)
	// now is the wall clock; tests replace it.
	now func() time.Time
	// own is the events file the stage opened itself, when the engine did
	// not open it for the run.
	own *pipeline.EventLog
}

// SyslogWriter is the part of *syslog.Writer the stage uses.
type SyslogWriter interface {
	Notice(msg string) error
	Close() error
}

// New returns a log stage with its defaults.
func New() *Stage {
	return &Stage{
		EventsFile: DefaultEventsFile,
		Syslog:     true,
		Summary:    true,
		dial:       dialSyslog,
		now:        time.Now,
	}
}

func dialSyslog(tag string) (SyslogWriter, error) {
	return syslog.New(syslog.LOG_USER|syslog.LOG_NOTICE, tag)
}

// Init rejects settings that are surely mistakes.
func (s *Stage) Init() error {
	if s.EventsFile != "" && strings.HasSuffix(s.EventsFile, "/") {
		return &pipeline.AttrError{Attr: attrEventsFile, Err: fmt.Errorf("%q names a directory; give a file such as %s", s.EventsFile, DefaultEventsFile)}
	}
	if s.MetricsFile != "" {
		// node_exporter's textfile collector reads only *.prom files: any
		// other name would be written every run and never collected.
		if filepath.Ext(s.MetricsFile) != ".prom" {
			return &pipeline.AttrError{Attr: attrMetricsFile, Err: fmt.Errorf("%q must end in .prom, or node_exporter ignores it", s.MetricsFile)}
		}
		if s.EventsFile != "" && filepath.Clean(s.MetricsFile) == filepath.Clean(s.EventsFile) {
			return &pipeline.AttrError{Attr: attrMetricsFile, Err: errors.New("is the same file as events_file")}
		}
	}
	return nil
}

// WriteError is returned, with fail_on_event_error, when events could not
// be written to the events file.
type WriteError struct {
	Path   string
	Failed int   // events not written
	Total  int   // events the run had to write
	Err    error // the first failure
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("events file %s: %d of %d events not written: %v", e.Path, e.Failed, e.Total, e.Err)
}

func (e *WriteError) Unwrap() error { return e.Err }

// EventsPath is the events file the run appends to as each action
// completes (pipeline.EventsOwner): the engine opens it when a run starts.
func (s *Stage) EventsPath() string { return s.EventsFile }

// Process records what the stages did: DS01's syslog line per removed
// container, and any events still queued (events go straight to the file
// when the engine opened it for the run, Env.Events). It then reports
// events that could not be written. The pipeline.summary event, the
// metrics and the summary line come at the end of the run, whatever its
// outcome (RecordEnd). In plan mode it writes nothing: a plan has no side
// effects.
func (s *Stage) Process(_ context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	log := logger(env)
	queued := batch.TakeEvents()
	if env.Planning() {
		if len(queued) > 0 {
			log.Debugf("plan: %d queued events not written", len(queued))
		}
		return nil
	}
	sink := s.sink(env)
	if sink != nil {
		for _, ev := range queued {
			_ = sink.Write(ev) // counted by the sink
		}
	}
	if s.Syslog {
		s.sendSyslog(log, batch)
	}
	if sink == nil {
		return nil
	}
	written, failed, first := sink.Counts()
	if failed == 0 {
		return nil
	}
	werr := &WriteError{Path: sink.Path(), Failed: failed, Total: written + failed, Err: first}
	// The removals already happened and are not undone: by default a lost
	// audit line ends the run as "done, but something failed" (exit 2), loud
	// in the journal and in systemd's unit state. With fail_on_event_error
	// it is a run failure (exit 1).
	log.WithError(first).WithField(attrEventsFile, sink.Path()).Errorf("%d of %d events not written", werr.Failed, werr.Total)
	if s.FailOnEventError {
		return werr
	}
	return &pipeline.PartialError{Err: werr}
}

// sink is where this stage's events go: the run's events file when the
// engine opened this stage's file (Env.Events), else a file the stage
// opens itself (a pipeline run through pipeline.Run alone). nil when
// events_file is "".
func (s *Stage) sink(env *pipeline.Env) *pipeline.EventLog {
	if s.EventsFile == "" {
		return nil
	}
	if env.Events != nil && env.Events.Path() == s.EventsFile {
		return env.Events
	}
	if s.own == nil {
		s.own = pipeline.OpenEventLog(s.EventsFile)
	}
	return s.own
}

// RecordEnd records how the run ended, whatever the outcome, even when no
// stage ran (lock held, engine unreachable): the pipeline.summary event
// with the exit code and the error, the metrics (the last success time
// moves only on exit 0), and the summary line on stderr when the stages
// ran. In plan mode only the summary line.
func (s *Stage) RecordEnd(env *pipeline.Env, end pipeline.RunEnd) error {
	log := logger(env)
	batch := &pipeline.Batch{}
	if end.Result != nil && end.Result.Batch != nil {
		batch = end.Result.Batch
	}
	c := countBatch(batch)
	if env.Planning() {
		if s.Summary {
			log.Info(summaryLine(env, batch, c))
		}
		return nil
	}
	now := end.Ended
	if now.IsZero() {
		now = s.clock()
	}
	duration, hasDuration := s.runDuration(env, batch, now)
	sink := s.sink(env)
	var summaryErr error
	if sink != nil {
		if err := sink.Write(summaryEvent(env, now, c, duration, hasDuration, end)); err != nil {
			log.WithError(err).WithField(attrEventsFile, sink.Path()).Error("pipeline.summary event not written")
			summaryErr = fmt.Errorf("pipeline.summary event not written to %s: %w", sink.Path(), err)
		}
	}
	if s.MetricsFile != "" {
		written := 0
		if sink != nil {
			written, _, _ = sink.Counts()
		}
		m := runMetrics{
			pipeline: env.Pipeline, batch: batch, now: now,
			duration: duration, hasDuration: hasDuration,
			exitCode: end.ExitCode, outcome: end.Outcome,
			eventsWritten: written,
		}
		if err := writeMetrics(log, s.MetricsFile, m); err != nil {
			// Metrics are for dashboards; they never fail a run.
			log.WithError(err).WithField(attrMetricsFile, s.MetricsFile).Error("metrics not written")
		}
	}
	if s.own != nil {
		_ = s.own.Close()
		s.own = nil
	}
	// A run whose stages never ran has nothing to sum up: its error line
	// (the command's last) says what happened.
	if s.Summary && end.Result != nil {
		line := summaryLine(env, batch, c)
		if end.Outcome != "" && end.Outcome != OutcomeDone {
			line += "; run " + end.Outcome + " (exit " + strconv.Itoa(end.ExitCode) + ")"
		}
		log.Info(line)
	}
	return summaryErr
}

// OutcomeDone is RunEnd.Outcome of a run that did everything (exit 0).
const OutcomeDone = "done"

func (s *Stage) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}

// runDuration measures the run on the wall clock, from its start (the
// engine's, else the runner's) to end. The --now clock never enters it;
// a run with no known start has no duration rather than a wrong one.
func (s *Stage) runDuration(env *pipeline.Env, batch *pipeline.Batch, end time.Time) (time.Duration, bool) {
	start := env.Started
	if start.IsZero() {
		start = batch.Started
	}
	if start.IsZero() {
		return 0, false
	}
	d := end.Sub(start)
	if d < 0 || d > 24*time.Hour {
		return 0, false
	}
	return d, true
}

func logger(env *pipeline.Env) logrus.FieldLogger {
	if env.Log != nil {
		return env.Log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// sendSyslog sends DS01's ds01-cleanup line for each removed container.
// Syslog is best effort, as DS01's `logger` calls are: without a syslog
// socket (containers, minimal hosts) the stage warns once and goes on.
func (s *Stage) sendSyslog(log logrus.FieldLogger, batch *pipeline.Batch) {
	var lines []string
	for _, rec := range batch.Records {
		if rec.Outcome.Status == pipeline.OutcomeRemoved {
			lines = append(lines, removedMessage(rec))
		}
	}
	if len(lines) == 0 {
		return
	}
	dial := s.dial
	if dial == nil {
		dial = dialSyslog
	}
	w, err := dial(TagCleanup)
	if err != nil {
		log.WithError(err).Warn("syslog unavailable; removals are not sent to syslog")
		return
	}
	defer w.Close()
	for _, line := range lines {
		if err := w.Notice(line); err != nil {
			log.WithError(err).Warn("syslog write failed; the remaining removals are not sent to syslog")
			return
		}
	}
}

// removedMessage is DS01's syslog message for a removal (reference 8.1
// and 8.2), with the values taken from the record.
func removedMessage(rec *pipeline.Record) string {
	name := sanitize(rec.Container.Name)
	owner := sanitize(orUnknown(rec.Owner.Name))
	secs := strconv.FormatInt(int64(rec.Verdict.Age/time.Second), 10)
	if rec.Verdict.Reason == pipeline.ReasonCreatedNeverStarted {
		return "Removed created-never-started container: " + name + " (owner: " + owner + ", age: " + secs + "s)"
	}
	return "Removed stale container: " + name + " (user: " + owner + ", type: " + sanitize(orUnknown(rec.Type)) + ", stopped: " + secs + "s ago)"
}

func orUnknown(s string) string {
	if s == "" {
		return pipeline.UnknownOwner
	}
	return s
}

// Sanitize makes a text safe inside one log line (syslog, the journal),
// as sanitize does for the stage's own lines.
func Sanitize(s string) string { return sanitize(s) }

// sanitize makes a value safe inside one syslog line: owners come from
// labels anyone can set.
func sanitize(s string) string { return printable.Escape(s) }

// counts is the run's one tally (pipeline.Tally): the report's summary
// and the exit code count the same way.
type counts = pipeline.Tally

func countBatch(b *pipeline.Batch) counts { return pipeline.TallyBatch(b) }

// summaryLine is the human summary of a run, for stderr.
func summaryLine(env *pipeline.Env, b *pipeline.Batch, c counts) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s (%s): %d containers, ", env.Pipeline, env.Mode, c.Containers)
	if env.Planning() {
		// A plan acts on nothing: what a run would remove is the planned
		// records and those no stage marked.
		fmt.Fprintf(&sb, "%d to remove", c.Planned+c.NotActed)
	} else {
		fmt.Fprintf(&sb, "%d removed", c.Removed)
	}
	fmt.Fprintf(&sb, ", %d kept, %d skipped, %d failed", c.Kept, c.Skipped, c.Failed)
	for _, x := range []struct {
		n    int
		what string
	}{{c.Gone, "gone"}, {c.Changed, "changed"}} {
		if x.n > 0 {
			fmt.Fprintf(&sb, ", %d %s", x.n, x.what)
		}
	}
	if !env.Planning() && c.NotActed+c.Planned > 0 {
		fmt.Fprintf(&sb, ", %d not acted on", c.NotActed+c.Planned)
	}
	released := "released"
	if env.Planning() {
		released = "to release"
	}
	fmt.Fprintf(&sb, "; GPUs: %d %s, %d orphaned, %d unrecorded; NVML cross-check: %s",
		c.GPUsReleased, released, c.GPUsOrphaned, c.GPUsUnrecorded, nvmlCheck(b))
	return sb.String()
}

// nvmlCheck says whether the run compared Docker's GPU records with what
// NVML saw, and if not, why.
func nvmlCheck(b *pipeline.Batch) string {
	switch {
	case b.GPUChecked:
		return "done"
	case b.GPU == nil:
		return "not done (no GPU snapshot)"
	case !b.GPU.Available:
		reason := b.GPU.Unavailable
		if reason == "" {
			reason = "no GPU view"
		}
		return "not done (" + reason + ")"
	default:
		return "not done (GPU state not reconciled)"
	}
}

// summaryEvent is the pipeline.summary line of a run: what the stages
// did, then how the run ended (exit code, outcome, and the error if any).
func summaryEvent(env *pipeline.Env, now time.Time, c counts, d time.Duration, hasDuration bool, end pipeline.RunEnd) events.Event {
	details := []events.Field{
		events.F("containers", c.Containers),
		events.F("removed", c.Removed),
		events.F("kept", c.Kept),
		events.F("skipped", c.Skipped),
		events.F("failed", c.Failed),
		events.F("gone", c.Gone),
		events.F("changed", c.Changed),
		events.F("not_acted_on", c.NotActed+c.Planned),
		events.F("gpus_released", c.GPUsReleased),
		events.F("gpus_orphaned", c.GPUsOrphaned),
		events.F("gpus_unrecorded", c.GPUsUnrecorded),
	}
	if hasDuration {
		details = append(details, events.F("duration_s", math.Round(d.Seconds()*1000)/1000))
	}
	details = append(details, events.F("exit_code", end.ExitCode))
	if end.Outcome != "" {
		details = append(details, events.F("outcome", end.Outcome))
	}
	if end.Err != nil {
		details = append(details, events.F("error", end.Err.Error()))
	}
	return events.Event{
		Time:    now,
		Type:    events.PipelineSummary,
		Source:  env.Source(),
		Details: details,
	}
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind:    Kind,
		Summary: "Records what the run did, as DS01 does: one events.jsonl line (schema v1) per action and a pipeline.summary line, DS01's ds01-cleanup syslog line per removed container, a summary on stderr, and optionally Prometheus textfile metrics. Runs even after an earlier stage failed. In plan mode it only prints the summary.",
		Sample:  sample,
		New:     func() pipeline.Stage { return New() },
		// It records what the run did: nothing may come after it, and it
		// runs even after a failure.
		Contract: pipeline.Contract{
			Reads:     []pipeline.Field{pipeline.FieldOwner, pipeline.FieldType, pipeline.FieldExemption, pipeline.FieldVerdict, pipeline.FieldGPUClaims, pipeline.FieldGPUView, pipeline.FieldRelease, pipeline.FieldOutcome, pipeline.FieldEvents},
			Writes:    []pipeline.Field{pipeline.FieldEvents},
			Terminal:  true,
			Finalizer: true,
		},
	})
}
