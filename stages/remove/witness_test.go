package remove

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/internal/faultproxy"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// witnessInput is what a run sends its witness: an asked line per
// container, settled lines, and the empty line of a run that ended in
// order.
func witnessInput(t *testing.T, asked []pendingEntry, settled []string, ended bool) *strings.Reader {
	t.Helper()
	var b strings.Builder
	for _, e := range asked {
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	for _, id := range settled {
		line, _ := json.Marshal(pendingEntry{Op: opSettled, ID: id})
		b.Write(append(line, '\n'))
	}
	if ended {
		b.WriteString("\n")
	}
	return strings.NewReader(b.String())
}

func askedEntry(id, name string) pendingEntry {
	return pendingEntry{Op: opAsked, ID: id, User: "alice", Source: "ds01-pipe/it",
		Details: [][2]string{{detailContainer, name}, {detailReason, "created_never_started"}}}
}

// witnessEnv is a witness of a run with an events file and a journal, on
// the real engine.
func witnessEnv(t *testing.T, eng *dockertest.Engine) (*pipeline.WitnessEnv, string, string) {
	t.Helper()
	t.Setenv("DOCKER_HOST", eng.Host())
	dir := t.TempDir()
	eventsFile := filepath.Join(dir, "events.jsonl")
	w, err := events.OpenFile(eventsFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	journalFile := eventsFile + PendingSuffix
	j, err := os.OpenFile(journalFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	log := logrus.New()
	log.SetOutput(testWriter{t})
	wenv := &pipeline.WitnessEnv{Pipeline: "it", Parent: 1, Events: w, Files: []*os.File{j},
		CallTimeout: 5 * time.Second, Log: log}
	t.Cleanup(wenv.Close)
	return wenv, eventsFile, journalFile
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestWitnessRecordsRemovalsOfADeadRun pins the witness body: when the
// run's pipe ends without its end line (the run died), each removal it
// asked for and never settled is recorded once the engine no longer has
// the container, and settled in the journal so that the next run does not
// record it again; a container the engine still has gets no line and
// stays open in the journal; a removal the run settled itself is left
// alone.
func TestWitnessRecordsRemovalsOfADeadRun(t *testing.T) {
	eng := dockertest.New(t)
	gone := eng.Create(t, dockertest.Spec{Name: "gone"})
	still := eng.Create(t, dockertest.Spec{Name: "still"})
	done := eng.Create(t, dockertest.Spec{Name: "done"})
	for _, id := range []string{gone.ID, done.ID} {
		if _, err := eng.Client().ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, eventsFile, journalFile := witnessEnv(t, eng)
	asked := []pendingEntry{askedEntry(gone.ID, gone.Name), askedEntry(still.ID, still.Name), askedEntry(done.ID, done.Name)}
	// What the run wrote to its journal, as it told its witness.
	journal := &pendingJournal{f: w.Files[0]}
	for _, e := range asked {
		journal.append(e)
	}
	journal.settled(done.ID)

	// The witness looks for "still" until the window closes; the test
	// ends it early, as systemd would at the unit's stop.
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := witness(wctx, w, witnessInput(t, asked, []string{done.ID}, false)); err != nil {
		t.Fatal(err)
	}
	if got, want := removeLines(t, eventsFile), []string{"alice " + gone.Name + " created_never_started"}; !slices.Equal(got, want) {
		t.Errorf("container.remove lines %q, want %q", got, want)
	}
	open, err := readPending(journalFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].ID != still.ID {
		t.Errorf("journal entries left open %+v, want only %s's", open, still.Name)
	}
}

// TestWitnessOfARunThatEndedDoesNothing: a run that ended in order
// recorded what it learnt and left the rest in its journal; its witness
// writes nothing, even for a container that is gone.
func TestWitnessOfARunThatEndedDoesNothing(t *testing.T) {
	eng := dockertest.New(t)
	gone := eng.Create(t, dockertest.Spec{Name: "gone"})
	if _, err := eng.Client().ContainerRemove(context.Background(), gone.ID, client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	w, eventsFile, _ := witnessEnv(t, eng)
	if err := witness(context.Background(), w, witnessInput(t, []pendingEntry{askedEntry(gone.ID, gone.Name)}, nil, true)); err != nil {
		t.Fatal(err)
	}
	if got := removeLines(t, eventsFile); len(got) != 0 {
		t.Errorf("the witness of a run that ended wrote %q", got)
	}
}

// overlongEntry is a journal line longer than the readers' 1 MiB bound:
// what a container whose name its owner made a megabyte long would give
// (the engine accepts such names) without the cap on detail values.
func overlongEntry(t *testing.T) []byte {
	t.Helper()
	line, err := json.Marshal(askedEntry("0123456789ab", "x"+strings.Repeat("a", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// One over-long line from the run is skipped: the run is not taken for
// dead, and its end line still counts.
func TestWitnessOverlongLineIsNotADeath(t *testing.T) {
	eng := dockertest.New(t)
	gone := eng.Create(t, dockertest.Spec{Name: "gone"})
	if _, err := eng.Client().ContainerRemove(context.Background(), gone.ID, client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	w, eventsFile, _ := witnessEnv(t, eng)
	var b strings.Builder
	a, _ := json.Marshal(askedEntry(gone.ID, gone.Name))
	b.Write(append(a, '\n'))
	b.Write(append(overlongEntry(t), '\n'))
	s, _ := json.Marshal(pendingEntry{Op: opSettled, ID: gone.ID})
	b.Write(append(s, '\n'))
	b.WriteString("\n") // ended in order
	if err := witness(context.Background(), w, strings.NewReader(b.String())); err != nil {
		t.Fatal(err)
	}
	if got := removeLines(t, eventsFile); len(got) != 0 {
		t.Errorf("the witness of a run that ended in order wrote %q", got)
	}
}

// One over-long line does not make the journal unreadable, and the run
// never writes one: a detail value is capped.
func TestJournalOverlongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl"+PendingSuffix)
	var b []byte
	for _, line := range [][]byte{mustJSON(t, askedEntry("aaaa", "a")), overlongEntry(t), mustJSON(t, askedEntry("cccc", "c"))} {
		b = append(b, append(line, '\n')...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	open, err := readPending(path)
	if err != nil {
		t.Fatalf("a journal with one over-long line: %v", err)
	}
	if len(open) != 2 || open[0].ID != "aaaa" || open[1].ID != "cccc" {
		t.Errorf("open entries %+v, want aaaa and cccc", open)
	}

	f, err := os.OpenFile(filepath.Join(t.TempDir(), "j"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	j := &pendingJournal{f: f}
	j.asked("bbbb", events.Event{Type: events.ContainerRemove, Details: []events.Field{events.F(detailContainer, strings.Repeat("n", 2<<20))}}, nil)
	j.close()
	written, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(written) > maxPendingLine {
		t.Errorf("the journal line of a 2 MiB name is %d bytes, over the readers' bound", len(written))
	}
}

// With every answer known, or without a witness, a run compacts its
// journal at the end. (One that leaves removals unanswered to its witness
// does not, since the witness still appends to it: that side is pinned by
// cmd/ds01-pipe's TestWitnessRecordsRemovalsOfAKilledRun/terminated.)
func TestJournalCloseCompacts(t *testing.T) {
	dir := t.TempDir()
	open := func() *os.File {
		f, err := os.CreateTemp(dir, "j")
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	j := &pendingJournal{f: open()}
	j.asked("a", events.Event{}, nil)
	if !j.close() {
		t.Error("no witness: the journal is compacted")
	}
	j = &pendingJournal{f: open()}
	j.asked("a", events.Event{}, nil)
	j.settled("a")
	if !j.close() {
		t.Error("every answer known: the journal is compacted")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An engine that answers the witness's inspects with errors (a 500, a
// timeout: an engine just back from a stall) is asked again later; the
// witness neither panics nor records anything.
func TestWitnessEngineErrorsLeaveEntriesOpen(t *testing.T) {
	eng := dockertest.New(t)
	a := eng.Create(t, dockertest.Spec{Name: "a"})
	b := eng.Create(t, dockertest.Spec{Name: "b"})
	w, eventsFile, _ := witnessEnv(t, eng)
	proxy := faultproxy.Start(t, eng.Host())
	proxy.Set(faultproxy.Inspect, faultproxy.Fail500)
	t.Setenv("DOCKER_HOST", proxy.Host())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := witness(ctx, w, witnessInput(t, []pendingEntry{askedEntry(a.ID, a.Name), askedEntry(b.ID, b.Name)}, nil, false)); err != nil {
		t.Fatal(err)
	}
	if got := removeLines(t, eventsFile); len(got) != 0 {
		t.Errorf("recorded %q on engine errors", got)
	}
	if c := proxy.Counts(faultproxy.Inspect); c.Seen < 2 {
		t.Errorf("%d inspects: the witness did not ask again", c.Seen)
	}
}

// A removal the witness cannot write (the events file gone bad) is left to
// the next run at once, with one error, not asked about again each round.
func TestWitnessUnwritableLineLeftWithOneError(t *testing.T) {
	eng := dockertest.New(t)
	gone := eng.Create(t, dockertest.Spec{Name: "gone"})
	if _, err := eng.Client().ContainerRemove(context.Background(), gone.ID, client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	w, _, journalFile := witnessEnv(t, eng)
	log, hook := logtest.NewNullLogger()
	w.Log = log
	w.Events.Close() // every write fails now
	journal := &pendingJournal{f: w.Files[0]}
	journal.append(askedEntry(gone.ID, gone.Name))
	start := time.Now()
	if err := witness(context.Background(), w, witnessInput(t, []pendingEntry{askedEntry(gone.ID, gone.Name)}, nil, false)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > witnessMinWindow {
		t.Errorf("the witness kept at it for %v", d)
	}
	errs := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.ErrorLevel {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("%d error lines, want 1", errs)
	}
	if open, err := readPending(journalFile); err != nil || len(open) != 1 {
		t.Errorf("journal entries open %+v (%v), want the unwritten one", open, err)
	}
}

// eventTypes lists the events of an events file, in order, with the
// container and GPU each names ("gpu.release c GPU-x").
func eventTypes(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, ev := range readEvents(t, path) {
		out = append(out, strings.TrimSpace(ev.Type+" "+ev.Details["container"]+" "+ev.Details["gpu_uuid"]))
	}
	return out
}

// A dead run's removal with GPUs cleared for release gets its
// container.remove line and then a gpu.release line per GPU; one whose
// container.remove the run wrote itself ("gone" in the journal) gets only
// its gpu.release lines.
func TestWitnessRecordsGPUReleases(t *testing.T) {
	eng := dockertest.New(t)
	asked := eng.Create(t, dockertest.Spec{Name: "asked"})
	done := eng.Create(t, dockertest.Spec{Name: "done"})
	for _, id := range []string{asked.ID, done.ID} {
		if _, err := eng.Client().ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, eventsFile, journalFile := witnessEnv(t, eng)
	a, d := askedEntry(asked.ID, asked.Name), askedEntry(done.ID, done.Name)
	a.GPUs, d.GPUs = []string{"GPU-a0", "GPU-a1"}, []string{"GPU-d0"}
	var b strings.Builder
	for _, e := range []pendingEntry{a, d, {Op: opGone, ID: done.ID}} {
		b.Write(append(mustJSON(t, e), '\n'))
	}
	journal := &pendingJournal{f: w.Files[0]}
	journal.append(a)
	journal.append(d)
	journal.gone(done.ID)
	if err := witness(context.Background(), w, strings.NewReader(b.String())); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"container.remove " + asked.Name, "gpu.release " + asked.Name + " GPU-a0", "gpu.release " + asked.Name + " GPU-a1",
		"gpu.release " + done.Name + " GPU-d0",
	}
	got := eventTypes(t, eventsFile)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if open, err := readPending(journalFile); err != nil || len(open) != 0 {
		t.Errorf("journal entries left open %+v (%v)", open, err)
	}
}
