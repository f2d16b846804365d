//go:build linux

package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

// Two lifecycle pipelines with different name prefixes share one
// state_dir: each run keeps the other's entries (a warning given by one is
// not given again after the other ran, and its stop is not deferred), and
// an entry is pruned once the engine says its container is gone. Before,
// each run kept only its own records' entries, so every other container
// started fresh at each run of the other scope.
func TestLifecycleScopesShareState(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	a, s := f.start(t, "a-long", "sam", "GPU-lc-0", "forever")
	b, _ := f.start(t, "b-long", "sam", "GPU-lc-1", "forever")
	f.setSim(t, map[int]simGPU{0: {util: pct(80)}, 1: {util: pct(80)}}) // busy GPUs: runtime notices only
	h := func(n float64) time.Time { return s.Add(time.Duration(n * float64(time.Hour))) }
	run := func(at time.Time, scope string) *lifecycleReport {
		t.Helper()
		code, rep, errOut := f.exec(t, "run", at, "--var", "prefix="+eng.Prefix()+scope)
		if code != ExitOK || rep == nil {
			t.Fatalf("run %s at %s: exit %d\nstderr:\n%s", scope, at.Format(time.RFC3339), code, errOut)
		}
		if len(rep.Containers) != 1 {
			t.Fatalf("run %s: %d containers in the report, want its own one", scope, len(rep.Containers))
		}
		return rep
	}
	notices := func(rep *lifecycleReport, c dockertest.Container) string {
		return strings.Join(rep.line(t, c).Notices, ",")
	}

	// sam: 24 h max runtime, warned from 18 h.
	if got := notices(run(h(18), "a-"), a); got != "runtime_warning" {
		t.Fatalf("a at 18h: notices %q, want runtime_warning", got)
	}
	if got := notices(run(h(18.25), "b-"), b); got != "runtime_warning" {
		t.Fatalf("b at 18.25h: notices %q, want runtime_warning", got)
	}
	if got := notices(run(h(18.5), "a-"), a); got != "" {
		t.Errorf("a at 18.5h, after b's run: notices %q, want none (warned at 18h)", got)
	}
	rep := run(h(18.75), "b-")
	if got := notices(rep, b); got != "" {
		t.Errorf("b at 18.75h, after a's run: notices %q, want none (warned at 18.25h)", got)
	}
	if l := rep.line(t, b); l.Reason != "runtime_warning" || !strings.Contains(l.Detail, h(18.25).UTC().Format(time.RFC3339)) {
		t.Errorf("b at 18.75h: %s %q, want runtime_warning warned at 18.25h", l.Reason, l.Detail)
	}

	ids := func() map[string]bool {
		t.Helper()
		code, out, errOut := cli(t, "state", "--state-dir", f.stateDir, "--format", "json")
		var doc stateDocument
		if code != ExitOK || json.Unmarshal([]byte(out), &doc) != nil {
			t.Fatalf("state: exit %d\n%s%s", code, out, errOut)
		}
		got := map[string]bool{}
		for _, e := range doc.Containers {
			got[e.ContainerID] = true
		}
		return got
	}
	if got := ids(); len(got) != 2 || !got[a.ID] || !got[b.ID] {
		t.Errorf("state after both scopes ran: %v, want a's and b's entries", got)
	}

	// b is removed outside the pipeline: a's next run prunes b's entry on
	// the engine's 404, and keeps its own.
	if _, err := eng.Client().ContainerRemove(t.Context(), b.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	run(h(19), "a-")
	if got := ids(); len(got) != 1 || !got[a.ID] {
		t.Errorf("state after b was removed: %v, want a's entry alone", got)
	}
}
