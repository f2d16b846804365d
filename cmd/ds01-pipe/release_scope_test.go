package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

// A GPU claimed by a removed container and by a live container outside the
// pipeline's discover scope is not released: discover lists only its
// scope, and a DeviceRequest is only in an inspect answer, so the release
// stage reads the live containers outside the batch itself when a GPU
// would be released. The JSON report, the pipeline.summary event and the
// metrics agree; the removed container's own gpu.release is still written.
// The same run without an outside claimant releases its GPU, and a
// whole-host run (every live container in the batch) pays one list call
// and no inspect for it.
func TestReleaseScopeOutsideClaimant(t *testing.T) {
	eng := dockertest.PrivateDaemon(t)
	t.Setenv("DOCKER_HOST", eng.Host())
	// a-done and b-other claim GPU 1; c-done claims GPU 0, d-done the
	// second MIG slice; only b-other is live.
	aDone := eng.Create(t, dockertest.Spec{Name: "a-done", Labels: map[string]string{"ds01.user": "alice"}, GPUs: []string{gpuSim1}, Start: true, Wait: true})
	bOther := eng.Create(t, dockertest.Spec{Name: "b-other", Labels: map[string]string{"ds01.user": "bob"}, GPUs: []string{gpuSim1}, Args: []string{"forever"}, Start: true})
	cDone := eng.Create(t, dockertest.Spec{Name: "c-done", Labels: map[string]string{"ds01.user": "carol"}, GPUs: []string{gpuSim0}, Start: true, Wait: true})
	dDone := eng.Create(t, dockertest.Spec{Name: "d-done", Labels: map[string]string{"ds01.user": "dan"}, GPUs: []string{gpuSimMIG1}, Start: true, Wait: true})
	gpuUseSim(t, gpuSimHost()) // nothing runs on any GPU

	var now time.Time
	for _, c := range []dockertest.Container{aDone, cDone, dDone} {
		if f := gpuFinishedAt(t, eng, c.ID); f.After(now) {
			now = f
		}
	}
	now = now.Add(2 * time.Hour) // past the half-hour holds

	type outcome struct {
		doc      *gpuDoc
		stderr   string
		calls    string   // list=n inspect=n remove=n
		summary  gpuEvent // the pipeline.summary event (run only)
		events   []gpuEvent
		released string // ds01_pipe_gpus{status="released"}
	}
	apiCalls := regexp.MustCompile(`list=\d+ inspect=\d+ remove=\d+`)
	exec := func(cmd, scope string) outcome {
		t.Helper()
		dir := t.TempDir()
		file := gpuCleanupPipeline(t, dir)
		args := []string{cmd, "--format", "json", "--log-level", "debug", "--now", now.Format(time.RFC3339Nano)}
		if cmd == "run" {
			args = append(args, "--allow-clock-override") // a run acts on the --now clock only when told to
		}
		code, out, errOut := cli(t, append(args, "--var", "prefix="+eng.Prefix()+scope, file)...)
		if code != ExitOK {
			t.Fatalf("%s %q: exit %d\n%s", cmd, scope, code, errOut)
		}
		o := outcome{doc: gpuParseDoc(t, out), stderr: errOut, calls: apiCalls.FindString(errOut)}
		if cmd == "run" {
			o.events = gpuReadEvents(t, filepath.Join(dir, "events.jsonl"))
			for _, ev := range o.events {
				if ev.Type == "pipeline.summary" {
					o.summary = ev
				}
			}
			metrics, err := os.ReadFile(filepath.Join(dir, "ds01.prom"))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(metrics), "\n") {
				if strings.HasPrefix(line, "ds01_pipe_gpus{") && strings.Contains(line, `status="released"`) {
					o.released = line[strings.LastIndex(line, " ")+1:]
				}
			}
		}
		return o
	}
	gpusReleased := func(ev gpuEvent) int {
		t.Helper()
		var d struct {
			N *int `json:"gpus_released"`
		}
		if err := json.Unmarshal(ev.Details, &d); err != nil || d.N == nil {
			t.Fatalf("pipeline.summary details %s: no gpus_released (%v)", ev.Details, err)
		}
		return *d.N
	}

	// (1) Scope "a-": a-done is removed; b-other, outside the scope and
	// live, still claims GPU 1. The plan says the same as the run.
	for _, cmd := range []string{"plan", "run"} {
		o := exec(cmd, "a-")
		lines := o.doc.gpuLines()
		want := fmt.Sprintf("1 - in_use claimed=[%s %s] procs=[]", aDone.ID, bOther.ID)
		if lines[gpuSim1] != want {
			t.Errorf("%s a-: %s is %q, want %q", cmd, gpuSim1, lines[gpuSim1], want)
		}
		if n := o.doc.Summary.GPUStatuses["released"]; n != 0 {
			t.Errorf("%s a-: gpu_statuses released=%d, want 0", cmd, n)
		}
		if !strings.Contains(o.stderr, "outside this pipeline's scope claims it") || !strings.Contains(o.stderr, bOther.Name) {
			t.Errorf("%s a-: no log line naming %s:\n%s", cmd, bOther.Name, o.stderr)
		}
		// One list of the live containers and one inspect (b-other) more
		// than discovery's; a run re-inspects a-done before removing it.
		wantCalls := map[string]string{"plan": "list=2 inspect=2 remove=0", "run": "list=2 inspect=3 remove=1"}[cmd]
		if o.calls != wantCalls {
			t.Errorf("%s a-: api calls %q, want %q", cmd, o.calls, wantCalls)
		}
		if cmd != "run" {
			continue
		}
		if len(o.doc.Containers) != 1 || o.doc.Containers[0].Outcome != "removed" {
			t.Errorf("run a-: containers %+v, want a-done removed", o.doc.Containers)
		}
		if n := gpusReleased(o.summary); n != 0 {
			t.Errorf("run a-: pipeline.summary gpus_released=%d, want 0", n)
		}
		if o.released != "0" {
			t.Errorf("run a-: ds01_pipe_gpus released = %q, want 0", o.released)
		}
		// a-done's own allocation went with it.
		if !slices.ContainsFunc(o.events, func(ev gpuEvent) bool {
			return ev.Type == "gpu.release" && strings.Contains(string(ev.Details), fmt.Sprintf(`"container":%q,"gpu_uuid":%q`, aDone.Name, gpuSim1))
		}) {
			t.Errorf("run a-: no gpu.release for %s in %v", aDone.Name, o.events)
		}
	}

	// (2) Scope "c-": nobody else claims GPU 0, which is released; b-other
	// is read all the same (it could have claimed it).
	o := exec("run", "c-")
	if got, want := o.doc.gpuLines()[gpuSim0], fmt.Sprintf("0 - released claimed=[%s] procs=[]", cDone.ID); got != want {
		t.Errorf("run c-: %s is %q, want %q", gpuSim0, got, want)
	}
	if n := gpusReleased(o.summary); n != 1 || o.released != "1" || o.doc.Summary.GPUStatuses["released"] != 1 {
		t.Errorf("run c-: gpus_released %d, metric %q, gpu_statuses %v: want 1 everywhere", n, o.released, o.doc.Summary.GPUStatuses)
	}
	if o.calls != "list=2 inspect=3 remove=1" {
		t.Errorf("run c-: api calls %q", o.calls)
	}

	// (3) The whole host (this engine's containers): b-other is in the
	// batch, so releasing d-done's slice costs one list call and no
	// inspect beyond discovery's two and the re-inspect before removal.
	o = exec("run", "")
	lines := o.doc.gpuLines()
	if got, want := lines[gpuSimMIG1], fmt.Sprintf("1 %s released claimed=[%s] procs=[]", gpuSimM, dDone.ID); got != want {
		t.Errorf("run whole host: %s is %q, want %q", gpuSimMIG1, got, want)
	}
	if got, want := lines[gpuSim1], fmt.Sprintf("1 - in_use claimed=[%s] procs=[]", bOther.ID); got != want {
		t.Errorf("run whole host: %s is %q, want %q", gpuSim1, got, want)
	}
	if o.calls != "list=2 inspect=3 remove=1" {
		t.Errorf("run whole host: api calls %q, want list=2 inspect=3 remove=1", o.calls)
	}
}
