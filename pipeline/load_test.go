package pipeline_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/stages/discover"
)

var errorMarker = regexp.MustCompile(`#\s*ERROR:\s*(.+)$`)

// TestLoadDiagnostics loads every file in testdata/diagnostics and checks
// that each line marked "# ERROR: <summary>" gets exactly that diagnostic,
// and that no other line gets one.
func TestLoadDiagnostics(t *testing.T) {
	files, err := filepath.Glob("testdata/diagnostics/*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no diagnostics fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want := map[int]string{}
			for i, line := range strings.Split(string(src), "\n") {
				if m := errorMarker.FindStringSubmatch(line); m != nil {
					want[i+1] = strings.TrimSpace(m[1])
				}
			}
			_, err = pipeline.LoadFile(file, pipeline.LoadOptions{})
			var ce *pipeline.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want a *ConfigError, got %v", err)
			}
			got := map[int]string{}
			for _, d := range ce.Diags {
				if d.Subject == nil {
					t.Fatalf("diagnostic %q has no source range", d.Summary)
				}
				got[d.Subject.Start.Line] = d.Summary
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("diagnostics by line (-want +got):\n%s\nfull text:\n%s", diff, err)
			}
			if !strings.Contains(err.Error(), filepath.Base(file)) {
				t.Errorf("rendered error does not name the file:\n%s", err)
			}
		})
	}
}

func TestLoadSuggestsNames(t *testing.T) {
	for file, want := range map[string]string{
		"testdata/diagnostics/unknown_kind.hcl": `Did you mean "discover"?`,
		"testdata/diagnostics/unknown_attr.hcl": `Did you mean "name_prefix"?`,
		"testdata/diagnostics/bad_backend.hcl":  `Did you mean "nvml"?`,
	} {
		_, err := pipeline.LoadFile(file, pipeline.LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want %q in:\n%v", file, want, err)
		}
	}
}

func TestLoadRendersSourceLine(t *testing.T) {
	_, err := pipeline.LoadFile("testdata/diagnostics/unknown_attr.hcl", pipeline.LoadOptions{})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"unknown_attr.hcl:3:5", `name_prefx = "x"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%s", want, err)
		}
	}
}

func TestLoadValid(t *testing.T) {
	t.Setenv("DS01_PIPE_TEST_PREFIX", "envp-")
	cfg, err := pipeline.LoadFile("testdata/valid/full.hcl", pipeline.LoadOptions{Vars: map[string]string{"workers": "6"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "full" || cfg.Timeout != 90*time.Second {
		t.Errorf("name %q timeout %v", cfg.Name, cfg.Timeout)
	}
	if want := filepath.Join("testdata", "valid", "run", "full.lock"); cfg.LockFile != want {
		t.Errorf("lock file %q, want %q (relative to the pipeline file)", cfg.LockFile, want)
	}
	if cfg.GPU.Backend != "none" || cfg.Policy == nil {
		t.Errorf("gpu %+v policy %v", cfg.GPU, cfg.Policy)
	}
	if len(cfg.Stages) != 2 {
		t.Fatalf("%d stages", len(cfg.Stages))
	}
	first := cfg.Stages[0].Stage.(*discover.Stage)
	if first.NamePrefix != "ci-" || first.Workers != 6 || first.Labels["ds01.managed"] != "true" || cfg.Stages[0].Timeout != 30*time.Second {
		t.Errorf("first stage decoded as %+v timeout %v", first, cfg.Stages[0].Timeout)
	}
	second := cfg.Stages[1]
	if second.Ref.String() != "discover.second" || second.Stage.(*discover.Stage).NamePrefix != "envp-x" {
		t.Errorf("second stage %s decoded as %+v", second.Ref, second.Stage)
	}
}

func TestLoadVars(t *testing.T) {
	cases := []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"prefx": "x"}, `Did you mean "prefix"?`},
		{map[string]string{"workers": "lots"}, `Invalid value for --var workers`},
	}
	for _, c := range cases {
		_, err := pipeline.LoadFile("testdata/valid/full.hcl", pipeline.LoadOptions{Vars: c.vars})
		if !pipeline.IsConfigError(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("vars %v: want config error with %q, got %v", c.vars, c.want, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := pipeline.LoadFile("testdata/does-not-exist.hcl", pipeline.LoadOptions{})
	if !pipeline.IsConfigError(err) || !strings.Contains(err.Error(), "does-not-exist.hcl") {
		t.Fatalf("want a config error naming the file, got %v", err)
	}
}

func TestLockRefusesPlantedSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(dir, "cleanup.lock")
	if err := os.Symlink(victim, lockPath); err != nil {
		t.Fatal(err)
	}
	cfg := &pipeline.Config{Name: "p", Timeout: time.Minute, LockFile: lockPath, GPU: pipeline.GPUConfig{Backend: "none"}}
	_, _, err := pipeline.Execute(t.Context(), cfg, pipeline.ExecOptions{Mode: pipeline.ModeRun, Docker: noDocker{}})
	if err == nil || !strings.Contains(err.Error(), "is a symbolic link: refused") {
		t.Fatalf("want a lock error, got %v", err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "precious\n" {
		t.Errorf("the symlink's target was overwritten: %q", got)
	}
}

// noDocker is never called: the lock is taken before Docker is contacted.
type noDocker struct{ pipeline.Docker }
