package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/report"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// hostileRecords are records whose user-controlled text tries to break
// out of each format: CSV formulas, quotes and line breaks, Markdown table
// pipes, HTML, code spans and links, control and bidi characters, and
// invalid UTF-8.
func hostileRecords() []*pipeline.Record {
	at := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)
	return []*pipeline.Record{
		{
			Container: pipeline.Container{
				ID: "0123456789ab", Name: "plain", State: pipeline.StateExited, Created: at, FinishedAt: at.Add(time.Hour),
				Labels: map[string]string{"ds01.user": "alice"},
			},
			Owner: pipeline.Owner{Name: "alice", Source: pipeline.OwnerFromUser}, Type: "docker",
			GPUs:    []pipeline.GPUClaim{{UUID: "GPU-a"}, {UUID: "MIG-b"}},
			Verdict: pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired, Clock: pipeline.ClockFinished, Age: 3*time.Hour + 500*time.Millisecond, Limit: 2 * time.Hour, HasLimit: true},
			Outcome: pipeline.Outcome{Status: pipeline.OutcomePlanned},
		},
		{
			Container: pipeline.Container{
				ID: "ba9876543210", Name: "x-pipe|and,comma", State: pipeline.StateCreated, Created: at,
				Labels: map[string]string{
					"note":    "=cmd|' /C calc'!A0",
					"html":    "<script>alert(1)</script> & \"q\"",
					"md":      "**bold** `code` [link](http://evil) ~~s~~ _i_ \\",
					"lines":   "one\ntwo\r\nthree",
					"bidi":    "abc\u202edcba\u200b",
					"invalid": "a\xffb",
				},
			},
			Owner:        pipeline.Owner{Name: "=1+1", Source: pipeline.OwnerFromAIME},
			Type:         "-2+3",
			Exempt:       true,
			ExemptReason: "@SUM(A1)\ttab",
			Verdict:      pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonExempt, Detail: "line1\nline2"},
		},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func render(t *testing.T, s *Stage) []byte {
	t.Helper()
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := s.Render(&b, hostileRecords()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGoldenFormats(t *testing.T) {
	all := []string{"name", "owner", "type", "exempt_reason", "gpus", "age_s", "limit_s", "detail", "labels"}
	for _, tt := range []struct {
		file string
		s    *Stage
	}{
		{"default.csv", &Stage{Format: FormatCSV, Path: "-"}},
		{"hostile.csv", &Stage{Format: FormatCSV, Path: "-", Columns: all}},
		{"default.jsonl", &Stage{Format: FormatJSONL, Path: "-"}},
		{"hostile.jsonl", &Stage{Format: FormatJSONL, Path: "-", Columns: all}},
		{"default.md", &Stage{Format: FormatMarkdown, Path: "-"}},
		{"hostile.md", &Stage{Format: FormatMarkdown, Path: "-", Columns: all}},
	} {
		t.Run(tt.file, func(t *testing.T) { golden(t, tt.file, render(t, tt.s)) })
	}
}

// TestCSVRoundTrip reads the CSV back as a spreadsheet import would: one
// row per container, each value whole, formulas defused.
func TestCSVRoundTrip(t *testing.T) {
	out := render(t, &Stage{Format: FormatCSV, Path: "-", Columns: []string{"name", "owner", "type", "exempt_reason", "labels", "age_s"}})
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("the CSV does not parse: %v", err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want a header and 2", len(rows))
	}
	r := rows[2]
	if r[0] != "x-pipe|and,comma" || r[1] != "'=1+1" || r[2] != "'-2+3" || r[3] != "'@SUM(A1)\ttab" {
		t.Errorf("row = %q", r)
	}
	var labels map[string]string
	if err := json.Unmarshal([]byte(r[4]), &labels); err != nil {
		t.Fatalf("labels cell %q: %v", r[4], err)
	}
	if labels["lines"] != "one\ntwo\r\nthree" || labels["note"] != "=cmd|' /C calc'!A0" || labels["invalid"] != "a\uFFFDb" {
		t.Errorf("labels = %q", labels)
	}
	if rows[1][5] != "10800" || r[5] != "" {
		t.Errorf("age_s cells = %q, %q; numbers are written as they are, null empty", rows[1][5], r[5])
	}
}

// TestJSONLKeysMatchTheReport: without columns, each line is the JSON
// report's container object.
func TestJSONLKeysMatchTheReport(t *testing.T) {
	out := render(t, &Stage{Format: FormatJSONL, Path: "-"})
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	recs := hostileRecords()
	if len(lines) != len(recs) {
		t.Fatalf("%d lines, want %d", len(lines), len(recs))
	}
	for i, line := range lines {
		// The same object, value for value: hidden characters are escaped
		// differently (escapeInvisible), which JSON reads the same.
		want, _ := json.Marshal(report.ContainerOf(recs[i]))
		var got, exp any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		_ = json.Unmarshal(want, &exp)
		g, _ := json.Marshal(got)
		e, _ := json.Marshal(exp)
		if !bytes.Equal(g, e) {
			t.Errorf("line %d:\n%s\nwant the report's object:\n%s", i, line, want)
		}
	}
}

// TestNoHiddenCharacters: a label, a type or a reason may hold terminal
// escapes (ESC, the one-byte C1 CSI) and bidi overrides; no format lets
// them reach a terminal that shows the report (path "-", or cat). JSON
// lines keep the values exactly, escaped.
func TestNoHiddenCharacters(t *testing.T) {
	const evil = "\x1b]0;pwned\x07\x1b[2J\u009b31m\r\u202eexe.txt\u200b\U000e0041"
	rec := &pipeline.Record{
		Container: pipeline.Container{ID: "feedfacecafe", Name: "n", State: pipeline.StateExited,
			Labels: map[string]string{"esc": evil, "k\u202e": "v"}},
		Owner:        pipeline.Owner{Name: "bob", Source: pipeline.OwnerFromUser},
		Type:         "atomic\u202e" + evil,
		ExemptReason: evil,
		Verdict:      pipeline.Verdict{Action: pipeline.ActionKeep, Detail: evil},
	}
	cols := []string{"name", "type", "exempt_reason", "detail", "labels"}
	for _, format := range []string{FormatCSV, FormatJSONL, FormatMarkdown} {
		for _, c := range [][]string{cols, nil} {
			s := &Stage{Format: format, Path: "-", Columns: c}
			if err := s.Init(); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := s.Render(&b, []*pipeline.Record{rec}); err != nil {
				t.Fatal(err)
			}
			out := strings.ReplaceAll(b.String(), "\r\n", "\n")
			for _, r := range out {
				if r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
					t.Errorf("%s %v: the output holds %U:\n%q", format, c, r, out)
					break
				}
			}
			if format != FormatJSONL || c == nil {
				continue
			}
			var got map[string]any
			if err := json.Unmarshal(b.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["detail"] != evil || got["labels"].(map[string]any)["esc"] != evil {
				t.Errorf("jsonl changed the values: %q", got)
			}
		}
	}
}

func TestMarkdownCellsStayCells(t *testing.T) {
	out := string(render(t, &Stage{Format: FormatMarkdown, Path: "-", Columns: []string{"name", "labels", "detail"}}))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want header, rule and 2 rows:\n%s", len(lines), out)
	}
	for _, l := range lines {
		// An unescaped | splits a cell: count the separators that are not escaped.
		if n := strings.Count(l, "|") - strings.Count(l, `\|`); n != 4 {
			t.Errorf("line has %d cell separators, want 4: %s", n, l)
		}
		for _, bad := range []string{"<script", "\u202e", "\u200b", "[link]("} {
			if strings.Contains(l, bad) {
				t.Errorf("line keeps %q: %s", bad, l)
			}
		}
	}
}

func TestInit(t *testing.T) {
	tests := []struct {
		s    Stage
		want string
	}{
		{Stage{Format: "cvs", Path: "-"}, `did you mean "csv"`},
		{Stage{Format: "xml", Path: "-"}, "csv, jsonl or markdown"},
		{Stage{Format: "csv"}, "path is empty"},
		{Stage{Format: "csv", Path: "-", Columns: []string{"nmae"}}, `did you mean "name"`},
		{Stage{Format: "csv", Path: "-", Columns: []string{"name", "name"}}, "twice"},
		{Stage{Format: "csv", Path: "-", Columns: []string{"labels", "left_s", "warnings"}}, ""},
	}
	for _, tt := range tests {
		err := tt.s.Init()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v", tt.s, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: error %v, want %q", tt.s, err, tt.want)
		}
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "out.csv")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(path, []byte("new\n"), FileMode); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the link's target was written through: %q", b)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != FileMode {
		t.Fatalf("report file: %v, %v; want a regular file, mode 0640", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := WriteAtomic(filepath.Join(dir, "missing", "x.csv"), nil, FileMode); err == nil {
		t.Error("a missing folder must be an error")
	}
}

func TestProcessFailureIsPartial(t *testing.T) {
	s := &Stage{Format: FormatCSV, Path: filepath.Join(t.TempDir(), "no", "such", "dir.csv")}
	err := s.Process(t.Context(), &pipeline.Env{}, &pipeline.Batch{})
	if _, ok := err.(*pipeline.PartialError); !ok {
		t.Fatalf("error %T %v, want a *pipeline.PartialError (exit 2)", err, err)
	}
	var b bytes.Buffer
	s = &Stage{Format: FormatMarkdown, Path: Stdout, stdout: &b}
	if err := s.Process(t.Context(), &pipeline.Env{}, &pipeline.Batch{Records: hostileRecords()}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "| id | name |") {
		t.Errorf("stdout = %q", b.String())
	}
}

// As root, a report goes only to a folder reached through root's folders:
// a folder or link another user owns could send root's write anywhere (a
// careless --var report=/home/alice/reports/x.md, with reports a link to
// /etc). A sticky folder such as /tmp is fine: the report replaces its own
// entry, never following a link.
func TestReportFolderTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root: only root can give folders away (CI runs the tests as root)")
		}
		t.Skip("needs root: only root can give folders away (CI runs the tests as root)")
	}
	const nobody = 65534
	root := t.TempDir()
	users := filepath.Join(root, "users")
	victim := filepath.Join(root, "victim")
	sticky := filepath.Join(root, "tmp")
	for _, d := range []string{users, victim, sticky} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(users, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(users, "reports")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	trust := pipeline.FileSettings{Trust: safefile.Trust{Enforce: true}}
	for _, tt := range []struct {
		path    string
		refused bool
	}{
		{filepath.Join(link, "x.md"), true},
		{filepath.Join(users, "x.md"), true},
		{filepath.Join(sticky, "x.md"), false},
		{filepath.Join(root, "x.md"), false},
	} {
		s := &Stage{Format: FormatMarkdown, Path: tt.path}
		s.UseFiles(trust)
		err := s.Process(t.Context(), &pipeline.Env{}, &pipeline.Batch{Records: hostileRecords()})
		if !tt.refused {
			if err != nil {
				t.Errorf("%s: %v", tt.path, err)
			}
			continue
		}
		var partial *pipeline.PartialError
		if !errors.As(err, &partial) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: error %v, want a refusal (exit 2)", tt.path, err)
		}
	}
	if entries, _ := os.ReadDir(victim); len(entries) != 0 {
		t.Errorf("root wrote into the folder a user's link names: %v", entries)
	}
	// Without trust (not root, or --allow-insecure-files) the folder is the
	// caller's business.
	s := &Stage{Format: FormatMarkdown, Path: filepath.Join(link, "x.md")}
	if err := s.Process(t.Context(), &pipeline.Env{}, &pipeline.Batch{}); err != nil {
		t.Errorf("without trust: %v", err)
	}
}
