package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// TestReadRunEndedOrDied: the empty line says the run ended in order;
// a pipe that just ends says it died. Every other line reaches fn.
func TestReadRunEndedOrDied(t *testing.T) {
	for _, c := range []struct {
		in    string
		ended bool
		lines int
	}{
		{"a\nb\n\n", true, 2},
		{"a\nb\n", false, 2},
		{"a\nb", false, 2}, // cut mid-line by the run's death
		{"", false, 0},
		{"\nlate\n", true, 0}, // nothing after the end counts
	} {
		n := 0
		ended, err := ReadRun(strings.NewReader(c.in), func([]byte) { n++ })
		if err != nil || ended != c.ended || n != c.lines {
			t.Errorf("ReadRun(%q) = ended %v, %d lines, %v; want %v, %d", c.in, ended, n, err, c.ended, c.lines)
		}
	}
}

// TestTakeOverLock: a witness makes the lock of its dead run its own, so
// that the kernel, and so the message of a run locked out, names the
// witness; when another run took the lock first, the witness leaves it to
// that run.
func TestTakeOverLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.lock")
	held, err := lock(path, "p", safefile.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	// The witness's inherited descriptor shares the run's open file; the
	// run's own copy is gone with it.
	inherited, err := dupFile(held)
	if err != nil {
		t.Fatal(err)
	}
	held.Close()
	mine, err := takeOverLock(inherited, "p", "recording the removals of run pid 1")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	_, err = lock(path, "p", safefile.Trust{})
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("a run after the takeover: %v, want the lock held", err)
	}
	locked.checkHolder()
	if pid, ok := holderPID(locked.Holder); !ok || pid != os.Getpid() || !strings.Contains(locked.Holder, "recording the removals") {
		t.Errorf("holder %q, want this process, recording", locked.Holder)
	}
	mine.Close()

	// Another run took the lock between the death and the takeover.
	stale, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	other, err := lock(path, "p", safefile.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got, err := takeOverLock(stale, "p", "recording"); !errors.Is(err, errLockTaken) {
		if got != nil {
			got.Close()
		}
		t.Errorf("takeover of a lock another run holds: %v, want errLockTaken", err)
	}
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
