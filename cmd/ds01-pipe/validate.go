package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ds01/ds01-pipe/pipeline"
)

func newValidateCmd(io IOStreams, g *globalOptions) *cobra.Command {
	var varKVs []string
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check pipeline files, the policy files they name and GPU simulation files",
		Long: `validate parses each pipeline file, decodes every stage's attributes, loads the
DS01 policy files and any GPU simulation file it names. Docker and NVML are not
contacted. Each problem is printed with its file, line and column.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vars, err := parseVars(varKVs)
			if err != nil {
				return err
			}
			bad := 0
			for _, file := range args {
				if err := validateFile(file, g.loadOptions(vars)); err != nil {
					fmt.Fprintln(io.Err, err)
					bad++
					continue
				}
				fmt.Fprintf(io.Out, "%s: ok\n", file)
			}
			if bad > 0 {
				return withCode(ExitConfigError, fmt.Errorf("%d of %d file(s) invalid", bad, len(args)))
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&varKVs, "var", nil, "set a pipeline variable, NAME=VALUE (repeatable)")
	return cmd
}

func validateFile(file string, opts pipeline.LoadOptions) error {
	cfg, err := pipeline.LoadFile(file, opts)
	if err != nil {
		return err
	}
	if cfg.GPU.Backend != "sim" && lookupEnv(pipeline.SimEnvVar) == "" {
		return nil
	}
	gpu, err := pipeline.OpenGPU(cfg.GPU, lookupEnv(pipeline.SimEnvVar))
	if err != nil {
		return err
	}
	return gpu.Close()
}
