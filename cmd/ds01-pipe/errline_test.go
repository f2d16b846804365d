package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// The last line of a failed command reaches terminals and the journal; a
// path (or a label quoted in an error) must not carry escape sequences
// there.
func TestErrorLineEscapesControlCharacters(t *testing.T) {
	name := filepath.Join(t.TempDir(), "x\x1b]0;PWN\x07.hcl")
	code, _, stderr := cli(t, "validate", name)
	if code != ExitConfigError {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitConfigError, stderr)
	}
	if strings.ContainsAny(stderr, "\x1b\x07") {
		t.Errorf("stderr carries control characters: %q", stderr)
	}
	if !strings.Contains(stderr, `x\x1b]0;PWN\a.hcl`) {
		t.Errorf("stderr does not name the file, escaped: %q", stderr)
	}
}

// A configuration error that points at no place in a file (the pipeline
// file cannot be read, an unknown --var) is one lowercase line, as every
// other error is, not HCL's "Error: Summary", a blank line and the detail.
func TestConfigErrorWithoutAPlaceIsOneLine(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.hcl")
	good := writeFile(t, dir, "good.hcl", discoverLog)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", "some-container", missing}, "ds01-pipe: cannot read pipeline file: stat " + missing + ": no such file or directory\n"},
		{[]string{"plan", missing}, "ds01-pipe: cannot read pipeline file: stat " + missing + ": no such file or directory\n"},
		{[]string{"validate", missing}, "cannot read pipeline file: stat " + missing + ": no such file or directory\nds01-pipe: 1 of 1 file(s) invalid\n"},
		{[]string{"plan", "--var", "nosuch=1", good}, "ds01-pipe: unknown variable in --var: The pipeline declares no variable \"nosuch\".\n"},
		{[]string{"validate", filepath.Join(dir, "a\nb.hcl"), missing}, "a\\nb.hcl: invalid:\ncannot read pipeline file: stat " + dir + "/a\\nb.hcl: no such file or directory\n"},
	} {
		code, out, errOut := cli(t, tc.args...)
		if code != ExitConfigError || out != "" {
			t.Errorf("%q: exit %d, stdout %q", tc.args, code, out)
		}
		if !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "Error:") || strings.Contains(errOut, "\n\n") {
			t.Errorf("%q: stderr\n%s\nwant it to hold\n%s", tc.args, errOut, tc.want)
		}
	}
}

// A diagnostic with a place keeps its located form and source lines.
func TestConfigErrorWithAPlaceKeepsItsSource(t *testing.T) {
	file := writeFile(t, t.TempDir(), "typo.hcl", "pipeline \"x\" {\n  stage \"discovr\" {}\n}\n")
	code, _, errOut := cli(t, "plan", file)
	if code != ExitConfigError || !strings.Contains(errOut, file+":2:") || !strings.Contains(errOut, `stage "discovr"`) {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}
