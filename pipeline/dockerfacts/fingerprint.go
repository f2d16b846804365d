package dockerfacts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ds01/ds01-pipe/pipeline"
)

// Fingerprint is what must not have changed for an action decided on a
// container to go ahead: its state, when it last started and finished, its
// restart count and its labels. Times are RFC 3339 in UTC with nanoseconds
// ("" for never, see FormatTime). It is what a plan file records of each
// container (the JSON keys are that file's), and what the remove and stop
// stages compare, through Changed, just before they act.
type Fingerprint struct {
	State        string `json:"state"`
	StartedAt    string `json:"started_at"`
	FinishedAt   string `json:"finished_at"`
	RestartCount int    `json:"restart_count"`
	// LabelsSHA256 is LabelsHash of the labels.
	LabelsSHA256 string `json:"labels_sha256"`
}

// Of returns the fingerprint of a container's facts.
func Of(c pipeline.Container) Fingerprint {
	f := of(c)
	f.LabelsSHA256 = LabelsHash(c.Labels)
	return f
}

// of is Of without the labels, which Changed compares key by key.
func of(c pipeline.Container) Fingerprint {
	return Fingerprint{
		State:        string(c.State),
		StartedAt:    FormatTime(c.StartedAt),
		FinishedAt:   FormatTime(c.FinishedAt),
		RestartCount: c.RestartCount,
	}
}

// Diff says how a later fingerprint differs from this one, or "" when it
// does not: "state exited -> running", "started again (StartedAt ... ->
// ...)", "finished again (...)", "restarted (restart count 0 -> 1)",
// "relabelled", joined by "; ".
func (f Fingerprint) Diff(now Fingerprint) string {
	what := f.changes(now, false)
	if f.LabelsSHA256 != now.LabelsSHA256 {
		what = append(what, "relabelled")
	}
	return strings.Join(what, "; ")
}

// changes lists what differs apart from the labels. With live, a live
// container differs even from itself.
func (f Fingerprint) changes(now Fingerprint, live bool) []string {
	var what []string
	switch {
	case f.State != now.State:
		what = append(what, fmt.Sprintf("state %s -> %s", f.State, now.State))
	case live && pipeline.State(now.State).Live():
		what = append(what, fmt.Sprintf("container is %s", now.State))
	}
	if f.StartedAt != now.StartedAt {
		what = append(what, fmt.Sprintf("started again (StartedAt %s -> %s)", never(f.StartedAt), never(now.StartedAt)))
	}
	if f.FinishedAt != now.FinishedAt {
		what = append(what, fmt.Sprintf("finished again (FinishedAt %s -> %s)", never(f.FinishedAt), never(now.FinishedAt)))
	}
	if f.RestartCount != now.RestartCount {
		what = append(what, fmt.Sprintf("restarted (restart count %d -> %d)", f.RestartCount, now.RestartCount))
	}
	return what
}

// Changed compares what a stage decided on (before) with a later look at
// the same container (after): the fingerprint's diff, and also a rename,
// with the label keys that were added, removed or changed named instead of
// "relabelled". It reports whether the container must be left alone. A
// live container is always changed: nothing live is ever removed. Labels
// with no entries compare equal whether the map is nil or empty.
func Changed(before, after pipeline.Container) (string, bool) {
	what := of(before).changes(of(after), true)
	if before.Name != after.Name {
		what = append(what, fmt.Sprintf("renamed %s -> %s", before.Name, after.Name))
	}
	if d := labelDiff(before.Labels, after.Labels); d != "" {
		what = append(what, "relabelled: "+d)
	}
	return strings.Join(what, "; "), len(what) > 0
}

// labelDiff names the label keys that were added, removed or changed, in
// key order. Values are left out: a label value may be long or private,
// and the key says enough to find it.
func labelDiff(before, after map[string]string) string {
	if maps.Equal(before, after) {
		return ""
	}
	var added, removed, changed []string
	for k, v := range after {
		if old, ok := before[k]; !ok {
			added = append(added, k)
		} else if old != v {
			changed = append(changed, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			removed = append(removed, k)
		}
	}
	var parts []string
	for _, p := range []struct {
		verb string
		keys []string
	}{{"added", added}, {"removed", removed}, {"changed", changed}} {
		if len(p.keys) > 0 {
			slices.Sort(p.keys)
			parts = append(parts, p.verb+" "+strings.Join(p.keys, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// LabelsHash is the sha256 (hex) of a label set, independent of map order:
// of the sorted lines "key"="value" (each key and value quoted as Go's
// strconv.Quote does), each ending in a newline. nil and empty sets hash
// alike.
func LabelsHash(labels map[string]string) string {
	lines := make([]string, 0, len(labels))
	for k, v := range labels {
		lines = append(lines, strconv.Quote(k)+"="+strconv.Quote(v)+"\n")
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "")))
	return hex.EncodeToString(sum[:])
}
