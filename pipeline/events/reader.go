package events

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// MaxReadLineBytes is the longest line the reader parses. DS01 writes at
// most MaxLineBytes per event, but other writers share the file; anything
// longer is skipped, never fatal.
const MaxReadLineBytes = 64 * 1024

// MaxReadBytes bounds how much of the events file a read scans: only its
// last MaxReadBytes (DS01 rotates the file at 100 MB; a larger one is read
// from its tail, and ReadStats.Truncated says so).
const MaxReadBytes = 256 << 20

// ReadStats counts what a read of events.jsonl skipped.
type ReadStats struct {
	Lines     int   // lines seen, skipped ones included
	TooLong   int   // lines over MaxReadLineBytes
	Malformed int   // candidate lines that did not parse or lacked a field
	Truncated int64 // bytes at the start of the file that were not read (over MaxReadBytes)
}

// Skipped is the number of lines that were skipped.
func (s ReadStats) Skipped() int { return s.TooLong + s.Malformed }

// IdleKills returns, per container name (details.container), the time of
// the latest maintenance.idle_kill event in the events file at path. A
// missing file gives an empty map: a host where the idle checker never ran
// has no idle kills.
func IdleKills(path string) (map[string]time.Time, error) {
	kills, _, err := ReadIdleKills(path)
	return kills, err
}

// ReadIdleKills is IdleKills that also reports how many lines it skipped,
// so a caller can warn about a damaged file. It checks no owner and has no
// deadline: see ReadIdleKillsTrusted.
func ReadIdleKills(path string) (map[string]time.Time, ReadStats, error) {
	return ReadIdleKillsTrusted(context.Background(), path, safefile.Trust{})
}

// ReadIdleKillsTrusted reads the idle kills through the one hardened
// reader: a FIFO, device or folder at path is an error at once (never a
// read that blocks), the scan stops at ctx's deadline, at most the last
// MaxReadBytes are read, and with trust.Enforce a file an untrusted user
// could have written is refused (a *safefile.InsecureError): idle kills
// remove containers at once, so their source must be trusted as the
// policy is.
func ReadIdleKillsTrusted(ctx context.Context, path string, trust safefile.Trust) (map[string]time.Time, ReadStats, error) {
	return readIdleKills(ctx, path, trust, MaxReadBytes)
}

func readIdleKills(ctx context.Context, path string, trust safefile.Trust, maxBytes int64) (map[string]time.Time, ReadStats, error) {
	f, fi, err := safefile.Open(path, trust)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]time.Time{}, ReadStats{}, nil
	}
	if err != nil {
		return nil, ReadStats{}, fmt.Errorf("events file: %w", err)
	}
	defer f.Close()
	var skipped int64
	if size := fi.Size(); size > maxBytes {
		// Start inside the tail; the partial first line is skipped as
		// malformed or, more likely, as a line that names no idle kill.
		if _, err := f.Seek(size-maxBytes, io.SeekStart); err != nil {
			return nil, ReadStats{}, fmt.Errorf("events file %s: %w", path, err)
		}
		skipped = size - maxBytes
	}
	kills, stats, err := scanIdleKills(safefile.Reader(ctx, io.LimitReader(f, maxBytes)), MaxReadLineBytes)
	stats.Truncated = skipped
	if err != nil {
		return nil, stats, fmt.Errorf("events file %s: %w", path, err)
	}
	return kills, stats, nil
}

// idleKillMarker is a cheap pre-filter: the file can hold hundreds of
// megabytes of other events, and only lines naming the type are decoded.
var idleKillMarker = []byte(IdleKill)

func scanIdleKills(r io.Reader, maxLine int) (map[string]time.Time, ReadStats, error) {
	kills := map[string]time.Time{}
	var stats ReadStats
	split := &lineSplitter{max: maxLine + 1} // room for the newline
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64*1024, split.max)), split.max)
	sc.Split(split.split)
	for sc.Scan() {
		stats.Lines++
		line := sc.Bytes()
		if !bytes.Contains(line, idleKillMarker) {
			continue
		}
		name, at, err := parseIdleKill(line)
		if err != nil {
			stats.Malformed++
			continue
		}
		if name == "" {
			continue // another event that mentions the type
		}
		if prev, seen := kills[name]; !seen || at.After(prev) {
			kills[name] = at
		}
	}
	stats.Lines += split.tooLong
	stats.TooLong = split.tooLong
	if err := sc.Err(); err != nil {
		return nil, stats, err
	}
	return kills, stats, nil
}

// parseIdleKill decodes one line that mentions the idle-kill type. It
// returns an empty name and no error for a well-formed event of another
// type (a summary may mention the type in a value), and an error for a
// line that is damaged or an idle kill without a container or time.
func parseIdleKill(line []byte) (string, time.Time, error) {
	var ev struct {
		Timestamp string `json:"timestamp"`
		EventType string `json:"event_type"`
		Details   struct {
			Container any `json:"container"`
		} `json:"details"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return "", time.Time{}, err
	}
	if ev.EventType != IdleKill {
		if ev.EventType == "" {
			return "", time.Time{}, errors.New("no event_type")
		}
		return "", time.Time{}, nil
	}
	name, isString := ev.Details.Container.(string)
	if !isString || name == "" {
		return "", time.Time{}, errors.New("idle kill without details.container")
	}
	t, err := parseTimestamp(ev.Timestamp)
	if err != nil {
		return "", time.Time{}, err
	}
	return name, t, nil
}

// parseTimestamp reads DS01's timestamps: RFC 3339 in UTC with "Z" (Python
// drops the fraction when the microseconds are 0). A timestamp without a
// zone is taken as UTC, which is what DS01's writers produce.
func parseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
}

// lineSplitter is bufio.ScanLines that skips lines longer than max bytes
// (newline included) instead of stopping the scan with ErrTooLong.
type lineSplitter struct {
	max      int
	skipping bool // inside a line that is too long
	tooLong  int
}

func (s *lineSplitter) split(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		if s.skipping {
			s.skipping = false
			return i + 1, nil, nil
		}
		return i + 1, bytes.TrimSuffix(data[:i], []byte{'\r'}), nil
	}
	if atEOF {
		if len(data) == 0 {
			return 0, nil, nil
		}
		if s.skipping {
			s.skipping = false
			return len(data), nil, nil
		}
		return len(data), data, nil
	}
	if len(data) >= s.max {
		// The buffer is full and holds no newline: drop what is there and
		// keep dropping up to the next newline.
		if !s.skipping {
			s.skipping = true
			s.tooLong++
		}
		return len(data), nil, nil
	}
	return 0, nil, nil
}
