package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ds01/ds01-pipe/pipeline/state"
)

// stateDocument is `ds01-pipe state --format json`.
type stateDocument struct {
	StateDir      string        `json:"state_dir"`
	SchemaVersion int           `json:"schema_version"`
	Runs          []state.Run   `json:"runs"`
	Containers    []state.Entry `json:"containers"`
}

func newStateCmd(io IOStreams) *cobra.Command {
	var dir, format string
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Show what the lifecycle pipeline's state store holds",
		Long: `Show the lifecycle pipeline's state store (state_dir/lifecycle.db): the last runs
with the clock each used, and per running container (by ID and StartedAt) its idle
streak, last activity, the warnings given and the previous stats sample.

The store is what the last run saved: an entry is dropped by the next run that
finds its container gone, stopped or started again, so a container stopped or
removed by the last run (after the lifecycle stage saved) may still be listed.
Runs of pipelines with different scopes on one state_dir keep each other's entries.

The store is opened read-only; a run in progress holds it for at most a few seconds.

Exit status: 0 when the store was shown (also one that holds no run yet); 1 when
there is no store at DIR (no lifecycle run has saved one there: a mistyped
--state-dir, or a host where the lifecycle pipeline has not run yet), when it
cannot be read, or when it is damaged (the next lifecycle run sets a damaged
store aside and starts fresh); 78 for a bad flag.`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usageError("--format must be table or json, not %q", format)
			}
			store, err := state.OpenReadOnly(dir)
			if err != nil {
				return withCode(ExitFailure, openStateError(err))
			}
			if store == nil {
				return withCode(ExitFailure, noStateStore(dir))
			}
			defer store.Close()
			c, err := store.Load()
			if err != nil {
				return withCode(ExitFailure, err)
			}
			doc := stateDocument{StateDir: dir, SchemaVersion: c.SchemaVersion, Runs: c.Runs, Containers: []state.Entry{}}
			if doc.Runs == nil {
				doc.Runs = []state.Run{}
			}
			for _, e := range c.Entries {
				doc.Containers = append(doc.Containers, e)
			}
			sort.Slice(doc.Containers, func(i, j int) bool { return doc.Containers[i].Name < doc.Containers[j].Name })
			if format == "json" {
				enc := json.NewEncoder(io.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			return stateTable(io, doc)
		},
	}
	cmd.Flags().StringVar(&dir, "state-dir", "/var/lib/ds01-pipe", "the lifecycle pipeline's state_dir, the `DIR` holding lifecycle.db")
	cmd.Flags().StringVar(&format, "format", "table", "`FORMAT` of the output: table or json")
	return cmd
}

// noStateStore says that dir holds no store. It is an error, not an empty
// answer: an empty store and a mistyped --state-dir must not look alike.
func noStateStore(dir string) error {
	why := "no lifecycle run has saved " + state.Path(dir)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		why = "the folder does not exist, so no lifecycle run has saved one there"
	}
	return fmt.Errorf("no state store at %s: %s (is --state-dir the lifecycle pipeline's state_dir?)", dir, why)
}

// openStateError adds to a store that cannot be opened what becomes of it:
// a lifecycle run sets aside any store it cannot open, except one another
// run holds (a timeout) or one it may not read.
func openStateError(err error) error {
	if errors.Is(err, berrors.ErrTimeout) || errors.Is(err, fs.ErrPermission) {
		return err
	}
	return fmt.Errorf("%w; the store looks damaged: the next lifecycle run sets it aside (%s.damaged-TIME) and starts fresh", err, state.FileName)
}

// plural returns n and word, with an s when n is not 1.
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func stateTable(io IOStreams, doc stateDocument) error {
	fmt.Fprintf(io.Out, "state store %s (schema %d)\n", state.Path(doc.StateDir), doc.SchemaVersion)
	if r := len(doc.Runs); r > 0 {
		last := doc.Runs[r-1]
		fmt.Fprintf(io.Out, "last run: %s (clock %s), %s remembered, high demand %v\n",
			last.Wall.Format(time.RFC3339), last.Now.Format(time.RFC3339), plural(r, "run"), last.HighDemand)
	} else {
		fmt.Fprintln(io.Out, "no run recorded")
	}
	w := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CONTAINER\tID\tSTARTED\tSTREAK\tLAST ACTIVITY\tNOTICES")
	for _, e := range doc.Containers {
		var notices []string
		for _, n := range []struct {
			name string
			at   time.Time
		}{{"idle80", e.IdleWarned}, {"idle95", e.IdleFinalWarned}, {"idle-fyi", e.IdleExemptNoticed},
			{"runtime75", e.RuntimeWarned}, {"runtime90", e.RuntimeFinalWarned}, {"runtime-exempt", e.RuntimeExemptAt}} {
			if !n.at.IsZero() {
				notices = append(notices, n.name)
			}
		}
		id := e.ContainerID
		if len(id) > 12 {
			id = id[:12]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", cleanCell(e.Name), id, e.StartedAt.Format(time.RFC3339),
			e.IdleStreak, e.LastActivity.Format(time.RFC3339), strings.Join(notices, ","))
	}
	return w.Flush()
}

// cleanCell keeps a container name from forging table lines.
func cleanCell(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
