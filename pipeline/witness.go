package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-pipe/internal/lines"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// A witness is a second process of this program that a stage starts
// before it asks the engine for something it must record (the remove
// stage: a removal and its container.remove line), and that outlives the
// run. A request the engine has received is carried out even when the
// process that sent it is gone: a run killed (SIGKILL, the OOM killer)
// while the engine was slow to answer leaves removals that happen after
// its death, which nothing of that run could record. The stage tells its
// witness, over a pipe, each request before it goes out and each answer
// it learns; when the run ends, the stage says so and the witness exits.
// When the pipe ends without that, the run died, and the witness finds out
// from the engine what became of the requests still open and records them
// in the run's own events file.
//
// The run also ends in order with requests unanswered (SIGTERM from
// systemd, the run's deadline, an engine that stalls past the call
// timeout): it then leaves without the end line, and the witness settles
// them the same way.
//
// The witness inherits the run's files rather than opening paths again:
// fd 3 is the events file, fd 4 the pipeline's lock, fd 5 on the stage's
// own files. Its standard input is the pipe. The lock is the run's own
// open file, so it stays held, without a gap, until the witness is done:
// no other run (nor a user's flock, see lock) can take it in between and
// record the same removal again.

// WitnessCommand is the hidden command of the ds01-pipe binary that runs a
// witness: "ds01-pipe witness KIND [flags]".
const WitnessCommand = "witness"

// Flags of the witness command (without their dashes): the run tells its
// witness which descriptors it passed.
const (
	WitnessFlagPipeline    = "pipeline"
	WitnessFlagEvents      = "events-file"
	WitnessFlagLock        = "lock-file"
	WitnessFlagFiles       = "files"
	WitnessFlagCallTimeout = "call-timeout"
	WitnessFlagParent      = "parent"
)

// Descriptors of a witness process.
const (
	witnessFDEvents = 3
	witnessFDLock   = 4
	witnessFDFiles  = 5
)

// WitnessGrace is how long a witness told to stop (SIGTERM: systemd stops
// a unit whose run died by signalling what is left of it, and waits
// TimeoutStopSec, 90 s by default, before SIGKILL) still records the
// removals the engine carries out.
const WitnessGrace = 30 * time.Second

// witnessEndWait bounds how long a run waits for its witness to exit once
// told the run ended; witnessWriteWait bounds one line to the witness (a
// witness that stopped reading must not stop the run).
const (
	witnessEndWait   = 5 * time.Second
	witnessWriteWait = 5 * time.Second
)

// maxWitnessLine bounds a line from the run; a longer one is skipped.
const maxWitnessLine = 1 << 20

// Witness is the run's side of a witness process. A nil *Witness does
// nothing: a run without one records only what it sees answered.
type Witness struct {
	cmd *exec.Cmd
	log logrus.FieldLogger

	mu   sync.Mutex
	pipe *os.File
	err  error // the first failed write: the witness is gone
}

// StartWitness starts the witness of stage kind kind, handing it files
// (fd 5 on) besides the run's events file and lock. It returns nil and
// no error when the run has no witness program (library use, tests of a
// stage), no events file to record in, or no lock: without the lock
// another run may remove the same containers meanwhile, and a container
// gone would not say whose removal it was.
func (e *Env) StartWitness(kind string, files ...*os.File) (*Witness, error) {
	if len(e.witnessArgv) == 0 || e.Events == nil || e.Events.file() == nil || e.lock == nil {
		return nil, nil
	}
	// Only the files below reach the witness: a descriptor this process
	// inherited (from a shell, cron, a flock wrapper) would otherwise be
	// held open by the witness long after the run.
	if err := closeOnExec(); err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("witness pipe: %w", err)
	}
	defer r.Close() // the witness has its own copy

	args := append([]string{}, e.witnessArgv[1:]...)
	args = append(args, WitnessCommand, kind,
		"--"+WitnessFlagPipeline+"="+e.Pipeline,
		"--"+WitnessFlagCallTimeout+"="+e.CallTimeout.String(),
		"--"+WitnessFlagParent+"="+strconv.Itoa(os.Getpid()),
		"--"+WitnessFlagEvents+"="+e.Events.Path(),
		"--"+WitnessFlagFiles+"="+strconv.Itoa(len(files)))
	args = append(args, "--"+WitnessFlagLock+"="+e.lock.Name())
	extra := append([]*os.File{e.Events.file(), e.lock}, files...)

	// The running program's own file, not its path: after an upgrade
	// during the run, the path names another version (or nothing).
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = e.witnessArgv[0] // what ps shows
	cmd.Stdin = r
	cmd.Stderr = os.Stderr // the run's journal
	cmd.ExtraFiles = extra
	// A process group of its own: an interrupt typed at the terminal is
	// for the run, which ends in order and tells its witness so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("starting witness: %w", err)
	}
	return &Witness{cmd: cmd, pipe: w, log: e.Log}, nil
}

// Send tells the witness one line (without a newline; never empty). A
// witness that is gone, or that does not take the line in time, is warned
// about once and killed; the run goes on.
func (w *Witness) Send(line []byte) {
	if w == nil || len(line) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.write(append(line, '\n'))
}

// write writes b to the pipe within witnessWriteWait. Callers hold w.mu.
func (w *Witness) write(b []byte) {
	if w.err != nil {
		return
	}
	_ = w.pipe.SetWriteDeadline(time.Now().Add(witnessWriteWait))
	if _, err := w.pipe.Write(b); err != nil {
		w.err = err
		_ = w.cmd.Process.Kill()
		if w.log != nil {
			w.log.WithError(err).Warn("the witness of this run's removals is gone: a removal the engine carries out after this run dies is recorded only by the next run")
		}
	}
}

// End tells the witness the run knows the answer to everything it sent,
// and waits, briefly, for it to exit.
func (w *Witness) End() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.write([]byte{'\n'}) // the empty line: ended in order
	w.pipe.Close()
	w.mu.Unlock()

	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && w.log != nil {
			w.log.WithError(err).Warn("the witness of this run's removals failed")
		}
	case <-time.After(witnessEndWait):
		_ = w.cmd.Process.Kill()
		<-done
	}
}

// Leave ends the run's side without the end line: the witness settles
// what the run sent and never learnt the answer to, after the run has
// gone. It is not waited for; whoever outlives it reaps it.
func (w *Witness) Leave() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.pipe.Close()
	w.mu.Unlock()
	if w.log != nil {
		w.log.WithField("witness_pid", w.cmd.Process.Pid).Info("removals left unanswered; this run's witness records those the engine carries out")
	}
	go func() { _ = w.cmd.Wait() }()
}

// ReadRun reads what a run sends its witness, handing each line to fn; a
// line over 1 MiB is skipped. It returns ended true when the run said it
// ended in order, false when the pipe ended without that: the run died,
// or left requests unanswered.
func ReadRun(r io.Reader, fn func(line []byte)) (ended bool, err error) {
	_, err = lines.Each(r, maxWitnessLine, func(line []byte) bool {
		if len(line) == 0 {
			ended = true
			return false
		}
		fn(line)
		return true
	})
	return ended, err
}

// WitnessEnv is what a witness body gets: the dead run's events file and
// lock, the stage's own files, and the engine.
type WitnessEnv struct {
	Pipeline string
	// Parent is the run's PID.
	Parent int
	// Events is the run's events file.
	Events *events.Writer
	// Files are the stage's own, in the order it passed them.
	Files       []*os.File
	CallTimeout time.Duration
	Log         logrus.FieldLogger

	lock   *os.File
	docker *client.Client
}

// Source is the events.jsonl source of the run's events.
func (w *WitnessEnv) Source() string { return "ds01-pipe/" + w.Pipeline }

// ClaimLock makes the run's lock, which the witness keeps held (the run's
// own open file), the witness's in the kernel's eyes and in the lock file,
// so that the message of a run locked out names the live holder
// (checkHolder). The kernel lists a flock under the PID that took it, and
// inside a PID namespace does not list one whose taker is gone at all; so
// the witness takes it again through the same open file, shared: a
// conversion from exclusive, which nothing can refuse (no one else holds
// the lock) and which still keeps every run out (runs take it exclusive).
// It does not convert back: a failed conversion drops the lock, and a
// process waiting to share it would make that one fail. A run without a
// lock has none.
func (w *WitnessEnv) ClaimLock() error {
	if w.lock == nil {
		return nil
	}
	if err := unix.Flock(int(w.lock.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return fmt.Errorf("retaking lock %s: %w", w.lock.Name(), err)
	}
	if err := writeHolder(w.lock, witnessHolderText(w.Pipeline, w.Parent)); err != nil {
		return fmt.Errorf("writing lock holder to %s: %w", w.lock.Name(), err)
	}
	return nil
}

// Engine connects to the engine the run used (DOCKER_HOST, as the run),
// negotiating the API version; it fails when the engine does not answer
// within the call timeout.
func (w *WitnessEnv) Engine(ctx context.Context) (client.APIClient, error) {
	if w.docker == nil {
		c, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
		w.docker = c
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout(w.CallTimeout))
	defer cancel()
	if _, err := w.docker.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return nil, &UnreachableError{Host: w.docker.DaemonHost(), Err: err}
	}
	return w.docker, nil
}

// Close closes the connection to the engine, if any.
func (w *WitnessEnv) Close() {
	if w.docker != nil {
		_ = w.docker.Close()
		w.docker = nil
	}
}

// Call gives one engine call its own deadline.
func (w *WitnessEnv) Call(ctx context.Context) (context.Context, context.CancelFunc) {
	d := w.CallTimeout
	if d <= 0 {
		d = 30 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// WitnessBody is what a stage kind's witness does (Spec.Witness): it reads
// the run's lines from run (ReadRun) and, when the run died, settles what
// it left open.
type WitnessBody func(ctx context.Context, w *WitnessEnv, run io.Reader) error

// WitnessOptions are the witness command's flags.
type WitnessOptions struct {
	Kind        string
	Pipeline    string
	Parent      int
	EventsFile  string // "" when the run passed none
	LockFile    string // "" when the run passed none
	Files       int
	CallTimeout time.Duration
	Log         logrus.FieldLogger
}

// RunWitness runs the witness of opts.Kind with the descriptors the run
// passed (see StartWitness) and standard input as the pipe. When ctx ends
// (the witness was told to stop), the body still has WitnessGrace.
func RunWitness(ctx context.Context, reg *Registry, opts WitnessOptions, stdin io.Reader) error {
	graced, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(WitnessGrace, cancel) })
	defer stop()
	ctx = graced

	spec, ok := reg.Lookup(opts.Kind)
	if !ok || spec.Witness == nil {
		return fmt.Errorf("stage kind %q has no witness", opts.Kind)
	}
	w := &WitnessEnv{Pipeline: opts.Pipeline, Parent: opts.Parent, CallTimeout: opts.CallTimeout, Log: opts.Log}
	if w.Log == nil {
		w.Log = logrus.StandardLogger()
	}
	w.Log = w.Log.WithField("pipeline", opts.Pipeline).WithField("witness_of", opts.Parent)
	if opts.EventsFile != "" {
		f, err := inherited(witnessFDEvents, opts.EventsFile)
		if err != nil {
			return err
		}
		ev, err := events.NewWriter(f)
		if err != nil {
			f.Close()
			return err
		}
		defer ev.Close()
		w.Events = ev
	}
	if opts.LockFile != "" {
		f, err := inherited(witnessFDLock, opts.LockFile)
		if err != nil {
			return err
		}
		w.lock = f
		defer func() { w.lock.Close() }() // the taken-over lock, if any
	}
	for i := range opts.Files {
		fd := witnessFDFiles + i
		f, err := inherited(fd, fmt.Sprintf("stage file %d", i+1))
		if err != nil {
			return err
		}
		defer f.Close()
		w.Files = append(w.Files, f)
	}
	defer w.Close()
	return spec.Witness(ctx, w, stdin)
}

// inherited wraps a descriptor the run passed, after checking it is an
// open regular file: a witness started by hand has none, and its number
// may then be one of the runtime's own, which an *os.File would close.
func inherited(fd int, name string) (*os.File, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("witness: %s (fd %d) was not passed: %w", name, fd, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, fmt.Errorf("witness: %s (fd %d) is not a regular file", name, fd)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// closeOnExec marks every descriptor from 3 on close-on-exec, so that a
// started process gets only what is passed to it explicitly.
func closeOnExec() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		// The descriptor of the listing itself is closed by now: EBADF.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("marking fd %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}
