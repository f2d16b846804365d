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
