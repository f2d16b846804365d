package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/ds01/ds01-pipe/pipeline"
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
			if err := writeManTree(cmd.Root(), header, dir); err != nil {
				return withCode(ExitFailure, fmt.Errorf("man pages: %w", err))
			}
			fmt.Fprintf(io.Out, "man pages written to %s\n", dir)
			return nil
		},
	}
}

// writeManTree writes one page per command, as doc.GenManTree does, with
// the sections man-pages(7) expects that cobra does not write (EXIT
// STATUS, ENVIRONMENT, FILES) before SEE ALSO.
func writeManTree(cmd *cobra.Command, header *doc.GenManHeader, dir string) error {
	for _, c := range cmd.Commands() {
		if !c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand() {
			continue
		}
		if err := writeManTree(c, header, dir); err != nil {
			return err
		}
	}
	h := *header // GenMan fills in the title per page
	var buf bytes.Buffer
	if err := doc.GenMan(cmd, &h, &buf); err != nil {
		return err
	}
	page := withManSections(buf.String())
	name := strings.ReplaceAll(cmd.CommandPath(), " ", "-") + ".1"
	return os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644)
}

// manSections are the sections every page gets, in roff.
var manSections = `.SH EXIT STATUS
.TP
.B 0
done (also when there was nothing to do)
.TP
.B 1
runtime failure: the Docker engine unreachable, a deadline passed
.TP
.B 2
done, but some actions failed (a removal, an events line); the report and the last line on stderr say which
.TP
.B 3
another run holds the pipeline's lock; skipped, nothing done
.TP
.B 4
plan \-\-detailed\-exitcode: something would be removed
.TP
.B 78
configuration or usage error; nothing was contacted or done
.SH ENVIRONMENT
.TP
.B DOCKER_HOST
the Docker engine to talk to (default unix:///var/run/docker.sock), with DOCKER_API_VERSION, DOCKER_CERT_PATH and DOCKER_TLS_VERIFY as for the docker CLI
.TP
.B ` + pipeline.SimEnvVar + `
a GPU simulation file (JSON) used instead of the pipeline's gpu block
.TP
.B JOURNAL_STREAM
set by systemd: when stderr is the journal, diagnostics carry their priority and no timestamps
.TP
.B NO_COLOR
when set and not empty, no colours on a terminal
.SH FILES
.TP
.I /etc/ds01\-pipe/pipelines/*.hcl
the pipelines; ds01\-pipe@NAME.timer runs NAME.hcl
.TP
.I /var/log/ds01/events.jsonl
DS01's event log: one line per action and a pipeline.summary line per run (the log stage's events_file)
.TP
.I /run/ds01\-pipe/*.lock
the lock of a pipeline (its lock_file); it names the run holding it
.TP
.I /opt/ds01\-infra/config/runtime/resource\-limits.yaml
DS01's limits, with groups/, user\-overrides.yaml and lifecycle\-exemptions.yaml beside it (the pipeline's policy block)
.TP
.I /var/lib/prometheus/node\-exporter/*.prom
textfile metrics, when the log stage's metrics_file names one
`

// withManSections inserts manSections before SEE ALSO (or at the end).
func withManSections(page string) string {
	if i := strings.Index(page, ".SH SEE ALSO"); i >= 0 {
		return page[:i] + manSections + page[i:]
	}
	return page + manSections
}
