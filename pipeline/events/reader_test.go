package events

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIdleKillsMissingFile(t *testing.T) {
	kills, err := IdleKills(filepath.Join(t.TempDir(), "nope", "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if kills == nil || len(kills) != 0 {
		t.Fatalf("got %v, want an empty map", kills)
	}
}

func TestIdleKillsUnreadable(t *testing.T) {
	if _, err := IdleKills(t.TempDir()); err == nil {
		t.Fatal("reading a directory succeeded")
	}
}

func TestReadIdleKills(t *testing.T) {
	idle := func(ts, container string) string {
		return `{"timestamp":"` + ts + `","event_type":"maintenance.idle_kill","schema_version":"1","user":"bob","source":"check-idle-containers","details":{"container":"` + container + `","idle_duration":"2h","container_type":"atomic"}}`
	}
	lines := []string{
		ds01Examples[0].line, // container.remove
		ds01Examples[1].line, // train._.1002 at 15:20:11.002113
		idle("2026-02-16T18:00:00.5Z", "late._.1003"),
		idle("2026-02-16T12:00:00Z", "late._.1003"), // older, written later: the latest time wins
		ds01Examples[2].line,
		``,
		`not json but mentions maintenance.idle_kill`,
		`{"timestamp":"2026-02-16T10:00:00Z","event_type":"maintenance.idle_kill","details":{"container":`, // cut off
		`{"timestamp":"2026-02-16T10:00:00Z","event_type":"maintenance.idle_kill","details":{}}`,
		`{"timestamp":"2026-02-16T10:00:00Z","event_type":"maintenance.idle_kill","details":{"container":42}}`,
		`{"timestamp":"yesterday","event_type":"maintenance.idle_kill","details":{"container":"bad-time"}}`,
		`{"timestamp":"2026-02-16T10:00:00Z","event_type":"maintenance.idle_kill","details":"flat"}`,
		// Mentions the type without being an idle kill: neither counted nor damaged.
		`{"timestamp":"2026-02-16T10:00:00Z","event_type":"pipeline.summary","details":{"note":"maintenance.idle_kill"}}`,
		idle("2026-02-16T09:00:00.123456Z", strings.Repeat("x", 70*1024)), // too long
		idle("2026-02-16T09:30:00.000001", "naive._.1004") + "\r",         // no zone: UTC; CRLF
		idle("2026-02-16T10:30:00+01:00", "offset._.1005"),
		idle("2026-02-16T11:00:00.000000Z", "last._.1006"), // no newline at the end of the file
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	kills, stats, err := ReadIdleKills(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{
		"train._.1002":  time.Date(2026, 2, 16, 15, 20, 11, 2113000, time.UTC),
		"late._.1003":   time.Date(2026, 2, 16, 18, 0, 0, 500000000, time.UTC),
		"naive._.1004":  time.Date(2026, 2, 16, 9, 30, 0, 1000, time.UTC),
		"offset._.1005": time.Date(2026, 2, 16, 9, 30, 0, 0, time.UTC),
		"last._.1006":   time.Date(2026, 2, 16, 11, 0, 0, 0, time.UTC),
	}
	if len(kills) != len(want) {
		t.Errorf("got %d containers, want %d: %v", len(kills), len(want), kills)
	}
	for name, at := range want {
		if got, ok := kills[name]; !ok || !got.Equal(at) || got.Location() != time.UTC {
			t.Errorf("%s: got %v, want %v", name, got, at)
		}
	}
	wantStats := ReadStats{Lines: len(lines), TooLong: 1, Malformed: 6}
	if stats != wantStats {
		t.Errorf("stats %+v, want %+v", stats, wantStats)
	}
	if stats.Skipped() != 7 {
		t.Errorf("Skipped() = %d", stats.Skipped())
	}
}

// TestScanLineLimit pins the boundary: a line of exactly the limit is
// read, one byte more is skipped, and reading goes on after it.
func TestScanLineLimit(t *testing.T) {
	line := func(name string, size int) string {
		l := `{"timestamp":"2026-02-16T10:00:00Z","event_type":"maintenance.idle_kill","details":{"container":"` + name + `","pad":"`
		end := `"}}`
		return l + strings.Repeat("p", size-len(l)-len(end)) + end
	}
	const limit = 300
	for _, tail := range []string{"\n", ""} {
		input := line("fits", limit) + "\n" + line("over", limit+1) + "\n" + line("huge", 5*limit) + "\n" + line("after", 150) + tail
		kills, stats, err := scanIdleKills(strings.NewReader(input), limit)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := kills["fits"]; !ok {
			t.Error("a line of exactly the limit was skipped")
		}
		if _, ok := kills["after"]; !ok {
			t.Error("reading stopped after a long line")
		}
		if len(kills) != 2 || stats.TooLong != 2 || stats.Lines != 4 {
			t.Errorf("kills %v, stats %+v", kills, stats)
		}
	}
}

func TestScanLongLineAtEOF(t *testing.T) {
	input := ds01Examples[1].line + "\n" + strings.Repeat("z", 1000) // no newline at the end
	kills, stats, err := scanIdleKills(strings.NewReader(input), 300)
	if err != nil {
		t.Fatal(err)
	}
	if len(kills) != 1 || stats.TooLong != 1 || stats.Lines != 2 {
		t.Errorf("kills %v, stats %+v", kills, stats)
	}
}

func TestIdleKillsReadsWhatWriterWrote(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	if err := w.Write(Event{Time: at, Type: IdleKill, User: "josé", Details: []Field{F("container", "ümlaut._.1001")}}); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	kills, err := IdleKills(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := kills["ümlaut._.1001"]; !got.Equal(at) {
		t.Errorf("got %v", kills)
	}
}
