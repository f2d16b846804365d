package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/ds01/ds01-pipe/stages/internal/recordview"
)

// text renders a value for a CSV or Markdown cell: null is empty, lists
// are joined with "; ", maps are compact JSON with sorted keys.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case []string:
		return strings.Join(x, "; ")
	case map[string]string:
		return compactJSON(x)
	}
	return ""
}

// compactJSON encodes v without HTML escaping (each format escapes for
// itself); encoding/json sorts map keys and replaces invalid UTF-8.
func compactJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return string(escapeInvisible(bytes.TrimSuffix(b.Bytes(), []byte("\n"))))
}

// hidden reports whether r must not reach a terminal or a reader's eye
// as it is: control characters (C0 and C1: ESC and CSI start terminal
// escape sequences) and invisible format characters (bidi overrides
// that reorder a line, zero-width marks).
func hidden(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// escapeInvisible rewrites the hidden characters that encoding/json
// leaves as they are (C1 controls, bidi and other format characters;
// it escapes C0 itself) as \uXXXX escapes, so the JSON means the same
// and shows no label's escape sequence or reordering on a terminal.
// Outside strings JSON holds only ASCII, so every such rune is inside one.
func escapeInvisible(js []byte) []byte {
	if !bytes.ContainsFunc(js, func(r rune) bool { return r >= 0x80 && hidden(r) }) {
		return js
	}
	out := make([]byte, 0, len(js)+16)
	for _, r := range string(js) {
		if r < 0x80 || !hidden(r) {
			out = utf8.AppendRune(out, r)
			continue
		}
		if r > 0xFFFF {
			hi, lo := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, hi, lo)
			continue
		}
		out = fmt.Appendf(out, `\u%04x`, r)
	}
	return out
}

// csvCell makes one CSV value safe. encoding/csv quotes what RFC 4180
// needs (commas, quotes, line breaks); a report is read on terminals
// too, so control and format characters other than line breaks and tabs
// (ESC, CSI, a carriage return that overwrites the line, bidi overrides)
// become U+FFFD, as in Markdown; on top of that, a text value that
// a spreadsheet would read as a formula (it starts with =, +, -, @, a tab
// or a carriage return) gets a leading ' (OWASP's advice against CSV
// injection), so opening the report never runs a container owner's
// formula. Numbers and booleans are ours and are written as they are.
func csvCell(f recordview.Field, v any) string {
	s := visibleText(strings.ToValidUTF8(text(v), "\uFFFD"))
	if f.Kind == recordview.String || f.Kind == recordview.List || f.Kind == recordview.Map {
		if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
			s = "'" + s
		}
	}
	return s
}

// visibleText replaces the hidden characters of s, except line breaks and
// tabs, with U+FFFD; a CRLF line break becomes LF.
func visibleText(s string) string {
	if !strings.ContainsFunc(s, hidden) {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && hidden(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

func writeCSV(w io.Writer, cols []recordview.Field, objs []*recordview.Object) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true // RFC 4180 line breaks
	header := make([]string, len(cols))
	for i, f := range cols {
		header[i] = f.Key
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	row := make([]string, len(cols))
	for _, o := range objs {
		for i, f := range cols {
			row[i] = csvCell(f, f.Value(o))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeJSONL writes one JSON object per line. Without columns it is the
// JSON report's container object, key for key; with columns, those keys in
// that order (null where the report has null). encoding/json escapes line
// breaks, U+2028/9, <, > and &, and replaces invalid UTF-8; C1 controls
// and format characters are escaped on top (escapeInvisible).
func writeJSONL(w io.Writer, cols []recordview.Field, objs []*recordview.Object) error {
	for _, o := range objs {
		var line []byte
		var err error
		if cols == nil {
			line, err = json.Marshal(o.Container)
		} else {
			line, err = orderedObject(cols, o)
		}
		if err != nil {
			return err
		}
		line = append(escapeInvisible(line), '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}

func orderedObject(cols []recordview.Field, o *recordview.Object) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.Value(o))
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeMarkdown(w io.Writer, cols []recordview.Field, objs []*recordview.Object) error {
	var b strings.Builder
	b.WriteString("|")
	for _, f := range cols {
		b.WriteString(" " + markdownCell(f.Key) + " |")
	}
	b.WriteString("\n|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, o := range objs {
		b.WriteString("|")
		for _, f := range cols {
			b.WriteString(" " + markdownCell(text(f.Value(o))) + " |")
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// markdownCell makes text safe inside a Markdown (GitHub) table cell: the
// cell stays one cell (| escaped, line breaks as <br>, tabs as spaces), HTML shows as text
// (&, <, >, " as entities), and no emphasis, code span, strike-through or
// link can start (\ ` * _ [ ] ~ escaped). Other control and invisible
// format characters become U+FFFD, so nothing hides in the table.
func markdownCell(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		case '\n', '\r':
			b.WriteString("<br>")
		case '\t':
			b.WriteByte(' ')
		case '|', '\\', '`', '*', '_', '[', ']', '~':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				b.WriteRune('\uFFFD')
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}
