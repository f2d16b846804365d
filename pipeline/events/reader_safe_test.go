package events

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

const idleKillLine = `{"timestamp":"2026-02-16T15:50:03.000000Z","event_type":"maintenance.idle_kill","schema_version":"1","details":{"container":"c1"}}` + "\n"

// An events file that is a FIFO, a device or a folder is an error at once,
// never a read that blocks past the run's deadline.
func TestReadIdleKillsRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "events.jsonl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "zero.jsonl")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero", link, dir} {
		done := make(chan error, 1)
		go func() {
			_, _, err := ReadIdleKillsTrusted(context.Background(), path, safefile.Trust{})
			done <- err
		}()
		select {
		case err := <-done:
			var nr *safefile.NotRegularError
			if !errors.As(err, &nr) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: err = %v, want a *safefile.NotRegularError naming it", path, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the read blocked", path)
		}
	}
}

// As root, idle kills are read only from a file no untrusted user could
// have written: they remove containers at once.
func TestReadIdleKillsTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (to chown the file); CI runs the tests as root")
		}
		t.Skip("needs root to give the file to another user")
	}
	dir := filepath.Join(t.TempDir(), "log")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(path, []byte(idleKillLine), 0o644); err != nil {
		t.Fatal(err)
	}
	strict := safefile.Trust{Enforce: true}
	kills, _, err := ReadIdleKillsTrusted(context.Background(), path, strict)
	if err != nil || len(kills) != 1 {
		t.Fatalf("root's 0644 file: %v, %v", kills, err)
	}
	if err := os.Chmod(path, 0o666); err != nil { // DS01's logger advises chmod 666
		t.Fatal(err)
	}
	var ie *safefile.InsecureError
	if _, _, err := ReadIdleKillsTrusted(context.Background(), path, strict); !errors.As(err, &ie) {
		t.Errorf("world-writable file: %v, want an *InsecureError", err)
	}
	if kills, _, err := ReadIdleKillsTrusted(context.Background(), path, safefile.Trust{}); err != nil || len(kills) != 1 {
		t.Errorf("not enforced: %v, %v", kills, err)
	}
}

func TestReadIdleKillsDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(idleKillLine), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := ReadIdleKillsTrusted(ctx, path, safefile.Trust{}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// A file over the bound is read from its tail: the latest events count.
func TestReadIdleKillsTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	old := strings.Replace(idleKillLine, `"c1"`, `"old"`, 1)
	if err := os.WriteFile(path, []byte(old+strings.Repeat("x\n", 100)+idleKillLine), 0o644); err != nil {
		t.Fatal(err)
	}
	kills, stats, err := readIdleKills(context.Background(), path, safefile.Trust{}, int64(len(idleKillLine)+50))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := kills["c1"]; !ok || len(kills) != 1 {
		t.Errorf("kills = %v, want only c1 from the tail", kills)
	}
	if want := int64(len(old) + 150); stats.Truncated != want {
		t.Errorf("Truncated = %d, want %d", stats.Truncated, want)
	}
}
