package pipeline

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procLocks is the kernel's list of held file locks.
const procLocks = "/proc/locks"

// checkHolder makes the message of a held lock name the process that
// holds it now. The text in the lock file is written by each run after it
// took the lock and never cleared, so on its own it may name an earlier
// run: one that held the lock before the holder wrote its own name, or any
// time the holder is another program (DS01's scripts use flock too). The
// kernel's list of locks (/proc/locks) says who holds the file's flock; a
// text that names another PID is replaced by that PID and its command.
func (e *LockedError) checkHolder() {
	var st syscall.Stat_t
	if err := syscall.Stat(e.Path, &st); err != nil {
		return
	}
	pids, err := flockHolders(procLocks, uint64(st.Dev), st.Ino)
	if err != nil {
		if e.Holder != "" {
			e.Holder += "; not confirmed: " + err.Error()
		}
		return
	}
	if named, ok := holderPID(e.Holder); ok {
		for _, p := range pids {
			if p == named {
				return // the text is the live holder's own
			}
		}
	}
	switch {
	case len(pids) == 0:
		e.Holder = "released since; run again"
	case pids[0] <= 0:
		e.Holder = "a process in another PID namespace"
	default:
		e.Holder = fmt.Sprintf("pid %d%s, which did not write its name into the lock file", pids[0], command(pids[0]))
		if uid, ok := processUID(pids[0]); ok && uid != 0 {
			// An earlier version made the lock readable to all, and a
			// user's flock holds it: only a new file ends that.
			e.Holder += fmt.Sprintf(", a process of uid %d, not a ds01-pipe run: remove %s (a new lock file is made, closed to users)", uid, e.Path)
		}
	}
}

// processUID is the real user ID of a process, from /proc/<pid>/status.
func processUID(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			uid, err := strconv.Atoi(f[0])
			return uid, err == nil
		}
	}
	return 0, false
}

// holderPID reads the PID of a holder text ("pid N, started ...").
func holderPID(text string) (int, bool) {
	rest, ok := strings.CutPrefix(text, "pid ")
	if !ok {
		return 0, false
	}
	num, _, _ := strings.Cut(rest, ",")
	pid, err := strconv.Atoi(num)
	return pid, err == nil
}

// command is " (name)" of a PID, from /proc/<pid>/comm, or "".
func command(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	name := strings.TrimSpace(string(b))
	if name == "" {
		return ""
	}
	q := strconv.QuoteToGraphic(name) // a process names itself
	return " (" + q[1:len(q)-1] + ")"
}

// flockHolders lists the PIDs that hold a flock(2) on the file with device
// dev and inode ino, from a /proc/locks file. A lock held from another PID
// namespace shows PID 0 or -1 there.
func flockHolders(path string, dev, ino uint64) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 5937 fe:00:778959 0 EOF"; a blocked
		// waiter's line has "->" after the number.
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil {
			continue
		}
		pids = append(pids, pid)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return pids, nil
}
