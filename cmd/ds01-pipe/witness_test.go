package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/internal/faultproxy"
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

// witnessPipeline is the cleanup chain with a lock and three removal
// workers: three requests stall at once.
const witnessPipeline = `
variable "prefix" { default = "" }
variable "events_file" { default = "" }
variable "lock_file" { default = "" }

pipeline "witnessed" {
  timeout   = "2m"
  lock_file = var.lock_file
  gpu { backend = "none" }
  stage "discover"  { name_prefix = var.prefix }
  stage "exempt"    {}
  stage "decide"    { idle_events_file = "" }
  stage "remove"    { workers = 3 }
  stage "log" {
    events_file = var.events_file
    syslog      = false
  }
}
`

// witnessesOf lists the live witness processes of the run with PID parent.
func witnessesOf(t *testing.T, parent int) []int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	want := "--" + pipeline.WitnessFlagParent + "=" + strconv.Itoa(parent)
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone since
		}
		args := strings.Split(string(b), "\x00")
		if !slices.Contains(args, pipeline.WitnessCommand) || !slices.Contains(args, want) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if status, err := os.ReadFile(filepath.Join(filepath.Dir(p), "status")); err == nil && strings.Contains(string(status), "\nState:\tZ") {
			continue // exited; its new parent has not reaped it yet
		}
		pids = append(pids, pid)
	}
	return pids
}

// A run that ends while the engine stalls on its removal requests leaves
// them to be carried out after it: killed (SIGKILL, the OOM killer), or
// stopped in order (SIGTERM: systemctl stop, the unit's start timeout)
// with the answers still missing. The run's witness records each of them
// in the run's events file, once; nothing else gets a line; it holds the
// run's lock meanwhile, and a run locked out names it; and the next run
// neither records them again nor misses the rest. The engine's stall is
// faultproxy's: requests wait, as in a stopped daemon's socket, and are
// carried out when it resumes, the client gone or not.
func TestWitnessRecordsRemovalsOfAKilledRun(t *testing.T) {
	bin := opsBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { witnessRun(t, bin, sig) })
	}
}

func witnessRun(t *testing.T, bin string, sig syscall.Signal) {
	eng := dockertest.New(t)
	proxy := faultproxy.Start(t, eng.Host())
	byName := map[string]dockertest.Container{}
	for i := range 8 {
		c := eng.Create(t, dockertest.Spec{Name: fmt.Sprintf("w%d", i), Labels: map[string]string{"ds01.user": "alice"}})
		byName[c.Name] = c
	}
	dir := t.TempDir()
	eventsFile := filepath.Join(dir, "events.jsonl")
	lockFile := filepath.Join(dir, "witnessed.lock")
	file := writeFile(t, dir, "witnessed.hcl", witnessPipeline)
	args := []string{"run", "--format", "json", "--now", farFuture, "--allow-clock-override", "--call-timeout", "30s",
		"--var", "prefix=" + eng.Prefix(), "--var", "events_file=" + eventsFile, "--var", "lock_file=" + lockFile, file}

	// Two removals answered, then the engine stalls: the three workers'
	// next requests wait in it.
	proxy.SetAfter(faultproxy.Remove, faultproxy.Stall, 2)
	run := exec.Command(bin, args...)
	run.Env = append(os.Environ(), "DOCKER_HOST="+proxy.Host(), "DS01_PIPE_NVML_SIM=")
	// A file, not a pipe: the witness inherits the run's stderr, and
	// Wait would wait for a pipe's last writer, the witness, which waits
	// for the engine to resume.
	stderr := stderrFile(t)
	run.Stderr = stderr.f
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := proxy.WaitStalled(ctx, faultproxy.Remove, 3); err != nil {
		_ = run.Process.Kill()
		_ = run.Wait()
		t.Fatalf("%v; the run's stderr:\n%s", err, stderr.String())
	}
	witnesses := witnessesOf(t, run.Process.Pid)
	if len(witnesses) != 1 {
		t.Fatalf("the run has %d witnesses (%v), want 1", len(witnesses), witnesses)
	}
	if err := run.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	_ = run.Wait()

	// The witness holds the run's lock, and says so, once it has seen the
	// run go (at once, but in its own time).
	for {
		b, err := os.ReadFile(lockFile)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(b), fmt.Sprintf("pid %d,", witnesses[0])) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the witness never wrote itself into the lock file: %q\nstderr:\n%s", b, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Setenv("DOCKER_HOST", proxy.Host())
	t.Setenv("DS01_PIPE_NVML_SIM", "")
	code, _, errOut := cli(t, args...)
	if code != ExitLocked || !strings.Contains(errOut, fmt.Sprintf("(pid %d, started", witnesses[0])) ||
		!strings.Contains(errOut, fmt.Sprintf("witness of run pid %d", run.Process.Pid)) {
		t.Errorf("a run while the witness works: exit %d, want 3 naming the witness %d of run %d:\n%s", code, witnesses[0], run.Process.Pid, errOut)
	}

	proxy.Set(faultproxy.Remove, faultproxy.Pass)
	proxy.Resume() // the engine runs again: the requests left are carried out
	for len(witnessesOf(t, run.Process.Pid)) > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("the witness did not finish; the run's stderr:\n%s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	gone := 0
	for _, c := range byName {
		if !engineHas(t, eng, c.ID) {
			gone++
		}
	}
	if gone != 5 {
		t.Errorf("%d containers removed, want 5 (2 answered, 3 carried out after the run)", gone)
	}
	if names := checkEventsOnlyForGone(t, eng, eventsFile, byName); len(names) != gone {
		t.Errorf("%d container.remove lines for %d removals: %q\nstderr:\n%s", len(names), gone, names, stderr.String())
	}
	if !strings.Contains(stderr.String(), "removal carried out after the run ended, recorded") {
		t.Errorf("the witness did not say what it recorded; stderr:\n%s", stderr.String())
	}

	// The next run removes the rest and records each removal once: the
	// journal knows the witness recorded the others.
	if code, _, errOut := cli(t, args...); code != ExitOK {
		t.Fatalf("next run: exit %d\n%s", code, errOut)
	}
	if names := checkEventsOnlyForGone(t, eng, eventsFile, byName); len(names) != len(byName) {
		t.Errorf("%d container.remove lines after the next run, want %d: %q", len(names), len(byName), names)
	}
	if left := witnessesOf(t, os.Getpid()); len(left) != 0 {
		t.Errorf("a run that ended in order left its witness running: %v", left)
	}
}

// stderrFile is a process's stderr in a file, readable as a string.
type stderrFileT struct {
	t *testing.T
	f *os.File
}

func stderrFile(t *testing.T) stderrFileT {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return stderrFileT{t, f}
}

func (s stderrFileT) String() string {
	b, err := os.ReadFile(s.f.Name())
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}
