//go:build linux

package main

// Integration tests of the lifecycle pipeline (pipelines/lifecycle.hcl as
// shipped): real running probe containers on the real engine (an idle one
// and a CPU-busy one), GPU utilisation from a simulation file, the state
// store on disk across runs driven an hour apart with --now, notices read
// back from the container through the archive API. testdata/lifecycle is
// DS01's resource-limits.yaml: sam is a student (idle 30 min, runtime 24 h,
// window 3, grace 30 min), rex is exempt from max runtime.
//
// The containers get their GPU through the ds01.gpu.uuid label (the stock
// engine cannot start a --gpus container; B-6: a label is a GPU claim).

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline/state"
)

type lifecycleFixture struct {
	eng      *dockertest.Engine
	dir      string
	config   string
	stateDir string
	events   string
	sim      string
	pipeline string
}

func newLifecycle(t *testing.T, eng *dockertest.Engine) *lifecycleFixture {
	t.Helper()
	dir := t.TempDir()
	config, err := filepath.Abs(filepath.Join("..", "..", "testdata", "lifecycle"))
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := filepath.Abs(filepath.Join("..", "..", "pipelines", "lifecycle.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	f := &lifecycleFixture{eng: eng, dir: dir, config: config, stateDir: filepath.Join(dir, "state"),
		events: filepath.Join(dir, "events.jsonl"), sim: filepath.Join(dir, "sim.json"), pipeline: pipe}
	f.setSim(t, nil)
	return f
}

// simGPU is one device of the simulation file.
type simGPU struct {
	util  *int
	procs map[int]*int // pid -> sm_util
}

// setSim writes five GPUs, GPU-lc-0..4 (so that three claimed units stay
// under the 80 % high-demand threshold), with the given utilisations.
func (f *lifecycleFixture) setSim(t *testing.T, gpus map[int]simGPU) {
	t.Helper()
	var devs []map[string]any
	for i := range 5 {
		d := map[string]any{"index": i, "uuid": fmt.Sprintf("GPU-lc-%d", i), "name": "A100", "memory_mib": 81920}
		g := gpus[i]
		if g.util != nil {
			d["utilization_gpu"] = *g.util
		}
		var procs []map[string]any
		for pid, sm := range g.procs {
			p := map[string]any{"pid": pid, "used_memory_mib": 100}
			if sm != nil {
				p["sm_util"] = *sm
			}
			procs = append(procs, p)
		}
		if procs != nil {
			d["processes"] = procs
		}
		devs = append(devs, d)
	}
	data, err := json.Marshal(map[string]any{"driver_version": "550.54.15", "devices": devs})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.sim, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func pct(v int) *int { return &v }

func (f *lifecycleFixture) exec(t *testing.T, mode string, now time.Time, extra ...string) (ExitCode, *lifecycleReport, string) {
	t.Helper()
	args := []string{mode, "--format", "json", "--log-level", "warn", "--now", now.UTC().Format(time.RFC3339Nano),
		"--var", "prefix=" + f.eng.Prefix(),
		"--var", "ds01_config=" + f.config,
		"--var", "events_file=" + f.events,
		"--var", "lock_file=" + filepath.Join(f.dir, "lifecycle.lock"),
		"--var", "gpu_backend=sim",
		"--var", "sim_file=" + f.sim,
		"--var", "state_dir=" + f.stateDir,
	}
	if mode == "run" {
		args = append(args, "--allow-clock-override")
	}
	args = append(args, extra...)
	args = append(args, f.pipeline)
	code, out, errOut := cli(t, args...)
	if out == "" {
		return code, nil, errOut
	}
	var rep lifecycleReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, clip(out))
	}
	return code, &rep, errOut
}

func (f *lifecycleFixture) must(t *testing.T, mode string, now time.Time) *lifecycleReport {
	t.Helper()
	code, rep, errOut := f.exec(t, mode, now)
	if code != ExitOK || rep == nil {
		t.Fatalf("%s at %s: exit %d\nstderr:\n%s", mode, now.Format(time.RFC3339), code, errOut)
	}
	return rep
}

type lifecycleReport struct {
	Mode       string          `json:"mode"`
	Containers []lifecycleLine `json:"containers"`
}

type lifecycleLine struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	State      string   `json:"state"`
	Verdict    string   `json:"verdict"`
	Reason     string   `json:"reason"`
	Detail     string   `json:"detail"`
	Outcome    string   `json:"outcome"`
	Error      string   `json:"error"`
	IdleS      *int64   `json:"idle_s"`
	RuntimeS   *int64   `json:"runtime_s"`
	IdleStreak *int     `json:"idle_streak"`
	Notices    []string `json:"notices"`
	Warnings   []string `json:"warnings"`
	Signals    []struct {
		Name    string   `json:"name"`
		Value   *float64 `json:"value"`
		Source  string   `json:"source"`
		Missing string   `json:"missing"`
		Active  bool     `json:"active"`
	} `json:"signals"`
}

func (r *lifecycleReport) line(t *testing.T, c dockertest.Container) lifecycleLine {
	t.Helper()
	for _, l := range r.Containers {
		if l.ID == c.ID {
			return l
		}
	}
	t.Fatalf("%s is not in the %s report", c.Name, r.Mode)
	return lifecycleLine{}
}

func (l lifecycleLine) expect(t *testing.T, when, verdict, reason, outcome string) {
	t.Helper()
	if l.Verdict != verdict || l.Reason != reason || l.Outcome != outcome {
		t.Errorf("%s %s: %s/%s/%q, want %s/%s/%q\n  detail: %s\n  error: %s\n  warnings: %v",
			when, l.Name, l.Verdict, l.Reason, l.Outcome, verdict, reason, outcome, l.Detail, l.Error, l.Warnings)
	}
}

func (l lifecycleLine) signal(name string) (value *float64, source string) {
	for _, s := range l.Signals {
		if s.Name == name {
			return s.Value, s.Source
		}
	}
	return nil, ""
}

func (f *lifecycleFixture) start(t *testing.T, name, owner, gpu string, args ...string) (dockertest.Container, time.Time) {
	t.Helper()
	labels := map[string]string{"ds01.user": owner, "ds01.container_type": "atomic"}
	if gpu != "" {
		labels["ds01.gpu.uuid"] = gpu
	}
	c := f.eng.Create(t, dockertest.Spec{Name: name, Labels: labels, Args: args, Start: true})
	started, err := time.Parse(time.RFC3339Nano, f.eng.Inspect(t, c.ID).State.StartedAt)
	if err != nil {
		t.Fatal(err)
	}
	return c, started
}

// I #22-#26 fixed, #18, #52 fixed: an idle and a CPU-busy GPU container run
// side by side; the idle one is warned, then stopped and removed at once
// with its GPU released; the busy one stays; a protected idle one and a
// CPU-only one are never touched.
func TestLifecycleIdleStopAndRemove(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	idle, s := f.start(t, "idle", "sam", "GPU-lc-0", "forever")
	busy, _ := f.start(t, "busy", "sam", "GPU-lc-1", "busy")
	nogpu, _ := f.start(t, "cpu-only", "sam", "", "forever")
	prot := eng.Create(t, dockertest.Spec{Name: "prot", Labels: map[string]string{
		"ds01.user": "sam", "ds01.gpu.uuid": "GPU-lc-2", "ds01.protected": "true"}, Args: []string{"forever"}, Start: true})
	f.setSim(t, map[int]simGPU{0: {util: pct(0)}, 1: {util: pct(0)}, 2: {util: pct(0)}})

	m := func(n int) time.Time { return s.Add(time.Duration(n) * time.Minute) }
	// Each run is preceded by real time for the stats counters to move.
	pause := func() { time.Sleep(300 * time.Millisecond) }

	rep := f.must(t, "run", m(45))
	rep.line(t, idle).expect(t, "45m", "keep", "idle_streak", "")
	if v, _ := rep.line(t, idle).signal("cpu"); v != nil {
		t.Errorf("first sample gave a CPU value %v: there is no previous sample", *v)
	}
	rep.line(t, nogpu).expect(t, "45m", "skip", "no_gpu", "")
	rep.line(t, prot).expect(t, "45m", "skip", "exempt", "")

	for _, n := range []int{60, 75} {
		pause()
		rep = f.must(t, "run", m(n))
		rep.line(t, idle).expect(t, fmt.Sprint(n, "m"), "keep", "idle_streak", "")
		b := rep.line(t, busy)
		b.expect(t, fmt.Sprint(n, "m"), "keep", "active", "")
		// Over the student's 2 % threshold; how far over depends on what
		// else the machine runs.
		if v, src := b.signal("cpu"); v == nil || *v <= 2 || src != "docker_stats" {
			t.Errorf("busy probe's CPU signal = %s from %q, want over the 2%% threshold from docker_stats", ptrText(v), src)
		}
		if v, src := rep.line(t, idle).signal("gpu"); v == nil || *v != 0 || src != "nvml_no_process" {
			t.Errorf("idle probe's GPU signal = %v from %q", v, src)
		}
	}

	pause()
	rep = f.must(t, "run", m(90))
	l := rep.line(t, idle)
	l.expect(t, "90m", "keep", "idle_warning", "")
	if strings.Join(l.Notices, ",") != "idle_warning,idle_final_warning" || l.IdleS == nil || *l.IdleS != 45*60 {
		t.Errorf("90m: notices %v, idle_s %v", l.Notices, l.IdleS)
	}

	// plan at the stop: the decision shows, nothing happens, the store is
	// not written.
	pause()
	before := f.stateDump(t)
	prep := f.must(t, "plan", m(105))
	prep.line(t, idle).expect(t, "plan 105m", "stop", "idle_timeout", "planned")
	if code, _, errOut := f.exec(t, "plan", m(105), "--detailed-exitcode"); code != ExitChanges {
		t.Errorf("plan --detailed-exitcode with a stop planned: exit %d, want 4\n%s", code, errOut)
	}
	if after := f.stateDump(t); after != before {
		t.Errorf("plan changed the state store")
	}
	if st := eng.Inspect(t, idle.ID).State; !st.Running {
		t.Fatal("plan stopped the container")
	}

	rep = f.must(t, "run", m(105))
	rep.line(t, idle).expect(t, "105m", "remove", "idle_stopped", "removed")
	rep.line(t, busy).expect(t, "105m", "keep", "active", "")
	rep.line(t, prot).expect(t, "105m", "skip", "exempt", "")
	if eng.Inspect(t, busy.ID).State.Running != true {
		t.Error("the busy container was stopped")
	}
	if _, err := eng.Client().ContainerInspect(context.Background(), idle.ID, client.ContainerInspectOptions{}); err == nil {
		t.Error("the idle container still exists")
	}

	evs := readEventLines(t, f.events)
	kill := eventsOfType(evs, "maintenance.idle_kill")
	if len(kill) != 1 || kill[0].User != "sam" || kill[0].Details["container"] != idle.Name ||
		kill[0].Details["idle_duration"] != "1h" || kill[0].Details["container_type"] != "atomic" {
		t.Errorf("idle_kill events: %+v", kill)
	}
	rel := eventsOfType(evs, "gpu.release")
	if len(rel) != 1 || rel[0].Details["gpu_uuid"] != "GPU-lc-0" {
		t.Errorf("gpu.release events: %+v", rel)
	}
	rm := eventsOfType(evs, "container.remove")
	if len(rm) != 1 || rm[0].Details["reason"] != "idle_stopped" {
		t.Errorf("container.remove events: %+v", rm)
	}
	// The run's own count agrees with its events (no release stage here).
	if sums := eventsOfType(evs, "pipeline.summary"); len(sums) == 0 || sums[len(sums)-1].Details["gpus_released"] != float64(1) {
		t.Errorf("the removing run's pipeline.summary does not count its gpu.release: %+v", sums)
	}
	if n := len(eventsOfType(evs, "system.high_demand")); n != 0 {
		t.Errorf("%d high-demand events with 3 of 5 GPUs claimed", n)
	}

	// The store now holds the running containers only (pruned).
	pause()
	f.must(t, "run", m(120))
	dump := f.stateDump(t)
	if strings.Contains(dump, idle.ID) || !strings.Contains(dump, busy.ID) {
		t.Errorf("state after the removal:\n%s", dump)
	}
}

// An idle container sharing its GPU with a busy one is idle when the
// driver reports per-process utilisation (sm_util); a slice whose
// utilisation is not reported (MIG [N/A], #34 fixed) is no evidence.
func TestLifecycleSharedGPU(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	quiet, s := f.start(t, "quiet", "sam", "GPU-lc-0", "forever")
	loud, _ := f.start(t, "loud", "sam", "GPU-lc-0", "forever")
	unknown, _ := f.start(t, "unknown", "sam", "GPU-lc-1", "forever")
	f.setSim(t, map[int]simGPU{
		0: {util: pct(95), procs: map[int]*int{eng.PID(t, quiet.ID): pct(0), eng.PID(t, loud.ID): pct(93)}},
		1: {procs: map[int]*int{eng.PID(t, unknown.ID): nil}},
	})
	f.must(t, "run", s.Add(45*time.Minute))
	time.Sleep(300 * time.Millisecond)
	rep := f.must(t, "run", s.Add(60*time.Minute))
	if v, src := rep.line(t, quiet).signal("gpu"); v == nil || *v != 0 || src != "nvml_process" {
		t.Errorf("quiet: gpu %v from %q, want 0 from nvml_process", v, src)
	}
	rep.line(t, quiet).expect(t, "60m", "keep", "idle_streak", "")
	if got := rep.line(t, quiet).IdleStreak; got == nil || *got != 1 {
		t.Errorf("quiet: idle streak %v, want 1", got)
	}
	rep.line(t, loud).expect(t, "60m", "keep", "active", "")
	u := rep.line(t, unknown)
	if v, _ := u.signal("gpu"); v != nil || u.IdleStreak == nil || *u.IdleStreak != 0 {
		t.Errorf("unknown: gpu %v, streak %v; want no evidence and no streak", v, u.IdleStreak)
	}
}

// R #36-#38: warnings at 75 % and 90 % of 24 h, then a graceful stop; the
// container is left for the cleanup holds. #40: an exempt owner is never
// stopped and gets one runtime_exempt event per container run.
func TestLifecycleRuntime(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	long, s := f.start(t, "long", "sam", "GPU-lc-0", "busy")
	rex, _ := f.start(t, "rex", "rex", "GPU-lc-1", "busy")
	f.setSim(t, map[int]simGPU{0: {util: pct(80)}, 1: {util: pct(80)}})
	h := func(n float64) time.Time { return s.Add(time.Duration(n * float64(time.Hour))) }

	rep := f.must(t, "run", h(18))
	if l := rep.line(t, long); l.Reason != "runtime_warning" || strings.Join(l.Notices, ",") != "runtime_warning" {
		t.Errorf("18h: %s %v", l.Reason, l.Notices)
	}
	rep = f.must(t, "run", h(22))
	if l := rep.line(t, long); strings.Join(l.Notices, ",") != "runtime_final_warning" {
		t.Errorf("22h: %v", l.Notices)
	}
	rep = f.must(t, "run", h(25))
	rep.line(t, long).expect(t, "25h", "stop", "runtime_exceeded", "stopped")
	if l := rep.line(t, long); l.RuntimeS == nil || *l.RuntimeS != 25*3600 {
		t.Errorf("runtime_s = %v", l.RuntimeS)
	}
	st := eng.Inspect(t, long.ID).State
	if st.Running || st.Status != "exited" {
		t.Errorf("after the runtime stop: %+v, want exited and kept", st)
	}
	rep.line(t, rex).expect(t, "25h", "keep", "exempt", "")
	f.must(t, "run", h(26))

	evs := readEventLines(t, f.events)
	kills := eventsOfType(evs, "maintenance.runtime_kill")
	if len(kills) != 1 || kills[0].Details["runtime"] != "25h" || kills[0].Details["max_runtime"] != "24h" {
		t.Errorf("runtime_kill events: %+v", kills)
	}
	if ex := eventsOfType(evs, "maintenance.runtime_exempt"); len(ex) != 1 || ex[0].User != "rex" {
		t.Errorf("runtime_exempt events: %+v, want one for rex", ex)
	}
	if n := len(eventsOfType(evs, "container.remove")); n != 0 {
		t.Errorf("%d removals: a runtime stop leaves the container to the cleanup holds", n)
	}

	// `ds01-pipe state` shows the store: the stopped container is pruned,
	// rex's run is there with its exemption event remembered.
	code, out, errOut := cli(t, "state", "--state-dir", f.stateDir, "--format", "json")
	var doc stateDocument
	if code != ExitOK || json.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("state: exit %d\n%s%s", code, out, errOut)
	}
	if len(doc.Containers) != 1 || doc.Containers[0].ContainerID != rex.ID || doc.Containers[0].RuntimeExemptAt.IsZero() || len(doc.Runs) != 4 {
		t.Errorf("state: %+v", doc)
	}
	if code, out, _ := cli(t, "state", "--state-dir", f.stateDir); code != ExitOK || !strings.Contains(out, rex.Name) || !strings.Contains(out, "runtime-exempt") {
		t.Errorf("state table: exit %d\n%s", code, out)
	}
}

// #27: a keep-alive file modified 2 h ago keeps an idle container; #28: one
// 30 h old does not. The notices are appended to /workspace/.ds01-alerts
// through the archive API and read back from the container.
func TestLifecycleKeepAliveAndAlertsFile(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	c, s := f.start(t, "kept", "sam", "GPU-lc-0", "forever")
	f.setSim(t, map[int]simGPU{0: {util: pct(0)}})
	stop := s.Add(105 * time.Minute)
	putFiles(t, eng, c.ID, map[string]time.Time{"workspace/.keep-alive": stop.Add(-2 * time.Hour)})

	for _, n := range []int{45, 60, 75, 90} {
		f.must(t, "run", s.Add(time.Duration(n)*time.Minute))
		time.Sleep(300 * time.Millisecond)
	}
	rep := f.must(t, "run", stop)
	l := rep.line(t, c)
	l.expect(t, "105m", "keep", "idle_timeout", "")
	if !strings.Contains(l.Detail, ".keep-alive was modified 2.0h ago") {
		t.Errorf("detail %q does not name the keep-alive file", l.Detail)
	}
	alerts := readFileFrom(t, eng, c.ID, "/workspace/.ds01-alerts")
	for _, title := range []string{"[WARNING] IDLE CONTAINER WARNING", "[WARNING] FINAL IDLE WARNING", "--- Alert: "} {
		if !strings.Contains(alerts, title) {
			t.Errorf("alerts file lacks %q:\n%s", title, alerts)
		}
	}

	putFiles(t, eng, c.ID, map[string]time.Time{"workspace/.keep-alive": stop.Add(-30 * time.Hour)})
	time.Sleep(300 * time.Millisecond)
	rep = f.must(t, "run", stop.Add(time.Minute))
	rep.line(t, c).expect(t, "keep-alive 30h old", "remove", "idle_stopped", "removed")
}

// Bad input stops before anything is touched: a state_dir others can
// write, an unknown threshold key, a threshold out of range (exit 78 with
// file and line).
func TestLifecycleConfigErrors(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	c, s := f.start(t, "untouched", "sam", "GPU-lc-0", "forever")

	open := filepath.Join(f.dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := f.exec(t, "run", s.Add(5*time.Hour), "--var", "state_dir="+open)
	if code != ExitConfigError || !strings.Contains(errOut, "lifecycle.hcl:") || !strings.Contains(errOut, "writable by group or others") {
		t.Errorf("open state_dir: exit %d\n%s", code, errOut)
	}

	for name, tc := range map[string]struct{ from, to, want string }{
		"typo":  {"gpu_idle_threshold: 5            #", "gpu_idle_treshold: 5            #", `unknown key "gpu_idle_treshold"; did you mean "gpu_idle_threshold"?`},
		"range": {"high_demand_threshold: 0.8", "high_demand_threshold: 8", "high_demand_threshold: 8 is out of range"},
	} {
		cfg := filepath.Join(t.TempDir(), "ds01")
		if err := os.CopyFS(cfg, os.DirFS(f.config)); err != nil {
			t.Fatal(err)
		}
		limits := filepath.Join(cfg, "resource-limits.yaml")
		data, err := os.ReadFile(limits)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), tc.from) {
			t.Fatalf("%s: fixture lacks %q", name, tc.from)
		}
		if err := os.WriteFile(limits, []byte(strings.Replace(string(data), tc.from, tc.to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := f.exec(t, "run", s.Add(5*time.Hour), "--var", "ds01_config="+cfg)
		if code != ExitConfigError || !strings.Contains(errOut, "resource-limits.yaml:2") || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d\n%s", name, code, errOut)
		}
	}
	if !eng.Inspect(t, c.ID).State.Running {
		t.Error("a configuration error stopped a container")
	}
	if _, err := os.Stat(f.stateDir); err == nil {
		t.Error("a configuration error created the state store")
	}
}

// stateDump renders the store, for before/after comparisons.
func (f *lifecycleFixture) stateDump(t *testing.T) string {
	t.Helper()
	st, err := state.OpenReadOnly(f.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// putFiles writes empty files (and their folders) into a container with
// the given modification times, through the archive API.
func putFiles(t *testing.T, eng *dockertest.Engine, id string, files map[string]time.Time) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for name, mtime := range files {
		if d := filepath.Dir(name); d != "." && !dirs[d] {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Client().CopyToContainer(t.Context(), id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		t.Fatal(err)
	}
}

func readFileFrom(t *testing.T, eng *dockertest.Engine, id, path string) string {
	t.Helper()
	res, err := eng.Client().CopyFromContainer(t.Context(), id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		t.Fatalf("reading %s back from the container: %v", path, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func ptrText(v *float64) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprintf("%.2f", *v)
}
