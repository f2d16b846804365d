package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-pipe/nvml"
)

// killWait is how long the stage waits for an orphan to exit after SIGKILL.
const killWait = 5 * time.Second

// pollSlice bounds one poll(2) call, so that a cancelled run stops waiting.
const pollSlice = 100 * time.Millisecond

// killer kills orphaned GPU processes, safely:
//
//   - a pidfd is opened first, so that the signals reach the process that
//     was checked, never a later process that reused its PID;
//   - then /proc is read again: the PID must still belong to no container
//     (nvml.ProcFS.Verify), no other container runtime, and must have the
//     start time it had when the stage mapped it, close to the snapshot;
//   - SIGTERM, up to the grace period polling the pidfd, then SIGKILL.
type killer struct {
	procfs nvml.ProcFS
	root   string
	grace  time.Duration
	log    logrus.FieldLogger
}

// pending is a target with its pidfd open.
type pending struct {
	t  *killTarget
	fd int
}

// run kills the targets: all get SIGTERM at once, then one grace period
// for all, then SIGKILL for the survivors. It records the result on each
// target and never returns an error: a process it could not kill stays
// an orphan in the report.
func (k *killer) run(ctx context.Context, all []*killTarget) {
	// A process on several GPUs is one target per GPU, and is killed once.
	first := map[int]*killTarget{}
	var targets []*killTarget
	for _, t := range all {
		if _, dup := first[t.proc.pid]; !dup {
			first[t.proc.pid] = t
			targets = append(targets, t)
		}
	}
	defer func() {
		for _, t := range all {
			if f := first[t.proc.pid]; f != t {
				t.signalled, t.exited, t.reason = f.signalled, f.exited, f.reason
			}
		}
	}()
	var open []pending
	defer func() {
		for _, p := range open {
			_ = unix.Close(p.fd)
		}
	}()
	for _, t := range targets {
		if fd, ok := k.prepare(t); ok {
			open = append(open, pending{t: t, fd: fd})
		}
	}
	k.signal(open, unix.SIGTERM)
	k.wait(ctx, open, k.grace)
	var survivors []pending
	for _, p := range open {
		if !p.t.exited && p.t.reason == "" {
			survivors = append(survivors, p)
		}
	}
	if len(survivors) > 0 && ctx.Err() == nil {
		k.signal(survivors, unix.SIGKILL)
		k.wait(ctx, survivors, killWait)
	}
	for _, t := range targets {
		l := k.log.WithField("pid", t.proc.pid).WithField("gpu_uuid", t.row.report.UUID)
		switch {
		case t.exited && t.signalled:
			l.Warn("killed orphaned GPU process")
		case t.exited:
			l.Info("orphaned GPU process exited before it was signalled")
		case t.reason != "":
			l.Warn("orphaned GPU process not killed: " + t.reason)
		default:
			l.Warn("orphaned GPU process survived SIGKILL")
			t.reason = "survived SIGKILL"
		}
	}
}

// prepare opens a pidfd on the target and re-checks it through /proc.
// It returns the pidfd when the target may be signalled; otherwise it
// records why not (or that the process is gone) on the target.
func (k *killer) prepare(t *killTarget) (int, bool) {
	pid := t.proc.pid
	if pid <= 1 || pid == os.Getpid() {
		t.reason = fmt.Sprintf("PID %d is never killed", pid)
		return -1, false
	}
	if !t.proc.info.hasStart {
		t.reason = "its start time could not be read, so a reused PID could not be told apart"
		return -1, false
	}
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		t.exited = true
		return -1, false
	case err != nil:
		t.reason = fmt.Sprintf("pidfd_open: %v (Linux 5.3 or newer is needed to kill safely)", err)
		return -1, false
	}
	refuse := func(reason string) (int, bool) {
		if pidfdExited(fd) {
			t.exited = true
		} else {
			t.reason = reason
		}
		_ = unix.Close(fd)
		return -1, false
	}
	ok, err := k.procfs.Verify(pid, "")
	switch {
	case err != nil:
		return refuse(fmt.Sprintf("re-reading /proc: %v", err))
	case !ok:
		return refuse("it now belongs to a container")
	}
	text, err := readCgroup(k.root, pid)
	if err != nil {
		return refuse(fmt.Sprintf("re-reading its cgroup: %v", err))
	}
	if rt := foreignRuntime(text); rt != "" {
		return refuse("it now runs in a " + rt + " container")
	}
	if start, ok := startTime(k.root, pid); !ok || start != t.proc.info.start {
		return refuse("its PID now names another process")
	}
	return fd, true
}

// signal sends sig through each pidfd; a process that is gone is marked exited.
func (k *killer) signal(ps []pending, sig unix.Signal) {
	for _, p := range ps {
		if p.t.exited || p.t.reason != "" {
			continue
		}
		err := unix.PidfdSendSignal(p.fd, sig, nil, 0)
		switch {
		case err == nil:
			p.t.signalled = true
		case errors.Is(err, unix.ESRCH):
			p.t.exited = true
		default:
			p.t.reason = fmt.Sprintf("%v: %v", sig, err)
		}
	}
}

// wait polls the pidfds until every process exited, d passed or ctx ended.
// A pidfd is readable once its process has exited.
func (k *killer) wait(ctx context.Context, ps []pending, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		var fds []unix.PollFd
		var who []*killTarget
		for _, p := range ps {
			if !p.t.exited && p.t.reason == "" {
				fds = append(fds, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN})
				who = append(who, p.t)
			}
		}
		if len(fds) == 0 {
			return
		}
		timeout := min(max(time.Until(deadline), 0), pollSlice)
		_, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if err != nil && !errors.Is(err, unix.EINTR) {
			for _, t := range who {
				t.reason = fmt.Sprintf("poll: %v", err)
			}
			return
		}
		for i, fd := range fds {
			if fd.Revents&unix.POLLIN != 0 {
				who[i].exited = true
			}
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			// One last look happened above; whatever is still running
			// has outlived its time.
			return
		}
	}
}

// pidfdExited reports whether the process behind a pidfd has exited, without waiting.
func pidfdExited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 1 && fds[0].Revents&unix.POLLIN != 0
}

func readCgroup(root string, pid int) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "cgroup"))
	return string(data), err
}

// foreignMarkers are cgroup path fragments of container runtimes other than
// Docker. ParseCgroup knows only Docker, so a process of a podman, CRI or
// LXC container would otherwise look like a host process: such a process is
// someone's container, never an orphan, and is never killed.
var foreignMarkers = []struct{ fragment, runtime string }{
	{"libpod-", "podman"},
	{"/libpod_parent", "podman"},
	{"cri-containerd-", "containerd (CRI)"},
	{"crio-", "CRI-O"},
	{"/kubepods", "Kubernetes"},
	{"/lxc/", "LXC"},
	{"lxc.payload", "LXC"},
	{"/machine.slice/", "systemd-machined"},
	{"/podman", "podman"},
}

// foreignRuntime names the non-Docker container runtime the cgroup text of
// a process points at, or "" when it points at none.
func foreignRuntime(text string) string {
	for line := range strings.Lines(text) {
		_, rest, ok1 := strings.Cut(line, ":")
		_, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		for _, m := range foreignMarkers {
			if strings.Contains(path, m.fragment) {
				return m.runtime
			}
		}
	}
	return ""
}

// startTime reads the start time of pid (field 22 of /proc/<pid>/stat, in
// clock ticks since boot). Two processes with one PID never share it.
func startTime(root string, pid int) (uint64, bool) {
	data, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	return parseStartTime(string(data))
}

// parseStartTime extracts field 22 from the text of /proc/<pid>/stat. The
// command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so the fields are counted from the last ")".
func parseStartTime(stat string) (uint64, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(stat[i+1:])
	const startField = 22 - 3 // fields after ")" start at field 3 (state)
	if len(fields) <= startField {
		return 0, false
	}
	v, err := strconv.ParseUint(fields[startField], 10, 64)
	return v, err == nil
}
