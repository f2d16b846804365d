// Package report implements the "report" stage: it writes the containers of
// the run as CSV, JSON lines or a Markdown table, to a file (atomically) or
// to stdout. It reads the records and acts on no container.
package report

import (
	"bytes"
	"context"
	_ "embed" // the sample stage block
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/agext/levenshtein"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/stages/internal/recordview"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "report"

//go:embed sample.hcl
var sample string

// Formats.
const (
	FormatCSV      = "csv"
	FormatJSONL    = "jsonl"
	FormatMarkdown = "markdown"
)

// Stdout is the path that writes to standard output.
const Stdout = "-"

// FileMode is the mode of a report file: it names users and their
// containers, so it is not world-readable.
const FileMode = 0o640

// DefaultColumns are the columns of a CSV or Markdown report without a
// columns attribute: what an admin needs to act on a line.
var DefaultColumns = []string{"id", "name", "state", "owner", "owner_source", "type", "exempt", "gpus", "verdict", "reason", "age_s", "limit_s", "outcome"}

// Stage is the report stage.
type Stage struct {
	Format  string   `hcl:"format" doc:"csv (RFC 4180, with a header row), jsonl (one JSON object per container) or markdown (a table to paste into an issue)."`
	Path    string   `hcl:"path" doc:"The file to write, replaced atomically (a temporary file in the same folder, then a rename; mode 0640); relative paths are relative to the working directory. \"-\" writes to standard output, and plan and run then print no table or JSON of their own."`
	Columns []string `hcl:"columns,optional" doc:"The container keys to write, in order (any key of the JSON report's container object, and labels). Default: id, name, state, owner, owner_source, type, exempt, gpus, verdict, reason, age_s, limit_s, outcome; for jsonl, the report's whole container object."`

	// stdout is where "-" writes; tests replace it.
	stdout io.Writer
	// trust is the pipeline's file trust (UseFiles): as root, the folder
	// the report goes to must be reached through root's folders only.
	trust safefile.Trust
}

// UseFiles takes the pipeline's trust rule for the report's folder.
func (s *Stage) UseFiles(fs pipeline.FileSettings) { s.trust = fs.Trust }

// checkFolder refuses, with trust enforced, a report whose folder is (or
// is reached through) a folder or link another user owns or may write:
// that user could point it anywhere, and root would then create or
// replace a file of the report's name in a folder of that user's choice.
// A sticky folder such as /tmp is fine: the report replaces its own entry
// there, never following a link (WriteAtomic).
func checkFolder(path string, trust safefile.Trust) error {
	if !trust.Enforce {
		return nil
	}
	_, err := safefile.Check(filepath.Dir(path), trust)
	var ie *safefile.InsecureError
	if errors.As(err, &ie) {
		at := ie.At
		if at == "" {
			at = filepath.Dir(path)
		}
		return fmt.Errorf("writing %s refused: %s %s, so another user could send the report, written as root, "+
			"into a folder of their choice; write it under a folder only root can change, or pass %s",
			path, at, ie.Reason, safefile.OverrideFlag)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// New returns a report stage.
func New() *Stage { return &Stage{} }

// Init checks the attributes.
func (s *Stage) Init() error {
	switch s.Format {
	case FormatCSV, FormatJSONL, FormatMarkdown:
	default:
		msg := fmt.Sprintf("%q is not a format; use csv, jsonl or markdown", s.Format)
		if sug := suggest(s.Format, []string{FormatCSV, FormatJSONL, FormatMarkdown}); sug != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", sug)
		}
		return &pipeline.AttrError{Attr: "format", Err: errors.New(msg)}
	}
	if strings.TrimSpace(s.Path) == "" {
		return &pipeline.AttrError{Attr: "path", Err: errors.New(`path is empty; give a file, or "-" for standard output`)}
	}
	seen := make(map[string]bool, len(s.Columns))
	for _, c := range s.Columns {
		if _, ok := recordview.Lookup(c); !ok {
			msg := fmt.Sprintf("%q is not a container key", c)
			if sug := suggest(c, recordview.Keys()); sug != "" {
				msg += fmt.Sprintf("; did you mean %q?", sug)
			} else {
				msg += "; the keys are " + strings.Join(recordview.Keys(), ", ")
			}
			return &pipeline.AttrError{Attr: "columns", Err: errors.New(msg)}
		}
		if seen[c] {
			return &pipeline.AttrError{Attr: "columns", Err: fmt.Errorf("%q is listed twice", c)}
		}
		seen[c] = true
	}
	return nil
}

// WritesStdout reports whether the stage writes to standard output.
func (s *Stage) WritesStdout() bool { return s.Path == Stdout }

// columns returns the fields to write; nil for jsonl without columns (the
// whole report object).
func (s *Stage) columns() []recordview.Field {
	names := s.Columns
	if len(names) == 0 {
		if s.Format == FormatJSONL {
			return nil
		}
		names = DefaultColumns
	}
	out := make([]recordview.Field, 0, len(names))
	for _, n := range names {
		if f, ok := recordview.Lookup(n); ok {
			out = append(out, f)
		}
	}
	return out
}

// Render writes the records in the stage's format.
func (s *Stage) Render(w io.Writer, recs []*pipeline.Record) error {
	objs := make([]*recordview.Object, len(recs))
	for i, rec := range recs {
		objs[i] = recordview.Of(rec)
	}
	cols := s.columns()
	switch s.Format {
	case FormatCSV:
		return writeCSV(w, cols, objs)
	case FormatJSONL:
		return writeJSONL(w, cols, objs)
	case FormatMarkdown:
		return writeMarkdown(w, cols, objs)
	}
	return fmt.Errorf("report: unknown format %q", s.Format)
}

// Process writes the report. It writes in plan mode too: a report is a
// view of the run, like plan's own table, and changes no container. A
// report that cannot be written fails the run as "done, but something
// failed" (exit 2), after the other stages have run.
func (s *Stage) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := s.Render(&buf, batch.Records); err != nil {
		return &pipeline.PartialError{Err: fmt.Errorf("report: %w", err)}
	}
	if s.Path == Stdout {
		w := s.stdout
		if w == nil {
			w = os.Stdout
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return &pipeline.PartialError{Err: fmt.Errorf("report: writing to standard output: %w", err)}
		}
		return nil
	}
	if err := checkFolder(s.Path, s.trust); err != nil {
		return &pipeline.PartialError{Err: fmt.Errorf("report: %w", err)}
	}
	if err := WriteAtomic(s.Path, buf.Bytes(), FileMode); err != nil {
		return &pipeline.PartialError{Err: fmt.Errorf("report: %w", err)}
	}
	if env != nil && env.Log != nil {
		env.Log.WithField("stage", Kind).WithField("path", s.Path).Debugf("report: %d containers written", len(batch.Records))
	}
	return nil
}

// WriteAtomic replaces path with data: a temporary file in the same
// folder, synced, then renamed over path, so a reader sees the old report
// or the new one, never half of one. A symbolic link at path is replaced,
// not followed.
func WriteAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// suggest returns the candidate closest to name, if close enough to be a
// typo. Two swapped letters ("nmae") count as one edit.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range slices.Sorted(slices.Values(candidates)) {
		d := levenshtein.Distance(name, c, nil)
		if d == 2 && sameLetters(name, c) {
			d = 1
		}
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func sameLetters(a, b string) bool {
	x, y := []byte(a), []byte(b)
	slices.Sort(x)
	slices.Sort(y)
	return string(x) == string(y)
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind:    Kind,
		Summary: "Writes the run's containers as CSV (RFC 4180, header row), JSON lines (the JSON report's container objects) or a Markdown table, to a file replaced atomically or to standard output (\"-\"), with the columns chosen. Values are escaped for their format: names and labels are anyone's text. Reads the records; acts on no container; writes in plan mode too.",
		Sample:  sample,
		New:     func() pipeline.Stage { return New() },
		// It reads the record, writes files and acts on no container.
		Contract: pipeline.Contract{Needs: []pipeline.Field{pipeline.FieldFacts}},
		// It reads the parts of the record its columns show, so it comes
		// after the stages that write them.
		Configure: func(st pipeline.Stage, c pipeline.Contract) pipeline.Contract {
			if s, ok := st.(*Stage); ok {
				keys := recordview.Keys()
				if cols := s.columns(); cols != nil {
					keys = keys[:0]
					for _, f := range cols {
						keys = append(keys, f.Key)
					}
				}
				c.Reads = recordview.Reads(keys)
			}
			return c
		},
	})
}
