package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline/planfile"
	"github.com/ds01/ds01-pipe/pipeline/report"
)

// Operations tests: the lock, deadlines, saved plans and apply, the
// detailed exit code, shell completion, man pages and journal logging.

// opsFakeDocker is a Docker Engine API that answers /_ping and /version at
// once and holds /containers/json requests until the test releases them: a
// run that holds its lock for as long as the test wants, or a Docker that
// never answers. Everything else is a 404.
type opsFakeDocker struct {
	sock string

	hold    func(n int64) bool // hold the n-th list request (1-based)?
	arrived chan int64         // the number of each held list request, as it arrives
	release chan struct{}      // closed: held requests answer "[]"
	once    sync.Once
	lists   atomic.Int64
}

func newOpsFakeDocker(t *testing.T, hold func(n int64) bool) *opsFakeDocker {
	t.Helper()
	// A short directory: a unix socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "ds01-fake")
	if err != nil {
		t.Fatal(err)
	}
	f := &opsFakeDocker{
		sock:    filepath.Join(dir, "docker.sock"),
		hold:    hold,
		arrived: make(chan int64, 16),
		release: make(chan struct{}),
	}
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		f.Release()
		_ = srv.Close()
		_ = os.RemoveAll(dir)
	})
	return f
}

// Host is the DOCKER_HOST value that names the fake.
func (f *opsFakeDocker) Host() string { return "unix://" + f.sock }

// Release lets every held request (and every later one) answer.
func (f *opsFakeDocker) Release() { f.once.Do(func() { close(f.release) }) }

func (f *opsFakeDocker) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/_ping"):
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Ostype", "linux")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("OK"))
	case strings.HasSuffix(r.URL.Path, "/version"):
		_, _ = w.Write([]byte(`{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}`))
	case strings.HasSuffix(r.URL.Path, "/containers/json"):
		n := f.lists.Add(1)
		if f.hold(n) {
			select {
			case f.arrived <- n:
			default:
			}
			select {
			case <-f.release:
			case <-r.Context().Done():
				return // the client gave up (its deadline); nothing to answer
			}
		}
		_, _ = w.Write([]byte("[]"))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, `{"message":"the test's fake Docker has no %s %s"}`, r.Method, r.URL.Path)
	}
}

// waitHeld waits until a held list request arrives.
func (f *opsFakeDocker) waitHeld(t *testing.T, what string, stderr func() string) {
	t.Helper()
	select {
	case <-f.arrived:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s never listed containers; its stderr:\n%s", what, stderr())
	}
}

// opsBinary builds ds01-pipe into a temporary directory, for the tests that
// need a second process (a lock is per process only across processes).
func opsBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "ds01-pipe")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const lockedPipeline = `
pipeline "locked" {
  timeout   = "2m"
  lock_file = %q
  gpu { backend = "none" }
  stage "discover" {}
  stage "log" {
    events_file = ""
    syslog      = false
  }
}
`

var lockHolder = regexp.MustCompile(`\(pid (\d+), started (\S+), pipeline (\S+)\)`)

// A run that finds the lock held exits 3 at once, with one line naming the
// holder's PID, start time and pipeline, and touches nothing; a plan takes
// no lock and proceeds; the holder finishes normally.
func TestOpsLockHeldSecondRunExits3(t *testing.T) {
	fake := newOpsFakeDocker(t, func(n int64) bool { return n == 1 })
	dir := t.TempDir()
	lock := filepath.Join(dir, "locked.lock")
	file := writeFile(t, dir, "locked.hcl", fmt.Sprintf(lockedPipeline, lock))
	bin := opsBinary(t)

	first := exec.Command(bin, "run", "--format", "json", file)
	first.Env = append(os.Environ(), "DOCKER_HOST="+fake.Host())
	var firstOut, firstErr syncBuffer
	first.Stdout, first.Stderr = &firstOut, &firstErr
	started := time.Now()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	var firstErrWait error
	done := make(chan struct{})
	go func() {
		firstErrWait = first.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = first.Process.Kill()
		<-done
	})
	// The lock is taken before Docker is contacted: once the first run
	// lists, it holds the lock, deterministically.
	fake.waitHeld(t, "the first run", firstErr.String)

	t.Setenv("DOCKER_HOST", fake.Host())
	t0 := time.Now()
	code, out, errOut := cli(t, "run", "--format", "json", file)
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("the locked-out run took %v; it must give up at once", d)
	}
	if code != ExitLocked {
		t.Fatalf("second run: exit %d, want 3; stderr:\n%s", code, errOut)
	}
	// The report says what happened: nothing, and why.
	var doc report.Document
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Errorf("the locked-out run's report is not JSON (%v): %q", err, out)
	} else if len(doc.Containers) != 0 || !strings.Contains(doc.Summary.Error, "another run holds") {
		t.Errorf("the locked-out run's report: %+v", doc)
	}
	if lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n"); len(lines) != 1 {
		t.Errorf("want one line on stderr, have %d:\n%s", len(lines), errOut)
	}
	m := lockHolder.FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("stderr does not name the holder (pid, start time, pipeline):\n%s", errOut)
	}
	if m[1] != fmt.Sprint(first.Process.Pid) {
		t.Errorf("holder pid %s, want the first run's %d", m[1], first.Process.Pid)
	}
	if at, err := time.Parse(time.RFC3339, m[2]); err != nil || at.Before(started.Add(-2*time.Second)) || at.After(time.Now()) {
		t.Errorf("holder start time %q is not the first run's (%v)", m[2], err)
	}
	if m[3] != "locked" {
		t.Errorf("holder pipeline %q, want locked", m[3])
	}
	if !strings.Contains(errOut, lock) {
		t.Errorf("stderr does not name the lock file %s:\n%s", lock, errOut)
	}
	if n := fake.lists.Load(); n != 1 {
		t.Errorf("the locked-out run called Docker: %d list calls, want only the first run's", n)
	}

	// plan takes no lock.
	code, out, errOut = cli(t, "plan", "--format", "json", file)
	if code != ExitOK || !strings.Contains(out, `"mode": "plan"`) {
		t.Errorf("plan while a run holds the lock: exit %d\n%s\n%s", code, out, errOut)
	}

	fake.Release()
	select {
	case <-done:
		if firstErrWait != nil {
			t.Errorf("the first run failed after the release: %v\nstderr:\n%s", firstErrWait, firstErr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the first run did not finish after the release; stderr:\n%s", firstErr.String())
	}
	if !strings.Contains(firstOut.String(), `"mode": "run"`) {
		t.Errorf("the first run's report:\n%s", firstOut.String())
	}
	// The lock is free again.
	if code, _, errOut := cli(t, "run", "--format", "json", file); code != ExitOK {
		t.Errorf("run after the holder ended: exit %d\n%s", code, errOut)
	}
}

const deadlinePipeline = `
pipeline "slow" {
  timeout = %q
  gpu { backend = "none" }
  stage "discover" {}
  stage "remove" {}
  stage "log" {
    events_file = %q
    syslog      = false
  }
}
`

// opsEventTypes returns the event_type of every line of an events file.
func opsEventTypes(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var ev struct {
			Type    string         `json:"event_type"`
			Details map[string]any `json:"details"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: bad line %q: %v", path, sc.Text(), err)
		}
		types = append(types, ev.Type)
	}
	return types
}

// A Docker that never answers: the pipeline's timeout ends the run (exit
// 1) with a message naming that deadline, well within a bound, and no
// action is logged. With a long pipeline timeout, --call-timeout ends it.
func TestOpsDeadlines(t *testing.T) {
	cases := []struct {
		name, timeout string
		args          []string
		want          []string
	}{
		{"pipeline timeout", "2s", nil, []string{"deadline", `timeout = "2s"`, "pipeline slow"}},
		{"call timeout", "5m", []string{"--call-timeout", "1s"}, []string{"deadline of 1s", "--call-timeout"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := newOpsFakeDocker(t, func(int64) bool { return true })
			dir := t.TempDir()
			events := filepath.Join(dir, "events.jsonl")
			file := writeFile(t, dir, "slow.hcl", fmt.Sprintf(deadlinePipeline, c.timeout, events))
			t.Setenv("DOCKER_HOST", fake.Host())

			start := time.Now()
			code, _, errOut := cli(t, append(append([]string{"run", "--format", "json"}, c.args...), file)...)
			elapsed := time.Since(start)
			if code != ExitFailure {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, errOut)
			}
			// A generous bound: it catches a hang, not a slow machine.
			if elapsed > 30*time.Second {
				t.Errorf("the run took %v", elapsed)
			}
			last := errOut[strings.LastIndex(strings.TrimRight(errOut, "\n"), "\n")+1:]
			t.Logf("took %v; %s", elapsed.Round(time.Millisecond), last)
			for _, w := range c.want {
				if !strings.Contains(last, w) {
					t.Errorf("the error line does not say %q:\n%s", w, last)
				}
			}
			if fake.lists.Load() == 0 {
				t.Error("the fake was never asked for the containers")
			}
			// The log stage still records the run (a pipeline.summary
			// line); no action may be logged.
			for _, typ := range opsEventTypes(t, events) {
				if typ != "pipeline.summary" {
					t.Errorf("event %s written by a run that did nothing", typ)
				}
			}
		})
	}
}

const decidePipeline = `
variable "prefix" { default = "" }
pipeline "due" {
  gpu { backend = "none" }
  stage "discover" { name_prefix = var.prefix }
  stage "decide" {
    created_timeout  = "1h"
    idle_events_file = ""
  }
  stage "remove" {}
  stage "log" {
    events_file = ""
    syslog      = false
  }
}
`

// plan --detailed-exitcode: 4 when something would be removed, 0 when not.
func TestOpsPlanDetailedExitCode(t *testing.T) {
	eng := dockertest.New(t)
	c := eng.Create(t, dockertest.Spec{Name: "never-started"})
	file := writeFile(t, t.TempDir(), "due.hcl", decidePipeline)
	later := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	base := []string{"plan", "--format", "json", "--var", "prefix=" + eng.Prefix()}

	code, out, errOut := cli(t, append(base, "--detailed-exitcode", "--now", later, file)...)
	if code != ExitChanges {
		t.Fatalf("due container: exit %d, want 4\n%s", code, errOut)
	}
	if !strings.Contains(out, c.ID) || !strings.Contains(out, `"verdict": "remove"`) {
		t.Errorf("the report does not show the removal:\n%s", out)
	}
	if strings.Contains(errOut, "ds01-pipe:") {
		t.Errorf("exit 4 is not an error, yet stderr says:\n%s", errOut)
	}
	if code, _, errOut := cli(t, append(base, "--detailed-exitcode", file)...); code != ExitOK {
		t.Errorf("nothing due: exit %d, want 0\n%s", code, errOut)
	}
	if code, _, errOut := cli(t, append(base, "--now", later, file)...); code != ExitOK {
		t.Errorf("without --detailed-exitcode: exit %d, want 0\n%s", code, errOut)
	}
	if !opsExists(t, eng, c.ID) {
		t.Error("a plan removed a container")
	}
}

const applyPipeline = `
variable "prefix" { default = "" }
variable "events" { default = "" }
variable "lock" { default = "" }

pipeline "apply-test" {
  timeout   = "2m"
  lock_file = var.lock
  gpu { backend = "none" }

  stage "discover" { name_prefix = var.prefix }
  stage "attribute" {}
  stage "classify" {}
  stage "exempt" {}
  stage "decide" {
    created_timeout    = "1s"
    unknown_owner_hold = "1s"
    idle_events_file   = ""
  }
  stage "remove" {}
  stage "log" {
    events_file = var.events
    syslog      = false
  }
}
`

func opsExists(t *testing.T, eng *dockertest.Engine, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := eng.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return err == nil
}

type opsReport struct {
	Mode       string `json:"mode"`
	Containers []struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		State   string `json:"state"`
		Verdict string `json:"verdict"`
		Reason  string `json:"reason"`
		Outcome string `json:"outcome"`
		Error   string `json:"error"`
	} `json:"containers"`
}

func (r opsReport) byID(t *testing.T, id string) (verdict, reason, outcome, errText string) {
	t.Helper()
	for _, c := range r.Containers {
		if c.ID == id {
			return c.Verdict, c.Reason, c.Outcome, c.Error
		}
	}
	t.Fatalf("the report lacks container %s", id)
	return
}

func opsParse(t *testing.T, out string) opsReport {
	t.Helper()
	var r opsReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	return r
}

// rewritePlan writes a copy of a plan file with one top-level field changed.
func rewritePlan(t *testing.T, src, dst, field string, value any) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m[field] = value
	data, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// plan --out saves the plan; apply acts only on the planned containers
// whose fingerprint still matches: one planned container started again is
// left alone as changed, one that became due after the plan is not
// touched, the others are removed. Stale, foreign and outdated plans are
// refused with exit 78 and touch nothing.
func TestOpsPlanOutAndApply(t *testing.T) {
	eng := dockertest.New(t)
	exited := eng.Create(t, dockertest.Spec{Name: "exited", Start: true, Wait: true})
	again := eng.Create(t, dockertest.Spec{Name: "again", Args: []string{"forever"}, Start: true})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	if _, err := eng.Client().ContainerStop(ctx, again.ID, client.ContainerStopOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	cancel()
	eng.Wait(t, again.ID)
	never := eng.Create(t, dockertest.Spec{Name: "never-started"})
	time.Sleep(1100 * time.Millisecond) // every one of them is due (1s limits)

	dir := t.TempDir()
	file := writeFile(t, dir, "apply.hcl", applyPipeline)
	events := filepath.Join(dir, "events.jsonl")
	plan := filepath.Join(dir, "cleanup.plan.json")
	vars := []string{"--var", "prefix=" + eng.Prefix(), "--var", "events=" + events, "--var", "lock=" + filepath.Join(dir, "apply.lock")}

	code, out, errOut := cli(t, append(append([]string{"plan", "--format", "json", "--out", plan}, vars...), file)...)
	if code != ExitOK {
		t.Fatalf("plan --out: exit %d\n%s", code, errOut)
	}
	rep := opsParse(t, out)
	for _, c := range []dockertest.Container{exited, again, never} {
		if v, _, _, _ := rep.byID(t, c.ID); v != "remove" {
			t.Fatalf("the plan does not remove %s (verdict %q):\n%s", c.Name, v, out)
		}
	}
	if _, err := os.Stat(events); err == nil {
		t.Error("plan wrote the events file")
	}

	// The plan file: 0600, atomically written (no temporary left), and its content.
	fi, err := os.Stat(plan)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("plan file mode %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left beside the plan: %q", left)
	}
	saved, err := planfile.Read(plan)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(file)
	sum := sha256.Sum256(src)
	host, _ := os.Hostname()
	if saved.Format != 1 || saved.Pipeline != "apply-test" || saved.File != file || saved.FileSHA256 != hex.EncodeToString(sum[:]) ||
		saved.Host != host || saved.Vars["prefix"] != eng.Prefix() || time.Since(saved.Created) > time.Minute || saved.Now.IsZero() {
		t.Errorf("plan header: %+v", saved)
	}
	var ids []string
	for _, c := range saved.Containers {
		ids = append(ids, c.ID)
		if c.Fingerprint.LabelsSHA256 == "" || c.Verdict != "remove" || c.Reason == "" || c.Owner == "" || c.Type == "" {
			t.Errorf("planned container %s: %+v", c.Name, c)
		}
		if c.ID == never.ID && (c.Fingerprint.State != "created" || c.Fingerprint.StartedAt != "") {
			t.Errorf("never-started fingerprint: %+v", c.Fingerprint)
		}
		if c.ID == exited.ID && (c.Fingerprint.State != "exited" || c.Fingerprint.StartedAt == "" || c.Fingerprint.FinishedAt == "") {
			t.Errorf("exited fingerprint: %+v", c.Fingerprint)
		}
	}
	slices.Sort(ids)
	want := []string{exited.ID, again.ID, never.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("planned IDs %q, want %q", ids, want)
	}

	// Unusable plans: refused with 78, nothing touched.
	refused := []struct {
		name, plan string
		args       []string
		want       string
	}{
		{"too old", rewritePlan(t, plan, filepath.Join(dir, "old.json"), "created", time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339Nano)), nil, "older than --max-age 1h0m0s"},
		{"max-age flag", plan, []string{"--max-age", "1ms"}, "older than --max-age 1ms"},
		{"another pipeline", rewritePlan(t, plan, filepath.Join(dir, "other.json"), "pipeline", "cleanup"), nil, "made by another pipeline"},
		{"another host", rewritePlan(t, plan, filepath.Join(dir, "host.json"), "host", "elsewhere.example"), nil, `made on host "elsewhere.example"`},
		{"not a plan", writeFile(t, dir, "garbage.json", "{"), nil, "not a ds01-pipe plan file"},
	}
	for _, r := range refused {
		code, out, errOut := cli(t, append(append([]string{"apply", "--format", "json"}, r.args...), r.plan)...)
		if code != ExitConfigError || !strings.Contains(errOut, r.want) || out != "" {
			t.Errorf("%s: exit %d, want 78 with %q:\n%s%s", r.name, code, r.want, errOut, out)
		}
	}
	// An edited pipeline file invalidates the plan.
	edited := filepath.Join(dir, "edited.hcl")
	if err := os.WriteFile(edited, append([]byte("# edited\n"), src...), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := cli(t, "apply", rewritePlan(t, plan, filepath.Join(dir, "edited.json"), "file", edited)); code != ExitConfigError ||
		!strings.Contains(errOut, "changed since the plan was made") {
		t.Errorf("edited pipeline: exit %d\n%s", code, errOut)
	}
	if !opsExists(t, eng, exited.ID) || !opsExists(t, eng, never.ID) {
		t.Fatal("a refused apply removed a container")
	}

	// After the plan: one planned container is started again, and a new
	// one becomes due.
	eng.Start(t, again.ID)
	late := eng.Create(t, dockertest.Spec{Name: "late", Start: true, Wait: true})
	time.Sleep(1100 * time.Millisecond)

	code, out, errOut = cli(t, "apply", "--format", "json", plan)
	if code != ExitOK {
		t.Fatalf("apply: exit %d\n%s", code, errOut)
	}
	rep = opsParse(t, out)
	for _, c := range []dockertest.Container{exited, never} {
		if _, _, outcome, _ := rep.byID(t, c.ID); outcome != "removed" || opsExists(t, eng, c.ID) {
			t.Errorf("%s: outcome %q, want removed (and gone)", c.Name, outcome)
		}
	}
	if v, reason, outcome, e := rep.byID(t, again.ID); v == "remove" || outcome != "changed" || !strings.Contains(e, "since the plan") || !strings.Contains(e, "state exited -> running") {
		t.Errorf("%s: verdict %q (%s), outcome %q, error %q; want left alone as changed", again.Name, v, reason, outcome, e)
	}
	if st := eng.Inspect(t, again.ID).State; st == nil || !st.Running {
		t.Errorf("%s is no longer running", again.Name)
	}
	if v, reason, outcome, _ := rep.byID(t, late.ID); v != "skip" || reason != string(planfile.ReasonNotInPlan) || outcome != "" {
		t.Errorf("%s (not planned): verdict %q reason %q outcome %q, want skip not_in_plan", late.Name, v, reason, outcome)
	}
	if !opsExists(t, eng, late.ID) {
		t.Errorf("%s was removed although the plan does not list it", late.Name)
	}
	removes := 0
	for _, typ := range opsEventTypes(t, events) {
		if typ == "container.remove" {
			removes++
		}
	}
	if removes != 2 {
		t.Errorf("%d container.remove events, want 2", removes)
	}

	// Applying the same plan again removes nothing more.
	code, _, errOut = cli(t, "apply", "--format", "json", plan)
	if code != ExitOK || !strings.Contains(errOut, "no longer exists") {
		t.Errorf("second apply: exit %d\n%s", code, errOut)
	}
	if !opsExists(t, eng, again.ID) || !opsExists(t, eng, late.ID) {
		t.Error("the second apply removed a container")
	}
}

func TestOpsCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash": "complete -o default -F __start_ds01-pipe ds01-pipe",
		"zsh":  "#compdef ds01-pipe",
		"fish": "complete -c ds01-pipe",
	} {
		code, out, errOut := cli(t, "completion", shell)
		if code != ExitOK || !strings.Contains(out, marker) {
			t.Errorf("completion %s: exit %d, %d bytes, no %q\n%s", shell, code, len(out), marker, errOut)
		}
	}
	// File arguments complete by extension.
	code, out, _ := cli(t, "__complete", "run", "")
	if code != ExitOK || !strings.Contains(out, "hcl") {
		t.Errorf("run FILE completion: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "__complete", "plan", "--format", "")
	if code != ExitOK || !strings.Contains(out, "table\njson\n") {
		t.Errorf("plan --format completion: exit %d\n%s", code, out)
	}
}

func TestOpsManPages(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1768435200") // 2026-01-15
	code, _, errOut := cli(t, "__man", dir)
	if code != ExitOK {
		t.Fatalf("__man: exit %d\n%s", code, errOut)
	}
	for page, want := range map[string]string{
		"ds01-pipe.1":       `.TH "DS01-PIPE" "1" "Jan 2026"`,
		"ds01-pipe-run.1":   "run executes the pipeline for real",
		"ds01-pipe-plan.1":  "--detailed-exitcode",
		"ds01-pipe-apply.1": "--max-age",
	} {
		text, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("%s: %v", page, err)
			continue
		}
		if !strings.Contains(string(text), want) {
			t.Errorf("%s lacks %q", page, want)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*__man*")); len(matches) > 0 {
		t.Errorf("the hidden __man command got a page: %q", matches)
	}
}

// Under systemd (stderr is the stream JOURNAL_STREAM names) --log-format
// auto writes plain lines without timestamps; elsewhere JSON.
func TestOpsJournalLogFormat(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "p.hcl", discoverLog)
	fake := newOpsFakeDocker(t, func(int64) bool { return false })
	t.Setenv("DOCKER_HOST", fake.Host())

	run := func(journal bool) string {
		t.Helper()
		f, err := os.CreateTemp(dir, "stderr")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		t.Setenv("JOURNAL_STREAM", "")
		if journal {
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
		}
		Main([]string{"plan", "--log-level", "debug", "--format", "json", file}, IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: f})
		text, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(text)
	}
	journal := run(true)
	if !strings.Contains(journal, "level=") || strings.Contains(journal, "time=") || strings.Contains(journal, `{"`) {
		t.Errorf("journal: want plain logfmt lines without timestamps:\n%s", journal)
	}
	other := run(false)
	if !strings.Contains(other, `"level":`) || !strings.Contains(other, `"time":`) {
		t.Errorf("not a journal: want JSON lines:\n%s", other)
	}
}
