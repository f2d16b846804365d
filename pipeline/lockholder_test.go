package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLockedNamesTheLiveHolder pins that the message of a held lock names
// the process that holds it now, as the kernel says, and never the run a
// stale holder text in the file names.
func TestLockedNamesTheLiveHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.lock")
	stale := "pid 999999, started 2026-01-01T00:00:00Z, pipeline old"
	if err := os.WriteFile(path, []byte(stale+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	e := &LockedError{Path: path, Holder: stale}
	e.checkHolder()
	if !strings.HasPrefix(e.Holder, fmt.Sprintf("pid %d ", os.Getpid())) || strings.Contains(e.Error(), "999999") {
		t.Errorf("stale text: message %q, want this process (pid %d)", e.Error(), os.Getpid())
	}

	// The holder's own text stays as it is.
	own := fmt.Sprintf("pid %d, started 2026-11-30T21:00:00Z, pipeline cleanup", os.Getpid())
	e = &LockedError{Path: path, Holder: own}
	e.checkHolder()
	if e.Holder != own {
		t.Errorf("the live holder's own text became %q", e.Holder)
	}

	// Released in between: said so, no name.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	e = &LockedError{Path: path, Holder: stale}
	e.checkHolder()
	if strings.Contains(e.Holder, "999999") || !strings.Contains(e.Holder, "released") {
		t.Errorf("after release: %q", e.Holder)
	}
}

func TestFlockHolders(t *testing.T) {
	locks := filepath.Join(t.TempDir(), "locks")
	text := `1: OFDLCK ADVISORY  READ -1 00:06:3 0 EOF
2: FLOCK  ADVISORY  WRITE 5937 fe:00:778959 0 EOF
2: -> FLOCK  ADVISORY  WRITE 6000 fe:00:778959 0 EOF
3: FLOCK  ADVISORY  WRITE 42 fe:01:778959 0 EOF
4: POSIX  ADVISORY  WRITE 77 fe:00:778959 0 EOF
5: FLOCK  ADVISORY  WRITE 0 fe:00:778959 0 EOF
`
	if err := os.WriteFile(locks, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	pids, err := flockHolders(locks, unix.Mkdev(0xfe, 0), 778959)
	if err != nil || fmt.Sprint(pids) != "[5937 0]" {
		t.Errorf("got %v, %v; want the two holders (not the waiter, the POSIX lock or another device)", pids, err)
	}
}
