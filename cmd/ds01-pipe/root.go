package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ds01/ds01-pipe/internal/printable"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ds01/ds01-pipe/pipeline"
)

// ExitCode is the process exit status; the values are a public contract.
type ExitCode int

// Exit codes (docs/exit-codes.md).
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

// noColor reports whether the user asked for no colours (NO_COLOR set to
// anything but "", https://no-color.org).
func noColor() bool { return lookupEnv("NO_COLOR") != "" }

// outWidth is the width of the terminal stdout is, or 0 when stdout is
// not a terminal (a file, a pipe): the table then cuts nothing.
func (s IOStreams) outWidth() int {
	f, ok := s.Out.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
		return w
	}
	return 120 // a terminal that does not say
}

func (s IOStreams) errIsTerminal() bool {
	f, ok := s.Err.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// errIsJournal reports whether stderr is the systemd journal: systemd sets
// JOURNAL_STREAM to the device and inode of the stream it connected, and
// only when stderr is that very stream (not a redirect in a child) is the
// answer yes.
func (s IOStreams) errIsJournal() bool {
	f, ok := s.Err.(*os.File)
	if !ok {
		return false
	}
	return isJournalStream(f, lookupEnv("JOURNAL_STREAM"))
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
	logFormat          string
	logLevel           string
	allowInsecureFiles bool
}

// allowInsecureFilesHelp is the help of --allow-insecure-files, word for word.
const allowInsecureFilesHelp = "accept pipeline, policy and simulation files that non-root users could have written; " +
	"ds01-pipe runs as root, so such a file lets that user decide what gets removed"

// loadOptions are the pipeline loader's options for this command line. As
// root, files that non-root users could have written are refused
// (pipeline.CheckFilePermissions) unless --allow-insecure-files is given.
func (g *globalOptions) loadOptions(vars map[string]string) pipeline.LoadOptions {
	return pipeline.LoadOptions{Vars: vars, StrictFiles: os.Geteuid() == 0 && !g.allowInsecureFiles}
}

// Main runs the command line and returns the exit code.
func Main(args []string, io IOStreams) ExitCode {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root := newRootCmd(io)
	root.SetArgs(args)
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	strictCompletion(root)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitConfigError // anything cobra itself rejected (unknown flag, wrong argument count) is bad usage
	var ee *exitError
	if errors.As(err, &ee) {
		code, err = ee.code, ee.err
	}
	if err != nil && err.Error() != "" {
		// The last line of every failed command is its reason: what
		// `systemctl status` and the journal show for the run.
		// Paths and names in the error come from the command line and
		// from labels: escaped, they cannot forge a line or move the cursor.
		line := []byte("ds01-pipe: " + printable.Text(errorText(err)) + "\n")
		if io.errIsJournal() {
			prio := journalPriority(logrus.ErrorLevel)
			if code == ExitLocked {
				prio = journalPriority(logrus.WarnLevel) // skipped, not failed
			}
			line = prefixLines(line, prio)
		}
		_, _ = io.Err.Write(line)
	}
	return code
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
The lifecycle pipeline warns the owners of idle or long-running GPU containers, then
stops them; the audit pipelines and explain only report.

Pipelines ship in /etc/ds01-pipe/pipelines; try one with plan, which touches nothing.

Exit codes: 0 done, 1 runtime failure, 2 some actions failed, 3 another run holds the
lock, 4 plan --detailed-exitcode found removals, 78 configuration or usage error.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		Version:           version,
		DisableAutoGenTag: true, // reproducible man pages
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "auto", "`FORMAT` of the diagnostics on stderr: text, json or auto (text on a terminal, plain text without timestamps to the systemd journal, json otherwise)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "least `LEVEL` of the diagnostics shown: debug, info, warn or error")
	root.PersistentFlags().BoolVar(&g.allowInsecureFiles, "allow-insecure-files", false, allowInsecureFilesHelp)
	// --version says what `version` says (cobra's own line lacks the
	// toolchain and platform). The line has no template actions.
	root.SetVersionTemplate(versionLine() + "\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError("%v", err) })

	root.AddCommand(
		newPlanCmd(io, g),
		newRunCmd(io, g),
		newApplyCmd(io, g),
		newValidateCmd(io, g),
		newStagesCmd(io),
		newVersionCmd(io),
		newManCmd(io),
		newStateCmd(io),
		newExplainCmd(io, g),
		newWitnessCmd(io, g),
	)
	setupCompletion(root)
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
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: noColor()})
	case "auto":
		switch {
		case io.errIsTerminal():
			log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: noColor()})
		case io.errIsJournal():
			// journald stamps every line itself and shows no colours.
			log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true})
		default:
			log.SetFormatter(&logrus.JSONFormatter{})
		}
	default:
		return nil, usageError("--log-format must be text, json or auto, not %q", g.logFormat)
	}
	if io.errIsJournal() {
		// Whatever the format, each line carries its priority.
		log.SetFormatter(journalFormatter{log.Formatter})
	}
	return log, nil
}
