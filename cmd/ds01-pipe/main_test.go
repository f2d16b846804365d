package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

// cli runs the command in-process and returns its exit code and streams.
func cli(t *testing.T, args ...string) (ExitCode, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(args, IOStreams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const discoverLog = `
variable "prefix" { default = "" }
pipeline "scoped" {
  gpu { backend = "none" }
  stage "discover" { name_prefix = var.prefix }
  stage "log" {
    events_file = ""
    syslog      = false
  }
}
`

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := cli(t, "version")
	if code != ExitOK || !strings.HasPrefix(out, "ds01-pipe ") {
		t.Errorf("version: %d %q", code, out)
	}
	for _, cmd := range []string{"run", "plan", "validate", "stages", "version"} {
		code, out, _ := cli(t, cmd, "--help")
		if code != ExitOK || !strings.Contains(out, "Usage:") {
			t.Errorf("%s --help: %d %q", cmd, code, out)
		}
	}
}

func TestStagesListsEveryKind(t *testing.T) {
	code, out, _ := cli(t, "stages")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	for _, kind := range []string{"discover", "attribute", "classify", "exempt", "log"} {
		if !strings.Contains(out, "\n"+kind+"\n") && !strings.HasPrefix(out, kind+"\n") {
			t.Errorf("stages output lacks %q", kind)
		}
	}
	if !strings.Contains(out, "name_prefix") {
		t.Error("stages output lacks discover's attributes")
	}
	code, out, _ = cli(t, "stages", "--format", "json")
	var docs []map[string]any
	if code != ExitOK || json.Unmarshal([]byte(out), &docs) != nil || len(docs) < 5 {
		t.Errorf("stages --format json: %d %q", code, out)
	}
}

func TestUsageAndConfigErrorsExit78(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.hcl", discoverLog)
	bad := writeFile(t, dir, "bad.hcl", "pipeline \"x\" {\n  stage \"discovr\" {}\n}\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"plan", filepath.Join(dir, "nope.hcl")}, "nope.hcl"},
		{"unknown stage", []string{"plan", bad}, "bad.hcl:2:3"},
		{"validate bad", []string{"validate", good, bad}, "1 of 2 file(s) invalid"},
		{"now on run", []string{"run", "--now", "2030-01-01T00:00:00Z", good}, "--allow-clock-override"},
		{"bad now", []string{"plan", "--now", "yesterday", good}, "RFC3339"},
		{"bad var", []string{"plan", "--var", "novalue", good}, "NAME=VALUE"},
		{"unknown var", []string{"plan", "--var", "prefx=a", good}, `Did you mean "prefix"?`},
		{"bad format", []string{"plan", "--format", "yaml", good}, "--format"},
		{"unknown flag", []string{"plan", "--bogus", good}, "unknown flag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := cli(t, c.args...)
			if code != ExitConfigError || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, want 78 with %q in stderr:\n%s", code, c.want, errOut)
			}
		})
	}
	if code, out, _ := cli(t, "validate", good); code != ExitOK || !strings.Contains(out, "ok") {
		t.Errorf("validate good: %d %q", code, out)
	}
}

func TestUnreachableDockerExits1Quickly(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-docker.sock")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	file := writeFile(t, t.TempDir(), "p.hcl", discoverLog)
	start := time.Now()
	code, out, errOut := cli(t, "plan", "--format", "json", file)
	if code != ExitFailure {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, errOut)
	}
	if !strings.Contains(errOut, sock) {
		t.Errorf("stderr does not name the socket %s:\n%s", sock, errOut)
	}
	// The report still comes, with the reason and nothing else.
	var doc struct {
		Containers []any
		Summary    struct{ Error string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Containers) != 0 || !strings.Contains(doc.Summary.Error, sock) {
		t.Errorf("report when Docker is unreachable (%v): %q", err, out)
	}
	// Not a timing assertion of the code under test: a generous bound that
	// catches a hang on the missing socket.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestPlanJSONListsExactlyTheScopedContainers(t *testing.T) {
	eng := dockertest.New(t)
	created := eng.Create(t, dockertest.Spec{Name: "created", Labels: map[string]string{"ds01.user": "alice"}})
	exited := eng.Create(t, dockertest.Spec{Name: "exited", Args: []string{"exit", "3"}, Start: true, Wait: true})
	// A bystander outside the prefix: same daemon, must not appear.
	other := dockertest.New(t)
	bystander := other.Create(t, dockertest.Spec{Name: "bystander"})

	file := writeFile(t, t.TempDir(), "p.hcl", discoverLog)
	code, out, errOut := cli(t, "plan", "--format", "json", "--var", "prefix="+eng.Prefix(), file)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var doc struct {
		Pipeline   string `json:"pipeline"`
		Mode       string `json:"mode"`
		Now        string `json:"now"`
		Containers []struct {
			ID         string  `json:"id"`
			Name       string  `json:"name"`
			State      string  `json:"state"`
			Created    *string `json:"created"`
			StartedAt  *string `json:"started_at"`
			FinishedAt *string `json:"finished_at"`
		} `json:"containers"`
		GPUs    []any          `json:"gpus"`
		Summary map[string]any `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if doc.Pipeline != "scoped" || doc.Mode != "plan" || doc.Now == "" || doc.GPUs == nil || doc.Summary == nil {
		t.Errorf("document header: %+v", doc)
	}
	got := map[string]string{}
	for _, c := range doc.Containers {
		got[c.ID] = c.Name + "/" + c.State
		if c.Created == nil {
			t.Errorf("%s has no created timestamp", c.Name)
		}
		switch c.ID {
		case created.ID:
			if c.StartedAt != nil || c.FinishedAt != nil {
				t.Errorf("never-started container has start/finish times: %v %v", c.StartedAt, c.FinishedAt)
			}
		case exited.ID:
			if c.StartedAt == nil || c.FinishedAt == nil {
				t.Errorf("exited container lacks start/finish times")
			}
		}
	}
	want := map[string]string{created.ID: created.Name + "/created", exited.ID: exited.Name + "/exited"}
	if len(got) != len(want) || got[created.ID] != want[created.ID] || got[exited.ID] != want[exited.ID] {
		t.Errorf("containers = %v, want %v", got, want)
	}
	if _, leaked := got[bystander.ID]; leaked {
		t.Error("a container outside the prefix was listed")
	}

	code, out, _ = cli(t, "plan", "--format", "table", "--var", "prefix="+eng.Prefix(), file)
	if code != ExitOK || !strings.Contains(out, created.Name) {
		t.Fatalf("table: exit %d\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if len([]rune(line)) > 120 {
			t.Errorf("table line wider than 120 columns: %q", line)
		}
	}
}
