// Command ds01-pipe runs declarative cleanup pipelines on a shared GPU
// server: it finds stale containers, decides per DS01 policy what to
// remove, releases their GPUs after checking NVML, removes them and logs
// every action.
package main

import (
	"os"

	_ "github.com/ds01/ds01-pipe/stages/all" // register every stage kind
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(int(Main(os.Args[1:], IOStreams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})))
}
