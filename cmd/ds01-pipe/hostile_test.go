package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
)

// Hostile and malformed configuration: every file of testdata/hostile,
// and the large inputs generated below, must be refused with exit 78 by
// both `validate` and `plan`, with the expected message, before the Docker
// engine is contacted at all (DOCKER_HOST is a socket that counts its
// connections). testdata/hostile/cases.txt is the table: the file (a
// pipeline, a policy folder or a simulation file) and a text its error
// must contain.

const hostileDir = "../../testdata/hostile"

// noDocker points DOCKER_HOST at a unix socket that accepts and counts
// connections, and fails the test at its end if anything connected.
func noDocker(t *testing.T) {
	t.Helper()
	dir, err := os.MkdirTemp("", "nod-") // short: unix socket paths hold 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			_ = c.Close()
		}
	})
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	t.Setenv(pipeline.SimEnvVar, "")
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		_ = os.RemoveAll(dir)
		if n := conns.Load(); n != 0 {
			t.Errorf("%d connection(s) to the Docker socket: configuration must be refused before Docker is contacted", n)
		}
	})
}

type hostileCase struct {
	file string // relative to testdata/hostile
	want string
	line int
}

func readHostileCases(t *testing.T) []hostileCase {
	t.Helper()
	f, err := os.Open(filepath.Join(hostileDir, "cases.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []hostileCase
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, want, ok := strings.Cut(line, "\t")
		want = strings.TrimLeft(want, "\t")
		if !ok || want == "" {
			t.Fatalf("cases.txt:%d: want FILE<TAB>EXPECTED, got %q", n, line)
		}
		cases = append(cases, hostileCase{file: file, want: want, line: n})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// copyHostileTree copies testdata/hostile to dir with modes 0644/0755 owned by the
// test's user, so the result does not depend on how the checkout was made
// (as root the command refuses files others could have written).
func copyHostileTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pipelineFor returns the pipeline file that makes the command read the
// case's file: the file itself, or a pipeline written next to it.
func pipelineFor(t *testing.T, root, file string) string {
	t.Helper()
	path := filepath.Join(root, file)
	switch {
	case strings.HasPrefix(file, "pipelines/"):
		return path
	case strings.HasPrefix(file, "policy/"):
		return writeFile(t, path, "pipeline.hcl", `
pipeline "hostile" {
  policy {
    limits_file     = "resource-limits.yaml"
    groups_dir      = "groups"
    overrides_file  = "user-overrides.yaml"
    exemptions_file = "lifecycle-exemptions.yaml"
  }
  gpu { backend = "none" }
  stage "discover" {}
  stage "decide" { idle_events_file = "" }
}
`)
	case strings.HasPrefix(file, "sim/"):
		return writeFile(t, filepath.Dir(path), strings.TrimSuffix(filepath.Base(path), ".json")+".hcl", fmt.Sprintf(`
pipeline "hostile" {
  gpu {
    backend  = "sim"
    sim_file = %q
  }
  stage "discover" {}
}
`, filepath.Base(path)))
	}
	t.Fatalf("cases.txt: %s is not under pipelines/, policy/ or sim/", file)
	return ""
}

// wantRefused78 runs validate and plan on file and checks both exit 78 with want
// on stderr.
func wantRefused78(t *testing.T, file, want string, extra ...string) {
	t.Helper()
	for _, args := range [][]string{
		append([]string{"validate"}, extra...),
		append([]string{"plan", "--format", "json"}, extra...),
	} {
		start := time.Now()
		code, out, errOut := cli(t, append(args, file)...)
		if code != ExitConfigError || !strings.Contains(errOut, want) {
			t.Errorf("%s: exit %d, want 78 with %q on stderr:\n%s", args[0], code, want, clipText(errOut))
		}
		if args[0] == "plan" && out != "" {
			t.Errorf("plan wrote to stdout on a configuration error: %s", clipText(out))
		}
		if d := time.Since(start); d > hangGuard { // a hang guard, not a timing test
			t.Errorf("%s took %v", args[0], d)
		}
		if strings.Contains(errOut, "\x1b") {
			t.Errorf("%s: stderr carries a raw escape character from the file:\n%q", args[0], clipText(errOut))
		}
	}
}

func clipText(s string) string {
	if len(s) > 4000 {
		return s[:4000] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

func TestHostileCorpusExits78BeforeDocker(t *testing.T) {
	noDocker(t)
	root := t.TempDir()
	copyHostileTree(t, hostileDir, root)
	cases := readHostileCases(t)
	if len(cases) < 30 {
		t.Errorf("cases.txt has %d cases, want at least 30", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[strings.TrimSuffix(c.file, "/")] = true
		t.Run(strings.ReplaceAll(strings.TrimSuffix(c.file, "/"), "/", "_"), func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(root, c.file)); err != nil {
				t.Fatalf("cases.txt:%d: %v", c.line, err)
			}
			wantRefused78(t, pipelineFor(t, root, c.file), c.want)
		})
	}
	// Every file of the corpus has its line in the table.
	for _, dir := range []string{"pipelines", "policy", "sim"} {
		entries, err := os.ReadDir(filepath.Join(hostileDir, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if name := dir + "/" + e.Name(); !seen[name] {
				t.Errorf("%s has no line in cases.txt", name)
			}
		}
	}
}

// The simulation files are refused through DS01_PIPE_NVML_SIM too, which
// overrides the pipeline's gpu block.
func TestHostileSimFilesThroughTheEnvironment(t *testing.T) {
	noDocker(t)
	root := t.TempDir()
	copyHostileTree(t, hostileDir, root)
	plain := writeFile(t, root, "plain.hcl", "pipeline \"plain\" {\n  gpu { backend = \"none\" }\n  stage \"discover\" {}\n}\n")
	for _, c := range readHostileCases(t) {
		if !strings.HasPrefix(c.file, "sim/") {
			continue
		}
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			t.Setenv(pipeline.SimEnvVar, filepath.Join(root, c.file))
			wantRefused78(t, plain, c.want)
		})
	}
}

// Inputs too big for the repository, generated here.
func TestHostileGeneratedInput(t *testing.T) {
	noDocker(t)
	dir := t.TempDir()
	const head = "pipeline \"big\" {\n  gpu { backend = \"none\" }\n"

	// A 10 MB pipeline file: refused by size before it is parsed.
	big := head + "  stage \"discover\" {}\n}\n" + strings.Repeat("# padding padding padding padding padding padding\n", 10<<20/50)
	wantRefused78(t, writeFile(t, dir, "10mb.hcl", big), "larger than 1048576 bytes")

	// A stage block with 10,000 attributes.
	var attrs strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&attrs, "    attr_%d = %d\n", i, i)
	}
	wantRefused78(t, writeFile(t, dir, "10k-attrs.hcl", head+"  stage \"discover\" {\n"+attrs.String()+"  }\n}\n"), "Unsupported argument")

	// Deep nesting: the HCL parser recurses per level, and 100,000 levels
	// overflowed the Go stack (a fatal error, not a panic) before the
	// loader checked nesting with the lexer first.
	const depth = 100_000
	stage := func(expr string) string {
		return head + "  stage \"discover\" { name_prefix = " + expr + " }\n}\n"
	}
	for name, expr := range map[string]string{
		"brackets":     strings.Repeat("[", depth) + `"x"` + strings.Repeat("]", depth),
		"templates":    strings.Repeat(`"${`, depth) + `"x"` + strings.Repeat(`}"`, depth),
		"conditionals": strings.Repeat("true ? \"x\" : ", depth/2) + `"y"`,
		"unary":        strings.Repeat("!", depth) + "true",
	} {
		wantRefused78(t, writeFile(t, dir, "deep-"+name+".hcl", stage(expr)), "Nested too deeply")
	}
	var blocks strings.Builder // nested blocks, not expressions
	for range depth {
		blocks.WriteString("b {\n")
	}
	wantRefused78(t, writeFile(t, dir, "deep-blocks.hcl", head+"  stage \"discover\" {\n"+blocks.String()), "Nested too deeply")

	// Deep nesting in a policy file.
	pol := filepath.Join(dir, "deep-policy")
	if err := os.Mkdir(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, pol, "resource-limits.yaml", "defaults: "+strings.Repeat("[", depth)+strings.Repeat("]", depth)+"\n")
	wantRefused78(t, writeFile(t, pol, "p.hcl", head+"  policy { limits_file = \"resource-limits.yaml\" }\n  stage \"discover\" {}\n}\n"), "resource-limits.yaml: invalid YAML: exceeded max depth of 10000")

	// Deep nesting in a simulation file.
	writeFile(t, dir, "deep.json", `{"devices": `+strings.Repeat("[", depth)+strings.Repeat("]", depth)+"}")
	wantRefused78(t, writeFile(t, dir, "deep-sim.hcl", "pipeline \"big\" {\n  gpu {\n    backend = \"sim\"\n    sim_file = \"deep.json\"\n  }\n  stage \"discover\" {}\n}\n"), "deep.json:1:14: devices[0]: want a device, got a list")
}

// Usable but awkward label values (quotes, backslashes, a semicolon, an
// OSC escape in an unrelated label, a newline) on a real container: the
// table stays one row per container with no escape byte, the JSON report
// and the events line stay valid JSON, and the owner and type come back
// exactly as written. (Unusable values, which become "unknown", are
// covered by TestCleanupHostileLabelsAndNames.)
func TestHostileLabelsSurviveEndToEnd(t *testing.T) {
	eng := dockertest.New(t)
	t.Setenv("DOCKER_HOST", eng.Host())
	t.Setenv(pipeline.SimEnvVar, "")
	const owner = `o'brien "the" \admin; rm -rf ~`
	const ctype = `x"y\z`
	c := eng.Create(t, dockertest.Spec{
		Name: "awkward",
		Args: []string{"exit", "3"}, Start: true, Wait: true,
		Labels: map[string]string{
			"ds01.user":           owner,
			"ds01.container_type": ctype,
			"title":               "\x1b]0;pwned\x07\x1b[2J",
			"note":                "line one\nline two\r\n",
		},
	})
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	file := writeFile(t, dir, "p.hcl", faultPipeline)
	base := []string{"--now", farFuture, "--var", "prefix=" + eng.Prefix(), "--var", "events_file=" + events}

	code, table, errOut := cli(t, append(append([]string{"plan", "--format", "table"}, base...), file)...)
	if code != ExitOK {
		t.Fatalf("plan: exit %d\n%s", code, errOut)
	}
	if strings.ContainsAny(table, "\x1b\x07\r") {
		t.Errorf("the table carries a raw control character:\n%q", table)
	}
	rows := 0
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, eng.Prefix()) {
			rows++
		}
	}
	if rows != 1 {
		t.Errorf("%d table rows for the container, want 1:\n%s", rows, table)
	}

	code, out, errOut := cli(t, append(append([]string{"run", "--format", "json", "--allow-clock-override"}, base...), file)...)
	if code != ExitOK {
		t.Fatalf("run: exit %d\n%s", code, errOut)
	}
	var doc struct {
		Containers []struct {
			Name, Owner, Type, Outcome string
		} `json:"containers"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("the report is not JSON: %v\n%s", err, out)
	}
	if len(doc.Containers) != 1 || doc.Containers[0].Owner != owner || doc.Containers[0].Type != ctype || doc.Containers[0].Outcome != "removed" {
		t.Errorf("report containers %+v, want owner %q, type %q, removed", doc.Containers, owner, ctype)
	}
	data, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Type    string            `json:"event_type"`
			User    string            `json:"user"`
			Details map[string]string `json:"details"`
		}
		if !json.Valid([]byte(line)) {
			t.Errorf("events line is not JSON: %q", line)
			continue
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Type != "container.remove" {
			continue
		}
		found = true
		if ev.User != owner || ev.Details["container"] != c.Name || ev.Details["container_type"] != ctype {
			t.Errorf("container.remove line %s: want user %q, container %s, type %q", line, owner, c.Name, ctype)
		}
	}
	if !found {
		t.Errorf("no container.remove line in:\n%s", data)
	}
}
