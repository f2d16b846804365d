package remove

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
)

// pendingEnv is a run with the engine's events file, as Execute opens it.
func pendingEnv(t *testing.T, f *fakeDocker) (*pipeline.Env, string) {
	t.Helper()
	env := testEnv(f, pipeline.ModeRun)
	eventsFile := filepath.Join(t.TempDir(), "events.jsonl")
	env.Events = pipeline.OpenEventLog(eventsFile)
	if err := env.Events.OpenErr(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Events.Close() })
	// The journal is kept only under the pipeline's lock.
	lock, err := os.Create(filepath.Join(t.TempDir(), "p.lock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	env.SetLock(lock)
	return env, eventsFile
}

// testEvent is one line of an events file, as the tests read it.
type testEvent struct {
	Type    string            `json:"event_type"`
	User    string            `json:"user"`
	Details map[string]string `json:"details"`
}

// readEvents returns the lines of an events file that decode as string
// details (pipeline.summary lines have numbers and are left out).
func readEvents(t *testing.T, path string) []testEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []testEvent
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev testEvent
		if l != "" && json.Unmarshal([]byte(l), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// removeLines are the container.remove lines: "user container reason".
func removeLines(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, ev := range readEvents(t, path) {
		if ev.Type == "container.remove" {
			out = append(out, ev.User+" "+ev.Details["container"]+" "+ev.Details["reason"])
		}
	}
	return out
}

// TestPendingRemovalRecordedByTheNextRun pins the journal of pending
// removals: a removal the engine carried out after its run could no
// longer learn of it (the run died, or the engine never answered again)
// is recorded by the next run, once the engine says the container is gone;
// one still there is dropped, one the engine does not answer for is kept
// for later; and a run that settled everything leaves no journal.
func TestPendingRemovalRecordedByTheNextRun(t *testing.T) {
	gone := exited("g1", "proj-gone", nil)
	still := exited("s1", "proj-still", nil)
	mute := exited("m1", "proj-mute", nil)
	f := newFake(still, mute)
	f.InspectErr["m1"] = context.DeadlineExceeded
	env, eventsFile := pendingEnv(t, f)

	// What a killed run left: three requests asked, none settled.
	var journal []string
	for _, c := range []string{gone.ID, still.ID, mute.ID} {
		rec := target(exited(c, "proj-"+map[string]string{"g1": "gone", "s1": "still", "m1": "mute"}[c], nil))
		e := pendingEntry{Op: "asked", ID: c, At: time.Now(), User: "alice", Source: env.Source()}
		for _, d := range Event(env, rec, time.Now()).Details {
			e.Details = append(e.Details, [2]string{d.Key, d.Value.(string)})
		}
		b, _ := json.Marshal(e)
		journal = append(journal, string(b))
	}
	pending := pendingPath(env)
	if err := os.WriteFile(pending, []byte(strings.Join(journal, "\n")+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}

	// The next run, with nothing of its own to remove.
	if err := New().Process(t.Context(), env, &pipeline.Batch{}); err != nil {
		t.Fatal(err)
	}
	if got := removeLines(t, eventsFile); strings.Join(got, ",") != "alice proj-gone hold_expired" {
		t.Errorf("container.remove lines %q, want the gone container's only", got)
	}
	open, err := readPending(pending)
	if err != nil || len(open) != 1 || open[0].ID != "m1" {
		t.Errorf("journal keeps %+v (%v), want only the container the engine did not answer for", open, err)
	}

	// The engine answers again: the container is still there, dropped.
	delete(f.InspectErr, "m1")
	if err := New().Process(t.Context(), env, &pipeline.Batch{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pending); !os.IsNotExist(err) {
		t.Errorf("journal left behind: %v", err)
	}
	if n := len(removeLines(t, eventsFile)); n != 1 {
		t.Errorf("%d container.remove lines, want still 1", n)
	}
}

// TestPendingUnknownFateCarriedOver pins the other way into the journal: a
// removal whose fate this run could not learn (the engine never answered
// again) stays pending, and the next run records it once the engine says
// the container is gone. A run that settles everything leaves no journal.
func TestPendingUnknownFateCarriedOver(t *testing.T) {
	c := exited("x1", "proj-x", nil)
	ok := exited("y1", "proj-y", nil)
	f := newFake(c, ok)
	f.LostAnswer["x1"] = context.DeadlineExceeded
	f.AfterRemove = func(id string) {
		if id == "x1" {
			f.FailInspect("x1", context.DeadlineExceeded) // the engine stalls
		}
	}
	env, eventsFile := pendingEnv(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	rec, recOK := target(c), target(ok)
	_ = (&Remove{Workers: 1, settleWait: time.Millisecond}).Process(ctx, env, &pipeline.Batch{Records: []*pipeline.Record{recOK, rec}})
	if rec.Outcome.Status != pipeline.OutcomeFailed || recOK.Outcome.Status != pipeline.OutcomeRemoved {
		t.Fatalf("outcomes %+v, %+v", rec.Outcome, recOK.Outcome)
	}
	// (y1's line went to the batch: outside Run, the batch has no sink.)
	pending := pendingPath(env)
	if open, err := readPending(pending); err != nil || len(open) != 1 || open[0].ID != "x1" {
		t.Fatalf("journal %+v (%v), want x1 only (y1 was settled)", open, err)
	}

	f.AfterRemove = nil
	f.FailInspect("x1", nil) // the engine is back, and x1 is gone
	if err := New().Process(t.Context(), env, &pipeline.Batch{}); err != nil {
		t.Fatal(err)
	}
	if got := removeLines(t, eventsFile); strings.Join(got, ",") != "alice proj-x hold_expired" {
		t.Errorf("after the next run: %q", got)
	}
	if _, err := os.Stat(pending); !os.IsNotExist(err) {
		t.Errorf("journal left behind after everything was settled: %v", err)
	}
}

// TestPendingJournalNotTrustedIgnored pins the journal's trust: in an
// events folder users can write, a journal this run's user did not write
// alone (writable by others, or a second name of another file) is not
// believed: its entries never become container.remove lines, nothing is
// appended to it, and it is dropped so the run keeps one of its own.
func TestPendingJournalNotTrustedIgnored(t *testing.T) {
	forged, _ := json.Marshal(pendingEntry{Op: "asked", ID: "nosuchcontainer", User: "alice",
		Details: [][2]string{{"container", "forged"}, {"reason", "hold_expired"}}})
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, pending string)
	}{
		{"writable by others", func(t *testing.T, pending string) {
			if err := os.WriteFile(pending, append(forged, '\n'), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(pending, 0o666); err != nil {
				t.Fatal(err)
			}
		}},
		{"hard link", func(t *testing.T, pending string) {
			other := filepath.Join(t.TempDir(), "precious")
			if err := os.WriteFile(other, append(forged, '\n'), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(other, pending); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if b, _ := os.ReadFile(other); string(b) != string(forged)+"\n" {
					t.Errorf("the linked file was written to: %q", b)
				}
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, eventsFile := pendingEnv(t, newFake())
			pending := pendingPath(env)
			tc.plant(t, pending)
			if _, err := readPending(pending); !errors.Is(err, errUntrusted) {
				t.Errorf("readPending: %v, want it refused", err)
			}
			if j := openPending(env); j != nil {
				j.close()
				t.Errorf("openPending appends to it")
			}
			if err := New().Process(t.Context(), env, &pipeline.Batch{}); err != nil {
				t.Fatal(err)
			}
			if got := removeLines(t, eventsFile); len(got) != 0 {
				t.Errorf("forged journal became container.remove lines %q", got)
			}
			if _, err := os.Lstat(pending); !os.IsNotExist(err) {
				t.Errorf("untrusted journal left in place: %v", err)
			}
		})
	}
}

// One journal per lock: pipelines that share the events file but not the
// lock (cleanup and lifecycle) run at the same time and must not record
// or replace each other's entries; a run without a lock keeps none.
func TestPendingJournalPerLock(t *testing.T) {
	a, _ := pendingEnv(t, newFake())
	b, _ := pendingEnv(t, newFake())
	b.Events = a.Events // the same events file, another lock
	if pa, pb := pendingPath(a), pendingPath(b); pa == "" || pa == pb || !strings.HasPrefix(pa, a.Events.Path()+PendingSuffix+".") {
		t.Errorf("journals %q and %q: want two, beside the events file", pa, pb)
	}
	a.Pipeline = "../odd name"
	if p := pendingPath(a); filepath.Dir(p) != filepath.Dir(a.Events.Path()) || strings.Contains(filepath.Base(p), " ") {
		t.Errorf("journal of an odd pipeline name: %q", p)
	}
	a.SetLock(nil)
	if p := pendingPath(a); p != "" {
		t.Errorf("a run without a lock keeps a journal: %q", p)
	}
}

// The next run writes what a dead run still owed: for a removal it never
// learnt of, the container.remove line and then the gpu.release lines;
// for one it recorded itself ("gone"), the gpu.release lines only, with
// no look at the engine.
func TestPendingGPUReleasesRecordedByTheNextRun(t *testing.T) {
	f := newFake() // both containers are gone
	env, eventsFile := pendingEnv(t, f)
	asked := pendingEntry{Op: opAsked, ID: "a1", User: "alice", Source: env.Source(), GPUs: []string{"GPU-a"},
		Details: [][2]string{{detailContainer, "proj-a"}, {detailReason, "hold_expired"}}}
	gone := pendingEntry{Op: opAsked, ID: "g1", User: "bob", Source: env.Source(), GPUs: []string{"GPU-g"},
		Details: [][2]string{{detailContainer, "proj-g"}, {detailReason, "idle_stopped"}}}
	var b []byte
	for _, e := range []pendingEntry{asked, gone, {Op: opGone, ID: "g1"}} {
		line, _ := json.Marshal(e)
		b = append(b, append(line, '\n')...)
	}
	if err := os.WriteFile(pendingPath(env), b, 0o640); err != nil {
		t.Fatal(err)
	}
	reconcile(context.Background(), env)
	var got []string
	for _, ev := range readEvents(t, eventsFile) {
		got = append(got, strings.Join([]string{ev.Type, ev.User, ev.Details["container"], ev.Details["gpu_uuid"], ev.Details["reason"]}, " "))
	}
	want := []string{
		"container.remove alice proj-a  hold_expired",
		"gpu.release alice proj-a GPU-a hold_expired",
		"gpu.release bob proj-g GPU-g idle_stopped",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := strings.Count(strings.Join(f.Calls(), " "), "inspect g1"); n != 0 {
		t.Errorf("the engine was asked about the container known gone (%d times)", n)
	}
	if _, err := os.Stat(pendingPath(env)); !os.IsNotExist(err) {
		t.Errorf("journal left behind: %v", err)
	}
}
