package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAliasFanout: plain aliases (no merge keys) naming one large mapping or
// list from thousands of places are bounded in total work: refused quickly,
// with little memory, where an unbounded walk took gigabytes.
func TestAliasFanout(t *testing.T) {
	mapping := func(keys, refs int) string {
		var b strings.Builder
		b.WriteString("x: &x {")
		for i := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "k%d_h: 1", i)
		}
		b.WriteString("}\ngroups:\n")
		for i := range refs {
			fmt.Fprintf(&b, "  g%d: *x\n", i)
		}
		return b.String()
	}
	list := func(items, refs int) string {
		var b strings.Builder
		b.WriteString("m: &m [")
		for i := range items {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "u%d", i)
		}
		b.WriteString("]\ngroups:\n")
		for i := range refs {
			fmt.Fprintf(&b, "  g%d: {members: *m}\n", i)
		}
		return b.String()
	}
	for name, text := range map[string]string{
		"mapping": mapping(2000, 5000),
		"list":    list(2000, 5000),
	} {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "resource-limits.yaml", text)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Load(Files{LimitsFile: path})
			runtime.ReadMemStats(&after)
			var fe *FileError
			if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "expanding too far") || fe.Line == 0 {
				t.Fatalf("Load = %v, want a FileError with a line about expansion", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Load took %v", d)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("Load allocated %d MiB", alloc>>20)
			}
		})
	}
	// The same mapping named a few times is ordinary YAML and loads.
	path := writeFile(t, t.TempDir(), "resource-limits.yaml", mapping(50, 20))
	if _, err := Load(Files{LimitsFile: path}); err != nil {
		t.Errorf("a few aliases: %v", err)
	}
}

// Policy files are read through the one hardened reader: a FIFO, device or
// folder is an error at once, and an oversized file is refused.
func TestPolicyFilesHardened(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	limits := writeFile(t, dir, "resource-limits.yaml", "groups:\n  student: {}\n")
	groups := filepath.Join(dir, "groups")
	if err := os.Mkdir(groups, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(groups, "student.members"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := writeFile(t, dir, "big.yaml", "# "+strings.Repeat("x", MaxFileSize)+"\n")
	for name, files := range map[string]Files{
		"limits FIFO":    {LimitsFile: fifo},
		"limits device":  {LimitsFile: "/dev/zero"},
		"overrides FIFO": {LimitsFile: limits, OverridesFile: fifo},
		"exemptions dir": {LimitsFile: limits, ExemptionsFile: dir},
		"members FIFO":   {LimitsFile: limits, GroupsDir: groups},
		"oversized":      {LimitsFile: big},
	} {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := Load(files); done <- err }()
			select {
			case err := <-done:
				if err == nil || !(strings.Contains(err.Error(), "not a regular file") || strings.Contains(err.Error(), "larger than")) {
					t.Errorf("Load = %v, want a refusal", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Load blocked")
			}
		})
	}
}
