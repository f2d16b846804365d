package main

import (
	"github.com/spf13/cobra"
)

// setupCompletion completes file arguments by extension: pipeline files
// for plan, run and validate, plan files for apply. Cobra's own
// `completion bash|zsh|fish|powershell` command prints the scripts.
func setupCompletion(root *cobra.Command) {
	exts := map[string][]string{
		"plan":     {"hcl"},
		"run":      {"hcl"},
		"validate": {"hcl"},
		"apply":    {"json"},
	}
	for _, c := range root.Commands() {
		if e, ok := exts[c.Name()]; ok {
			c.ValidArgsFunction = func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return e, cobra.ShellCompDirectiveFilterFileExt
			}
		}
	}
	_ = root.RegisterFlagCompletionFunc("log-format", fixed("text", "json", "auto"))
	_ = root.RegisterFlagCompletionFunc("log-level", fixed("debug", "info", "warn", "error"))
	for _, name := range []string{"plan", "run", "apply"} {
		if c, _, err := root.Find([]string{name}); err == nil {
			_ = c.RegisterFlagCompletionFunc("format", fixed("table", "json"))
		}
	}
	if c, _, err := root.Find([]string{"plan"}); err == nil {
		_ = c.RegisterFlagCompletionFunc("out", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return []cobra.Completion{"json"}, cobra.ShellCompDirectiveFilterFileExt
		})
	}
}

func fixed(values ...string) func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// strictCompletion makes `completion` with a shell cobra does not know a
// usage error (exit 78, nothing on stdout): `completion bsh >
// /etc/bash_completion.d/ds01-pipe` printed the help into the file and
// exited 0. It creates cobra's completion command, so it runs after the
// root's output is set: the command keeps the writer it finds then.
func strictCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return usageError("completion: no shell %q; choose bash, zsh, fish or powershell", args[0])
		}
	}
}
