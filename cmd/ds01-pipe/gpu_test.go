package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

// Black-box tests of the GPU side: the command runs in-process through Main
// against the real Docker engine, with DS01_PIPE_NVML_SIM pointing at a
// simulation file the test writes with the real host PIDs of its own
// containers and processes.

const (
	gpuSim0    = "GPU-5a5a5a5a-0000-4000-8000-000000000000"
	gpuSim1    = "GPU-5a5a5a5a-0000-4000-8000-000000000001"
	gpuSimM    = "GPU-5a5a5a5a-0000-4000-8000-000000000002" // MIG-enabled
	gpuSimMIG0 = "MIG-5a5a5a5a-0000-4000-8000-000000000020"
	gpuSimMIG1 = "MIG-5a5a5a5a-0000-4000-8000-000000000021"
)

// gpuSimDevice is one device of a simulation file (docs/gpu-simulation.md).
type gpuSimDevice struct {
	Index     int             `json:"index"`
	UUID      string          `json:"uuid"`
	Name      string          `json:"name,omitempty"`
	MemoryMiB uint64          `json:"memory_mib,omitempty"`
	Processes []gpuSimProcess `json:"processes"`
	MIG       []gpuSimSlice   `json:"mig,omitempty"`
}

type gpuSimSlice struct {
	Index     int             `json:"index"`
	UUID      string          `json:"uuid"`
	Profile   string          `json:"profile"`
	Processes []gpuSimProcess `json:"processes"`
}

type gpuSimProcess struct {
	PID           int    `json:"pid"`
	UsedMemoryMiB uint64 `json:"used_memory_mib"`
}

func gpuSimPIDs(ps ...int) []gpuSimProcess {
	out := []gpuSimProcess{}
	for _, p := range ps {
		out = append(out, gpuSimProcess{PID: p, UsedMemoryMiB: 2048})
	}
	return out
}

// gpuSimHost is two plain A100s and one in MIG mode with two slices; procs[i]
// are the PIDs on device i (for the MIG GPU: on its slice 0).
func gpuSimHost(procs ...[]int) []gpuSimDevice {
	at := func(i int) []gpuSimProcess {
		if i < len(procs) {
			return gpuSimPIDs(procs[i]...)
		}
		return gpuSimPIDs()
	}
	const name = "NVIDIA A100-SXM4-80GB"
	return []gpuSimDevice{
		{Index: 0, UUID: gpuSim0, Name: name, MemoryMiB: 81920, Processes: at(0)},
		{Index: 1, UUID: gpuSim1, Name: name, MemoryMiB: 81920, Processes: at(1)},
		{Index: 2, UUID: gpuSimM, Name: name, MemoryMiB: 81920, Processes: gpuSimPIDs(), MIG: []gpuSimSlice{
			{Index: 0, UUID: gpuSimMIG0, Profile: "3g.40gb", Processes: at(2)},
			{Index: 1, UUID: gpuSimMIG1, Profile: "3g.40gb", Processes: gpuSimPIDs()},
		}},
	}
}

// gpuUseSim writes a simulation file and points DS01_PIPE_NVML_SIM at it.
func gpuUseSim(t *testing.T, devices []gpuSimDevice) string {
	t.Helper()
	data, err := json.MarshalIndent(map[string]any{"driver_version": "550.54.15", "devices": devices, "init_error": nil}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, t.TempDir(), "gpus.json", string(data))
	t.Setenv("DS01_PIPE_NVML_SIM", path)
	return path
}

// gpuDoc is the part of the JSON report these tests read.
type gpuDoc struct {
	Containers []struct {
		ID      string   `json:"id"`
		Name    string   `json:"name"`
		State   string   `json:"state"`
		Owner   string   `json:"owner"`
		GPUs    []string `json:"gpus"`
		Verdict string   `json:"verdict"`
		Reason  string   `json:"reason"`
		Detail  string   `json:"detail"`
		Outcome string   `json:"outcome"`
	} `json:"containers"`
	GPUs []struct {
		UUID      string   `json:"uuid"`
		Index     int      `json:"index"`
		MIGParent *string  `json:"mig_parent"`
		ClaimedBy []string `json:"claimed_by"`
		Processes []struct {
			PID         int     `json:"pid"`
			ContainerID *string `json:"container_id"`
			Used        uint64  `json:"used_memory_mib"`
			Killed      bool    `json:"killed"`
		} `json:"processes"`
		Status string `json:"status"`
	} `json:"gpus"`
	Summary struct {
		NVMLChecked bool           `json:"nvml_checked"`
		NVML        string         `json:"nvml"`
		GPUStatuses map[string]int `json:"gpu_statuses"`
		Removed     int            `json:"removed"`
	} `json:"summary"`
}

func gpuParseDoc(t *testing.T, out string) *gpuDoc {
	t.Helper()
	var doc gpuDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	return &doc
}

// gpuLine renders a report row compactly: "index uuid parent status
// claimed=[...] procs=[pid:container]".
func (d *gpuDoc) gpuLines() map[string]string {
	out := map[string]string{}
	for _, g := range d.GPUs {
		parent := "-"
		if g.MIGParent != nil {
			parent = *g.MIGParent
		}
		var procs []string
		for _, p := range g.Processes {
			owner := "host"
			if p.ContainerID != nil {
				owner = *p.ContainerID
			}
			procs = append(procs, fmt.Sprintf("%d:%s", p.PID, owner))
		}
		out[g.UUID] = fmt.Sprintf("%d %s %s claimed=%v procs=%v", g.Index, parent, g.Status, g.ClaimedBy, procs)
	}
	return out
}

// gpuLimitsFile is a DS01 resource-limits.yaml with a half-hour hold.
const gpuLimitsFile = `defaults:
  container_hold_after_stop_h: 0.5
  gpu_hold_after_stop_h: 0.5
default_group: student
groups:
  student: {}
policies:
  created_container_timeout_m: 30
`

// gpuCleanupPipeline is pipelines/cleanup.hcl with every path in dir (the
// metrics file too: ds01.prom).
func gpuCleanupPipeline(t *testing.T, dir string) string {
	t.Helper()
	writeFile(t, dir, "resource-limits.yaml", gpuLimitsFile)
	return writeFile(t, dir, "cleanup.hcl", fmt.Sprintf(`
variable "prefix" { default = "" }

pipeline "gpu-cleanup" {
  timeout   = "2m"
  lock_file = %[1]q

  policy {
    limits_file = %[2]q
  }

  gpu { backend = "none" } # DS01_PIPE_NVML_SIM overrides it

  stage "discover"  { name_prefix = var.prefix }
  stage "attribute" {}
  stage "classify"  {}
  stage "exempt"    {}
  stage "decide"    { idle_events_file = "" }
  stage "release"   { kill_orphans = false }
  stage "remove"    {}
  stage "log" {
    events_file  = %[3]q
    metrics_file = %[4]q
    syslog       = false
  }
}
`, filepath.Join(dir, "cleanup.lock"), filepath.Join(dir, "resource-limits.yaml"), filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "ds01.prom")))
}

// gpuEvent is one line of events.jsonl, details kept raw to check their order.
type gpuEvent struct {
	Type    string          `json:"event_type"`
	User    string          `json:"user"`
	Source  string          `json:"source"`
	Details json.RawMessage `json:"details"`
}

func gpuReadEvents(t *testing.T, path string) []gpuEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []gpuEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev gpuEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("events.jsonl line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

func gpuFinishedAt(t *testing.T, eng *dockertest.Engine, id string) time.Time {
	t.Helper()
	st := eng.Inspect(t, id).State
	ft, err := time.Parse(time.RFC3339Nano, st.FinishedAt)
	if err != nil {
		t.Fatalf("FinishedAt %q: %v", st.FinishedAt, err)
	}
	return ft
}

func TestGPURunReleasesBeforeRemoval(t *testing.T) {
	eng := dockertest.PrivateDaemon(t)
	t.Setenv("DOCKER_HOST", eng.Host())
	done := eng.Create(t, dockertest.Spec{Name: "done", Labels: map[string]string{"ds01.user": "alice"}, GPUs: []string{gpuSim1}, Start: true, Wait: true})
	slice := eng.Create(t, dockertest.Spec{Name: "slice", Labels: map[string]string{"ds01.user": "carol", "ds01.gpu.uuid": gpuSimMIG1}, Start: true, Wait: true})
	notebook := eng.Create(t, dockertest.Spec{Name: "notebook", Labels: map[string]string{"ds01.user": "bob"}, Args: []string{"forever"}, Start: true})
	nbPID := eng.PID(t, notebook.ID)
	gpuUseSim(t, gpuSimHost([]int{nbPID}))

	dir := t.TempDir()
	file := gpuCleanupPipeline(t, dir)
	now := gpuFinishedAt(t, eng, done.ID)
	if s := gpuFinishedAt(t, eng, slice.ID); s.After(now) {
		now = s
	}
	now = now.Add(2 * time.Hour)

	code, out, errOut := cli(t, "run", "--format", "json", "--now", now.Format(time.RFC3339Nano), "--allow-clock-override",
		"--var", "prefix="+eng.Prefix(), file)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	doc := gpuParseDoc(t, out)

	// Containers: the two exited ones removed, the notebook attributed.
	got := map[string]string{}
	for _, c := range doc.Containers {
		got[c.Name] = fmt.Sprintf("%s %s %s/%s %s gpus=%v", c.State, c.Owner, c.Verdict, c.Reason, c.Outcome, c.GPUs)
	}
	want := map[string]string{
		done.Name:     fmt.Sprintf("exited alice remove/hold_expired removed gpus=[%s]", gpuSim1),
		slice.Name:    fmt.Sprintf("exited carol remove/hold_expired removed gpus=[%s]", gpuSimMIG1),
		notebook.Name: fmt.Sprintf("running bob skip/not_a_candidate  gpus=[%s]", gpuSim0),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("containers:\n%v\nwant:\n%v", got, want)
	}

	// GPUs: one row per GPU and slice, sorted, with the reconciled status.
	wantGPUs := map[string]string{
		gpuSim0:    fmt.Sprintf("0 - unrecorded claimed=[] procs=[%d:%s]", nbPID, notebook.ID),
		gpuSim1:    fmt.Sprintf("1 - released claimed=[%s] procs=[]", done.ID),
		gpuSimM:    "2 - free claimed=[] procs=[]",
		gpuSimMIG0: fmt.Sprintf("0 %s free claimed=[] procs=[]", gpuSimM),
		gpuSimMIG1: fmt.Sprintf("1 %s released claimed=[%s] procs=[]", gpuSimM, slice.ID),
	}
	if gotGPUs := doc.gpuLines(); fmt.Sprint(gotGPUs) != fmt.Sprint(wantGPUs) {
		t.Errorf("gpus:\n%v\nwant:\n%v", gotGPUs, wantGPUs)
	}
	var order []string
	for _, g := range doc.GPUs {
		order = append(order, g.UUID)
	}
	if fmt.Sprint(order) != fmt.Sprint([]string{gpuSim0, gpuSim1, gpuSimM, gpuSimMIG0, gpuSimMIG1}) {
		t.Errorf("gpu rows out of order: %v", order)
	}
	if !doc.Summary.NVMLChecked || doc.Summary.NVML != "sim" || doc.Summary.Removed != 2 {
		t.Errorf("summary %+v", doc.Summary)
	}

	// events.jsonl: each container's container.remove (written as the
	// removal completes), then its gpu.release (a GPU is released only once
	// its container is confirmed gone).
	evs := gpuReadEvents(t, filepath.Join(dir, "events.jsonl"))
	index := func(typ, details string) int {
		for i, ev := range evs {
			if ev.Type == typ && strings.Contains(string(ev.Details), details) {
				return i
			}
		}
		return -1
	}
	for _, c := range []struct {
		name, user, uuid string
	}{{done.Name, "alice", gpuSim1}, {slice.Name, "carol", gpuSimMIG1}} {
		rel := index("gpu.release", fmt.Sprintf(`{"container":%q,"gpu_uuid":%q,"reason":"hold_expired",`, c.name, c.uuid))
		rm := index("container.remove", fmt.Sprintf(`"container":%q`, c.name))
		if rel < 0 || rm < 0 || rel < rm {
			t.Errorf("%s: gpu.release at %d, container.remove at %d; want the removal first", c.name, rel, rm)
			continue
		}
		if evs[rel].User != c.user || evs[rel].Source != "ds01-pipe/gpu-cleanup" {
			t.Errorf("gpu.release %+v, want user %s", evs[rel], c.user)
		}
	}
	unrec := index("gpu.unrecorded", fmt.Sprintf(`{"container":%q,"gpu_uuid":%q,"pid":%d,`, notebook.Name, gpuSim0, nbPID))
	if unrec < 0 || evs[unrec].User != "bob" {
		t.Errorf("no gpu.unrecorded for bob's notebook in %s", evs)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, id := range []string{done.ID, slice.ID} {
		if _, err := eng.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
			t.Errorf("container %s still exists (inspect: %v)", id, err)
		}
	}
}

// A GPU container that is not due and a host whose NVML does not load: the
// claims are reported unchecked, never free, and the run goes on.
func TestGPUNoNVMLIsUnchecked(t *testing.T) {
	eng := dockertest.New(t)
	held := eng.Create(t, dockertest.Spec{Name: "held", Labels: map[string]string{"ds01.user": "alice"}, GPUs: []string{gpuSim0}})
	t.Setenv("DS01_PIPE_NVML_SIM", filepath.Join("..", "..", "testdata", "gpu", "init-error.json"))

	dir := t.TempDir()
	file := gpuCleanupPipeline(t, dir)
	code, out, errOut := cli(t, "plan", "--format", "json", "--var", "prefix="+eng.Prefix(), file)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	doc := gpuParseDoc(t, out)
	if doc.Summary.NVMLChecked || doc.Summary.NVML != "unavailable: NVML: ERROR_LIBRARY_NOT_FOUND" {
		t.Errorf("summary %+v, want NVML unavailable", doc.Summary)
	}
	want := map[string]string{gpuSim0: fmt.Sprintf("-1 - unchecked claimed=[%s] procs=[]", held.ID)}
	if got := doc.gpuLines(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gpus %v, want %v", got, want)
	}
	if !strings.Contains(errOut, "NVML cross-check not done: NVML: ERROR_LIBRARY_NOT_FOUND") {
		t.Errorf("stderr lacks the cross-check warning:\n%s", errOut)
	}

	// required = true: no GPU view ends the run.
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	required := writeFile(t, dir, "required.hcl", strings.Replace(string(src), `gpu { backend = "none" }`, `gpu {
    backend  = "none"
    required = true
  }`, 1))
	code, _, errOut = cli(t, "plan", "--format", "json", "--var", "prefix="+eng.Prefix(), required)
	if code != ExitFailure || !strings.Contains(errOut, "ERROR_LIBRARY_NOT_FOUND") {
		t.Errorf("required: exit %d, want 1 with the reason in stderr:\n%s", code, errOut)
	}
}

func TestGPUBadSimFileExits78(t *testing.T) {
	bad := filepath.Join("..", "..", "testdata", "gpu", "bad.json")
	t.Setenv("DS01_PIPE_NVML_SIM", bad)
	file := gpuCleanupPipeline(t, t.TempDir())
	code, out, errOut := cli(t, "plan", "--format", "json", file)
	if code != ExitConfigError || !strings.Contains(errOut, bad+":5:") {
		t.Errorf("exit %d, want 78 naming %s:5:\n%s", code, bad, errOut)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
}

// gpuHostProcess starts a process in no container and kills it at cleanup.
func gpuHostProcess(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// The shipped audit pipeline prints who holds which GPU, what runs on it
// and what leaked, and touches nothing.
func TestGPUAuditTable(t *testing.T) {
	eng := dockertest.New(t)
	probe := eng.Create(t, dockertest.Spec{Name: "probe", Args: []string{"forever"}, Start: true})
	held := eng.Create(t, dockertest.Spec{Name: "held", Labels: map[string]string{"ds01.user": "carol"}, GPUs: []string{gpuSimMIG0}})
	probePID := eng.PID(t, probe.ID)
	orphan := gpuHostProcess(t)
	gpuUseSim(t, gpuSimHost([]int{probePID}, []int{orphan}))

	code, out, errOut := cli(t, "plan", "--format", "table", "--var", "prefix="+eng.Prefix(), filepath.Join("..", "..", "pipelines", "audit-gpu.hcl"))
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	lineOf := func(uuid string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, uuid) {
				return l
			}
		}
		t.Errorf("no table row for %s:\n%s", uuid, out)
		return ""
	}
	for uuid, parts := range map[string][]string{
		// Holders are shown as owner/name (cut to the column's width).
		gpuSim0:    {"unrecorded", fmt.Sprintf("%d(", probePID)},
		gpuSim1:    {"orphaned", fmt.Sprintf("%d(no container)", orphan)},
		gpuSimM:    {"free"},
		gpuSimMIG0: {"mig 0", "in_use", "carol/" + held.Name[:8]},
		gpuSimMIG1: {"mig 1", "free"},
	} {
		l := lineOf(uuid)
		for _, p := range parts {
			if !strings.Contains(l, p) {
				t.Errorf("row %q lacks %q", l, p)
			}
		}
	}
	if !strings.Contains(out, "NVML: sim") {
		t.Errorf("the summary line does not name the GPU view:\n%s", out)
	}
	// An audit never kills, and a plan never does.
	if err := exec.Command("kill", "-0", fmt.Sprint(orphan)).Run(); err != nil {
		t.Error("the orphan is gone")
	}
}
