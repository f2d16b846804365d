package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestVersionFlagAgrees pins that --version and `version` print the same
// line.
func TestVersionFlagAgrees(t *testing.T) {
	_, byCmd, _ := cli(t, "version")
	_, byFlag, _ := cli(t, "--version")
	if byCmd != byFlag || !strings.HasPrefix(byCmd, "ds01-pipe "+version+" (go") {
		t.Errorf("version: %q\n--version: %q", byCmd, byFlag)
	}
}

// flagLine is one flag of a help text: its name and placeholder.
var flagLine = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z-]+)(?: (\S+))?\s{2,}`)

// TestHelpPlaceholders pins that every flag that takes a value shows an
// upper-case placeholder (--out PLAN, --var NAME=VALUE), never pflag's type
// names or a word lifted from the help text.
func TestHelpPlaceholders(t *testing.T) {
	for _, cmd := range []string{"plan", "run", "apply", "validate"} {
		_, out, _ := cli(t, cmd, "--help")
		for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
			name, ph := m[1], m[2]
			if ph == "" {
				continue // a boolean flag
			}
			if !regexp.MustCompile(`^[A-Z][A-Z=_]*$`).MatchString(ph) {
				t.Errorf("%s --%s: placeholder %q", cmd, name, ph)
			}
		}
	}
	_, out, _ := cli(t, "plan", "--help")
	if !strings.Contains(out, "--out PLAN ") || !strings.Contains(out, "--var NAME=VALUE ") {
		t.Errorf("plan --help:\n%s", out)
	}
}

// TestValidateOtherFiles pins that validate recognises a DS01 policy file
// (YAML) and a GPU simulation file (JSON) and says how they get checked.
func TestValidateOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, want string }{
		{"resource-limits.yaml", "a YAML file, not a pipeline"},
		{"limits.yml", "policy block"},
		{"gpus.json", "DS01_PIPE_NVML_SIM="},
	} {
		file := writeFile(t, dir, tc.name, "defaults: {}\n")
		code, _, errOut := cli(t, "validate", file)
		if code != ExitConfigError || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "Argument or block definition required") {
			t.Errorf("validate %s: exit %d\n%s", tc.name, code, errOut)
		}
	}
}

// TestValidateSeveralFiles pins that with several files each invalid one
// is named, and that a --var goes only to the files that declare it.
func TestValidateSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	withVar := writeFile(t, dir, "with.hcl", discoverLog) // declares prefix
	without := writeFile(t, dir, "without.hcl", "pipeline \"plain\" {\n  gpu { backend = \"none\" }\n  stage \"discover\" {}\n}\n")
	bad := writeFile(t, dir, "bad.hcl", "pipeline \"bad\" {\n  stage \"discover\" { nope = 1 }\n}\n")

	code, out, errOut := cli(t, "validate", "--var", "prefix=x-", withVar, without)
	if code != ExitOK || !strings.Contains(out, withVar+": ok") || !strings.Contains(out, without+": ok") {
		t.Errorf("a --var one file declares: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = cli(t, "validate", "--var", "prefx=x-", withVar, without)
	if code != ExitConfigError || !strings.Contains(errOut, "--var prefx: no file declares this variable") {
		t.Errorf("a --var no file declares: exit %d\n%s", code, errOut)
	}
	code, _, errOut = cli(t, "validate", withVar, bad)
	if code != ExitConfigError || !strings.Contains(errOut, bad+":") {
		t.Errorf("the invalid file is not named: exit %d\n%s", code, errOut)
	}
}

// TestManPagesSections pins that every page has the sections man-pages(7)
// expects of a command: EXIT STATUS, ENVIRONMENT, FILES, before SEE ALSO.
func TestManPagesSections(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := cli(t, manCommand, dir); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	if len(pages) < 5 {
		t.Fatalf("pages %v", pages)
	}
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		page := string(b)
		last := -1
		for _, sec := range []string{".SH EXIT STATUS", ".SH ENVIRONMENT", ".SH FILES", ".SH SEE ALSO"} {
			i := strings.Index(page, sec)
			if i < last {
				t.Errorf("%s: %s missing or out of order", filepath.Base(p), sec)
			}
			last = i
		}
		if !strings.Contains(page, "DS01_PIPE_NVML_SIM") || !strings.Contains(page, "/var/log/ds01/events.jsonl") {
			t.Errorf("%s lacks the environment or files", filepath.Base(p))
		}
	}
}

// TestNoColor pins NO_COLOR: set, text diagnostics have no colours even on
// a terminal.
func TestNoColor(t *testing.T) {
	t.Setenv("NO_COLOR", "1")
	g := &globalOptions{logFormat: "text", logLevel: "info"}
	log, err := g.logger(IOStreams{Err: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	if tf, ok := log.Formatter.(*logrus.TextFormatter); !ok || !tf.DisableColors {
		t.Errorf("formatter %#v", log.Formatter)
	}
}

// TestCallTimeoutAboveZero pins that --call-timeout of 0 or less is a bad
// flag (exit 78, nothing contacted), not a silent 30s default.
func TestCallTimeoutAboveZero(t *testing.T) {
	for _, cmd := range []string{"plan", "run", "apply", "explain"} {
		for _, v := range []string{"0", "-5s"} {
			code, out, errOut := cli(t, cmd, "--call-timeout", v, "/nonexistent")
			if code != ExitConfigError || out != "" || !strings.Contains(errOut, "above zero") {
				t.Errorf("%s --call-timeout %s: exit %d, stdout %q\n%s", cmd, v, code, out, errOut)
			}
		}
	}
	_, out, _ := cli(t, "plan", "--help")
	if !strings.Contains(out, "(default 30s)") {
		t.Errorf("plan --help does not show the 30s default:\n%s", out)
	}
}

// TestCompletionUnknownShell pins that `completion` with a shell cobra does
// not know is a usage error with nothing on stdout, not the help text
// redirected into a completion file with exit 0.
func TestCompletionUnknownShell(t *testing.T) {
	code, out, errOut := cli(t, "completion", "bsh")
	if code != ExitConfigError || out != "" {
		t.Errorf("completion bsh: exit %d, stdout %q\n%s", code, out, errOut)
	}
	if code, out, _ := cli(t, "completion", "bash"); code != ExitOK || !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: exit %d\n%.200s", code, out)
	}
}
