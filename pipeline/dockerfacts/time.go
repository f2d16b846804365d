package dockerfacts

import (
	"fmt"
	"time"
)

// ParseTime parses a timestamp of the Docker Engine API (Created,
// State.StartedAt, State.FinishedAt) as UTC. Docker writes RFC 3339 with
// nanoseconds, which DS01's Python could not read before 3.11 (B-19), and
// "0001-01-01T00:00:00Z" for "never". ok is false for that zero time and
// for an empty value, which both mean "never"; err says a value did not
// parse (it then reads as "never" too).
func ParseTime(s string) (t time.Time, ok bool, err error) {
	if s == "" {
		return time.Time{}, false, nil
	}
	t, err = time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("unparseable timestamp %q", s)
	}
	if t.Year() <= 1 {
		return time.Time{}, false, nil
	}
	return t.UTC(), true, nil
}

// FormatTime is ParseTime's inverse as fingerprints and messages write it:
// RFC 3339 in UTC with nanoseconds, and "" for never (the zero time).
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// never names a formatted time for a person: "never" for "".
func never(s string) string {
	if s == "" {
		return "never"
	}
	return s
}
