package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every input path that names a FIFO is refused at once (exit 78), never a
// read that blocks: the pipeline file itself (with and without --var), a
// policy file, the simulation file (from the pipeline and from
// DS01_PIPE_NVML_SIM), and a plan given to apply.
func TestFIFOInputsRefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := func(name string) string {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pipelineFIFO := fifo("fifo.hcl")
	fifo("limits.yaml")
	fifo("gpus.json")
	fifo("cleanup.plan")
	policy := writeFile(t, dir, "policy.hcl", `pipeline "p" {
  policy { limits_file = "limits.yaml" }
  gpu { backend = "none" }
  stage "discover" {}
}
`)
	sim := writeFile(t, dir, "sim.hcl", `pipeline "p" {
  gpu {
    backend  = "sim"
    sim_file = "gpus.json"
  }
  stage "discover" {}
}
`)
	plain := writeFile(t, dir, "plain.hcl", `pipeline "p" {
  gpu { backend = "none" }
  stage "discover" {}
}
`)
	cases := []struct {
		name string
		env  string // DS01_PIPE_NVML_SIM
		args []string
	}{
		{"pipeline file", "", []string{"validate", pipelineFIFO}},
		{"pipeline file with --var", "", []string{"validate", "--var", "x=1", pipelineFIFO}},
		{"policy file", "", []string{"validate", policy}},
		{"simulation file", "", []string{"validate", sim}},
		{"DS01_PIPE_NVML_SIM", filepath.Join(dir, "gpus.json"), []string{"validate", plain}},
		{"plan", "", []string{"apply", filepath.Join(dir, "cleanup.plan")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("DS01_PIPE_NVML_SIM", c.env)
			type result struct {
				code ExitCode
				err  string
			}
			done := make(chan result, 1)
			go func() {
				code, _, errOut := cli(t, c.args...)
				done <- result{code, errOut}
			}()
			select {
			case r := <-done:
				if r.code != ExitConfigError || !strings.Contains(r.err, "not a regular file") {
					t.Errorf("exit %d, want 78 saying it is not a regular file:\n%s", r.code, r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("blocked on a FIFO")
			}
		})
	}
}
