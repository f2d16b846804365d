// Command ds01-pipe runs declarative cleanup pipelines on a shared GPU
// server: it finds stale containers, decides per DS01 policy what to
// remove, releases their GPUs after checking NVML, removes them and logs
// every action.
package main

import (
	"os"
	"runtime/debug"

	_ "github.com/ds01/ds01-pipe/stages/all" // register every stage kind
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// gcPercent is the collector's target unless GOGC says otherwise. A run's
// heap is mostly its records, which live until it ends: at Go's default
// (100) the heap grows to twice that before a collection, which put plan
// on a 10,000-container host at 70-75 MiB; at 50 it stays near 60 MiB for
// about 0.2 s more CPU and no longer wall time (NOTES.md, Performance).
// A target, unlike a fixed memory limit, scales with the host: no run is
// made to collect without end because its records outgrew a number.
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(int(Main(os.Args[1:], IOStreams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})))
}
