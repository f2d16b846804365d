package logstage

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO or device planted at metrics_file (the textfile folder is often
// not root's) is an error at once, never a read that blocks the run past
// its deadline: the previous values are dropped and the file replaced.
func TestReadPreviousRefusesNonRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "ds01.prom")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero"} {
		done := make(chan error, 1)
		go func() { _, err := readPrevious(path, "p"); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: %v, want a refusal", path, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: readPrevious blocked", path)
		}
	}
}
