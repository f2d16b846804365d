package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/internal/faultproxy"
)

// These tests run the whole command in-process against the real engine
// through faultproxy, which hangs, fails, cuts or garbles the list, inspect
// and remove calls. What they pin, for every fault:
//
//   - the run ends (a hang guard of 60 s, not a timing test) with the exit
//     code the contract gives that fault, and stderr says what failed;
//   - nothing panics;
//   - events.jsonl has a container.remove line only for a container that
//     the real engine no longer has (the audit log never claims a removal
//     that did not happen);
//   - the next run, with the fault gone, removes the rest and exits 0.

// faultPipeline is the cleanup chain without GPUs: 5 s for the whole run,
// the events file and the scope given by variables.
const faultPipeline = `
variable "prefix" { default = "" }
variable "events_file" { default = "" }
variable "metrics_file" { default = "" }

pipeline "faults" {
  timeout = "5s"
  gpu { backend = "none" }
  stage "discover"  { name_prefix = var.prefix }
  stage "attribute" { passwd_lookup = false }
  stage "classify"  {}
  stage "exempt"    {}
  stage "decide"    { idle_events_file = "" }
  stage "remove"    {}
  stage "log" {
    events_file  = var.events_file
    metrics_file = var.metrics_file
    syslog       = false
  }
}
`

// farFuture makes every test container expired, whatever the policy.
const farFuture = "2100-01-01T00:00:00Z"

// hangGuard bounds a run that should end within its 5 s deadline: far
// above it, so that it only catches a hang, never a slow machine.
const hangGuard = 60 * time.Second

// faultRun runs `run` once and returns its exit code and streams, failing
// the test on a panic or a hang.
func faultRun(t *testing.T, pipelineFile, prefix, eventsFile string, extra ...string) (ExitCode, string, string) {
	t.Helper()
	args := []string{"run", "--format", "json", "--log-format", "text",
		"--now", farFuture, "--allow-clock-override", "--call-timeout", "2s",
		"--var", "prefix=" + prefix, "--var", "events_file=" + eventsFile}
	args = append(args, extra...)
	args = append(args, pipelineFile)
	start := time.Now()
	var code ExitCode
	var out, errOut string
	func() {
		defer func() {
			// conc pools re-panic on the caller's goroutine, so a panic in
			// any stage worker ends up here.
			if r := recover(); r != nil {
				t.Fatalf("ds01-pipe panicked: %v", r)
			}
		}()
		code, out, errOut = cli(t, args...)
	}()
	if d := time.Since(start); d > hangGuard {
		t.Errorf("the run took %v: it hangs on the fault", d)
	}
	for _, bad := range []string{"panic:", "goroutine "} {
		if strings.Contains(errOut, bad) {
			t.Errorf("stderr has %q:\n%s", bad, errOut)
		}
	}
	return code, out, errOut
}

// removeEvents returns the container names of the container.remove lines
// of an events file, checking that every line is one JSON object.
func removeEvents(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev struct {
			Type    string            `json:"event_type"`
			Details map[string]string `json:"details"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			if !json.Valid(sc.Bytes()) {
				t.Errorf("events line is not JSON: %q", sc.Text())
			}
			continue // a pipeline.summary line: numeric details
		}
		if ev.Type == "container.remove" {
			names = append(names, ev.Details["container"])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// engineHas asks the real engine, not the proxy, whether a container exists.
func engineHas(t *testing.T, eng *dockertest.Engine, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := eng.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspect %s on the real engine: %v", id, err)
	}
	return err == nil
}

// checkEventsOnlyForGone fails the test for a container.remove line whose
// container the real engine still has, or that names no test container.
func checkEventsOnlyForGone(t *testing.T, eng *dockertest.Engine, eventsFile string, byName map[string]dockertest.Container) []string {
	t.Helper()
	names := removeEvents(t, eventsFile)
	seen := map[string]bool{}
	for _, name := range names {
		c, ok := byName[name]
		switch {
		case !ok:
			t.Errorf("container.remove for %q, which is not one of this test's containers", name)
		case seen[name]:
			t.Errorf("two container.remove lines for %s", name)
		case engineHas(t, eng, c.ID):
			t.Errorf("container.remove for %s, but the engine still has it", name)
		}
		seen[name] = true
	}
	return names
}

// checkReport checks the JSON document on stdout: always one document, and
// when the run ended with exit 2, every failed container in it carries the
// error (stderr only counts them; the report says what failed where).
func checkReport(t *testing.T, out string, code ExitCode, byName map[string]dockertest.Container) {
	t.Helper()
	var doc struct {
		Containers []struct {
			Name    string `json:"name"`
			Outcome string `json:"outcome"`
			Error   string `json:"error"`
		} `json:"containers"`
		Summary struct {
			Error string `json:"error"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Errorf("stdout is not one JSON document: %v\n%s", err, out)
		return
	}
	failed := 0
	for _, c := range doc.Containers {
		if _, ok := byName[c.Name]; !ok {
			t.Errorf("the report lists %q, not one of this test's containers", c.Name)
		}
		if c.Outcome == "failed" {
			failed++
			if c.Error == "" {
				t.Errorf("%s failed without an error in the report", c.Name)
			}
		}
	}
	switch code {
	case ExitPartial:
		if failed == 0 {
			t.Error("exit 2 but no container failed in the report")
		}
	case ExitFailure:
		if doc.Summary.Error == "" {
			t.Error("exit 1 but the report's summary has no error")
		}
	}
}

// faultContainers creates two expired exited containers and one created
// one, all in eng's scope.
func faultContainers(t *testing.T, eng *dockertest.Engine) map[string]dockertest.Container {
	t.Helper()
	byName := map[string]dockertest.Container{}
	for _, spec := range []dockertest.Spec{
		{Name: "exited-a", Args: []string{"exit", "3"}, Start: true, Wait: true},
		{Name: "exited-b", Args: []string{"exit", "3"}, Start: true, Wait: true},
		{Name: "created", Labels: map[string]string{"ds01.user": "alice"}},
	} {
		c := eng.Create(t, spec)
		byName[c.Name] = c
	}
	return byName
}

type faultCase struct {
	route faultproxy.Route
	mode  faultproxy.Mode
	pass  int // requests of the route let through before the fault
	exit  ExitCode
	// stderr must contain each of these.
	stderr []string
	// gone says which containers the engine no longer has after the faulted
	// run: "none", "all".
	gone string
	why  string
}

func TestFaultsDockerAPI(t *testing.T) {
	const containers = 3 // faultContainers
	list := []string{"stage discover: listing containers"}
	cases := []faultCase{
		// Without the list there is nothing to work on: the run could not do
		// its job at all, a runtime failure.
		{faultproxy.List, faultproxy.Hang, 0, ExitFailure, append(list, "context deadline exceeded"), "none",
			"a hung list ends at --call-timeout; the run failed as a whole"},
		{faultproxy.List, faultproxy.Fail500, 0, ExitFailure, append(list, faultproxy.FaultMessage), "none",
			"an engine error on the list fails the run"},
		{faultproxy.List, faultproxy.Drop, 0, ExitFailure, list, "none",
			"a cut list answer fails the run"},
		{faultproxy.List, faultproxy.Malformed, 0, ExitFailure, list, "none",
			"a list answer that is not JSON fails the run"},

		// Discovery's inspects fail per container: each is skipped, never
		// removed half-read, and the run goes on (B-12). It ends "done, but
		// something failed".
		{faultproxy.Inspect, faultproxy.Hang, 0, ExitPartial, []string{"3 action(s) failed"}, "none",
			"hung inspects mark each container failed and not decided"},
		{faultproxy.Inspect, faultproxy.Fail500, 0, ExitPartial, []string{"3 action(s) failed"}, "none",
			"failed inspects mark each container failed and not decided"},
		{faultproxy.Inspect, faultproxy.Drop, 0, ExitPartial, []string{"3 action(s) failed"}, "none",
			"cut inspects mark each container failed and not decided"},
		{faultproxy.Inspect, faultproxy.Malformed, 0, ExitPartial, []string{"3 action(s) failed"}, "none",
			"garbled inspects mark each container failed and not decided"},

		// The remove stage's re-inspect just before each removal: no fresh
		// look, no removal.
		{faultproxy.Inspect, faultproxy.Hang, containers, ExitPartial, []string{"re-inspect", "3 action(s) failed"}, "none",
			"a hung re-inspect stops that removal"},
		{faultproxy.Inspect, faultproxy.Fail500, containers, ExitPartial, []string{"re-inspect", faultproxy.FaultMessage}, "none",
			"a failed re-inspect stops that removal"},
		{faultproxy.Inspect, faultproxy.Drop, containers, ExitPartial, []string{"re-inspect", "3 action(s) failed"}, "none",
			"a cut re-inspect stops that removal"},
		{faultproxy.Inspect, faultproxy.Malformed, containers, ExitPartial, []string{"re-inspect", "3 action(s) failed"}, "none",
			"a garbled re-inspect stops that removal"},

		// The removal itself.
		{faultproxy.Remove, faultproxy.Hang, 0, ExitPartial, []string{"remove failed", "context deadline exceeded"}, "none",
			"a hung removal (never reached the engine) is failed; the container stays"},
		{faultproxy.Remove, faultproxy.Fail500, 0, ExitPartial, []string{"remove failed", faultproxy.FaultMessage}, "none",
			"an engine error on the removal is failed; the container stays"},
		{faultproxy.Remove, faultproxy.Drop, 0, ExitOK, nil, "all",
			"the engine removed them but the answer was lost: a second look (404) confirms each removal, recorded with its container.remove line"},
		{faultproxy.Remove, faultproxy.Malformed, 0, ExitOK, nil, "all",
			"exit 0: the engine removed them and answered 2xx; a removal's answer body is never read, so garbage in it changes nothing"},
	}
	eng := dockertest.New(t)
	proxy := faultproxy.Start(t, eng.Host())
	t.Setenv("DOCKER_HOST", proxy.Host())
	t.Setenv("DS01_PIPE_NVML_SIM", "")
	file := writeFile(t, t.TempDir(), "faults.hcl", faultPipeline)

	for _, c := range cases {
		name := fmt.Sprintf("%s-%s", c.route, c.mode)
		if c.pass > 0 {
			name += fmt.Sprintf("-after-%d", c.pass)
		}
		t.Run(name, func(t *testing.T) {
			// Each case its own scope: a fresh prefix on the same engine,
			// reached directly, not through the proxy.
			t.Setenv("DOCKER_HOST", eng.Host())
			scope := dockertest.New(t)
			t.Setenv("DOCKER_HOST", proxy.Host())
			byName := faultContainers(t, scope)
			events := filepath.Join(t.TempDir(), "events.jsonl")
			proxy.Reset()
			proxy.SetAfter(c.route, c.mode, c.pass)

			code, out, errOut := faultRun(t, file, scope.Prefix(), events)
			t.Logf("%s: exit %d (%s)", name, code, c.why)
			// No lock_file: no witness, which could not tell the next
			// run's removals from its own run's (pipeline.StartWitness).
			if w := witnessesOf(t, os.Getpid()); len(w) != 0 {
				t.Errorf("a run without a lock left a witness: %v", w)
			}
			if code != c.exit {
				t.Errorf("exit %d, want %d (%s)\nstderr:\n%s", code, c.exit, c.why, errOut)
			}
			for _, want := range c.stderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			checkReport(t, out, code, byName)
			if got := proxy.Counts(c.route); got.Faulted == 0 {
				t.Fatalf("the fault never fired (%+v): the case tests nothing", got)
			}

			removed := checkEventsOnlyForGone(t, scope, events, byName)
			gone := 0
			for _, ct := range byName {
				if !engineHas(t, scope, ct.ID) {
					gone++
				}
			}
			switch c.gone {
			case "none":
				if gone != 0 {
					t.Errorf("%d containers gone after the faulted run, want none", gone)
				}
			case "all":
				if gone != len(byName) {
					t.Errorf("%d of %d containers gone after the faulted run, want all", gone, len(byName))
				}
			}
			if gone > len(removed) {
				// Nothing done goes unrecorded: a removal whose answer was
				// lost is confirmed by a second look and gets its line.
				t.Errorf("%d container(s) gone without a container.remove line", gone-len(removed))
			}

			// The fault is gone: the next run finishes the job.
			proxy.Reset()
			code, _, errOut = faultRun(t, file, scope.Prefix(), events)
			if code != ExitOK {
				t.Errorf("run after the fault: exit %d, want 0\nstderr:\n%s", code, errOut)
			}
			for _, ct := range byName {
				if engineHas(t, scope, ct.ID) {
					t.Errorf("%s still exists after the clean run", ct.Name)
				}
			}
			all := checkEventsOnlyForGone(t, scope, events, byName)
			if want := len(byName) - (gone - len(removed)); len(all) != want {
				t.Errorf("%d container.remove lines in all, want %d: %v", len(all), want, all)
			}
		})
	}
}

// An events file that cannot be written does not stop the removals (they
// happen first); the run ends with exit 2 and says why on stderr.
func TestFaultsEventsFileUnwritable(t *testing.T) {
	eng := dockertest.New(t)
	t.Setenv("DOCKER_HOST", eng.Host())
	t.Setenv("DS01_PIPE_NVML_SIM", "")
	byName := faultContainers(t, eng)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	if err := os.Mkdir(events, 0o755); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	file := writeFile(t, dir, "faults.hcl", faultPipeline)

	code, _, errOut := faultRun(t, file, eng.Prefix(), events)
	if code != ExitPartial {
		t.Errorf("exit %d, want 2\nstderr:\n%s", code, errOut)
	}
	for _, want := range []string{"events not written", events, "is a directory"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	for _, c := range byName {
		if engineHas(t, eng, c.ID) {
			t.Errorf("%s was not removed", c.Name)
		}
	}
}

// A metrics file on a full disk is logged, never a failure: metrics are for
// dashboards, and the removals and the audit lines happened.
func TestFaultsMetricsFileOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs the tests as root)")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=16k"); err != nil {
		t.Skipf("cannot mount a tmpfs on %s to fill it: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	fillDisk(t, filepath.Join(mnt, "filler"))

	eng := dockertest.New(t)
	t.Setenv("DOCKER_HOST", eng.Host())
	t.Setenv("DS01_PIPE_NVML_SIM", "")
	byName := faultContainers(t, eng)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	metrics := filepath.Join(mnt, "ds01_pipe.prom")
	file := writeFile(t, dir, "faults.hcl", faultPipeline)

	code, _, errOut := faultRun(t, file, eng.Prefix(), events, "--var", "metrics_file="+metrics)
	if code != ExitOK {
		t.Errorf("exit %d, want 0\nstderr:\n%s", code, errOut)
	}
	for _, want := range []string{"metrics not written", "no space left on device"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if got := checkEventsOnlyForGone(t, eng, events, byName); len(got) != len(byName) {
		t.Errorf("container.remove lines for %v, want all %d containers", got, len(byName))
	}
	if _, err := os.Stat(metrics); err == nil {
		t.Error("a metrics file was left on the full disk")
	}
}

// fillDisk writes to path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for i := 0; ; i++ {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			return
		}
		if i > 1<<16 {
			t.Fatalf("%s never filled up", path)
		}
	}
}
