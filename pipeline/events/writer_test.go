package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ds01Examples are three example lines of DS01's own events.jsonl
// (docs/events.md), with the events that must encode to them byte for byte.
var ds01Examples = []struct {
	ev   Event
	line string
}{
	{
		ev: Event{
			Time: time.Date(2026, 2, 16, 15, 50, 3, 412345000, time.UTC), Type: ContainerRemove,
			User: "alice", Source: "cleanup-stale-containers",
			Details: []Field{F("container", "proj._.1001"), F("reason", "hold_expired"), F("stopped_duration", "0h"), F("container_type", "atomic")},
		},
		line: `{"timestamp":"2026-02-16T15:50:03.412345Z","event_type":"container.remove","schema_version":"1","user":"alice","source":"cleanup-stale-containers","details":{"container":"proj._.1001","reason":"hold_expired","stopped_duration":"0h","container_type":"atomic"}}`,
	},
	{
		ev: Event{
			Time: time.Date(2026, 2, 16, 15, 20, 11, 2113000, time.UTC), Type: IdleKill,
			User: "bob", Source: "check-idle-containers",
			Details: []Field{F("container", "train._.1002"), F("idle_duration", "2h"), F("container_type", "atomic")},
		},
		line: `{"timestamp":"2026-02-16T15:20:11.002113Z","event_type":"maintenance.idle_kill","schema_version":"1","user":"bob","source":"check-idle-containers","details":{"container":"train._.1002","idle_duration":"2h","container_type":"atomic"}}`,
	},
	{
		ev: Event{
			Time: time.Date(2026, 2, 16, 15, 5, 9, 871000000, time.UTC), Type: GPUHealthCheck,
			Source:  "cleanup-stale-gpu",
			Details: []Field{F("gpu_uuid", "GPU-1a2b"), F("status", "cleaned"), F("killed_processes", 1), F("reset", true)},
		},
		line: `{"timestamp":"2026-02-16T15:05:09.871000Z","event_type":"gpu.health_check","schema_version":"1","source":"cleanup-stale-gpu","details":{"gpu_uuid":"GPU-1a2b","status":"cleaned","killed_processes":1,"reset":true}}`,
	},
}

func TestWriterDS01Examples(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w.SetHost("") // without a host, the lines are DS01's byte for byte
	var want strings.Builder
	for _, ex := range ds01Examples {
		if err := w.Write(ex.ev); err != nil {
			t.Fatal(err)
		}
		want.WriteString(ex.line + "\n")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Errorf("file content differs\ngot:\n%s\nwant:\n%s", got, want.String())
	}
}

func TestEncodeNonASCII(t *testing.T) {
	ev := Event{
		Time: time.Date(2026, 2, 16, 15, 50, 3, 1000, time.UTC), Type: ContainerRemove,
		User: "josé", Source: "ds01-pipe/cleanup",
		Details: []Field{F("container", "café-😀"), F("tags", []string{"ü", "日本"})},
	}
	line, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// What Python's json.dumps(..., ensure_ascii=True) prints: lower-case
	// hex, a surrogate pair above U+FFFF.
	want := `{"timestamp":"2026-02-16T15:50:03.000001Z","event_type":"container.remove","schema_version":"1","user":"jos\u00e9","source":"ds01-pipe/cleanup","details":{"container":"caf\u00e9-\ud83d\ude00","tags":["\u00fc","\u65e5\u672c"]}}` + "\n"
	if string(line) != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
}

// hostile are values a container label or name could carry.
var hostile = []string{
	"line1\nline2",
	"cr\rlf\r\n",
	`"quoted" and \backslash\`,
	"\x1b[31mred\x1b[0m",
	"nul\x00byte",
	"del\x7f",
	"invalid \xff\xfe utf-8 \xc3",
	"surrogate half \xed\xa0\x80",
	"line separator \u2028 paragraph \u2029",
	"tab\tbell\a",
	`}","event_type":"forged`,
}

func TestEncodeHostileValues(t *testing.T) {
	for _, v := range hostile {
		ev := Event{
			Time: time.Now(), Type: ContainerRemove, User: v, Source: v,
			Details: []Field{F(v, v), F("list", []string{v}), F("map", map[string]string{v: v})},
		}
		line, err := ev.Encode()
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		checkLine(t, line)
		var got struct {
			EventType string         `json:"event_type"`
			User      string         `json:"user"`
			Source    string         `json:"source"`
			Details   map[string]any `json:"details"`
		}
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		want := validUTF8(v)
		if got.EventType != ContainerRemove || got.User != want || got.Source != want || got.Details[want] != want {
			t.Errorf("%q: decoded %+v, want user, source and detail %q", v, got, want)
		}
	}
}

// checkLine asserts what every encoded event must be: one line of valid,
// ASCII-only JSON within DS01's limit.
func checkLine(t *testing.T, line []byte) {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' {
		t.Fatalf("line does not end in a newline: %q", line)
	}
	body := line[:len(line)-1]
	if i := bytes.IndexAny(body, "\n\r"); i >= 0 {
		t.Fatalf("raw line break at byte %d: %q", i, line)
	}
	// DEL (0x7f) is not checked: it breaks neither the JSON nor the line,
	// and encoding/json (used for details of other types) leaves it raw.
	for i, c := range body {
		if c < 0x20 || c >= 0x80 {
			t.Fatalf("raw byte %#x at %d: %q", c, i, line)
		}
	}
	if !json.Valid(body) {
		t.Fatalf("not valid JSON: %q", line)
	}
	if len(body) > MaxLineBytes {
		t.Fatalf("line is %d bytes, limit %d", len(body), MaxLineBytes)
	}
}

// validUTF8 is what a JSON reader gets back for s: every byte that is not
// part of valid UTF-8 becomes U+FFFD.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func TestEncodeTruncation(t *testing.T) {
	base := Event{Time: time.Date(2026, 2, 16, 0, 0, 0, 0, time.UTC), Type: ContainerRemove, User: "alice", Source: "ds01-pipe/cleanup"}
	withValue := func(v string) Event {
		ev := base
		ev.Details = []Field{F("container", v)}
		return ev
	}
	empty, err := withValue("").Encode()
	if err != nil {
		t.Fatal(err)
	}
	fixed := len(empty) - 1 // without the newline

	tests := []struct {
		name      string
		value     string
		truncated bool
		size      int // original_size when truncated
	}{
		{"exactly the limit", strings.Repeat("x", MaxLineBytes-fixed), false, 0},
		{"one byte over", strings.Repeat("x", MaxLineBytes-fixed+1), true, MaxLineBytes + 1},
		// The limit counts encoded bytes: é is 6 bytes once escaped.
		{"escapes count", strings.Repeat("é", 700), true, fixed + 6*700},
		{"huge", strings.Repeat("y", 1<<20), true, fixed + 1<<20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line, err := withValue(tc.value).Encode()
			if err != nil {
				t.Fatal(err)
			}
			checkLine(t, line)
			if !tc.truncated {
				if len(line) != MaxLineBytes+1 {
					t.Errorf("line is %d bytes, want %d", len(line), MaxLineBytes+1)
				}
				return
			}
			want := fmt.Sprintf(`{"timestamp":"2026-02-16T00:00:00.000000Z","event_type":"container.remove","schema_version":"1","user":"alice","source":"ds01-pipe/cleanup","details":{"truncated":true,"original_size":%d}}`+"\n", tc.size)
			if string(line) != want {
				t.Errorf("got  %s\nwant %s", line, want)
			}
		})
	}
}

func TestEncodeTooLongWithoutDetails(t *testing.T) {
	ev := Event{Time: time.Now(), Type: ContainerRemove, User: strings.Repeat("u", MaxLineBytes)}
	if _, err := ev.Encode(); err == nil {
		t.Fatal("an event too long even without details must not encode")
	}
	w, err := OpenFile(filepath.Join(t.TempDir(), "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(ev); err == nil {
		t.Fatal("Write accepted an event that cannot be encoded")
	}
	if st, _ := os.Stat(w.Path()); st.Size() != 0 {
		t.Errorf("%d bytes written for a dropped event", st.Size())
	}
}

func TestOpenFileCreatesDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log", "ds01")
	path := filepath.Join(dir, "events.jsonl")
	w, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The umask may clear bits but never add any.
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() || st.Mode().Perm()&^0o755 != 0 {
		t.Errorf("directory: %v, %v", st.Mode(), err)
	}
	st, err = os.Stat(path)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&^0o640 != 0 {
		t.Errorf("file: %v, %v", st.Mode(), err)
	}
}

func TestOpenFileAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	const old = `{"event_type":"written.by.ds01"}` + "\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w.SetHost("") // DS01's example line exactly
	if err := w.Write(ds01Examples[0].ev); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	got, _ := os.ReadFile(path)
	if want := old + ds01Examples[0].line + "\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("an existing file's mode changed to %v", st.Mode().Perm())
	}
}

func TestOpenFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{target, filepath.Join(dir, "missing")} {
		link := filepath.Join(dir, "events.jsonl")
		_ = os.Remove(link)
		if err := os.Symlink(dest, link); err != nil {
			t.Fatal(err)
		}
		assertRefused(t, link, "symbolic link")
	}
	if st, _ := os.Stat(target); st.Size() != 0 {
		t.Error("the symlink's target was written")
	}
	if _, err := os.Lstat(filepath.Join(dir, "missing")); err == nil {
		t.Error("a dangling symlink's target was created")
	}
}

// assertRefused fails the test unless OpenFile refuses path with an error
// saying why.
func assertRefused(t *testing.T, path, why string) {
	t.Helper()
	w, err := OpenFile(path)
	if err == nil {
		_ = w.Write(ds01Examples[0].ev)
		_ = w.Close()
		t.Fatalf("%s opened", path)
	}
	if !strings.Contains(err.Error(), why) {
		t.Errorf("error does not say %q: %v", why, err)
	}
}

// TestOpenFileRefusesHardLink pins that an events file with a second name
// is not appended to: it may be another of root's files, linked there.
func TestOpenFileRefusesHardLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "events.jsonl")
	if err := os.Link(target, link); err != nil {
		t.Fatal(err)
	}
	assertRefused(t, link, "hard link")
	if st, _ := os.Stat(target); st.Size() != 0 {
		t.Error("the linked file was written")
	}
}

func TestOpenFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, fifo, "/dev/null"} {
		done := make(chan error, 1)
		go func() {
			w, err := OpenFile(path)
			if err == nil {
				_ = w.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: opened", path)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: open hangs", path)
		}
	}
}

func TestWriteAfterClose(t *testing.T) {
	w, err := OpenFile(filepath.Join(t.TempDir(), "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	if err := w.Write(ds01Examples[0].ev); err == nil {
		t.Fatal("write after close succeeded")
	}
}

// TestConcurrentWriters has 8 goroutines append at once, each through its
// own Writer as separate DS01 scripts would, and a second round through one
// shared Writer. Every line must come out whole.
func TestConcurrentWriters(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			const writers, perWriter = 8, 200
			var sharedW *Writer
			if shared {
				var err error
				if sharedW, err = OpenFile(path); err != nil {
					t.Fatal(err)
				}
				defer sharedW.Close()
			}
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for g := range writers {
				wg.Go(func() {
					w := sharedW
					if w == nil {
						var err error
						if w, err = OpenFile(path); err != nil {
							errs <- err
							return
						}
						defer w.Close()
					}
					for i := range perWriter {
						// Sizes up to near the limit make torn writes likely if
						// a line ever took more than one write.
						pad := strings.Repeat(string(rune('a'+g)), (i*37)%3800)
						ev := Event{Time: time.Now(), Type: ContainerRemove, User: fmt.Sprint(g), Source: fmt.Sprint(i), Details: []Field{F("pad", pad)}}
						if err := w.Write(ev); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			seen := map[string]bool{}
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var ev struct {
					User, Source string
					Details      struct{ Pad string }
				}
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					t.Fatalf("torn line %q: %v", sc.Text(), err)
				}
				key := ev.User + "/" + ev.Source
				if seen[key] {
					t.Fatalf("line %s twice", key)
				}
				seen[key] = true
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if len(seen) != writers*perWriter {
				t.Fatalf("%d lines, want %d", len(seen), writers*perWriter)
			}
		})
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("alice", "ds01-pipe/cleanup", "container", "proj._.1001")
	f.Add("", "", "", "")
	f.Add("josé", "😀", "ключ", "\x1b[2J\r\n")
	f.Fuzz(func(t *testing.T, user, source, key, value string) {
		ev := Event{Time: time.Unix(1771257003, 412345000), Type: ContainerRemove, User: user, Source: source, Details: []Field{F(key, value)}}
		line, err := ev.Encode()
		if err != nil {
			// Only an event too long without its details may fail.
			bare, berr := Event{Time: ev.Time, Type: ev.Type, User: user, Source: source}.Encode()
			if berr == nil && len(bare) <= MaxLineBytes+1 {
				t.Fatalf("Encode failed (%v), but the event without details fits", err)
			}
			return
		}
		checkLine(t, line)
		var got struct {
			User    *string        `json:"user"`
			Source  *string        `json:"source"`
			Details map[string]any `json:"details"`
		}
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatal(err)
		}
		if (user == "") != (got.User == nil) || got.User != nil && *got.User != validUTF8(user) {
			t.Errorf("user %q came back as %v", user, got.User)
		}
		if (source == "") != (got.Source == nil) || got.Source != nil && *got.Source != validUTF8(source) {
			t.Errorf("source %q came back as %v", source, got.Source)
		}
		if got.Details["truncated"] == true { // a string value is never the boolean true
			if size, ok := got.Details["original_size"].(float64); !ok || size <= MaxLineBytes {
				t.Errorf("truncated with original_size %v", got.Details["original_size"])
			}
			return
		}
		if v, ok := got.Details[validUTF8(key)]; !ok || v != validUTF8(value) {
			t.Errorf("detail %q=%q came back as %v", key, value, got.Details)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	ev := Event{
		Time: time.Date(2026, 2, 16, 15, 50, 3, 412345000, time.UTC), Type: ContainerRemove,
		User: "alice", Source: "ds01-pipe/cleanup",
		Details: []Field{F("container", "proj._.1001"), F("reason", "hold_expired"), F("stopped_duration", "0h"), F("container_type", "atomic")},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ev.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}
