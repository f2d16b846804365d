package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Each man page lists the exit codes of its own command, and every page
// names the files an admin looks for.
func TestManPagesExitStatusPerCommand(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1768435200")
	if code, _, errOut := cli(t, "__man", dir); code != ExitOK {
		t.Fatalf("__man: exit %d\n%s", code, errOut)
	}
	want := map[string][]string{
		"ds01-pipe.1":                       {"0", "1", "2", "3", "4", "78"},
		"ds01-pipe-run.1":                   {"0", "1", "2", "3", "78"},
		"ds01-pipe-apply.1":                 {"0", "1", "2", "3", "78"},
		"ds01-pipe-plan.1":                  {"0", "1", "2", "4", "78"},
		"ds01-pipe-explain.1":               {"0", "1", "78"},
		"ds01-pipe-state.1":                 {"0", "1", "78"},
		"ds01-pipe-validate.1":              {"0", "78"},
		"ds01-pipe-stages.1":                {"0", "78"},
		"ds01-pipe-version.1":               {"0", "78"},
		"ds01-pipe-completion.1":            {"0", "78"},
		"ds01-pipe-completion-bash.1":       {"0", "78"},
		"ds01-pipe-completion-zsh.1":        {"0", "78"},
		"ds01-pipe-completion-fish.1":       {"0", "78"},
		"ds01-pipe-completion-powershell.1": {"0", "78"},
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*.1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) != len(want) {
		t.Errorf("%d pages, want %d: %q", len(pages), len(want), pages)
	}
	code := regexp.MustCompile(`(?m)^\.TP\n\.B (\d+)$`)
	for _, page := range pages {
		raw, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		name := filepath.Base(page)
		start, end := strings.Index(text, ".SH EXIT STATUS\n"), strings.Index(text, ".SH ENVIRONMENT\n")
		if start < 0 || end < start {
			t.Errorf("%s: no EXIT STATUS before ENVIRONMENT", name)
			continue
		}
		var got []string
		for _, m := range code.FindAllStringSubmatch(text[start:end], -1) {
			got = append(got, m[1])
		}
		if w, ok := want[name]; !ok || !slices.Equal(got, w) {
			t.Errorf("%s: exit codes %q, want %q", name, got, w)
		}
		for _, s := range []string{
			"/var/lib/ds01\\-pipe/lifecycle.db",
			"<events_file>.ds01\\-pipe\\-pending",
			"names the run that holds it, or held it last",
		} {
			if !strings.Contains(text, s) {
				t.Errorf("%s: FILES lacks %q", name, s)
			}
		}
	}
	explain, _ := os.ReadFile(filepath.Join(dir, "ds01-pipe-explain.1"))
	if !strings.Contains(string(explain), "no such container") {
		t.Error("explain's page does not say that 1 is no such container")
	}
}
