package main

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"

	"github.com/ds01/ds01-pipe/internal/printable"
	"github.com/ds01/ds01-pipe/pipeline"
)

// errorText is the text of a command's error. A configuration error whose
// diagnostics point at no place in a file (a pipeline file that cannot be
// read, an unknown --var) is said on one line, "cannot read pipeline file:
// stat foo: no such file or directory", as every other error is: HCL's
// writer renders each as "Error: Summary", a blank line and the detail,
// which made the last line of the command its detail alone. Diagnostics
// with a place keep their located, multi-line form with the source lines.
func errorText(err error) string {
	text := err.Error()
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) || len(ce.Diags) == 0 {
		return text
	}
	parts := make([]string, 0, len(ce.Diags))
	for _, d := range ce.Diags {
		if d.Subject != nil || d.Severity != hcl.DiagError {
			return text
		}
		line := lowerFirst(strings.TrimSpace(d.Summary))
		if detail := strings.TrimSpace(d.Detail); detail != "" {
			line += ": " + detail
		}
		// The text comes from paths and values the user gave: escaped,
		// a newline in a path included, so that it stays one line.
		parts = append(parts, printable.Escape(line))
	}
	return strings.Replace(text, ce.Error(), strings.Join(parts, "; "), 1)
}

// lowerFirst lowercases the first letter of a summary ("Cannot read
// pipeline file"), as error strings are written in Go.
func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError || !unicode.IsUpper(r) {
		return s
	}
	// An initialism ("GPU simulation file ...") keeps its case.
	if next, _ := utf8.DecodeRuneInString(s[n:]); unicode.IsUpper(next) {
		return s
	}
	return string(unicode.ToLower(r)) + s[n:]
}
