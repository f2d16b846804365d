package remove

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/ds01/ds01-pipe/internal/lines"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// PendingSuffix names the journal of removals asked for and not yet
// confirmed, kept beside the run's events file (events.jsonl +
// PendingSuffix + ".<pipeline>-<hash of its lock>", see pendingPath).
//
// A removal request can be carried out by the engine after the run that
// sent it is dead (killed while the engine stalled: the request waits in
// the engine's socket), and then nothing of that run can write its line.
// So the container.remove event is noted here before the request goes out,
// and marked settled once the run knows the outcome; the next run looks
// at every entry left unsettled and writes the line of each container the
// engine no longer has. An entry whose fate the run could not learn (the
// engine never answered again) is left for the next run too.
const PendingSuffix = ".ds01-pipe-pending"

// maxPendingBytes bounds what is read of the journal: a few lines per
// removal of one run. maxPendingLine bounds one line (a longer one is
// skipped) and maxDetailBytes one detail value in it: a container's name
// is its owner's choice, and the engine takes names of a megabyte. The
// container.remove line of such a name is cut by the events encoder
// anyway (docs/events.md).
const (
	maxPendingBytes = 16 << 20
	maxPendingLine  = 1 << 20
	maxDetailBytes  = 8 << 10
)

// pendingEntry is one line of the journal.
type pendingEntry struct {
	Op      string      `json:"op"` // opAsked, opGone or opSettled
	ID      string      `json:"id"`
	At      time.Time   `json:"at,omitzero"`
	User    string      `json:"user,omitempty"`
	Source  string      `json:"source,omitempty"`
	Details [][2]string `json:"details,omitempty"` // the container.remove event's, in order
	// GPUs are those cleared for release with the container: a
	// gpu.release line each is owed once it is gone.
	GPUs []string `json:"gpus,omitempty"`

	// gone is the state an opGone line gave the entry (never written as
	// such: see journalState).
	gone bool
}

// Journal operations: a removal is asked for; its container is gone, and
// its container.remove line (when it was this tool's removal) written,
// with its gpu.release lines still owed; everything owed is written.
const (
	opAsked   = "asked"
	opGone    = "gone"
	opSettled = "settled"
)

// journalState folds journal lines into the entries still open, in the
// order they were asked for: the one reading of the journal, for the next
// run (readPending) and for the witness.
type journalState struct {
	order []string
	open  map[string]*pendingEntry
}

func (s *journalState) apply(e pendingEntry) {
	if e.ID == "" {
		return
	}
	if s.open == nil {
		s.open = map[string]*pendingEntry{}
	}
	switch e.Op {
	case opAsked:
		if _, seen := s.open[e.ID]; !seen {
			s.order = append(s.order, e.ID)
		}
		e.gone = false // asked again by a later run
		s.open[e.ID] = &e
	case opGone:
		if o := s.open[e.ID]; o != nil {
			o.gone = true
		}
	case opSettled:
		delete(s.open, e.ID)
	}
}

// entries returns the open entries in order.
func (s *journalState) entries() []pendingEntry {
	var out []pendingEntry
	seen := map[string]bool{}
	for _, id := range s.order {
		if e := s.open[id]; e != nil && !seen[id] {
			seen[id] = true
			out = append(out, *e)
		}
	}
	return out
}

// pendingJournal appends entries to the journal file and tells them to the
// run's witness (witness.go); safe for concurrent use. A nil journal does
// nothing: runs without the engine's events file keep none.
type pendingJournal struct {
	mu   sync.Mutex
	f    *os.File // nil when the file could not be opened
	wit  *pipeline.Witness
	open map[string]string // the op of each entry not settled
}

// pendingPath is the journal of the run's events file and lock, or "":
// events.jsonl + PendingSuffix + "." + the pipeline's name and a hash of
// its lock file. One journal per lock: runs that share a lock take turns
// with it, while pipelines that only share the events file (cleanup and
// lifecycle) run at the same time, and one would record, and replace, the
// other's entries under it. A run without a lock keeps none: another run
// could be removing the same containers meanwhile.
func pendingPath(env *pipeline.Env) string {
	lock := env.LockPath()
	if env.Events == nil || lock == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(lock))
	name := env.Pipeline
	if !journalName.MatchString(name) {
		name = "pipeline"
	}
	return env.Events.Path() + PendingSuffix + "." + name + "-" + hex.EncodeToString(sum[:4])
}

// journalName is a pipeline name that can stand in a file name as it is.
var journalName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// openPending opens the journal for appending. The journal only completes
// the record; a journal that cannot be opened is a warning, never a
// reason not to act.
func openPending(env *pipeline.Env) *pendingJournal {
	path := pendingPath(env)
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o640)
	if err == nil {
		if err = journalTrusted(path, f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		if env.Log != nil {
			env.Log.WithError(err).Warn("journal of pending removals unavailable: a removal the engine carries out after this run and its witness die would go unrecorded")
		}
		f = nil
	}
	j := &pendingJournal{f: f}
	if j.wit, err = env.StartWitness(Kind, fileOrNone(f)...); err != nil && env.Log != nil {
		env.Log.WithError(err).Warn("no witness for this run's removals: a removal the engine carries out after this run dies is recorded only by the next run")
	}
	if j.f == nil && j.wit == nil {
		return nil
	}
	return j
}

func fileOrNone(f *os.File) []*os.File {
	if f == nil {
		return nil
	}
	return []*os.File{f}
}

func (j *pendingJournal) append(e pendingEntry) {
	if j == nil {
		return
	}
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.open == nil {
		j.open = map[string]string{}
	}
	if e.Op == opSettled {
		delete(j.open, e.ID)
	} else {
		j.open[e.ID] = e.Op
	}
	if j.f != nil {
		_, _ = j.f.Write(append(line, '\n')) // best effort, see openPending
	}
	j.wit.Send(line)
}

// asked notes a removal about to be requested, with its event and the
// GPUs cleared for release with it.
func (j *pendingJournal) asked(id string, ev events.Event, gpus []string) {
	e := pendingEntry{Op: opAsked, ID: id, At: ev.Time, User: ev.User, Source: ev.Source, GPUs: gpus}
	for _, f := range ev.Details {
		v := fmt.Sprint(f.Value)
		if len(v) > maxDetailBytes {
			v = v[:maxDetailBytes]
		}
		e.Details = append(e.Details, [2]string{f.Key, v})
	}
	j.append(e)
}

// settled notes that the run knows what became of the removal, and has
// written every line it owed.
func (j *pendingJournal) settled(id string) { j.append(pendingEntry{Op: opSettled, ID: id}) }

// gone notes that the container is gone and its container.remove line
// written; its gpu.release lines are still owed.
func (j *pendingJournal) gone(id string) { j.append(pendingEntry{Op: opGone, ID: id}) }

// settleGone settles every entry noted gone: the run has written their
// gpu.release lines (SettleReleases).
func (j *pendingJournal) settleGone() {
	if j == nil {
		return
	}
	j.mu.Lock()
	var ids []string
	for id, op := range j.open {
		if op == opGone {
			ids = append(ids, id)
		}
	}
	j.mu.Unlock()
	sort.Strings(ids)
	for _, id := range ids {
		j.settled(id)
	}
}

// close ends the journal. With every removal's fate known, the witness is
// told the run ended in order, and exits. With some unanswered, the run
// leaves them to its witness, which records those the engine carries out
// after the run; it appends to the journal meanwhile, so the file is not
// compacted (replaced) under it. It reports whether the journal file may
// be compacted.
func (j *pendingJournal) close() (compact bool) {
	if j == nil {
		return false
	}
	j.mu.Lock()
	open := len(j.open)
	j.mu.Unlock()
	if open > 0 && j.wit != nil {
		j.wit.Leave()
	} else {
		j.wit.End()
	}
	if j.f != nil {
		_ = j.f.Close()
	}
	return j.f != nil && (open == 0 || j.wit == nil)
}

// recordGone writes what is owed for an entry whose container the engine
// no longer has: its container.remove line (unless written already), then
// a gpu.release line per GPU cleared with it, noting each step in the
// journal j (when there is one) so that nothing is written twice. On an
// error, e.gone says whether the container.remove line is written.
func recordGone(write func(events.Event) error, j *pendingJournal, e *pendingEntry, at time.Time) error {
	if !e.gone {
		if err := write(e.removed(at)); err != nil {
			return err
		}
		e.gone = true
		if len(e.GPUs) > 0 {
			j.gone(e.ID)
		}
	}
	for _, uuid := range e.GPUs {
		if err := write(pipeline.GPUReleaseEvent(at, e.Source, e.User, e.name(), uuid, e.detail(detailReason))); err != nil {
			return err
		}
	}
	j.settled(e.ID)
	return nil
}

// removed is the container.remove event of an entry whose container the
// engine no longer has, recorded at at.
func (e pendingEntry) removed(at time.Time) events.Event {
	ev := events.Event{Time: at, Type: events.ContainerRemove, User: e.User, Source: e.Source}
	for _, d := range e.Details {
		ev.Details = append(ev.Details, events.F(d[0], d[1]))
	}
	return ev
}

// name is the container's name, as its event gives it.
func (e pendingEntry) name() string {
	if n := e.detail(detailContainer); n != "" {
		return n
	}
	return e.ID
}

// detail is the value of one of the event's details, or "".
func (e pendingEntry) detail(key string) string {
	for _, d := range e.Details {
		if d[0] == key {
			return d[1]
		}
	}
	return ""
}

// errUntrusted marks a journal this run did not write and may not believe.
var errUntrusted = errors.New("journal of pending removals not trusted")

// journalTrusted checks the opened journal is one only this process's
// user can have written: a regular file, its own, writable by no one else,
// with no second name. The journal sits in the events file's folder, which
// a careless admin may leave writable by users (DS01's logger suggests
// loosening it); a user's file there would otherwise have root append to
// it and, worse, have the next run write its forged entries into the
// events file as container.remove lines for any user and container. A
// second name (a hard link) could make the journal another of root's
// files, which the appends would corrupt.
func journalTrusted(path string, f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (%v)", errUntrusted, path, st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if int(sys.Uid) != os.Geteuid() {
			return fmt.Errorf("%w: %s is owned by uid %d", errUntrusted, path, sys.Uid)
		}
		if sys.Nlink != 1 {
			return fmt.Errorf("%w: %s has %d links", errUntrusted, path, sys.Nlink)
		}
	}
	return nil
}

// readPending returns the entries asked and never settled, in order.
func readPending(path string) ([]pendingEntry, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := journalTrusted(path, f); err != nil {
		return nil, err
	}
	var state journalState
	_, err = lines.Each(io.LimitReader(f, maxPendingBytes), maxPendingLine, func(line []byte) bool {
		var e pendingEntry
		if json.Unmarshal(line, &e) == nil { // else a line cut by a crash
			state.apply(e)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return state.entries(), nil
}

// writePending replaces the journal with the entries still open, or
// removes it when there are none.
func writePending(path string, open []pendingEntry) error {
	if len(open) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing to remove
	w := bufio.NewWriter(tmp)
	for _, e := range open {
		e.Op = opAsked
		lines := []pendingEntry{e}
		if e.gone {
			lines = append(lines, pendingEntry{Op: opGone, ID: e.ID})
		}
		for _, l := range lines {
			line, err := json.Marshal(l)
			if err != nil {
				continue
			}
			_, _ = w.Write(append(line, '\n'))
		}
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// reconcile settles what earlier runs left in the journal: a container the
// engine no longer has was removed by the request noted there, and gets
// its container.remove line now; one still there was not removed; one the
// engine does not answer for stays in the journal. It runs under the
// pipeline's lock, before this run removes anything.
func reconcile(ctx context.Context, env *pipeline.Env) {
	path := pendingPath(env)
	if path == "" {
		return
	}
	log := env.Log
	open, err := readPending(path)
	if errors.Is(err, errUntrusted) {
		// Not this tool's: nothing in it is believed, and it goes, so
		// that this run can keep a journal of its own there.
		if log != nil {
			log.WithError(err).Warn("journal of pending removals ignored and removed")
		}
		if rerr := os.Remove(path); rerr != nil && log != nil {
			log.WithError(rerr).Warn("journal of pending removals not removed")
		}
		return
	}
	if err != nil {
		if log != nil {
			log.WithError(err).Warn("journal of pending removals unreadable; earlier runs' unconfirmed removals stay unrecorded")
		}
		return
	}
	var keep []pendingEntry
	for _, e := range open {
		if ctx.Err() != nil {
			keep = append(keep, e)
			continue
		}
		if !e.gone {
			c, err := inspect(ctx, env, e.ID)
			switch {
			case err == nil && c.State == pipeline.StateRemoving:
				keep = append(keep, e) // under way: its end is for a later look
				continue
			case err != nil && !cerrdefs.IsNotFound(err):
				keep = append(keep, e) // no answer: ask again next time
				continue
			case err == nil:
				continue // still there: that request removed nothing
			}
		}
		if err := recordGone(env.Events.Write, nil, &e, time.Now()); err != nil {
			keep = append(keep, e) // e.gone says what was written
			continue
		}
		if log != nil {
			log.WithField("container", e.name()).WithField("id", e.ID).Info("an earlier run's removal, carried out after that run ended, recorded now")
		}
	}
	if err := writePending(path, keep); err != nil && log != nil {
		log.WithError(err).Warn("journal of pending removals not rewritten")
	}
}

// compactPending rewrites the journal at the end of the stage with only
// the entries no run could settle yet.
func compactPending(env *pipeline.Env) {
	path := pendingPath(env)
	open, err := readPending(path)
	if err == nil {
		err = writePending(path, open)
	}
	if err != nil && env.Log != nil {
		env.Log.WithError(err).Warn("journal of pending removals not rewritten")
	}
}
