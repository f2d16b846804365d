package decide

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/pipeline"
)

// copyEvents puts testdata/events.jsonl (an idle kill of train._.1002) at
// a fresh path with the given mode, under a root-owned 0755 folder.
func copyEvents(t *testing.T, mode os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "log")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// Unless idle_events_file is set, idle kills come from the pipeline's own
// events file (the log stage's), and without a log stage from DS01's.
func TestEventsSource(t *testing.T) {
	set := func(s string) *string { return &s }
	tests := []struct {
		name  string
		attr  *string
		files pipeline.FileSettings
		want  string
	}{
		{"no log stage", nil, pipeline.FileSettings{}, DefaultIdleEventsFile},
		{"the log stage's file", nil, pipeline.FileSettings{HasEventsWriter: true, EventsFile: "/srv/events.jsonl"}, "/srv/events.jsonl"},
		{"a log stage without events: rule off", nil, pipeline.FileSettings{HasEventsWriter: true}, ""},
		{"set apart", set("/var/log/ds01/events.jsonl"), pipeline.FileSettings{HasEventsWriter: true, EventsFile: "/srv/events.jsonl"}, "/var/log/ds01/events.jsonl"},
		{"turned off", set(""), pipeline.FileSettings{HasEventsWriter: true, EventsFile: "/srv/events.jsonl"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			s.IdleEventsFile = tt.attr
			s.UseFiles(tt.files)
			if got := s.eventsPath(); got != tt.want {
				t.Errorf("eventsPath = %q, want %q", got, tt.want)
			}
		})
	}
}

// The idle-kill source follows the trust rule: as root, idle kills in a
// file users could have written are ignored with a warning, and the
// container follows the ordinary hold (fail closed).
func TestIdleKillsTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (the trust rule wants root's files); CI runs the tests as root")
		}
		t.Skip("needs root: the trust rule wants files owned by root")
	}
	ds01 := load(t, "ds01")
	tests := []struct {
		name    string
		mode    os.FileMode
		enforce bool
		want    pipeline.Reason
		warning string
	}{
		{"root's 0644", 0o644, true, pipeline.ReasonIdleStopped, ""},
		{"world-writable (DS01's chmod 666)", 0o666, true, pipeline.ReasonWithinHold, "are ignored, since users could have written them"},
		{"world-writable, --allow-insecure-files", 0o666, false, pipeline.ReasonIdleStopped, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := copyEvents(t, tt.mode)
			s := New()
			s.UseFiles(pipeline.FileSettings{Trust: safefile.Trust{Enforce: tt.enforce}, HasEventsWriter: true, EventsFile: path})
			rec := exited("bob", 10*minute, withName("train._.1002"))
			env, hook := newEnv(ds01)
			if err := s.Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{rec}}); err != nil {
				t.Fatal(err)
			}
			if rec.Verdict.Reason != tt.want {
				t.Errorf("verdict %+v, want reason %s", rec.Verdict, tt.want)
			}
			var warned []string
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel {
					warned = append(warned, e.Message)
				}
			}
			if tt.warning == "" && len(warned) > 0 || tt.warning != "" && (len(warned) != 1 || !strings.Contains(warned[0], tt.warning)) {
				t.Errorf("warnings %q, want %q", warned, tt.warning)
			}
		})
	}
}
