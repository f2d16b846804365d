package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// exemption is one entry of lifecycle-exemptions.yaml.
type exemption struct {
	user       string
	from       []string // keys, e.g. idle_timeout_h, max_runtime_h
	reason     string
	permanent  bool      // expires_on missing or null
	expires    time.Time // first instant the exemption no longer holds
	expiresRaw string    // expires_on as written, for the reason text
}

const noReason = "No reason provided"

// Exemption reports whether user is exempt from key (idle_timeout_h,
// max_runtime_h, ...) at now, with DS01's reason text. Entries are tried in
// file order; an entry applies if its username equals user exactly (no
// sanitising) and its exempt_from lists key. No expires_on gives
// "Permanent exemption: <reason>"; an expiry after now gives "Temporary
// exemption until <expires_on>: <reason>"; an expired entry is passed over and
// the walk goes on (B-17 fixed: a bad or unusual date no longer disables every
// exemption, and Load rejects dates it cannot read).
func (m *Model) Exemption(user, key string, now time.Time) (exempt bool, reason string) {
	for i := range m.exemptions {
		e := &m.exemptions[i]
		if e.user != user || !slices.Contains(e.from, key) {
			continue
		}
		if e.permanent {
			return true, "Permanent exemption: " + e.reason
		}
		if now.Before(e.expires) {
			return true, fmt.Sprintf("Temporary exemption until %s: %s", e.expiresRaw, e.reason)
		}
	}
	return false, ""
}

// loadExemptions reads lifecycle-exemptions.yaml. A missing file, an empty one
// and one without an exemptions key all mean no exemptions.
func loadExemptions(path string, trust safefile.Trust) ([]exemption, error) {
	top, f, err := readYAML(path, true, trust)
	if err != nil || top == nil {
		return nil, err
	}
	keys, err := f.pairs(top, "top level")
	if err != nil {
		return nil, err
	}
	var list *yaml.Node
	for _, p := range keys {
		if p.key == "exemptions" {
			list = deref(p.value)
		}
	}
	if isNull(list) {
		return nil, nil
	}
	if list.Kind != yaml.SequenceNode {
		return nil, f.errorf(list, "exemptions: want a list, got %s", describe(list))
	}
	out := make([]exemption, 0, len(list.Content))
	for i, item := range list.Content {
		e, err := f.exemption(item, fmt.Sprintf("exemptions[%d]", i))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// exemption reads one list entry.
func (f *yamlFile) exemption(n *yaml.Node, what string) (exemption, error) {
	n = deref(n)
	if isNull(n) || n.Kind != yaml.MappingNode {
		return exemption{}, f.errorf(n, "%s: want a mapping, got %s", what, describe(n))
	}
	keys, err := f.pairs(n, what)
	if err != nil {
		return exemption{}, err
	}
	e := exemption{reason: noReason, permanent: true}
	hasUser := false
	for _, p := range keys {
		field := what + "." + p.key
		switch p.key {
		case "username":
			e.user, hasUser, err = f.scalarText(p.value, field)
		case "exempt_from":
			// A lone key is accepted as a one-item list: DS01's "in" test on a
			// string matched it too.
			e.from, err = f.stringList(p.value, field, true)
		case "reason":
			var text string
			var ok bool
			text, ok, err = f.scalarText(p.value, field)
			if ok && strings.TrimSpace(text) != "" {
				e.reason = text
			}
		case "expires_on":
			err = f.expiry(p.value, field, &e)
		}
		if err != nil {
			return exemption{}, err
		}
	}
	if !hasUser {
		return exemption{}, f.errorf(n, "%s: no username", what)
	}
	return e, nil
}

// expiry reads expires_on into e.
func (f *yamlFile) expiry(n *yaml.Node, what string, e *exemption) error {
	n = deref(n)
	if isNull(n) {
		return nil // permanent
	}
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str", "!!timestamp":
			if t, ok := parseExpiry(n.Value); ok {
				e.permanent, e.expires, e.expiresRaw = false, t, n.Value
				return nil
			}
		}
	}
	return f.errorf(n, "%s: cannot read %s as a date: want YYYY-MM-DD or an ISO 8601 timestamp such as 2026-06-30T23:59:59Z", what, describe(n))
}

// Layouts for expires_on. Go's single-digit fields also accept two digits,
// and fractional seconds are accepted after the seconds field.
var (
	zonedLayouts = []string{"2006-1-2T15:4:5Z07:00", "2006-1-2T15:4:5Z0700", "2006-1-2T15:4Z07:00", "2006-1-2T15:4Z0700"}
	naiveLayouts = []string{"2006-1-2T15:4:5", "2006-1-2T15:4"}
)

// parseExpiry reads an expires_on value: a timestamp with Z or an offset; a
// timestamp without one, taken as UTC; or a plain date, which holds through
// that whole day in UTC and so expires at the start of the next day. A space
// or a lower-case t may separate date and time, as YAML allows.
func parseExpiry(text string) (time.Time, bool) {
	text = strings.TrimSpace(text)
	if i := strings.IndexAny(text, " t"); i > 0 {
		text = text[:i] + "T" + text[i+1:]
	}
	for _, layout := range zonedLayouts {
		if t, err := time.Parse(layout, text); err == nil {
			return t, true
		}
	}
	for _, layout := range naiveLayouts {
		if t, err := time.ParseInLocation(layout, text, time.UTC); err == nil {
			return t, true
		}
	}
	if t, err := time.ParseInLocation("2006-1-2", text, time.UTC); err == nil {
		return t.AddDate(0, 0, 1), true
	}
	return time.Time{}, false
}
