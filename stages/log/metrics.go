package logstage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
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
)

// gpuStatuses are exported even at zero, so that an alert on orphaned GPUs
// sees 0 rather than no data.
var gpuStatuses = []pipeline.GPUStatus{
	pipeline.GPUFree, pipeline.GPUInUse, pipeline.GPUReleased,
	pipeline.GPUOrphaned, pipeline.GPUUnrecorded, pipeline.GPUUnchecked,
}

// runMetrics is what one run reports.
type runMetrics struct {
	pipeline, host string
	batch          *pipeline.Batch
	now            time.Time // wall clock at the end of the run
	duration       time.Duration
	hasDuration    bool
	success        bool // no container action failed
	eventsWritten  int
}

// previous holds the values a textfile carries from one run to the next:
// the file is rewritten whole each run, so a failed run must not erase the
// time of the last good one, and a counter must keep counting.
type previous struct {
	lastSuccess    float64
	hasLastSuccess bool
	eventsWritten  float64
}

// writeMetrics writes the run's metrics to path, atomically (a temporary
// file in the same directory, then a rename), so node_exporter never reads
// half a file.
func writeMetrics(log logrus.FieldLogger, path string, m runMetrics) error {
	prev, err := readPrevious(path, m.pipeline, m.host)
	if err != nil {
		// A damaged file is replaced; only the carried values are lost.
		log.WithError(err).WithField(attrMetricsFile, path).Warn("previous metrics unreadable; last success time and event count start over")
		prev = previous{}
	}
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"pipeline": m.pipeline, "host": m.host}

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

	collectors := []prometheus.Collector{containers, gpus, lastRun, eventsWritten}
	if m.success || prev.hasLastSuccess {
		lastSuccess := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricLastSuccess, Help: "Unix time the last run in which no container action failed ended.", ConstLabels: labels,
		})
		if m.success {
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
// wrote, for the same pipeline and host. A missing file carries nothing.
func readPrevious(path, pipelineName, host string) (previous, error) {
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
	if v, ok := sampleValue(families[metricLastSuccess], pipelineName, host); ok {
		prev.lastSuccess, prev.hasLastSuccess = v, true
	}
	if v, ok := sampleValue(families[metricEventsWritten], pipelineName, host); ok && v > 0 {
		prev.eventsWritten = v
	}
	return prev, nil
}

// sampleValue finds the sample of a gauge or counter family for one
// pipeline and host.
func sampleValue(mf *dto.MetricFamily, pipelineName, host string) (float64, bool) {
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		var p, h string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "pipeline":
				p = l.GetValue()
			case "host":
				h = l.GetValue()
			}
		}
		if p != pipelineName || h != host {
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

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
