package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// policySource is the DS01 policy the pipelines use, relative to the module
// root: resource-limits.yaml with groups/, user-overrides.yaml and
// lifecycle-exemptions.yaml.
const policySource = "stages/decide/testdata/ds01"

// inputs are the files the benchmark writes for ds01-pipe.
type inputs struct {
	dir      string
	policy   string // the copied policy folder
	simFile  string // "" with -gpu none
	simPIDs  int    // running fixtures listed as GPU processes
	planFile map[int]string
	// planSweepFile maps discover workers to a plan file at -sweep-size.
	planSweepFile map[int]string
	// rmRun and rmPrune are this run's removal sets (removalSets).
	rmRun, rmPrune string
	// runFile maps remove workers to a removal pipeline of set rmRun.
	runFile map[int]string
}

// pipelineSpec is what varies between the benchmark's pipeline files.
type pipelineSpec struct {
	name            string
	prefix          string
	labels          map[string]string
	discoverWorkers int
	removeWorkers   int
	release         bool
}

// writeInputs copies the policy, writes the GPU simulation and every
// pipeline file the measurements use.
func writeInputs(ctx context.Context, work, runID string, o *options, fx *fixtures, release bool, sizes []int) (*inputs, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	in := &inputs{
		dir:           work,
		policy:        filepath.Join(work, "policy"),
		planFile:      map[int]string{},
		planSweepFile: map[int]string{},
		runFile:       map[int]string{},
	}
	in.rmRun, in.rmPrune = removalSets(runID)
	if err := os.CopyFS(in.policy, os.DirFS(filepath.Join(root, policySource))); err != nil {
		return nil, fmt.Errorf("copy the policy: %w", err)
	}
	if o.gpu == "sim" {
		pids, err := fx.runningPIDs(ctx, setPlan)
		if err != nil {
			return nil, err
		}
		in.simFile = filepath.Join(work, "gpus.json")
		in.simPIDs = len(pids)
		if err := writeSim(in.simFile, pids); err != nil {
			return nil, err
		}
	}
	write := func(file string, spec pipelineSpec) (string, error) {
		path := filepath.Join(work, file)
		return path, os.WriteFile(path, []byte(in.pipelineHCL(spec)), 0o644)
	}
	for _, n := range sizes {
		if in.planFile[n], err = write(fmt.Sprintf("plan-%d.hcl", n), pipelineSpec{
			name: "bench-plan", prefix: planPrefix(sizes, n), discoverWorkers: o.workers, removeWorkers: o.removeWorkers, release: release,
		}); err != nil {
			return nil, err
		}
	}
	if o.sweep && containsInt(sizes, o.sweepSize) {
		for _, w := range o.sweepWorkers {
			if in.planSweepFile[w], err = write(fmt.Sprintf("plan-%d-w%d.hcl", o.sweepSize, w), pipelineSpec{
				name: "bench-plan", prefix: planPrefix(sizes, o.sweepSize), discoverWorkers: w, removeWorkers: o.removeWorkers, release: release,
			}); err != nil {
				return nil, err
			}
		}
	}
	removeWorkers := append([]int{o.removeWorkers}, o.sweepRemoveWorkers...)
	for _, w := range removeWorkers {
		if _, done := in.runFile[w]; done {
			continue
		}
		if in.runFile[w], err = write(fmt.Sprintf("run-w%d.hcl", w), pipelineSpec{
			name: "bench-remove", prefix: removalPrefix(in.rmRun), labels: map[string]string{labelSet: in.rmRun},
			discoverWorkers: o.workers, removeWorkers: w, release: release,
		}); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// pipelineHCL renders a pipeline: the default cleanup chain, scoped to the
// fixtures, with the copied DS01 policy, the simulated GPUs (or none), and
// a log stage that writes no events and no syslog.
func (in *inputs) pipelineHCL(s pipelineSpec) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	in.header(p, s.name)
	p("  stage \"discover\" {")
	p("    name_prefix = %q", s.prefix)
	if len(s.labels) > 0 {
		keys := make([]string, 0, len(s.labels))
		for k := range s.labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		p("    labels = {")
		for _, k := range keys {
			p("      %q = %q", k, s.labels[k])
		}
		p("    }")
	}
	p("    workers     = %d", s.discoverWorkers)
	p("  }")
	p("  stage \"attribute\" {}")
	p("  stage \"classify\" {}")
	p("  stage \"exempt\" {}")
	p("  stage \"decide\" {")
	p("    idle_events_file = \"\"")
	p("  }")
	if s.release {
		p("  stage \"release\" {}")
	}
	p("  stage \"remove\" {")
	p("    workers = %d", s.removeWorkers)
	p("  }")
	p("  stage \"log\" {")
	p("    events_file = \"\"")
	p("    syslog      = false")
	p("  }")
	p("}")
	return b.String()
}

// header renders the start of a pipeline: its block with the timeout and
// lock, the copied DS01 policy, and the simulated GPUs (or none).
func (in *inputs) header(p func(string, ...any), name string) {
	p("# Written by internal/bench.")
	p("pipeline %q {", name)
	p("  timeout   = \"10m\"")
	p("  lock_file = %q", filepath.Join(in.dir, name+".lock"))
	p("  policy {")
	p("    limits_file     = %q", filepath.Join(in.policy, "resource-limits.yaml"))
	p("    groups_dir      = %q", filepath.Join(in.policy, "groups"))
	p("    overrides_file  = %q", filepath.Join(in.policy, "user-overrides.yaml"))
	p("    exemptions_file = %q", filepath.Join(in.policy, "lifecycle-exemptions.yaml"))
	p("  }")
	p("  gpu {")
	if in.simFile != "" {
		p("    backend  = \"sim\"")
		p("    sim_file = %q", in.simFile)
	} else {
		p("    backend = \"none\"")
	}
	p("  }")
}

// The simulation file's layout (docs/gpu-simulation.md); utilisation is
// optional and left out when nil.
type (
	simProc struct {
		PID    int    `json:"pid"`
		UMem   uint64 `json:"used_memory_mib"`
		SMUtil *int   `json:"sm_util,omitempty"`
	}
	simMIG struct {
		Index     int       `json:"index"`
		UUID      string    `json:"uuid"`
		Profile   string    `json:"profile"`
		Processes []simProc `json:"processes"`
		Util      *int      `json:"utilization_gpu,omitempty"`
	}
	simDev struct {
		Index     int       `json:"index"`
		UUID      string    `json:"uuid"`
		Name      string    `json:"name"`
		MemoryMiB uint64    `json:"memory_mib"`
		Processes []simProc `json:"processes"`
		MIG       []simMIG  `json:"mig"`
		Util      *int      `json:"utilization_gpu,omitempty"`
	}
)

// simDevices is the simulated host: four GPUs, the last in MIG mode with
// three slices, no processes yet.
func simDevices() []simDev {
	devs := make([]simDev, len(simGPUs))
	for i, uuid := range simGPUs {
		devs[i] = simDev{Index: i, UUID: uuid, Name: "NVIDIA A100-SXM4-80GB", MemoryMiB: 81920, Processes: []simProc{}, MIG: []simMIG{}}
	}
	for j, uuid := range simMIGs {
		devs[3].MIG = append(devs[3].MIG, simMIG{Index: j, UUID: uuid, Profile: "2g.20gb", Processes: []simProc{}})
	}
	return devs
}

func writeSimFile(path string, devs []simDev) error {
	b, err := json.MarshalIndent(map[string]any{"driver_version": "550.54.15", "devices": devs, "init_error": nil}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, fs.FileMode(0o644))
}

// writeSim writes the GPU simulation of simDevices. The running fixtures'
// host PIDs are GPU processes (so the PID-to-container mapping through
// /proc runs for real) and PID 1, which is in no container, is an orphan.
func writeSim(path string, pids []int) error {
	devs := simDevices()
	for i, pid := range pids {
		d := &devs[i%3]
		d.Processes = append(d.Processes, simProc{PID: pid, UMem: 1024})
	}
	devs[2].Processes = append(devs[2].Processes, simProc{PID: 1, UMem: 512})
	return writeSimFile(path, devs)
}

func containsInt(list []int, n int) bool {
	for _, v := range list {
		if v == n {
			return true
		}
	}
	return false
}
