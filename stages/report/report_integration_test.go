package report_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/report"
	_ "github.com/ds01/ds01-pipe/stages/all" // the stage kinds of the binary
)

// hostileLabels are labels a container owner may set: each tries to break
// out of one of the formats.
var hostileLabels = map[string]string{
	"ds01.user":   "=1+1",
	"formula":     "=HYPERLINK(\"http://evil\",\"x\")",
	"plus":        "+cmd|' /C calc'!A0",
	"newline":     "one\ntwo\r\nthree",
	"quote,comma": `"a","b"`,
	"pipe":        "a|b|c",
	"html":        "<img src=x onerror=alert(1)>&amp;",
	"markdown":    "**b** `c` [l](http://evil) ~~s~~ _i_ \\",
	"bidi":        "abc\u202edcba\u200b\u2028",
	"invalid":     "a\xffb",
}

const reportHCL = `
variable "prefix" { default = "" }
variable "path" { default = "" }
variable "format" { default = "" }
pipeline "t" {
  gpu { backend = "none" }
  stage "discover" { name_prefix = var.prefix }
  stage "attribute" {}
  stage "classify" {}
  stage "exempt" {}
  stage "decide" { idle_events_file = "" }
  stage "report" {
    format  = var.format
    path    = var.path
    columns = ["id", "name", "owner", "owner_source", "state", "verdict", "age_s", "labels"]
  }
  stage "log" {
    events_file = ""
    syslog      = false
  }
}
`

// runReport runs the pipeline in plan mode and returns what the report
// stage wrote and the records of the run.
func runReport(t *testing.T, eng *dockertest.Engine, format string, columns bool) ([]byte, []*pipeline.Record) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out."+format)
	src := reportHCL
	if !columns {
		src = strings.Replace(src, `columns = ["id", "name", "owner", "owner_source", "state", "verdict", "age_s", "labels"]`, "", 1)
	}
	cfg, err := pipeline.Load("t.hcl", []byte(src), pipeline.LoadOptions{Vars: map[string]string{"prefix": eng.Prefix(), "path": path, "format": format}})
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := pipeline.Execute(t.Context(), cfg, pipeline.ExecOptions{Mode: pipeline.ModePlan, Now: time.Now(), Docker: eng.Client()})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the report was not written: %v", err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("report mode %v, want 0640", fi.Mode().Perm())
	}
	return out, res.Batch.Records
}

func TestHostileLabelsInEveryFormat(t *testing.T) {
	eng := dockertest.New(t)
	host := eng.Create(t, dockertest.Spec{Name: "h-1", Labels: hostileLabels, Start: true, Wait: true})
	plain := eng.Create(t, dockertest.Spec{Name: "plain", Labels: map[string]string{"ds01.user": "alice"}})

	t.Run("csv", func(t *testing.T) {
		out, _ := runReport(t, eng, "csv", true)
		rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("the CSV does not parse: %v\n%s", err, out)
		}
		if len(rows) != 3 {
			t.Fatalf("%d rows, want a header and 2", len(rows))
		}
		var row []string
		for _, r := range rows[1:] {
			if r[0] == host.ID {
				row = r
			}
		}
		if row == nil {
			t.Fatalf("no row for %s", host.Name)
		}
		if row[2] != "'=1+1" {
			t.Errorf("owner cell %q: a formula must be defused with a leading '", row[2])
		}
		var labels map[string]string
		if err := json.Unmarshal([]byte(row[7]), &labels); err != nil {
			t.Fatalf("labels cell %q: %v", row[7], err)
		}
		for k, v := range hostileLabels {
			want := strings.ToValidUTF8(v, "\uFFFD")
			if labels[k] != want {
				t.Errorf("label %q: %q, want %q", k, labels[k], want)
			}
		}
	})
	t.Run("jsonl", func(t *testing.T) {
		out, recs := runReport(t, eng, "jsonl", false)
		want := map[string]report.Container{}
		for _, rec := range recs {
			want[rec.Container.ID] = report.ContainerOf(rec)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		n := 0
		for sc.Scan() {
			n++
			var got report.Container
			if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
				t.Fatalf("line %d is no JSON object: %v", n, err)
			}
			w, ok := want[got.ID]
			if !ok || got.Name != w.Name || got.Owner != w.Owner || got.Verdict != w.Verdict {
				t.Errorf("line %d: %+v, want the report's object %+v", n, got, w)
			}
		}
		if n != 2 {
			t.Errorf("%d lines, want 2", n)
		}
		if bytes.Contains(out, []byte("<img")) {
			t.Error("HTML left unescaped in JSON lines")
		}
	})
	t.Run("jsonl columns", func(t *testing.T) {
		out, _ := runReport(t, eng, "jsonl", true)
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			if len(got) != 8 || !strings.HasPrefix(line, `{"id":`) {
				t.Errorf("want the 8 columns in order: %s", line)
			}
			if got["id"] == host.ID && got["labels"].(map[string]any)["newline"] != "one\ntwo\r\nthree" {
				t.Errorf("labels lost a value: %v", got["labels"])
			}
		}
	})
	t.Run("markdown", func(t *testing.T) {
		out, _ := runReport(t, eng, "markdown", true)
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(lines) != 4 {
			t.Fatalf("%d lines, want header, rule, 2 rows:\n%s", len(lines), out)
		}
		for _, l := range lines {
			if n := strings.Count(l, "|") - strings.Count(l, `\|`); n != 9 {
				t.Errorf("%d cell separators, want 9: %s", n, l)
			}
			for _, bad := range []string{"<img", "\u202e", "\u200b", "\u2028", "[l](", "`c`"} {
				if strings.Contains(l, bad) {
					t.Errorf("row keeps %q: %s", bad, l)
				}
			}
		}
		if !strings.Contains(string(out), plain.Name) {
			t.Errorf("no row for %s", plain.Name)
		}
	})
}
