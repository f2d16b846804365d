// Package printable makes text that users control safe to print on one
// line: container names, labels and owners reach syslog, the journal,
// terminals and error messages, and a newline or an escape sequence there
// could forge a second line or rewrite an admin's terminal.
package printable

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Escape returns s unchanged when every rune is a graphic character;
// otherwise it escapes what is not (control characters, invalid UTF-8,
// bidi and other format characters) as Go's %q does, without the quotes.
func Escape(s string) string {
	if Clean(s) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// Clean reports whether every rune of s is valid UTF-8 and graphic.
func Clean(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return false
			}
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && !strconv.IsGraphic(r)) {
			return false
		}
	}
	return true
}

// Text is Escape for text of several lines: newlines and tabs are kept,
// every line is escaped on its own.
func Text(s string) string {
	if Clean(strings.NewReplacer("\n", "", "\t", "").Replace(s)) {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		parts := strings.Split(l, "\t")
		for j, p := range parts {
			parts[j] = Escape(p)
		}
		lines[i] = strings.Join(parts, "\t")
	}
	return strings.Join(lines, "\n")
}
