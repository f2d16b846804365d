package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/cobra"
)

func newVersionCmd(io IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of ds01-pipe",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			fmt.Fprintln(io.Out, versionLine())
			return nil
		},
	}
}

// versionLine is what both `version` and `--version` print.
func versionLine() string {
	return fmt.Sprintf("ds01-pipe %s (%s, %s/%s)", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// lookupEnv reads one environment variable. It is the only place the
// command reads the environment besides Docker's own DOCKER_HOST handling.
func lookupEnv(name string) string { return os.Getenv(name) }
