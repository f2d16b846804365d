//go:build linux

package main

// The shipped audits (pipelines/audit-*.hcl) run against the real Docker
// engine, scoped to the test's containers.

import (
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

func shipped(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "pipelines", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readCSV reads a report file written as CSV.
func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func TestAuditUnattributed(t *testing.T) {
	eng := dockertest.New(t)
	stray := eng.Create(t, exitedSpec("stray", map[string]string{"com.docker.compose.project": "p", "note": "a|b\n<i>"}))
	made := eng.Create(t, dockertest.Spec{Name: "made"})
	eng.Create(t, exitedSpec("owned", ownedBy("alice")))
	out := filepath.Join(t.TempDir(), "u.csv")
	code, stdout, errOut := cli(t, "plan", "--format", "json", "--var", "prefix="+eng.Prefix(), "--var", "report="+out, "--var", "format=csv", shipped(t, "audit-unattributed.hcl"))
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	rep := parseCleanupReport(t, stdout)
	if len(rep.Containers) != 2 {
		t.Errorf("the plan report has %d containers, want the 2 unattributed ones", len(rep.Containers))
	}
	rows := readCSV(t, out)
	var names []string
	for _, r := range rows[1:] {
		names = append(names, r[1])
	}
	slices.Sort(names)
	if want := []string{made.Name, stray.Name}; !slices.Equal(names, want) {
		t.Errorf("report rows %v, want %v", names, want)
	}
	if rows[0][9] != "labels" {
		t.Errorf("header %v", rows[0])
	}
}

// TestAuditToStdout: with report = "-" the report alone is on stdout; the
// command leaves its own table or JSON out.
func TestAuditToStdout(t *testing.T) {
	eng := dockertest.New(t)
	eng.Create(t, dockertest.Spec{Name: "made"})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	code, stdout, errOut := cli(t, "plan", "--format", "json", "--var", "prefix="+eng.Prefix(), shipped(t, "audit-unattributed.hcl"))
	os.Stdout = saved
	w.Close()
	got, _ := io.ReadAll(r)
	if code != ExitOK || stdout != "" {
		t.Fatalf("exit %d, command output %q (want none)\n%s", code, stdout, errOut)
	}
	if !strings.HasPrefix(string(got), "| id | name |") || !strings.Contains(string(got), eng.Prefix()+"made") {
		t.Errorf("stdout = %q, want the Markdown table", got)
	}
}

func TestAuditNext24h(t *testing.T) {
	eng := dockertest.New(t)
	alice := eng.Create(t, exitedSpec("alice", ownedBy("alice"))) // 0.5 h
	fay := eng.Create(t, exitedSpec("fay", ownedBy("fay")))       // faculty: 6 h
	nora := eng.Create(t, exitedSpec("nora", ownedBy("nora")))    // null: never
	keeper := eng.Create(t, exitedSpec("keeper", ownedBy("keeper")))
	eng.Create(t, dockertest.Spec{Name: "running", Labels: ownedBy("rita"), Args: []string{"forever"}, Start: true})
	now := latestFinish(t, eng, alice, fay, nora, keeper).Add(time.Minute)
	out := filepath.Join(t.TempDir(), "n.csv")
	stateDir := filepath.Join(t.TempDir(), "state") // no store yet: plan reads none
	run := func(at time.Time, horizon string) []string {
		code, _, errOut := cli(t, "plan", "--format", "json", "--now", at.UTC().Format(time.RFC3339),
			"--var", "prefix="+eng.Prefix(), "--var", "ds01_config="+cleanupConfigDir(t), "--var", "events_file=",
			"--var", "report="+out, "--var", "format=csv", "--var", "horizon="+horizon,
			"--var", "gpu_backend=none", "--var", "state_dir="+stateDir, shipped(t, "audit-next24h.hcl"))
		if code != ExitOK {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		rows := readCSV(t, out)
		var names []string
		for _, r := range rows[1:] {
			names = append(names, strings.TrimPrefix(r[0], eng.Prefix())+":"+r[5])
		}
		slices.Sort(names)
		return names
	}
	if got, want := run(now, "24h"), []string{"alice:keep", "fay:keep"}; !slices.Equal(got, want) {
		t.Errorf("at the start: %v, want %v (nora never, keeper exempt, running not a candidate)", got, want)
	}
	if got, want := run(now, "1h"), []string{"alice:keep"}; !slices.Equal(got, want) {
		t.Errorf("within 1 h: %v, want %v", got, want)
	}
	if got, want := run(now.Add(7*time.Hour), "24h"), []string{"alice:remove", "fay:remove"}; !slices.Equal(got, want) {
		t.Errorf("7 h later: %v, want %v", got, want)
	}
}
