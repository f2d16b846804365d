// Command probe is the whole content of the test image that package
// dockertest imports into the Docker engine (as /probe, its entrypoint).
// It is a static binary with no dependencies, so the image needs no base
// layer and no registry.
//
// Its behaviour comes from its arguments:
//
//	(none)      exit 0
//	exit N      exit with code N (0-255)
//	sleep D     sleep for the Go duration D ("1s", "250ms"), then exit 0
//	forever     block until SIGTERM or SIGINT, then exit 0
//	busy        keep one CPU busy until SIGTERM or SIGINT, then exit 0
//
// forever and busy print "ready" on stdout once their signal handler is in
// place (Engine.Start waits for it): as PID 1 in a container a signal with
// no handler is ignored, so a `docker stop` before that would wait for its
// timeout and end in SIGKILL.
//
// Anything else prints a usage line on stderr and exits 2.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

const usage = "usage: probe [exit N | sleep DURATION | forever | busy]"

// readyLine is what forever and busy print once SIGTERM is handled
// (dockertest.ReadyLine).
const readyLine = "ready"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		return 0
	}
	switch {
	case args[0] == "exit" && len(args) == 2:
		code, err := strconv.Atoi(args[1])
		if err != nil || code < 0 || code > 255 {
			fmt.Fprintf(os.Stderr, "probe: exit code %q is not a number in 0..255\n", args[1])
			return 2
		}
		return code
	case args[0] == "sleep" && len(args) == 2:
		d, err := time.ParseDuration(args[1])
		if err != nil || d < 0 {
			fmt.Fprintf(os.Stderr, "probe: bad duration %q: want a Go duration such as 1s\n", args[1])
			return 2
		}
		time.Sleep(d)
		return 0
	case args[0] == "forever" && len(args) == 1:
		// As PID 1 in a container, a signal with no handler is ignored, so
		// the handler is what makes `docker stop` end the probe at once.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		fmt.Println(readyLine)
		<-sig
		return 0
	case args[0] == "busy" && len(args) == 1:
		// A CPU-busy container for the lifecycle tests: Docker's stats
		// show it near 100 % of one CPU.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		fmt.Println(readyLine)
		for n := uint64(0); ; n++ {
			if n%(1<<20) == 0 {
				select {
				case <-sig:
					return 0
				default:
				}
			}
		}
	default:
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
}
