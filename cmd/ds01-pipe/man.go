package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCommand is the hidden command that writes the man pages; `make man`
// runs it, so the pages always match the binary's own command definitions.
const manCommand = "__man"

func newManCmd(io IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:    manCommand + " DIR",
		Short:  "Write the man pages (section 1) of every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return withCode(ExitFailure, err)
			}
			// The title of each page is its command path; the date comes
			// from SOURCE_DATE_EPOCH when set (reproducible builds).
			header := &doc.GenManHeader{
				Section: "1",
				Source:  "ds01-pipe " + version,
				Manual:  "ds01-pipe manual",
			}
			if err := doc.GenManTree(cmd.Root(), header, dir); err != nil {
				return withCode(ExitFailure, fmt.Errorf("man pages: %w", err))
			}
			fmt.Fprintf(io.Out, "man pages written to %s\n", dir)
			return nil
		},
	}
}
