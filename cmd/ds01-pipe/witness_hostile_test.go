package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
)

// The witness command is for runs, not people: it stays out of help,
// shell completion and the man pages.
func TestWitnessCommandHiddenFromHelpCompletionAndMan(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"__complete", ""}, {"__complete", "wit"}} {
		_, out, _ := cli(t, args...)
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == pipeline.WitnessCommand {
				t.Errorf("ds01-pipe %s lists the hidden command: %q", strings.Join(args, " "), line)
			}
		}
	}
	dir := t.TempDir()
	if code, _, errOut := cli(t, manCommand, dir); code != ExitOK {
		t.Fatalf("man pages: exit %d: %s", code, errOut)
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no man pages (%v)", err)
	}
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(filepath.Base(p), pipeline.WitnessCommand) || bytes.Contains(b, []byte(" "+pipeline.WitnessCommand+" ")) {
			t.Errorf("man page %s names the witness command", filepath.Base(p))
		}
	}
}

// A user who starts the hidden command by hand, without the descriptors a
// run passes, gets an error and nothing is written: the command never
// opens the paths its flags name.
func TestWitnessCommandByHandWithoutDescriptorsRefuses(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	cmd := exec.Command(os.Args[0], "--log-format=json", pipeline.WitnessCommand, "remove",
		"--"+pipeline.WitnessFlagEvents+"="+events, "--"+pipeline.WitnessFlagLock+"="+filepath.Join(dir, "x.lock"),
		"--"+pipeline.WitnessFlagFiles+"=1")
	cmd.Stdin = strings.NewReader(`{"op":"asked","id":"deadbeef","user":"alice","details":[["container","x"]]}` + "\n")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("witness without inherited descriptors succeeded: %s", out)
	}
	// fd 3 is closed here unless the test's own parent leaked one.
	if !strings.Contains(string(out), "was not passed") && !strings.Contains(string(out), "is not a regular file") {
		t.Errorf("want the missing descriptor named, got: %s", out)
	}
	if _, err := os.Stat(events); !os.IsNotExist(err) {
		t.Errorf("the witness created or touched %s (%v)", events, err)
	}
}
