package pipeline

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// TestClaimLock: a witness keeps its run's lock held through the run's own
// open file, with no gap after the run is gone, and writes itself into
// it; a locked-out run's message then names the witness.
func TestClaimLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.lock")
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
	w := &WitnessEnv{Pipeline: "p", Parent: 4242, lock: inherited}
	defer inherited.Close()
	if err := w.ClaimLock(); err != nil {
		t.Fatal(err)
	}
	_, err = lock(path, "p", safefile.Trust{})
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("a run after the run died: %v, want the lock held by the witness", err)
	}
	locked.checkHolder()
	if pid, ok := holderPID(locked.Holder); !ok || pid != os.Getpid() || !strings.Contains(locked.Holder, "witness of run pid 4242") {
		t.Errorf("holder %q, want this process, witness of run 4242", locked.Holder)
	}
}

// TestLockClosedToUsers: flock needs only a read descriptor, so the lock
// file is created 0600 and one an earlier version left 0644 is closed.
func TestLockClosedToUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.lock")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := lock(path, "p", safefile.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("lock mode %v, want 0600", st.Mode().Perm())
	}
	fresh := filepath.Join(t.TempDir(), "q.lock")
	g, err := lock(fresh, "q", safefile.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if st, err := os.Stat(fresh); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("new lock mode %v, want 0600", st.Mode().Perm())
	}
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// A lock an earlier version left readable, held by a user's flock: the
// message says it is no ds01-pipe run, and how to recover.
func TestLockHeldByAUserIsNamed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	flockTool, err := exec.LookPath("flock")
	if err != nil {
		t.Fatalf("flock(1) not found: %v", err)
	}
	dir, err := os.MkdirTemp("", "lockuser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "p.lock")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	held := exec.Command(flockTool, "-x", path, "sleep", "60")
	held.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = held.Process.Kill(); _ = held.Wait() })
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	// Wait (an outside process: no clock to turn) until the kernel lists
	// the user's lock.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		pids, err := flockHolders(procLocks, uint64(st.Dev), st.Ino)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flock(1) as uid 65534 never took the lock")
		}
	}
	_, err = lock(path, "p", safefile.Trust{})
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("lock held by a user: %v, want LockedError", err)
	}
	locked.checkHolder()
	if !strings.Contains(locked.Holder, "uid 65534, not a ds01-pipe run") || !strings.Contains(locked.Holder, "remove "+path) {
		t.Errorf("holder %q does not name the user's process and the way out", locked.Holder)
	}
}

// A process waiting to share the lock (a root script's `flock -s`) is let
// in beside the witness when it retakes the lock shared, and the lock is
// never dropped: a run still finds it held.
func TestClaimLockKeepsItWithASharedWaiter(t *testing.T) {
	flockTool, err := exec.LookPath("flock")
	if err != nil {
		t.Fatalf("flock(1) not found: %v", err)
	}
	path := filepath.Join(t.TempDir(), "p.lock")
	held, err := lock(path, "p", safefile.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	waiter := exec.Command(flockTool, "-s", path, "-c", "exit 0")
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	waitForLockWaiter(t, path)
	w := &WitnessEnv{Pipeline: "p", Parent: 4242, lock: held}
	if err := w.ClaimLock(); err != nil {
		t.Fatal(err)
	}
	if err := waiter.Wait(); err != nil {
		t.Fatalf("the shared waiter: %v", err)
	}
	f, err := lock(path, "p", safefile.Trust{})
	var locked *LockedError
	if !errors.As(err, &locked) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("a run after the witness retook the lock: %v, want it held", err)
	}
}

// waitForLockWaiter waits (an outside process: no clock to turn) until
// /proc/locks shows a process blocked on the file's lock.
func waitForLockWaiter(t *testing.T, path string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(procLocks)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "->") && strings.Contains(line, want) {
				return
			}
		}
	}
	t.Fatal("no process ever waited on the lock")
}
