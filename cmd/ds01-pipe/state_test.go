package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/pipeline/state"
)

// A mistyped --state-dir must not read as an empty store: the command says
// there is no store there and exits 1, in both formats.
func TestStateWithoutAStoreSaysSo(t *testing.T) {
	base := t.TempDir()
	for _, tc := range []struct {
		dir, want string
	}{
		{filepath.Join(base, "nonexistent"), "the folder does not exist"},
		{base, "no lifecycle run has saved " + filepath.Join(base, state.FileName)},
	} {
		for _, format := range []string{"table", "json"} {
			code, out, errOut := cli(t, "state", "--state-dir", tc.dir, "--format", format)
			if code != ExitFailure || out != "" {
				t.Errorf("%s (%s): exit %d, stdout %q; want exit 1 and nothing on stdout", tc.dir, format, code, out)
			}
			if !strings.Contains(errOut, "no state store at "+tc.dir+": ") || !strings.Contains(errOut, tc.want) ||
				strings.Contains(errOut, "no run recorded") {
				t.Errorf("%s (%s): stderr %q", tc.dir, format, errOut)
			}
		}
	}
}

// A damaged store is an error that says what the next lifecycle run does
// with it.
func TestStateOfADamagedStore(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, state.FileName, "not a bolt database, long enough to be read as one and refused\n")
	code, out, errOut := cli(t, "state", "--state-dir", dir)
	if code != ExitFailure || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, "invalid database") || !strings.Contains(errOut, "the next lifecycle run sets it aside") ||
		!strings.Contains(errOut, "starts fresh") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("stderr %q", errOut)
	}
	// The store itself is left alone: setting it aside is the run's work.
	if _, err := os.Stat(filepath.Join(dir, state.FileName)); err != nil {
		t.Error(err)
	}
}

// An existing store is shown with exit 0, also one that holds no run yet,
// and the number of runs remembered is said in English.
func TestStateRunsRemembered(t *testing.T) {
	dir := t.TempDir()
	s, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if code, out, errOut := cli(t, "state", "--state-dir", dir); code != ExitOK || !strings.Contains(out, "no run recorded") {
		t.Fatalf("empty store: exit %d %q %q", code, out, errOut)
	}

	now := time.Date(2026, 2, 16, 15, 0, 0, 0, time.UTC)
	for i, want := range []string{"1 run remembered,", "2 runs remembered,"} {
		s, err := state.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(nil, state.Run{Now: now, Wall: now, Pipeline: "lifecycle"}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		code, out, errOut := cli(t, "state", "--state-dir", dir)
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("after %d runs: exit %d %q %q; want %q", i+1, code, out, errOut, want)
		}
	}
}
