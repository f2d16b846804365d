package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ds01/ds01-pipe/pipeline"
)

// ExitCode is the process exit status; the values are a public contract.
type ExitCode int

// Exit codes (DESIGN.md section 6).
const (
	ExitOK          ExitCode = 0
	ExitFailure     ExitCode = 1  // runtime failure: Docker unreachable, deadline
	ExitPartial     ExitCode = 2  // done, but some actions failed
	ExitLocked      ExitCode = 3  // another run holds the lock
	ExitChanges     ExitCode = 4  // plan --detailed-exitcode: something would be removed
	ExitConfigError ExitCode = 78 // bad HCL, bad policy or simulation file, bad usage
)

// IOStreams are the command's standard streams, replaceable in tests.
type IOStreams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

func (s IOStreams) outIsTerminal() bool {
	f, ok := s.Out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (s IOStreams) errIsTerminal() bool {
	f, ok := s.Err.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// exitError carries an exit code up to Main together with its message.
type exitError struct {
	code ExitCode
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code ExitCode, err error) error { return &exitError{code: code, err: err} }

func usageError(format string, args ...any) error {
	return withCode(ExitConfigError, fmt.Errorf(format, args...))
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	logFormat string
	logLevel  string
}

// Main runs the command line and returns the exit code.
func Main(args []string, io IOStreams) ExitCode {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root := newRootCmd(io)
	root.SetArgs(args)
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(io.Err, "ds01-pipe:", ee.err)
		}
		return ee.code
	}
	// Anything cobra itself rejected (unknown flag, wrong argument count) is bad usage.
	fmt.Fprintln(io.Err, "ds01-pipe:", err)
	return ExitConfigError
}

func newRootCmd(io IOStreams) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "ds01-pipe",
		Short: "Keep a shared GPU server clean: remove stale containers and release their GPUs",
		Long: `ds01-pipe runs declarative pipelines (HCL files) that find containers created and
never started, containers stopped longer than their owner's hold time, and containers
nobody can attribute; decide per DS01 policy what to remove; release their GPUs after
checking live NVML state; remove them; and log every action to DS01's events.jsonl.

Exit codes: 0 done, 1 runtime failure, 2 some actions failed, 3 another run holds the
lock, 4 plan --detailed-exitcode found removals, 78 configuration or usage error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "auto", "diagnostics on stderr: text, json or auto (text on a terminal, json otherwise)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "diagnostics level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError("%v", err) })

	root.AddCommand(
		newPlanCmd(io, g),
		newRunCmd(io, g),
		newValidateCmd(io, g),
		newStagesCmd(io),
		newVersionCmd(io),
	)
	return root
}

// logger builds the diagnostics logger. It writes only to stderr, never
// into the JSON on stdout.
func (g *globalOptions) logger(io IOStreams) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(io.Err)
	lvl, err := logrus.ParseLevel(g.logLevel)
	if err != nil {
		return nil, usageError("--log-level: %v", err)
	}
	log.SetLevel(lvl)
	switch g.logFormat {
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	case "text":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "auto":
		if io.errIsTerminal() {
			log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
		} else {
			log.SetFormatter(&logrus.JSONFormatter{})
		}
	default:
		return nil, usageError("--log-format must be text, json or auto, not %q", g.logFormat)
	}
	return log, nil
}

// loadConfig loads a pipeline file, turning configuration errors into exit 78.
func loadConfig(path string, vars map[string]string) (*pipeline.Config, error) {
	cfg, err := pipeline.LoadFile(path, pipeline.LoadOptions{Vars: vars})
	if err != nil {
		return nil, withCode(ExitConfigError, err)
	}
	return cfg, nil
}
