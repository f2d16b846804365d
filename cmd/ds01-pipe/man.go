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
	page := withManSections(buf.String(), manExitStatus(cmd))
	name := strings.ReplaceAll(cmd.CommandPath(), " ", "-") + ".1"
	return os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644)
}

// manExit is one exit code a command's page lists.
type manExit struct {
	code ExitCode
	text string
}

// Meanings several commands share (docs/exit-codes.md).
const (
	manDone     = "done (also when there was nothing to do)"
	manRuntime  = "runtime failure: the Docker engine unreachable, a deadline passed (the pipeline's timeout, or --call-timeout for one Docker call), gpu { required = true } without a GPU view"
	manPartial  = "done, but some actions failed (a removal, a stop, an events line); the report and the last line on stderr say which"
	manLocked   = "another run holds the pipeline's lock, or the process recording the removals of a run that died does; skipped, nothing done"
	manConfig   = "configuration or usage error; nothing was contacted or done"
	manUsageBad = "usage error (an unknown flag or argument)"
)

// manExitCodes are the exit codes of each command, by its name under the
// root ("" for the root's own page, which lists them all); a command's
// subcommands (completion bash) share its list. Each page lists only the
// codes its command can return: explain's 1 is "no such container", and
// state, stages, validate, version and completion take no lock and act
// on nothing.
var manExitCodes = map[string][]manExit{
	"": {
		{ExitOK, manDone},
		{ExitFailure, "runtime failure: the Docker engine unreachable, a deadline passed; for explain, no such container; for state, no state store, or one that cannot be read"},
		{ExitPartial, manPartial},
		{ExitLocked, "run and apply: another run holds the pipeline's lock; skipped, nothing done"},
		{ExitChanges, "plan --detailed-exitcode: something would be removed or stopped"},
		{ExitConfigError, manConfig},
	},
	"run": {
		{ExitOK, manDone},
		{ExitFailure, manRuntime + ", a lock that cannot be taken safely"},
		{ExitPartial, manPartial},
		{ExitLocked, manLocked},
		{ExitConfigError, manConfig},
	},
	"apply": {
		{ExitOK, manDone},
		{ExitFailure, manRuntime + ", a lock that cannot be taken safely"},
		{ExitPartial, manPartial},
		{ExitLocked, manLocked},
		{ExitConfigError, manConfig + "; also a plan file that is bad, not root's, too old (--max-age) or made from a pipeline file that changed"},
	},
	"plan": {
		{ExitOK, "done (also when nothing would be removed or stopped)"},
		{ExitFailure, manRuntime + ", or the plan of --out could not be saved"},
		{ExitPartial, "done, but a report stage could not write its report"},
		{ExitChanges, "with --detailed-exitcode only: something would be removed or stopped"},
		{ExitConfigError, manConfig},
	},
	"explain": {
		{ExitOK, "answered (also when nothing will happen to the container)"},
		{ExitFailure, "no such container (as docker inspect), the Docker engine unreachable, or a deadline passed"},
		{ExitConfigError, manConfig},
	},
	"state": {
		{ExitOK, "the store was shown (also one that holds no run yet)"},
		{ExitFailure, "no state store at the state directory (no lifecycle run has saved one there), or one that cannot be read or is damaged"},
		{ExitConfigError, manUsageBad},
	},
	"validate": {
		{ExitOK, "every file is valid"},
		{ExitConfigError, "a file is invalid, or a usage error"},
	},
	"stages": {
		{ExitOK, "the stage kinds were listed"},
		{ExitConfigError, "no such stage kind, or a usage error"},
	},
	"version": {
		{ExitOK, "the version was printed"},
		{ExitConfigError, manUsageBad},
	},
	"completion": {
		{ExitOK, "the completion script was printed"},
		{ExitConfigError, "a shell other than bash, zsh, fish or powershell, or a usage error"},
	},
}

// manExitStatus is the EXIT STATUS section of cmd's page, in roff.
func manExitStatus(cmd *cobra.Command) string {
	name := ""
	if words := strings.Fields(cmd.CommandPath()); len(words) > 1 {
		name = words[1]
	}
	codes, ok := manExitCodes[name]
	if !ok {
		codes = manExitCodes[""]
	}
	var b strings.Builder
	b.WriteString(".SH EXIT STATUS\n")
	for _, c := range codes {
		fmt.Fprintf(&b, ".TP\n.B %d\n%s\n", c.code, roffText(c.text))
	}
	if name == "" {
		b.WriteString(".PP\nEach command's page lists the codes that command returns; docs/exit\\-codes.md has them all.\n")
	}
	return b.String()
}

// roffText escapes the hyphens of plain text for roff, so that options
// and paths copy as typed.
func roffText(s string) string { return strings.ReplaceAll(s, "-", `\-`) }

// manSections are the sections every page gets after EXIT STATUS, in roff.
var manSections = `.SH ENVIRONMENT
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
.I <events_file>.ds01\-pipe\-pending.<pipeline>\-<hash>
beside the events file (for example /var/log/ds01/events.jsonl.ds01\-pipe\-pending.cleanup\-1a2b3c4d), one per pipeline lock: the journal of removals asked for and not yet confirmed; the next run records those the engine carried out
.TP
.I /run/ds01\-pipe/*.lock
the lock of a pipeline (its lock_file); it names the run that holds it, or held it last
.TP
.I /var/lib/ds01\-pipe/lifecycle.db
the lifecycle pipeline's state store (in its state_dir); ds01\-pipe state shows it
.TP
.I /opt/ds01\-infra/config/runtime/resource\-limits.yaml
DS01's limits, with groups/, user\-overrides.yaml and lifecycle\-exemptions.yaml beside it (the pipeline's policy block)
.TP
.I /var/lib/prometheus/node\-exporter/*.prom
textfile metrics, when the log stage's metrics_file names one
`

// withManSections inserts the EXIT STATUS section exit and manSections
// before SEE ALSO (or at the end).
func withManSections(page, exit string) string {
	sections := exit + manSections
	if i := strings.Index(page, ".SH SEE ALSO"); i >= 0 {
		return page[:i] + sections + page[i:]
	}
	return page + sections
}
