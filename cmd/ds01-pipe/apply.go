package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/planfile"
)

// DefaultPlanMaxAge is how old a plan apply accepts by default.
const DefaultPlanMaxAge = time.Hour

type applyOptions struct {
	planFile    string
	maxAge      time.Duration
	format      string
	callTimeout time.Duration
}

func newApplyCmd(io IOStreams, g *globalOptions) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply PLAN",
		Short: "Carry out a plan saved with plan --out, and nothing else",
		Long: `apply runs the pipeline that made PLAN (same file, same --var values) in run
mode, under its lock and deadline, on the wall clock, and lets it remove only the
containers the plan lists, and each only if its fingerprint (state, start and finish
times, restart count, name, labels) still matches the plan. A planned container that
changed is reported with the outcome "changed" and left alone; a container the run
would remove now but the plan does not list is skipped (reason not_in_plan). The
pipeline still decides: a planned container it would keep now (a new exemption, a
longer hold) is kept. A plan can only narrow a run, never widen it.

apply refuses (exit 78, nothing touched) a plan older than --max-age, a plan made on
another host, and a plan whose pipeline file changed or now holds another pipeline.

Exit codes are those of run: 0 done, 1 runtime failure, 2 some actions failed,
3 another run holds the lock, 78 unusable plan or configuration.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.planFile = args[0]
			return applyRun(cmd, io, g, o)
		},
	}
	cmd.Flags().DurationVar(&o.maxAge, "max-age", DefaultPlanMaxAge, "refuse a plan older than `DURATION` (0: any age)")
	cmd.Flags().StringVar(&o.format, "format", "", helpFormat)
	addCallTimeoutFlag(cmd, &o.callTimeout)
	return cmd
}

func applyRun(cmd *cobra.Command, io IOStreams, g *globalOptions, o *applyOptions) error {
	log, err := g.logger(io)
	if err != nil {
		return err
	}
	format, err := (&runOptions{format: o.format}).outputFormat(io)
	if err != nil {
		return err
	}
	if o.maxAge < 0 {
		return usageError("--max-age must not be negative")
	}
	// As root the plan is held to the pipeline file's rule (root's, in
	// folders only root can write): it names the file and variables apply
	// runs with.
	plan, err := planfile.ReadTrusted(o.planFile, pipeline.FileTrust(g.loadOptions(nil).StrictFiles, nil))
	if err != nil {
		return withCode(ExitConfigError, err)
	}
	if err := plan.CheckAge(o.planFile, time.Now(), o.maxAge); err != nil {
		return withCode(ExitConfigError, err)
	}
	cfg, text, err := loadConfigText(g, plan.File, plan.Vars)
	if err != nil {
		if text != nil && planfile.Hash(text) != plan.FileSHA256 {
			// The file no longer loads with the plan's variables because it
			// changed: say that, not what broke in the new text.
			return withCode(ExitConfigError, plan.CheckSource(o.planFile, "", plan.Pipeline, planfile.Hash(text)))
		}
		return err
	}
	host, _ := os.Hostname()
	if err := plan.CheckSource(o.planFile, host, cfg.Name, planfile.Hash(text)); err != nil {
		return withCode(ExitConfigError, err)
	}
	if !plan.Now.IsZero() && plan.Now.Sub(plan.Created).Abs() > time.Minute {
		log.WithField("plan_now", plan.Now.Format(time.RFC3339)).
			Warn("the plan was made with --now; apply decides on the wall clock, so planned containers that are not due yet are kept")
	}

	gate := plan.Gate()
	env, res, runErr := pipeline.Execute(cmd.Context(), cfg, pipeline.ExecOptions{
		Hooks:       []pipeline.Hook{gate},
		Mode:        pipeline.ModeRun,
		Log:         log,
		SimFile:     lookupEnv(pipeline.SimEnvVar),
		CallTimeout: o.callTimeout,
		Progress:    io.errIsTerminal(),
		Witness:     g.witnessArgv(),
	})
	if res != nil && runErr == nil {
		for _, c := range gate.Missing() {
			log.WithField("container", c.Name).WithField("id", shortID(c.ID)).Info("planned container no longer exists (or left the pipeline's scope)")
		}
		for _, rec := range res.Batch.Records {
			if !gate.Planned(rec.Container.ID) || gate.Changed(rec.Container.ID) != "" || rec.Verdict.Action == pipeline.ActionRemove {
				continue
			}
			log.WithField("container", rec.Container.Name).WithField("verdict", string(rec.Verdict.Action)).WithField("reason", string(rec.Verdict.Reason)).
				Info("planned container is no longer due for removal; kept")
		}
	}
	return finishRun(io, log, format, cfg.Stages, env, res, runErr)
}

// loadConfigText reads a pipeline file once and loads the configuration
// from exactly those bytes, so that a plan's hash and its decisions come
// from the same text. When the text was read but does not load, it is
// returned with the error.
func loadConfigText(g *globalOptions, path string, vars map[string]string) (*pipeline.Config, []byte, error) {
	opts := g.loadOptions(vars)
	// ReadFile refuses, as a configuration error, a file that non-root users
	// could have written (as root), a non-regular file and an oversized one.
	text, err := pipeline.ReadFile(path, opts)
	if err != nil {
		return nil, nil, withCode(ExitConfigError, err)
	}
	cfg, err := pipeline.Load(path, text, opts)
	if err != nil {
		return nil, text, withCode(ExitConfigError, err)
	}
	return cfg, text, nil
}

// savePlan writes the plan of a finished plan-mode run.
func savePlan(path string, env *pipeline.Env, res *pipeline.Result, src planfile.Source) error {
	plan, err := planfile.New(env, res.Batch, src, time.Now())
	if err != nil {
		return fmt.Errorf("saving the plan: %w", err)
	}
	if err := plan.Write(path); err != nil {
		return fmt.Errorf("saving the plan: %w", err)
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
