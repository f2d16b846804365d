package pipeline

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// A process queued for the lock exclusively (a root wrapper's blocking
// `flock FILE cmd`) does not get it while the witness converts the run's
// lock to its own (shared, then exclusive): the witness ends up holding
// it, a run is still locked out, and the waiter gets it only once the
// witness is done.
func TestClaimLockExclusiveWaiterStaysQueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.lock")
	held, err := lock(path, "p", safefile.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	waiter := exec.Command("flock", path, "-c", "true")
	if err := waiter.Start(); err != nil {
		t.Skipf("flock(1): %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- waiter.Wait() }()
	time.Sleep(200 * time.Millisecond) // queued behind the run's lock

	w := &WitnessEnv{Pipeline: "p", Parent: 4242, lock: held}
	if err := w.ClaimLock(); err != nil {
		t.Fatalf("ClaimLock with an exclusive waiter: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the waiter got the lock during the conversion (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	if f, err := lock(path, "p", safefile.Trust{}); !errors.As(err, new(*LockedError)) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("a run while the witness holds the lock: %v, want locked out", err)
	}
	held.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the waiter after the witness: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the waiter never got the lock after the witness let it go")
	}
}
