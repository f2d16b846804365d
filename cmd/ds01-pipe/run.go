package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/planfile"
	"github.com/ds01/ds01-pipe/pipeline/report"
	logstage "github.com/ds01/ds01-pipe/stages/log"
)

// runOptions are the flags of plan and run.
type runOptions struct {
	mode               pipeline.Mode
	file               string
	vars               []string
	now                string
	format             string
	allowClockOverride bool
	detailedExitCode   bool
	callTimeout        time.Duration
	out                string // plan --out: the plan file to write
}

func newPlanCmd(io IOStreams, g *globalOptions) *cobra.Command {
	o := &runOptions{mode: pipeline.ModePlan}
	cmd := &cobra.Command{
		Use:   "plan FILE",
		Short: "Show what a pipeline would do, touching nothing",
		Long: `plan runs every stage of the pipeline in decision mode: containers are listed and
inspected, GPUs are read, and each container gets its verdict with the rule, the clock,
the age, the limit and the time left. Nothing is removed, released, killed or logged
to events.jsonl, and no lock is taken. With --out the plan is also saved to a file that
ds01-pipe apply carries out later, touching only the containers it lists.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			return runPipeline(cmd, io, g, o)
		},
	}
	addRunFlags(cmd, o)
	cmd.Flags().BoolVar(&o.detailedExitCode, "detailed-exitcode", false, "exit 4 when something would be removed or stopped (0 when nothing would)")
	cmd.Flags().StringVar(&o.out, "out", "", "also save the plan to `PLAN` (mode 0600), for ds01-pipe apply to carry out")
	return cmd
}

func newRunCmd(io IOStreams, g *globalOptions) *cobra.Command {
	o := &runOptions{mode: pipeline.ModeRun}
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a pipeline: remove what policy says, release GPUs, log every action",
		Long: `run executes the pipeline for real, under the pipeline's lock and deadline. Exempt
containers are never stopped or removed, and no container is removed while it runs:
the cleanup pipeline removes only containers that are not running; the lifecycle
pipeline stops running GPU containers that are idle or past their maximum runtime,
after the owner's notices, and removes the idle-stopped ones in the same run. Each
removal is re-checked against a fresh inspect just before it happens.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			return runPipeline(cmd, io, g, o)
		},
	}
	addRunFlags(cmd, o)
	cmd.Flags().BoolVar(&o.allowClockOverride, "allow-clock-override", false, "accept --now on run (a clock set forward removes containers early)")
	return cmd
}

// Help texts of the flags several commands share. A word in backquotes is
// the placeholder help shows after the flag (--var NAME=VALUE).
const (
	helpVar         = "set a pipeline variable, `NAME=VALUE` (repeatable)"
	helpNow         = "evaluate every age at `TIME` (RFC3339, for example 2026-02-16T15:50:03Z) instead of the wall clock"
	helpFormat      = "`FORMAT` of the report: table or json (default: table on a terminal, json otherwise)"
	helpCallTimeout = "the longest one Docker call may take, a `DURATION` such as 30s or 2m"
)

func addRunFlags(cmd *cobra.Command, o *runOptions) {
	cmd.Flags().StringArrayVar(&o.vars, "var", nil, helpVar)
	cmd.Flags().StringVar(&o.now, "now", "", helpNow)
	cmd.Flags().StringVar(&o.format, "format", "", helpFormat)
	addCallTimeoutFlag(cmd, &o.callTimeout)
}

// callTimeout is the value of --call-timeout: a duration above zero. The
// run takes 0 or less for its 30s default, so --call-timeout=0 (meant as
// "no limit") or a negative value would be quietly ignored; it is a bad
// flag instead (exit 78).
type callTimeout struct{ d *time.Duration }

func (c callTimeout) String() string {
	if c.d == nil {
		return ""
	}
	return c.d.String()
}

func (c callTimeout) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("must be above zero, not %s", s)
	}
	*c.d = d
	return nil
}

func (c callTimeout) Type() string { return "duration" }

// addCallTimeoutFlag adds --call-timeout, 30s unless given.
func addCallTimeoutFlag(cmd *cobra.Command, d *time.Duration) {
	*d = 30 * time.Second
	cmd.Flags().Var(callTimeout{d}, "call-timeout", helpCallTimeout)
}

func parseVars(kvs []string) (map[string]string, error) {
	vars := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, usageError("--var %q: expected NAME=VALUE", kv)
		}
		vars[name] = value
	}
	return vars, nil
}

func (o *runOptions) clock() (time.Time, error) {
	if o.now == "" {
		return time.Time{}, nil
	}
	if o.mode == pipeline.ModeRun && !o.allowClockOverride {
		return time.Time{}, usageError("--now on run needs --allow-clock-override: a clock set forward would remove containers early")
	}
	t, err := time.Parse(time.RFC3339Nano, o.now)
	if err != nil {
		return time.Time{}, usageError("--now %q is not an RFC3339 time (for example 2026-02-16T15:50:03Z)", o.now)
	}
	return t.UTC(), nil
}

func (o *runOptions) outputFormat(io IOStreams) (string, error) {
	switch o.format {
	case "table", "json":
		return o.format, nil
	case "":
		if io.outIsTerminal() {
			return "table", nil
		}
		return "json", nil
	}
	return "", usageError("--format must be table or json, not %q", o.format)
}

// prepared is what plan, run and explain settle before the pipeline runs.
type prepared struct {
	log    *logrus.Logger
	vars   map[string]string
	now    time.Time
	format string
	cfg    *pipeline.Config
	text   []byte // the pipeline file, for positions and the plan's hash
}

// prepare reads the flags and loads the pipeline; each problem is a usage
// or configuration error before anything is contacted.
func (o *runOptions) prepare(io IOStreams, g *globalOptions) (*prepared, error) {
	p := &prepared{}
	var err error
	if p.log, err = g.logger(io); err != nil {
		return nil, err
	}
	if p.vars, err = parseVars(o.vars); err != nil {
		return nil, err
	}
	if p.now, err = o.clock(); err != nil {
		return nil, err
	}
	if p.format, err = o.outputFormat(io); err != nil {
		return nil, err
	}
	if p.cfg, p.text, err = loadConfigText(g, o.file, p.vars); err != nil {
		return nil, err
	}
	return p, nil
}

func runPipeline(cmd *cobra.Command, io IOStreams, g *globalOptions, o *runOptions) error {
	p, err := o.prepare(io, g)
	if err != nil {
		return err
	}
	log, vars, now, format, cfg, text := p.log, p.vars, p.now, p.format, p.cfg, p.text
	env, res, runErr := pipeline.Execute(cmd.Context(), cfg, pipeline.ExecOptions{
		Mode:        o.mode,
		Now:         now,
		Log:         log,
		SimFile:     lookupEnv(pipeline.SimEnvVar),
		CallTimeout: o.callTimeout,
		Progress:    io.errIsTerminal(),
		Witness:     g.witnessArgv(),
	})
	var saveErr error
	if o.out != "" && runErr == nil && res != nil {
		if saveErr = savePlan(o.out, env, res, planfile.Source{File: o.file, Text: text, Vars: vars}); saveErr == nil {
			log.WithField("plan", o.out).Info("plan saved; apply it with: ds01-pipe apply " + o.out)
		}
	}
	if saveErr != nil {
		// The plan is still worth reading, and its summary.error says
		// why the exit is 1 (docs/exit-codes.md).
		runErr = saveErr
	}
	if err := finishRun(io, log, format, cfg.Stages, env, res, runErr); err != nil {
		return err
	}
	if o.mode == pipeline.ModePlan && res != nil && planActs(res) {
		if format == "table" && o.out == "" {
			// A person reads the table: say how to act on it.
			log.Info(actHint(o.file, o.vars, now))
		}
		if o.detailedExitCode {
			return withCode(ExitChanges, errors.New(""))
		}
	}
	return nil
}

// planActs reports whether a plan found something to act on: a removal, or
// the lifecycle's stop.
func planActs(res *pipeline.Result) bool {
	for _, rec := range res.Batch.Records {
		if rec.Verdict.Action.Acts() {
			return true
		}
	}
	return false
}

// actHint is the line a plan read on a terminal ends with: the run command
// that carries it out, with the plan's --var flags, quoted for the shell.
// A plan made at --now (now is not zero) says so: the run it suggests
// decides on the wall clock, where what the plan found due may not be yet,
// and it is never given --now (that needs --allow-clock-override, and a
// clock set forward removes containers early).
func actHint(file string, vars []string, now time.Time) string {
	cmd := "ds01-pipe run " + shellWord(file)
	for _, v := range vars {
		cmd += " --var " + shellWord(v)
	}
	hint := "nothing was changed; "
	if !now.IsZero() {
		hint += "this plan was made at --now " + now.UTC().Format(time.RFC3339Nano) +
			": on the wall clock these containers may not be due yet (plan without --now to see what is); "
	}
	return hint + "to act on the wall clock: " + cmd +
		" (or save the plan with --out PLAN and carry out just that with ds01-pipe apply PLAN)"
}

// shellWord quotes s for a POSIX shell unless it needs none.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,@+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// finishRun ends a run (plan, run or apply) that loaded its pipeline,
// whatever happened but a configuration error: it turns the result into
// the exit code (docs/exit-codes.md), has the pipeline record the run's
// end (the log stage's
// pipeline.summary event and metrics, in run mode), and prints the report:
// the JSON document always, the table when the stages ran.
func finishRun(io IOStreams, log logrus.FieldLogger, format string, stages []pipeline.StageInstance, env *pipeline.Env, res *pipeline.Result, runErr error) error {
	code, err := exitStatus(res, runErr)
	if code == ExitConfigError {
		// Not a run: nothing was contacted or done, nothing is recorded,
		// and the diagnostics on stderr are the whole answer.
		_ = pipeline.RecordEnd(env, nil, pipeline.RunEnd{}) // no recorder: closes the events file
		return withCode(code, err)
	}
	reportErr := runErr
	if rerr := pipeline.RecordEnd(env, stages, pipeline.RunEnd{
		Result: res, Err: err, ExitCode: int(code), Outcome: code.outcome(), Ended: time.Now(),
	}); rerr != nil && code == ExitOK {
		// Done, but the run's own record is missing: as for a lost
		// action event, "done, but something failed", and the report's
		// summary.error says so (nothing else in it would).
		code, err, reportErr = ExitPartial, rerr, rerr
	}
	if (format == "json" || res != nil) && !stdoutTaken(stages) {
		if werr := writeReport(io, format, report.Build(env, res, reportErr)); werr != nil && code == ExitOK {
			return withCode(ExitFailure, fmt.Errorf("writing report: %w", werr))
		}
	}
	if res != nil {
		log.WithField("api_calls", fmt.Sprintf("list=%d inspect=%d remove=%d", env.Stats.ListCalls.Load(), env.Stats.InspectCalls.Load(), env.Stats.RemoveCalls.Load())).
			Debug("docker API calls")
	}
	if code == ExitOK {
		return nil
	}
	return withCode(code, err)
}

// exitStatus is the exit code of a run and the error that says why it is
// not 0.
func exitStatus(res *pipeline.Result, runErr error) (ExitCode, error) {
	var locked *pipeline.LockedError
	switch {
	case pipeline.IsConfigError(runErr):
		return ExitConfigError, runErr
	case errors.As(runErr, &locked):
		return ExitLocked, runErr
	case runErr != nil:
		return ExitFailure, runErr
	case res != nil && res.Failed() > 0:
		return ExitPartial, fmt.Errorf("%d action(s) failed: %s", res.Failed(), failures(res))
	}
	return ExitOK, nil
}

// maxFailuresNamed bounds the failures the error line names: it is the
// line the journal and `systemctl status` show, and the report has all.
const maxFailuresNamed = 3

// failures names what failed, for the one line that says why a run ended
// with exit 2 (under systemd the report goes nowhere).
func failures(res *pipeline.Result) string {
	var parts []string
	for _, rec := range res.Batch.Records {
		if rec.Outcome.Status == pipeline.OutcomeFailed {
			parts = append(parts, rec.Container.Name+": "+rec.Outcome.Error)
		}
	}
	for _, err := range res.Partial {
		parts = append(parts, err.Error())
	}
	if len(parts) > maxFailuresNamed {
		parts = append(parts[:maxFailuresNamed], fmt.Sprintf("and %d more in the report", len(parts)-maxFailuresNamed))
	}
	// Container names come from their owners: a newline there must not
	// forge a second line in the journal.
	return logstage.Sanitize(strings.Join(parts, "; "))
}

// outcome names an exit code of a run, for the pipeline.summary event and
// the metrics.
func (c ExitCode) outcome() string {
	switch c {
	case ExitOK:
		return "done"
	case ExitFailure:
		return "failed"
	case ExitPartial:
		return "partial"
	case ExitLocked:
		return "locked"
	case ExitConfigError:
		return "config_error"
	}
	return "exit_" + strconv.Itoa(int(c))
}

func writeReport(io IOStreams, format string, doc *report.Document) error {
	if format == "json" {
		return doc.WriteJSON(io.Out)
	}
	return doc.WriteTableWidth(io.Out, io.outWidth())
}
