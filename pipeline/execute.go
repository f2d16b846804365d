package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
)

// SimEnvVar names the environment variable that points every run at a GPU
// simulation file, overriding the pipeline's gpu block.
const SimEnvVar = nvml.SimFileEnv

// ExecOptions are the run-time inputs of Execute.
type ExecOptions struct {
	Mode   Mode
	Now    time.Time // zero: the wall clock
	Docker Docker    // nil: connect to the engine named by DOCKER_HOST (or the default socket)
	Log    logrus.FieldLogger
	// SimFile, when set, overrides the pipeline's gpu block with a
	// simulation file (the DS01_PIPE_NVML_SIM variable).
	SimFile     string
	CallTimeout time.Duration
	// Progress logs, at Info, every stage that runs longer than
	// ProgressEvery (for a terminal; the timer's journal stays quiet).
	Progress bool
	// Hooks observe every stage (the apply gate); see Run.
	Hooks []Hook
	// Witness is the command line that starts this program (its
	// executable first), to which StartWitness adds the witness command:
	// nil, no witness (library use).
	Witness []string
}

// LockedError says another run holds the pipeline's lock.
type LockedError struct {
	Path   string
	Holder string
}

func (e *LockedError) Error() string {
	h := e.Holder
	if h == "" {
		h = "unknown holder"
	}
	return fmt.Sprintf("another run holds %s (%s); nothing done", e.Path, h)
}

// UnreachableError says the Docker engine did not answer.
type UnreachableError struct {
	Host string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the Docker engine at %s: %v", e.Host, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// DeadlineError says the run did not finish within the pipeline's timeout.
type DeadlineError struct {
	Pipeline string
	Timeout  time.Duration
	Err      error
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("pipeline %s did not finish within its deadline (timeout = %q in the pipeline block): %v", e.Pipeline, e.Timeout.String(), e.Err)
}

func (e *DeadlineError) Unwrap() error { return e.Err }

// CallDeadlineError says a deadline inside the run passed before the
// run's own: a Docker call's (--call-timeout), or a stage's timeout.
type CallDeadlineError struct {
	CallTimeout time.Duration
	Stage       string // the stage whose own timeout passed, if that was it
	Err         error
}

func (e *CallDeadlineError) Error() string {
	if e.Stage != "" {
		return fmt.Sprintf("stage %s did not finish within its own timeout: %v", e.Stage, e.Err)
	}
	d := e.CallTimeout
	if d <= 0 {
		d = defaultCallTimeout
	}
	return fmt.Sprintf("a Docker call did not answer within its deadline of %s (--call-timeout): %v", d, e.Err)
}

// defaultCallTimeout is Env.Call's deadline when CallTimeout is unset.
const defaultCallTimeout = 30 * time.Second

func (e *CallDeadlineError) Unwrap() error { return e.Err }

// OpenGPU opens the GPU back end a pipeline asks for. Every error here is
// a configuration error (a simulation file that does not parse, an unknown
// back end): an unavailable driver is not an error but an unavailable view.
func OpenGPU(cfg GPUConfig, simOverride string) (nvml.Backend, error) {
	opts := nvml.Options{Backend: cfg.Backend, SimFile: cfg.SimFile, Trust: simTrust(cfg)}
	if simOverride != "" {
		opts = nvml.Options{Backend: nvml.BackendSim, SimFile: simOverride, Trust: simTrust(cfg)}
	}
	b, err := nvml.Open(opts)
	if err != nil {
		return nil, gpuConfigError(err)
	}
	return b, nil
}

// Execute runs a loaded pipeline: it opens the GPU view, opens the events
// file and takes the lock (run mode only), connects to Docker, and runs
// the stages under the pipeline's deadline. The returned Env describes the
// run even on error. In run mode the caller ends every run, whatever its
// outcome, with RecordEnd, which records it (pipeline.summary, metrics)
// and closes the events file.
func Execute(ctx context.Context, cfg *Config, opts ExecOptions) (*Env, *Result, error) {
	log := opts.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	started := time.Now()
	now := opts.Now
	if now.IsZero() {
		now = started
	}
	host, _ := os.Hostname()
	env := &Env{
		Pipeline:    cfg.Name,
		File:        cfg.File,
		Mode:        opts.Mode,
		Now:         now.UTC(),
		Host:        host,
		Started:     started,
		CallTimeout: opts.CallTimeout,
		GPURequired: cfg.GPU.Required,
		Policy:      cfg.Policy,
		Log:         log.WithField("pipeline", cfg.Name),
		Stats:       &Stats{},
		witnessArgv: opts.Witness,
	}

	gpu, err := OpenGPU(cfg.GPU, opts.SimFile)
	if err != nil {
		return env, nil, err
	}
	defer gpu.Close()
	env.GPU = gpu

	if opts.Mode == ModeRun {
		// Opened before the lock and the engine, so that whatever follows
		// (a held lock, an unreachable engine, an action at any point) is
		// recorded: each stage's event is appended as its action completes.
		// (A configuration error above is not a run: nothing is recorded.)
		if path := EventsPath(cfg.Stages); path != "" {
			env.Events = OpenEventLog(path)
			if err := env.Events.OpenErr(); err != nil {
				env.Log.WithError(err).Error("events file cannot be opened; this run's actions will not be recorded in it")
			}
		}
	}

	if opts.Mode == ModeRun && cfg.LockFile != "" {
		lf, err := lock(cfg.LockFile, cfg.Name, cfg.Trust)
		if err != nil {
			var locked *LockedError
			if errors.As(err, &locked) {
				locked.checkHolder() // name the live holder, never a stale one
			}
			return env, nil, err
		}
		defer lf.Close()
		env.lock = lf
	}

	parent := ctx
	ctx, cancel := context.WithTimeout(parent, cfg.Timeout)
	defer cancel()

	docker := opts.Docker
	if docker == nil {
		c, err := client.New(client.FromEnv)
		if err != nil {
			return env, nil, fmt.Errorf("docker client: %w", err)
		}
		defer c.Close()
		pingCtx, pingCancel := context.WithTimeout(ctx, pingTimeout(opts.CallTimeout))
		_, err = c.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true})
		pingCancel()
		if err != nil {
			return env, nil, &UnreachableError{Host: c.DaemonHost(), Err: err}
		}
		eng := NewEngine(c)
		defer eng.CloseIdleConnections()
		docker = eng
	}
	env.Docker = docker

	stages := cfg.Stages
	hooks := opts.Hooks
	if opts.Progress {
		hooks = append(hooks, NewProgress(ProgressEvery))
	}
	res, err := Run(ctx, env, stages, hooks...)
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && parent.Err() == nil:
		err = &DeadlineError{Pipeline: cfg.Name, Timeout: cfg.Timeout, Err: err}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		err = &CallDeadlineError{CallTimeout: env.CallTimeout, Stage: timedOutStage(stages, res), Err: err}
	}
	return env, res, err
}

func pingTimeout(call time.Duration) time.Duration {
	if call > 0 && call < 5*time.Second {
		return call
	}
	return 5 * time.Second
}

// timedOutStage names the failed stage when it ran at least as long as its
// own timeout, else "".
func timedOutStage(stages []StageInstance, res *Result) string {
	if res == nil {
		return ""
	}
	for _, t := range res.Timings {
		if t.Err == nil {
			continue
		}
		for _, st := range stages {
			if st.Ref == t.Ref && st.Timeout > 0 && t.Duration >= st.Timeout {
				return st.Ref.String()
			}
		}
		return ""
	}
	return ""
}
