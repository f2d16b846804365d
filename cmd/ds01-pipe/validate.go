package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ds01/ds01-pipe/internal/printable"
	"github.com/ds01/ds01-pipe/pipeline"
)

func newValidateCmd(io IOStreams, g *globalOptions) *cobra.Command {
	var varKVs []string
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check pipeline files, the policy files they name and GPU simulation files",
		Long: `validate parses each pipeline file, decodes every stage's attributes, loads the
DS01 policy files and any GPU simulation file it names. Docker and NVML are not
contacted. Each problem is printed with its file, line and column; with several
files, each invalid file is named first.

A --var is given to the files that declare that variable and ignored by the others
(a variable no file declares is an error). Policy (YAML) and simulation (JSON) files
are checked through the pipeline that names them.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vars, err := parseVars(varKVs)
			if err != nil {
				return err
			}
			opts := g.loadOptions(nil)
			if err := checkVarsDeclared(args, vars, opts); err != nil {
				return err
			}
			bad := 0
			for _, file := range args {
				err := validateFile(file, g.loadOptions(declaredVars(file, vars, opts)))
				if err == nil {
					fmt.Fprintf(io.Out, "%s: ok\n", file)
					continue
				}
				bad++
				if len(args) > 1 && !strings.HasPrefix(err.Error(), file+":") {
					fmt.Fprintf(io.Err, "%s: invalid:\n", printable.Escape(file))
				}
				fmt.Fprintln(io.Err, errorText(err))
			}
			if bad > 0 {
				return withCode(ExitConfigError, fmt.Errorf("%d of %d file(s) invalid", bad, len(args)))
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&varKVs, "var", nil, helpVar+"; given only to the files that declare NAME")
	return cmd
}

func validateFile(file string, opts pipeline.LoadOptions) error {
	if err := notAPipeline(file); err != nil {
		return err
	}
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

// notAPipeline recognises, by their extension, the other files an admin
// may hand validate: DS01's YAML policy files and GPU simulation files
// (JSON). It says what the file is and how it gets checked, rather than
// printing HCL syntax errors about YAML.
func notAPipeline(file string) error {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".yaml", ".yml":
		return fmt.Errorf("%s: a YAML file, not a pipeline. DS01 policy files (resource-limits.yaml, "+
			"user-overrides.yaml, lifecycle-exemptions.yaml) are checked through the pipeline that names "+
			"them in its policy block: ds01-pipe validate /etc/ds01-pipe/pipelines/cleanup.hcl "+
			"(or a pipeline whose policy { limits_file = %q })", file, file)
	case ".json":
		return fmt.Errorf("%s: a JSON file, not a pipeline. A GPU simulation file is checked through a "+
			"pipeline that uses it: %s=%s ds01-pipe validate PIPELINE, or gpu { backend = \"sim\" "+
			"sim_file = %q } in the pipeline", file, pipeline.SimEnvVar, file, file)
	}
	return nil
}

// declaredVars keeps the --var values that file declares a variable for.
// A file that cannot be parsed gets them all: its loader then reports the
// syntax error, which is what the user needs first.
func declaredVars(file string, vars map[string]string, opts pipeline.LoadOptions) map[string]string {
	if len(vars) == 0 {
		return vars
	}
	names, ok := variableNames(file, opts)
	if !ok {
		return vars
	}
	out := make(map[string]string, len(vars))
	for name, value := range vars {
		if slices.Contains(names, name) {
			out[name] = value
		}
	}
	return out
}

// checkVarsDeclared refuses a --var that none of the files declares (a
// typo would otherwise be silently ignored).
func checkVarsDeclared(files []string, vars map[string]string, opts pipeline.LoadOptions) error {
	if len(vars) == 0 {
		return nil
	}
	unused := make(map[string]bool, len(vars))
	for name := range vars {
		unused[name] = true
	}
	for _, file := range files {
		names, ok := variableNames(file, opts)
		if !ok {
			return nil // the loader reports that file; nothing to conclude
		}
		for _, n := range names {
			delete(unused, n)
		}
	}
	if len(unused) == 0 {
		return nil
	}
	names := make([]string, 0, len(unused))
	for n := range unused {
		names = append(names, n)
	}
	sort.Strings(names)
	return usageError("--var %s: no file declares this variable", strings.Join(names, ", "))
}

// variableNames lists the variable blocks a pipeline file declares. ok is
// false when the file cannot be read or parsed (the loader says why).
func variableNames(file string, opts pipeline.LoadOptions) ([]string, bool) {
	if notAPipeline(file) != nil {
		return nil, false
	}
	// ReadFile: a regular file of bounded size, and as root one only root
	// could have written.
	src, err := pipeline.ReadFile(file, opts)
	if err != nil {
		return nil, false
	}
	return pipeline.DeclaredVariables(src, file)
}
