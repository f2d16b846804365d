package pipeline_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
	_ "github.com/ds01/ds01-pipe/stages/all" // every stage kind, as the binary has them
)

// FuzzLoad feeds arbitrary bytes to the pipeline loader with every stage
// kind registered. The loader must never panic or overflow its stack,
// must answer every bad file with a *ConfigError that renders, and must
// only accept a configuration that satisfies the engine's basic
// invariants. The seed corpus (testdata/fuzz/FuzzLoad) holds the shipped
// pipelines and some diagnostics fixtures.
//
//	go test -run '^$' -fuzz '^FuzzLoad$' -fuzztime 30s ./pipeline
func FuzzLoad(f *testing.F) {
	// The file "lives" in a folder that does not exist, so relative policy
	// and simulation paths name nothing; StrictFiles keeps absolute ones
	// to files only root can write, as the binary does when run as root.
	path := filepath.Join(f.TempDir(), "missing", "fuzz.hcl")
	f.Fuzz(func(t *testing.T, src []byte) {
		// The fuzzer has no per-input timeout: a hang would only show as
		// "execs: 0/sec". Crash instead, so the input is saved.
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("Load did not return within 10s on %q", src))
		})
		defer watchdog.Stop()
		cfg, err := pipeline.Load(path, src, pipeline.LoadOptions{
			StrictFiles: true,
			Vars:        map[string]string{"prefix": "p-"},
		})
		if err != nil {
			if !pipeline.IsConfigError(err) {
				t.Fatalf("error is not a *ConfigError: %T %v", err, err)
			}
			if msg := err.Error(); strings.TrimSpace(msg) == "" {
				t.Fatal("a configuration error renders as nothing")
			}
			return
		}
		if cfg.Name == "" {
			t.Error("accepted a pipeline without a name")
		}
		if cfg.Timeout <= 0 || cfg.Timeout > 100*365*24*time.Hour {
			t.Errorf("accepted timeout %v", cfg.Timeout)
		}
		switch cfg.GPU.Backend {
		case "auto", "nvml", "sim", "none":
		default:
			t.Errorf("accepted GPU backend %q", cfg.GPU.Backend)
		}
		if cfg.GPU.Backend == "sim" && cfg.GPU.SimFile == "" {
			t.Error(`accepted backend "sim" without a sim_file`)
		}
		if !cfg.GPU.StrictFiles {
			t.Error("StrictFiles did not reach the GPU configuration")
		}
		if len(cfg.Stages) == 0 {
			t.Error("accepted a pipeline without stages")
		}
		seen := map[string]bool{}
		for _, st := range cfg.Stages {
			if st.Stage == nil {
				t.Errorf("stage %s has no implementation", st.Ref)
			}
			if st.Timeout < 0 {
				t.Errorf("stage %s has a negative timeout %v", st.Ref, st.Timeout)
			}
			if seen[st.Ref.String()] {
				t.Errorf("stage %s accepted twice", st.Ref)
			}
			seen[st.Ref.String()] = true
		}
	})
}
