// Command maxrss runs a program and reports its wall time and peak RSS:
//
//	maxrss RESULT PROGRAM [ARGS...]
//
// It runs PROGRAM with its own standard streams, writes "WALL_NS MAXRSS_KIB"
// to the file RESULT, and exits with PROGRAM's status. The wall time runs
// from the child's start to its exit.
//
// The benchmark driver (internal/bench) starts every timed program through
// it. Go starts a child with clone(CLONE_VM|CLONE_VFORK): the child runs in
// the parent's address space until execve, and Linux then counts that
// address space's peak RSS as the child's ru_maxrss. A child started
// straight from the driver, which holds thousands of fixtures in memory,
// would report the driver's RSS; started from this small program, it
// reports its own (or this program's couple of MiB, whichever is larger).
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: maxrss RESULT PROGRAM [ARGS...]")
		return 2
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		fmt.Fprintln(os.Stderr, "maxrss:", err)
		return 127
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss // KiB on Linux
	}
	if err := os.WriteFile(args[0], fmt.Appendf(nil, "%d %d\n", wall.Nanoseconds(), rss), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "maxrss:", err)
		return 127
	}
	return cmd.ProcessState.ExitCode()
}
