package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ds01/ds01-pipe/pipeline"
)

// newWitnessCmd is the hidden command a run starts to outlive it
// (pipeline.StartWitness): not for people, so it has no help of its own.
func newWitnessCmd(io IOStreams, g *globalOptions) *cobra.Command {
	var o pipeline.WitnessOptions
	cmd := &cobra.Command{
		Use:    pipeline.WitnessCommand + " KIND",
		Short:  "Record what a run that died had asked of the engine (started by runs; not for interactive use)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The run's terminal and session are the run's: a hang-up
			// there must not stop the recording of what it did, nor may
			// a terminal with tostop set stop the witness (its own
			// process group is in the background) when it writes a line.
			// Nor may a reader of the run's stderr that went away (a
			// pipe to logger or tee) kill it with SIGPIPE: its lines
			// are lost then, not its records.
			signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGTTOU, syscall.SIGTTIN, syscall.SIGPIPE)
			// Started through /proc/self/exe, its command name would be
			// "exe" in ps and in a locked-out run's message.
			_ = os.WriteFile("/proc/self/comm", []byte("ds01-pipe"), 0)
			log, err := g.logger(io)
			if err != nil {
				return err
			}
			o.Kind = args[0]
			o.Log = log
			return pipeline.RunWitness(cmd.Context(), pipeline.DefaultRegistry, o, io.In)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Pipeline, pipeline.WitnessFlagPipeline, "", "the run's pipeline")
	f.StringVar(&o.EventsFile, pipeline.WitnessFlagEvents, "", "the run's events file, passed as fd 3")
	f.StringVar(&o.LockFile, pipeline.WitnessFlagLock, "", "the run's lock file, passed as fd 4")
	f.IntVar(&o.Files, pipeline.WitnessFlagFiles, 0, "descriptors of the stage's own, from fd 5")
	f.DurationVar(&o.CallTimeout, pipeline.WitnessFlagCallTimeout, 0, "the run's call timeout")
	f.IntVar(&o.Parent, pipeline.WitnessFlagParent, 0, "the run's PID")
	return cmd
}

// witnessArgv starts this program as a witness of a run with the same
// diagnostics (pipeline.ExecOptions.Witness).
func (g *globalOptions) witnessArgv() []string {
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	return []string{exe, "--log-format=" + g.logFormat, "--log-level=" + g.logLevel}
}
