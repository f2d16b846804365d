package logstage

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
)

// withHost returns DS01 event lines as this node writes them: the events
// writer adds the node's host name as the last key of details.
func withHost(t *testing.T, lines []string) []string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimSuffix(l, "}}") + `,"host":` + strconv.Quote(host) + "}}"
	}
	return out
}

// No label names the node: Prometheus's own instance label does, on every
// sample it scrapes. A file from before, with a host label, still carries
// its counters over.
func TestMetricsNoNodeLabel(t *testing.T) {
	s, _ := newStage(t)
	s.MetricsFile = filepath.Join(t.TempDir(), "ds01-pipe.prom")
	old := `# TYPE ds01_pipe_events_written_total counter
ds01_pipe_events_written_total{host="gpu01",pipeline="cleanup"} 40
# TYPE ds01_pipe_runs_total counter
ds01_pipe_runs_total{host="gpu01",outcome="done",pipeline="cleanup"} 7
`
	if err := os.WriteFile(s.MetricsFile, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	env, _ := newEnv(pipeline.ModeRun)
	if err := finish(s, env, newBatch(pipeline.OutcomeRemoved)); err != nil {
		t.Fatal(err)
	}
	mfs := parseMetrics(t, s.MetricsFile)
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "host", "hostname", "node", "instance", "job":
					t.Errorf("%s has label %s=%q, which duplicates Prometheus's target labels", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	got := samples(mfs)
	if v := got[key("ds01_pipe_events_written_total")]; v != 40+float64(len(wantEventLines)) {
		t.Errorf("events written %v, want the old 40 carried over plus this run's %d", v, len(wantEventLines))
	}
	if v := got[key("ds01_pipe_runs_total", "outcome=done")]; v != 7 {
		t.Errorf("runs done %v, want the old 7 carried over", v)
	}
}
