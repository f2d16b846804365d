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

// ProcFS reads what /proc says about the host PIDs NVML lists: which
// container (of any runtime) a process belongs to, and what tells it apart
// from a later process with the same PID.
type ProcFS struct {
	Root string // "" means "/proc"
}

// DefaultProcRoot is where /proc is normally mounted.
const DefaultProcRoot = "/proc"

// ErrNoProcess means the PID vanished (or never existed).
var ErrNoProcess = errors.New("process not found")

func (p ProcFS) root() string {
	if p.Root == "" {
		return DefaultProcRoot
	}
	return p.Root
}

func (p ProcFS) path(pid int, name string) string {
	return filepath.Join(p.root(), strconv.Itoa(pid), name)
}

// read reads one file of /proc/<pid>; a missing process is ErrNoProcess.
func (p ProcFS) read(pid int, name string) (string, error) {
	data, err := os.ReadFile(p.path(pid, name))
	switch {
	// ESRCH: the process exited between the open and the read.
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ESRCH):
		return "", fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	case err != nil:
		return "", fmt.Errorf("reading /proc/%d/%s: %w", pid, name, err)
	}
	return string(data), nil
}

// ContainerID returns the 64-hex Docker container ID of pid's cgroup, or ""
// when its cgroup names no Docker container. An error wrapping ErrNoProcess
// means the process is gone.
func (p ProcFS) ContainerID(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("nvml: invalid pid %d", pid)
	}
	text, err := p.read(pid, "cgroup")
	if err != nil {
		return "", err
	}
	id, _ := ParseCgroup(text)
	return id, nil
}

// Cgroups returns the cgroup paths of pid, one per hierarchy line.
func (p ProcFS) Cgroups(pid int) ([]string, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("nvml: invalid pid %d", pid)
	}
	text, err := p.read(pid, "cgroup")
	if err != nil {
		return nil, err
	}
	paths, err := cgroupPaths(text)
	if err != nil {
		return nil, fmt.Errorf("/proc/%d/cgroup: %w", pid, err)
	}
	return paths, nil
}

// Identity is what /proc says about one process: every sign that it runs
// in a container of some runtime, and its start time. The release stage
// calls a process an orphan only when none of the signs is there, and the
// kill step reads the identity again just before a signal and refuses any
// change.
type Identity struct {
	PID int
	// Cgroups are the cgroup paths of the process, one per hierarchy line
	// of /proc/<pid>/cgroup.
	Cgroups []string
	// ContainerID is the Docker container ID its cgroup names, in any of
	// Docker's forms (cgroupfs or systemd driver, any --cgroup-parent).
	ContainerID string
	// Runtime names a container runtime other than Docker seen in its
	// cgroup (podman, containerd CRI, CRI-O, Kubernetes, LXC, machined).
	Runtime string
	// Namespaced is true when the process is in a PID namespace below the
	// one of this /proc: a container's, whatever its runtime
	// (the kernel ends every process of a PID namespace when its init
	// exits, so such a process always has a live container around it).
	Namespaced bool
	// Supervisor is the command name of an ancestor that runs containers
	// (containerd-shim, conmon, lxc-start, ...), "" when there is none: a
	// --pid=host container's processes are found this way.
	Supervisor string
	// Start is the start time in clock ticks since boot (field 22 of
	// /proc/<pid>/stat). Two processes with one PID never share it.
	Start uint64
}

// InContainer reports whether anything says the process runs in a
// container that may be live (of any runtime): everything but its Docker
// container ID, which only the engine can confirm gone.
func (id Identity) InContainer() bool {
	return id.Runtime != "" || id.Namespaced || id.Supervisor != ""
}

// Same reports whether two readings describe the same process in the same
// place: the check made just before a signal.
func (id Identity) Same(o Identity) bool {
	return id.PID == o.PID && id.Start == o.Start && id.ContainerID == o.ContainerID &&
		id.Runtime == o.Runtime && id.Namespaced == o.Namespaced && id.Supervisor == o.Supervisor &&
		strings.Join(id.Cgroups, "\n") == strings.Join(o.Cgroups, "\n")
}

// maxAncestors bounds the walk up the process tree.
const maxAncestors = 64

// supervisors are command names (as /proc/<pid>/stat gives them, at most 15
// bytes) of the programs that run containers: a process below one of them is
// some runtime's container process.
var supervisors = []string{
	"containerd-shim", // containerd-shim-runc-v2 and the older shims
	"docker-containe", // docker-containerd-shim (Docker before 18.09)
	"conmon",          // podman, CRI-O
	"runc", "crun",
	"lxc-start", "lxc-monitord",
	"systemd-nspawn",
}

// isSupervisor reports whether a command name is one of supervisors: the
// name itself (the kernel keeps 15 bytes, so "containerd-shim-runc-v2"
// reads "containerd-shim"), or runc's and crun's transient
// "runc:[2:INIT]" forms. Not any name that merely starts like one: a
// user's "crunch" or "runcheck" above a leaked GPU process is no container.
func isSupervisor(comm string) bool {
	for _, s := range supervisors {
		if comm == s || strings.HasPrefix(comm, s+":") {
			return true
		}
	}
	return false
}

// Identify reads the identity of pid. An error wrapping ErrNoProcess means
// the process is gone; any other error means it could not be identified,
// and the caller must treat it as possibly any container's.
func (p ProcFS) Identify(pid int) (Identity, error) {
	id := Identity{PID: pid}
	if pid <= 0 {
		return id, fmt.Errorf("nvml: invalid pid %d", pid)
	}
	text, err := p.read(pid, "cgroup")
	if err != nil {
		return id, err
	}
	if id.Cgroups, err = cgroupPaths(text); err != nil {
		return id, fmt.Errorf("/proc/%d/cgroup: %w", pid, err)
	}
	id.ContainerID, _ = ParseCgroup(text)
	id.Runtime = ForeignRuntime(text)

	st, err := p.stat(pid)
	if err != nil {
		return id, err
	}
	id.Start = st.start
	if id.Namespaced, err = p.namespaced(pid); err != nil {
		return id, err
	}
	if id.Supervisor, err = p.supervisor(st); err != nil {
		// The parent may have exited and the process been re-parented
		// while the tree was walked: one more try from a fresh reading.
		if st, err = p.stat(pid); err == nil {
			id.Supervisor, err = p.supervisor(st)
		}
		if err != nil {
			return id, err
		}
	}
	return id, nil
}

// procStat is what the stage needs from /proc/<pid>/stat.
type procStat struct {
	pid   int
	comm  string
	ppid  int
	start uint64
}

func (p ProcFS) stat(pid int) (procStat, error) {
	text, err := p.read(pid, "stat")
	if err != nil {
		return procStat{}, err
	}
	st, ok := parseStat(text)
	if !ok {
		return procStat{}, fmt.Errorf("/proc/%d/stat: cannot parse %.64q", pid, text)
	}
	st.pid = pid
	return st, nil
}

// parseStat reads the command name (field 2), the parent PID (field 4) and
// the start time (field 22) from the text of /proc/<pid>/stat. The command
// name is in parentheses and may hold spaces and parentheses itself, so the
// fields after it are counted from the last ")".
func parseStat(text string) (procStat, bool) {
	open := strings.IndexByte(text, '(')
	end := strings.LastIndexByte(text, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	fields := strings.Fields(text[end+1:])
	const ppidField, startField = 4 - 3, 22 - 3 // fields after ")" start at field 3 (state)
	if len(fields) <= startField {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(fields[ppidField])
	start, err2 := strconv.ParseUint(fields[startField], 10, 64)
	if err1 != nil || err2 != nil || ppid < 0 {
		return procStat{}, false
	}
	return procStat{comm: text[open+1 : end], ppid: ppid, start: start}, true
}

// ParseStartTime extracts the start time (field 22) from the text of
// /proc/<pid>/stat.
func ParseStartTime(text string) (uint64, bool) {
	st, ok := parseStat(text)
	return st.start, ok
}

// namespaced reports whether pid is in a PID namespace below the one of
// this /proc (the host's when /proc is the host's). The NSpid line of
// /proc/<pid>/status lists the PID in every namespace from the one of the
// /proc mount down to the process's own, so more than one field means a
// nested namespace. It needs no ptrace rights, unlike reading ns/pid.
func (p ProcFS) namespaced(pid int) (bool, error) {
	text, err := p.read(pid, "status")
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			n := len(strings.Fields(rest))
			if n == 0 {
				break
			}
			return n > 1, nil
		}
	}
	return false, fmt.Errorf("/proc/%d/status has no NSpid line (Linux 4.1 or newer is needed)", pid)
}

// supervisor walks up from st to PID 1 and returns the command name of the
// first ancestor that runs containers, or "".
func (p ProcFS) supervisor(st procStat) (string, error) {
	for range maxAncestors {
		if st.ppid <= 1 {
			return "", nil
		}
		parent, err := p.stat(st.ppid)
		if errors.Is(err, ErrNoProcess) {
			// Not the process itself: its parent exited under the walk.
			return "", fmt.Errorf("ancestor %d of pid %d exited while it was read", st.ppid, st.pid)
		}
		if err != nil {
			return "", fmt.Errorf("ancestor of pid %d: %w", st.pid, err)
		}
		if isSupervisor(parent.comm) {
			return parent.comm, nil
		}
		st = parent
	}
	return "", fmt.Errorf("pid %d: more than %d ancestors", st.pid, maxAncestors)
}

// cgroupPaths returns the path of every line of a /proc/<pid>/cgroup text.
// A text with no well-formed line cannot be read for membership.
func cgroupPaths(text string) ([]string, error) {
	var paths []string
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		path, ok := cgroupPath(line)
		if !ok || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("malformed line %.80q", line)
		}
		paths = append(paths, path)
	}
	if len(paths) == 0 {
		return nil, errors.New("no cgroup lines")
	}
	return paths, nil
}

// cgroupPath returns the path of one "hierarchy-ID:controllers:path" line;
// the path itself may hold colons.
func cgroupPath(line string) (string, bool) {
	_, rest, ok1 := strings.Cut(line, ":")
	_, path, ok2 := strings.Cut(rest, ":")
	return strings.TrimRight(path, "\r\n"), ok1 && ok2
}

// ParseCgroup extracts the Docker container ID from the text of a
// /proc/<pid>/cgroup file. It knows Docker's forms, whatever the cgroup
// driver, version or parent:
//
//   - cgroupfs driver: "<parent>/<id>", by default "/docker/<id>" (cgroup v1
//     "12:memory:/docker/<id>", v2 "0::/docker/<id>"), with --cgroup-parent
//     any path such as "/ds01/alice/<id>", and children such as
//     "/docker/<id>/init.scope";
//   - systemd driver: a "docker-<id>.scope" unit under any slice, such as
//     "/system.slice/docker-<id>.scope", DS01's per-user
//     "/ds01.slice/ds01-student.slice/ds01-student-alice.slice/docker-<id>.scope",
//     or "/kubepods/.../docker-<id>.scope".
//
// Other runtimes ("cri-containerd-<id>.scope", "libpod-<id>.scope", a bare
// <id> under kubepods or LXC) are not Docker's and give ok=false (see
// ForeignRuntime), as does any ID that is not exactly 64 lower-case hex
// digits. When Docker runs inside a Docker container the outermost ID wins:
// that is the container the host's daemon knows.
func ParseCgroup(text string) (id string, ok bool) {
	for line := range strings.Lines(text) {
		path, ok := cgroupPath(line)
		if !ok {
			continue
		}
		if id, ok := containerInPath(path); ok {
			return id, true
		}
	}
	return "", false
}

func containerInPath(path string) (string, bool) {
	if delegated(path) {
		return "", false
	}
	bare := foreignIn(path) == "" // a bare ID under kubepods or LXC is theirs
	for part := range strings.SplitSeq(path, "/") {
		if id, ok := strings.CutPrefix(part, "docker-"); ok {
			if id, ok := strings.CutSuffix(id, ".scope"); ok && isContainerID(id) {
				return id, true
			}
		}
		if bare && isContainerID(part) {
			return part, true
		}
	}
	return "", false
}

// delegated reports whether path lies in a user's own systemd subtree
// ("/user.slice/user-1000.slice/user@1000.service/..."): systemd delegates
// it to the user, who may create any cgroup there, named
// "docker-<id>.scope", "<id>" or "libpod-x.scope", and move their own
// processes in. Its names prove nothing: a bare GPU process there is not
// attributed to the container (or runtime) it names, so it can neither
// pass as a live container's (hiding a leak, making that container look
// busy) nor as another runtime's. A real container there (rootless
// Docker or podman) has its own PID namespace, which Identify reports.
func delegated(path string) bool {
	for part := range strings.SplitSeq(path, "/") {
		if strings.HasPrefix(part, "user@") && strings.HasSuffix(part, ".service") {
			return true
		}
	}
	return false
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

// foreignMarkers are cgroup path fragments of container runtimes other than
// Docker: a process there is someone's container, never an orphan.
var foreignMarkers = []struct{ fragment, runtime string }{
	{"libpod-", "podman"},
	{"/libpod_parent", "podman"},
	{"/podman", "podman"},
	{"cri-containerd-", "containerd (CRI)"},
	{"crio-", "CRI-O"},
	{"/kubepods", "Kubernetes"},
	{"/lxc/", "LXC"},
	{"lxc.payload", "LXC"},
	{"/machine.slice/", "systemd-machined"},
	{"/machine/", "systemd-machined"},
}

// ForeignRuntime names the non-Docker container runtime the cgroup text of
// a process points at, or "" when it points at none.
func ForeignRuntime(text string) string {
	for line := range strings.Lines(text) {
		if path, ok := cgroupPath(line); ok {
			if rt := foreignIn(path); rt != "" {
				return rt
			}
		}
	}
	return ""
}

func foreignIn(path string) string {
	if delegated(path) {
		return ""
	}
	for _, m := range foreignMarkers {
		if strings.Contains(path, m.fragment) {
			return m.runtime
		}
	}
	return ""
}
