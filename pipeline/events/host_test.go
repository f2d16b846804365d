package events

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The host goes last in details: DS01's keys keep their order and the top
// level stays schema v1's.
func TestEncodeHostLastInDetails(t *testing.T) {
	ev := ds01Examples[0].ev
	ev.Host = "gpu07"
	line, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSuffix(ds01Examples[0].line, "}}") + `,"host":"gpu07"}}` + "\n"
	if string(line) != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}

	// An event without details gets details holding only the host.
	bare := Event{Time: ev.Time, Type: PipelineSummary, Source: "ds01-pipe/cleanup", Host: "gpu07"}
	line, err = bare.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(line), `"source":"ds01-pipe/cleanup","details":{"host":"gpu07"}}`+"\n") {
		t.Errorf("got %s", line)
	}

	// A detail of that name is the caller's: kept, never doubled.
	own := ev
	own.Details = append([]Field{F("host", "other")}, ev.Details...)
	line, err = own.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(line), `"host":`); n != 1 || !strings.Contains(string(line), `"host":"other"`) {
		t.Errorf("got %s", line)
	}
	if len(ev.Details) != 4 {
		t.Errorf("Encode changed the caller's details: %v", ev.Details)
	}
}

// A shortened line still says where it happened.
func TestEncodeTruncatedKeepsHost(t *testing.T) {
	ev := Event{
		Time: time.Date(2026, 2, 16, 0, 0, 0, 0, time.UTC), Type: ContainerRemove, User: "alice",
		Source: "ds01-pipe/cleanup", Details: []Field{F("container", strings.Repeat("x", MaxLineBytes))}, Host: "gpu07",
	}
	full, err := ev.encode(ev.withHost(ev.Details))
	if err != nil {
		t.Fatal(err)
	}
	line, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"timestamp":"2026-02-16T00:00:00.000000Z","event_type":"container.remove","schema_version":"1","user":"alice","source":"ds01-pipe/cleanup","details":{"truncated":true,"original_size":%d,"host":"gpu07"}}`+"\n", len(full))
	if string(line) != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
}

// OpenFile writes the node's host name into every event that has none; an
// event's own host wins.
func TestWriterHost(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Fatalf("no host name to compare with: %v", err)
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ds01Examples[1].ev); err != nil {
		t.Fatal(err)
	}
	withOwn := ds01Examples[2].ev
	withOwn.Host = "n2"
	if err := w.Write(withOwn); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	want := []string{
		strings.TrimSuffix(ds01Examples[1].line, "}}") + fmt.Sprintf(`,"host":%q}}`, host),
		strings.TrimSuffix(ds01Examples[2].line, "}}") + `,"host":"n2"}}`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
