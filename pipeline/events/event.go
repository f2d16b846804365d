// Package events writes and reads DS01's events.jsonl (schema v1).
//
// Existing DS01 tooling reads /var/log/ds01/events.jsonl, so the format is
// kept byte for byte: one compact JSON object per line, keys in a fixed
// order, non-ASCII escaped as \uXXXX like Python's json.dumps with
// ensure_ascii, and lines over 4000 bytes shortened.
package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the DS01 events schema this package writes.
const SchemaVersion = "1"

// MaxLineBytes is DS01's limit for one encoded event.
const MaxLineBytes = 4000

// Event types written by ds01-pipe.
const (
	ContainerRemove = "container.remove"
	GPURelease      = "gpu.release"
	GPUHealthCheck  = "gpu.health_check"
	GPUOrphan       = "gpu.orphan"
	GPUUnrecorded   = "gpu.unrecorded"
	IdleKill        = "maintenance.idle_kill"
	PipelineSummary = "pipeline.summary"
)

// Field is one key of an event's details. Details are an ordered list, not
// a map, because DS01's readers see the keys in the order they were written.
type Field struct {
	Key   string
	Value any
}

// F is shorthand for a Field.
func F(key string, value any) Field { return Field{Key: key, Value: value} }

// Event is one line of events.jsonl.
type Event struct {
	Time    time.Time
	Type    string
	User    string // omitted when empty
	Source  string // omitted when empty
	Details []Field
	// Host is the node that wrote the event, so that lines shipped from
	// many nodes to one store still say where they happened. It is the
	// last key of details ("host"), not a key of its own: schema v1's top
	// level stays as DS01's readers know it, and details is the part of
	// the line that already differs by event type. Omitted when empty.
	Host string
}

// HostKey is the details key that carries Event.Host.
const HostKey = "host"

// Timestamp formats t as DS01 does: UTC, microseconds, "Z".
func Timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

// Encode returns the event as one line, newline included. A line longer
// than MaxLineBytes has its details replaced by
// {"truncated":true,"original_size":N}; if that is still too long the
// event cannot be written and Encode returns an error.
//
// The host survives the shortening: a truncated line without it could not
// be traced to its node.
func (e Event) Encode() ([]byte, error) {
	line, err := e.encode(e.withHost(e.Details))
	if err != nil {
		return nil, err
	}
	if len(line) <= MaxLineBytes {
		return append(line, '\n'), nil
	}
	short, err := e.encode(e.withHost([]Field{F("truncated", true), F("original_size", len(line))}))
	if err != nil {
		return nil, err
	}
	if len(short) > MaxLineBytes {
		return nil, fmt.Errorf("event %s is %d bytes even without details (limit %d)", e.Type, len(short), MaxLineBytes)
	}
	return append(short, '\n'), nil
}

// withHost returns details with the host appended as the last key, when
// the event has a host. A detail already named "host" is kept as written
// and the host is not added twice.
func (e Event) withHost(details []Field) []Field {
	if e.Host == "" {
		return details
	}
	for _, f := range details {
		if f.Key == HostKey {
			return details
		}
	}
	out := make([]Field, len(details), len(details)+1)
	copy(out, details)
	return append(out, F(HostKey, e.Host))
}

func (e Event) encode(details []Field) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"timestamp":`)
	writeString(&b, Timestamp(e.Time))
	b.WriteString(`,"event_type":`)
	writeString(&b, e.Type)
	b.WriteString(`,"schema_version":"` + SchemaVersion + `"`)
	if e.User != "" {
		b.WriteString(`,"user":`)
		writeString(&b, e.User)
	}
	if e.Source != "" {
		b.WriteString(`,"source":`)
		writeString(&b, e.Source)
	}
	if len(details) > 0 {
		b.WriteString(`,"details":{`)
		for i, f := range details {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(&b, f.Key)
			b.WriteByte(':')
			if err := writeValue(&b, f.Value); err != nil {
				return nil, fmt.Errorf("event %s detail %q: %w", e.Type, f.Key, err)
			}
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeValue(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case string:
		writeString(b, v)
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case int:
		b.WriteString(strconv.Itoa(v))
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case uint64:
		b.WriteString(strconv.FormatUint(v, 10))
	case []string:
		b.WriteByte('[')
		for i, s := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, s)
		}
		b.WriteByte(']')
	default:
		// Anything else goes through encoding/json, then gets the same
		// ASCII-only treatment as strings.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // Python leaves <, > and & alone
		if err := enc.Encode(v); err != nil {
			return err
		}
		escapeNonASCII(b, bytes.TrimRight(buf.Bytes(), "\n"))
	}
	return nil
}

// writeString writes s as a JSON string the way Python's json.dumps does
// with ensure_ascii: no HTML escaping, every non-ASCII rune as \uXXXX
// (surrogate pairs above U+FFFF). Invalid UTF-8 becomes U+FFFD, so a
// hostile label can never break the line.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c == '\b':
				b.WriteString(`\b`)
			case c == '\f':
				b.WriteString(`\f`)
			case c < 0x20 || c == 0x7f:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		writeRune(b, r)
	}
	b.WriteByte('"')
}

func writeRune(b *bytes.Buffer, r rune) {
	if r > 0xffff {
		r -= 0x10000
		fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		return
	}
	fmt.Fprintf(b, `\u%04x`, r)
}

// escapeNonASCII copies JSON produced by encoding/json, turning non-ASCII
// runes (which encoding/json leaves as UTF-8) and DEL into escapes.
func escapeNonASCII(b *bytes.Buffer, raw []byte) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c == 0x7f {
			b.WriteString(`\u007f`)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		i += size
		writeRune(b, r)
	}
}
