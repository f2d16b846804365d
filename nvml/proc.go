package nvml

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ProcFS maps host PIDs to Docker container IDs through /proc/<pid>/cgroup.
type ProcFS struct {
	Root string // "" means "/proc"
}

// ErrNoProcess means the PID vanished (or never existed).
var ErrNoProcess = errors.New("process not found")

// ContainerID returns the 64-hex Docker container ID of pid's cgroup, or ""
// when the process belongs to no Docker container. An error wrapping
// ErrNoProcess means the process is gone.
func (p ProcFS) ContainerID(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("nvml: invalid pid %d", pid)
	}
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	data, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "cgroup"))
	switch {
	// ESRCH: the process exited between the open and the read.
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ESRCH):
		return "", fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	case err != nil:
		return "", fmt.Errorf("nvml: reading the cgroup of pid %d: %w", pid, err)
	}
	id, _ := ParseCgroup(string(data))
	return id, nil
}

// Verify reports whether pid still exists and still maps to wantContainer
// ("" = no container), just before a kill. A vanished process is (false,
// nil); an error means the answer is unknown. A PID reused by another process
// in the same container still matches: a caller that must rule that out
// signals through a pidfd opened before the check.
func (p ProcFS) Verify(pid int, wantContainer string) (bool, error) {
	id, err := p.ContainerID(pid)
	if errors.Is(err, ErrNoProcess) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return id == wantContainer, nil
}

// ParseCgroup extracts the Docker container ID from the text of a
// /proc/<pid>/cgroup file. It knows the Docker forms only:
//
//   - cgroupfs driver: ".../docker/<id>" (cgroup v1 "12:memory:/docker/<id>",
//     v2 "0::/docker/<id>"), including children such as "/docker/<id>/init.scope";
//   - systemd driver: a "docker-<id>.scope" unit under any slice, such as
//     "/system.slice/docker-<id>.scope", DS01's per-user
//     "/ds01.slice/ds01-student.slice/ds01-student-alice.slice/docker-<id>.scope",
//     or "/kubepods/.../docker-<id>.scope".
//
// Other runtimes ("cri-containerd-<id>.scope", "libpod-<id>.scope", a bare
// <id> under kubepods) are not Docker's and give ok=false, as does any ID
// that is not exactly 64 lower-case hex digits. When Docker runs inside a
// Docker container the outermost ID wins: that is the container the host's
// daemon knows.
func ParseCgroup(text string) (id string, ok bool) {
	for line := range strings.Lines(text) {
		// hierarchy-ID:controllers:path; the path itself may hold colons.
		_, rest, ok1 := strings.Cut(line, ":")
		_, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		if id, ok := containerInPath(strings.TrimRight(path, "\r\n")); ok {
			return id, true
		}
	}
	return "", false
}

func containerInPath(path string) (string, bool) {
	parts := strings.Split(path, "/")
	for i, part := range parts {
		if id, ok := strings.CutPrefix(part, "docker-"); ok {
			if id, ok := strings.CutSuffix(id, ".scope"); ok && isContainerID(id) {
				return id, true
			}
		}
		if part == "docker" && i+1 < len(parts) && isContainerID(parts[i+1]) {
			return parts[i+1], true
		}
	}
	return "", false
}

// isContainerID accepts exactly what Docker generates: 64 lower-case hex
// digits. Short or upper-case forms are never in cgroup paths.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
