package main

import (
	"os"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
)

// TestMain lets the test binary stand in for ds01-pipe when a run that a
// test ran in-process (Main) starts its witness: os.Executable is then
// this binary, started with the witness command line.
func TestMain(m *testing.M) {
	if witnessInvocation(os.Args[1:]) {
		os.Exit(int(Main(os.Args[1:], IOStreams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})))
	}
	os.Exit(m.Run())
}

// witnessInvocation reports whether args are a witness command line:
// global flags, then the witness command.
func witnessInvocation(args []string) bool {
	for _, a := range args {
		if a == pipeline.WitnessCommand {
			return true
		}
		if !strings.HasPrefix(a, "--log-") {
			return false
		}
	}
	return false
}
