package logstage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/pipeline"
)

// Metric names of the textfile.
const (
	metricContainers    = "ds01_pipe_containers"
	metricGPUs          = "ds01_pipe_gpus"
	metricRunDuration   = "ds01_pipe_run_duration_seconds"
	metricLastRun       = "ds01_pipe_last_run_timestamp_seconds"
	metricLastSuccess   = "ds01_pipe_last_success_timestamp_seconds"
	metricEventsWritten = "ds01_pipe_events_written_total"
	metricRuns          = "ds01_pipe_runs_total"
	metricLastExitCode  = "ds01_pipe_last_run_exit_code"
)

// runOutcomes are the outcomes of ds01_pipe_runs_total, exported even at
// zero so that an alert on failed runs sees 0 rather than no data. They
// name the exit codes: done 0, failed 1, partial 2, locked 3. (A
// configuration error is not a run: nothing is recorded.)
var runOutcomes = []string{"done", "partial", "failed", "locked"}

// gpuStatuses are exported even at zero, so that an alert on orphaned GPUs
// sees 0 rather than no data.
var gpuStatuses = []pipeline.GPUStatus{
	pipeline.GPUFree, pipeline.GPUInUse, pipeline.GPUReleased,
	pipeline.GPUOrphaned, pipeline.GPUUnrecorded, pipeline.GPUUnchecked,
	pipeline.GPUUnaccounted,
}

// runMetrics is what one run reports. There is no host: Prometheus labels
// every sample of a scrape with the node's own instance (and job), and a
// second label naming the node would only disagree with it or split
// series when a node is renamed.
type runMetrics struct {
	pipeline      string
	batch         *pipeline.Batch
	now           time.Time // wall clock at the end of the run
	duration      time.Duration
	hasDuration   bool
	exitCode      int    // the run's exit code: only 0 is a success
	outcome       string // the exit code's name (runOutcomes)
	eventsWritten int
}

// previous holds the values a textfile carries from one run to the next:
// the file is rewritten whole each run, so a failed run must not erase the
// time of the last good one, and a counter must keep counting.
type previous struct {
	lastSuccess    float64
	hasLastSuccess bool
	eventsWritten  float64
	runs           map[string]float64 // ds01_pipe_runs_total by outcome
}

// writeMetrics writes the run's metrics to path, atomically (a temporary
// file in the same directory, then a rename), so node_exporter never reads
// half a file.
func writeMetrics(log logrus.FieldLogger, path string, m runMetrics) error {
	prev, err := readPrevious(path, m.pipeline)
	if err != nil {
		// A damaged file is replaced; only the carried values are lost.
		log.WithError(err).WithField(attrMetricsFile, path).Warn("previous metrics unreadable; last success time and event count start over")
		prev = previous{}
	}
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"pipeline": m.pipeline}

	containers := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: metricContainers, Help: "Containers seen by the last run, by verdict, reason and outcome.", ConstLabels: labels,
	}, []string{"verdict", "reason", "outcome"})
	for _, rec := range m.batch.Records {
		containers.WithLabelValues(orNone(string(rec.Verdict.Action)), orNone(string(rec.Verdict.Reason)), orNone(string(rec.Outcome.Status))).Inc()
	}

	gpus := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: metricGPUs, Help: "GPUs and MIG slices by reconciled status in the last run.", ConstLabels: labels,
	}, []string{"status"})
	for _, st := range gpuStatuses {
		gpus.WithLabelValues(string(st))
	}
	for _, g := range m.batch.GPUs {
		gpus.WithLabelValues(string(g.Status)).Inc()
	}

	lastRun := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricLastRun, Help: "Unix time the last run ended.", ConstLabels: labels,
	})
	lastRun.Set(unixSeconds(m.now))

	eventsWritten := prometheus.NewCounter(prometheus.CounterOpts{
		Name: metricEventsWritten, Help: "Events appended to events.jsonl, over all runs that wrote this file.", ConstLabels: labels,
	})
	eventsWritten.Add(prev.eventsWritten + float64(m.eventsWritten))

	runs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricRuns, Help: "Runs by outcome (done: exit 0, partial: 2, failed: 1, locked: 3), over all runs that wrote this file.", ConstLabels: labels,
	}, []string{"outcome"})
	for _, o := range runOutcomes {
		runs.WithLabelValues(o).Add(prev.runs[o])
	}
	for o, n := range prev.runs {
		if !slices.Contains(runOutcomes, o) {
			runs.WithLabelValues(o).Add(n)
		}
	}
	if m.outcome != "" {
		runs.WithLabelValues(m.outcome).Inc()
	}

	exitCode := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricLastExitCode, Help: "Exit code of the last run (0 done, 1 failed, 2 partial, 3 locked, 78 configuration error).", ConstLabels: labels,
	})
	exitCode.Set(float64(m.exitCode))

	success := m.exitCode == 0
	collectors := []prometheus.Collector{containers, gpus, lastRun, eventsWritten, runs, exitCode}
	if success || prev.hasLastSuccess {
		lastSuccess := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricLastSuccess, Help: "Unix time the last successful run (exit 0: everything done) ended.", ConstLabels: labels,
		})
		if success {
			lastSuccess.Set(unixSeconds(m.now))
		} else {
			lastSuccess.Set(prev.lastSuccess)
		}
		collectors = append(collectors, lastSuccess)
	}
	if m.hasDuration {
		duration := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricRunDuration, Help: "How long the last run took, in seconds.", ConstLabels: labels,
		})
		duration.Set(m.duration.Seconds())
		collectors = append(collectors, duration)
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if err := prometheus.WriteToTextfile(path, reg); err != nil {
		return fmt.Errorf("metrics file %s: %w", path, err)
	}
	return nil
}

// maxPreviousMetrics bounds the previous metrics file: the log stage
// writes a few kilobytes.
const maxPreviousMetrics = 16 << 20

// readPrevious reads the values to carry over from the file the last run
// wrote, for the same pipeline. A missing file carries nothing. Samples
// are matched on the pipeline alone, so a file written when the metrics
// still had a host label carries over too.
func readPrevious(path, pipelineName string) (previous, error) {
	var prev previous
	// The one hardened reader: a FIFO or device planted at the path (the
	// textfile folder is often not root's) is an error at once, never a
	// read that blocks past the run's deadline.
	data, err := safefile.Read(context.Background(), path, safefile.Options{MaxSize: maxPreviousMetrics})
	if errors.Is(err, fs.ErrNotExist) {
		return prev, nil
	}
	if err != nil {
		return prev, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return prev, err
	}
	if v, ok := sampleValue(families[metricLastSuccess], pipelineName); ok {
		prev.lastSuccess, prev.hasLastSuccess = v, true
	}
	if v, ok := sampleValue(families[metricEventsWritten], pipelineName); ok && v > 0 {
		prev.eventsWritten = v
	}
	prev.runs = labelledValues(families[metricRuns], pipelineName, "outcome")
	return prev, nil
}

// sampleValue finds the sample of a gauge or counter family for one
// pipeline.
func sampleValue(mf *dto.MetricFamily, pipelineName string) (float64, bool) {
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		var p string
		for _, l := range m.GetLabel() {
			if l.GetName() == "pipeline" {
				p = l.GetValue()
			}
		}
		if p != pipelineName {
			continue
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// labelledValues reads a counter family for one pipeline, by the
// value of one label. Negative values are dropped: a counter never is.
func labelledValues(mf *dto.MetricFamily, pipelineName, label string) map[string]float64 {
	out := map[string]float64{}
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var p, v string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "pipeline":
				p = l.GetValue()
			case label:
				v = l.GetValue()
			}
		}
		if p != pipelineName || v == "" || m.GetCounter() == nil || m.GetCounter().GetValue() <= 0 {
			continue
		}
		out[v] = m.GetCounter().GetValue()
	}
	return out
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
