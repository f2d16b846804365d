package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-pipe/nvml"
)

// killWait is how long the kill step waits for an orphan to exit after SIGKILL.
const killWait = 5 * time.Second

// pollSlice bounds one poll(2) call, so that a cancelled run stops waiting.
const pollSlice = 100 * time.Millisecond

// killer signals orphaned GPU processes, safely:
//
//   - a pidfd is opened first, so that the signals reach the process that
//     was checked, never a later process that reused its PID;
//   - then /proc is read again: the process must be exactly what the release
//     stage mapped (same start time, same cgroups, still no sign of any
//     container: no other PID namespace, no container supervisor above it,
//     no other runtime) and must not be a live container's main process;
//   - SIGTERM, up to the grace period polling the pidfd, then SIGKILL, unless
//     the run's deadline ended the grace first.
//
// Every signal sent is recorded on the orphan, so the log and the events say
// exactly what was sent.
type killer struct {
	proc  nvml.ProcFS
	grace time.Duration
	log   logrus.FieldLogger
	live  map[int]bool // live containers' main PIDs
}

// pending is a target with its pidfd open.
type pending struct {
	o  *Orphan
	fd int
}

// run signals the targets: all get SIGTERM at once, then one grace period
// for all, then SIGKILL for the survivors. It records the result on each
// orphan and never returns an error: a process it could not kill stays an
// orphan in the report, with the reason.
func (k *killer) run(ctx context.Context, targets []*Orphan) {
	var open []pending
	defer func() {
		for _, p := range open {
			_ = unix.Close(p.fd)
		}
	}()
	for _, o := range targets {
		if ctx.Err() != nil {
			o.Left, o.Why = HealthDeadline, "not signalled: the run's deadline passed first"
			continue
		}
		if fd, ok := k.prepare(o); ok {
			open = append(open, pending{o: o, fd: fd})
		}
	}
	k.signal(open, unix.SIGTERM)
	k.wait(ctx, open, k.grace)
	var survivors []pending
	for _, p := range open {
		if !p.o.Exited && p.o.Left == "" {
			survivors = append(survivors, p)
		}
	}
	if len(survivors) > 0 {
		if ctx.Err() != nil {
			for _, p := range survivors {
				p.o.Left, p.o.Why = HealthDeadline, "SIGTERM sent; the run's deadline ended the grace period, SIGKILL not sent"
			}
		} else {
			k.signal(survivors, unix.SIGKILL)
			k.wait(ctx, survivors, killWait)
		}
	}
	for _, o := range targets {
		l := k.log.WithField("pid", o.PID).WithField("gpu_uuid", strings.Join(o.GPUs, ",")).
			WithField("signals_sent", strings.Join(o.Signals, ","))
		if o.FormerContainer != "" {
			l = l.WithField("former_container_id", o.FormerContainer)
		}
		switch {
		case o.Exited && len(o.Signals) > 0:
			l.Warn("killed orphaned GPU process")
		case o.Exited:
			l.Info("orphaned GPU process exited before it was signalled")
		case o.Left != "":
			l.Warn("orphaned GPU process left running: " + o.Why)
		case ctx.Err() != nil:
			o.Left, o.Why = HealthDeadline, "SIGKILL sent; the run's deadline ended the wait for its exit"
			l.Warn("orphaned GPU process left running: " + o.Why)
		default:
			o.Left, o.Why = HealthSurvived, "survived SIGKILL"
			l.Warn("orphaned GPU process left running: " + o.Why)
		}
	}
}

// prepare opens a pidfd on the orphan and re-checks it through /proc. It
// returns the pidfd when the orphan may be signalled; otherwise it records
// why not (or that the process is gone).
func (k *killer) prepare(o *Orphan) (int, bool) {
	pid := o.PID
	if pid <= 1 || pid == os.Getpid() {
		o.Left, o.Why = HealthKillFailed, fmt.Sprintf("PID %d is never signalled", pid)
		return -1, false
	}
	if k.live[pid] {
		o.Left, o.Why = HealthKillFailed, "it is a live container's main process"
		return -1, false
	}
	if o.Identity.InContainer() {
		o.Left, o.Why = HealthKillFailed, "it shows signs of a live container"
		return -1, false
	}
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		o.Exited = true
		return -1, false
	case err != nil:
		o.Left, o.Why = HealthKillFailed, fmt.Sprintf("pidfd_open: %v (Linux 5.3 or newer is needed to kill safely)", err)
		return -1, false
	}
	refuse := func(why string) (int, bool) {
		if pidfdExited(fd) {
			o.Exited = true
		} else {
			o.Left, o.Why = HealthKillFailed, why
		}
		_ = unix.Close(fd)
		return -1, false
	}
	now, err := k.proc.Identify(pid)
	switch {
	case errors.Is(err, nvml.ErrNoProcess):
		return refuse("it vanished from /proc")
	case err != nil:
		return refuse(fmt.Sprintf("re-reading /proc: %v", err))
	case now.Start != o.Identity.Start:
		return refuse("its PID now names another process")
	case now.InContainer() || now.ContainerID != o.Identity.ContainerID:
		return refuse("it now belongs to a container")
	case !now.Same(o.Identity):
		return refuse("its cgroup changed since it was mapped")
	}
	return fd, true
}

// signal sends sig through each pidfd; a process that is gone is marked exited.
func (k *killer) signal(ps []pending, sig unix.Signal) {
	name := unix.SignalName(sig)
	for _, p := range ps {
		if p.o.Exited || p.o.Left != "" {
			continue
		}
		err := unix.PidfdSendSignal(p.fd, sig, nil, 0)
		switch {
		case err == nil:
			p.o.Signals = append(p.o.Signals, name)
		case errors.Is(err, unix.ESRCH):
			p.o.Exited = true
		default:
			p.o.Left, p.o.Why = HealthKillFailed, fmt.Sprintf("%s: %v", name, err)
		}
	}
}

// wait polls the pidfds until every process exited, d passed or ctx ended.
// A pidfd is readable once its process has exited.
func (k *killer) wait(ctx context.Context, ps []pending, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		var fds []unix.PollFd
		var who []*Orphan
		for _, p := range ps {
			if !p.o.Exited && p.o.Left == "" {
				fds = append(fds, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN})
				who = append(who, p.o)
			}
		}
		if len(fds) == 0 {
			return
		}
		timeout := min(max(time.Until(deadline), 0), pollSlice)
		_, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if err != nil && !errors.Is(err, unix.EINTR) {
			for _, o := range who {
				o.Left, o.Why = HealthKillFailed, fmt.Sprintf("poll: %v", err)
			}
			return
		}
		for i, fd := range fds {
			if fd.Revents&unix.POLLIN != 0 {
				who[i].Exited = true
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
