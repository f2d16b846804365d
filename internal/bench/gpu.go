package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	pipereport "github.com/ds01/ds01-pipe/pipeline/report"
	_ "github.com/ds01/ds01-pipe/stages/all" // the stages of the pipelines run in process
)

// gpuCount is what one run cost the GPU back end.
type gpuCount struct {
	backend   string
	snapshots int             // Snapshot calls during the run
	queries   nvml.QueryStats // summed over every snapshot
	devices   int             // whole GPUs (not in MIG mode)
	migGPUs   int             // GPUs in MIG mode
	slices    int             // MIG slices
	dockerAPI apiCalls        // pipeline.Stats of the same run, to check the log line against
	records   int
}

// countingGPU counts the snapshots a run takes and what they cost.
type countingGPU struct {
	nvml.Backend
	mu        sync.Mutex
	snapshots int
	queries   nvml.QueryStats
}

func (c *countingGPU) Snapshot(ctx context.Context) (*nvml.Snapshot, error) {
	s, err := c.Backend.Snapshot(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapshots++
	if s != nil {
		c.queries.DeviceQueries += s.Queries.DeviceQueries
		c.queries.ProcessQueries += s.Queries.ProcessQueries
	}
	return s, err
}

// measureGPU runs a plan pipeline in this process, as ds01-pipe plan runs
// it (pipeline.Execute's environment), with the GPU back end wrapped to
// count every snapshot and its NVML queries. ds01-pipe itself does not log
// NVML query counts (see the report).
func measureGPU(ctx context.Context, file, now string) (*gpuCount, error) {
	env, res, gpu, err := planInProcess(ctx, file, now)
	if err != nil {
		return nil, err
	}
	c := &gpuCount{
		backend:   gpu.Name(),
		snapshots: gpu.snapshots,
		queries:   gpu.queries,
		records:   len(res.Batch.Records),
		dockerAPI: apiCalls{
			list: int(env.Stats.ListCalls.Load()), inspect: int(env.Stats.InspectCalls.Load()),
			remove: int(env.Stats.RemoveCalls.Load()), found: true,
		},
	}
	if snap := res.Batch.GPU; snap != nil {
		for _, d := range snap.Devices {
			if len(d.MIG) > 0 {
				c.migGPUs++
				c.slices += len(d.MIG)
			} else {
				c.devices++
			}
		}
	}
	return c, nil
}

// planInProcess runs a pipeline in plan mode in this process, with the
// environment pipeline.Execute builds for `ds01-pipe plan`, and then builds
// and encodes its JSON report as plan does. The GPU back end is wrapped to
// count its snapshots.
func planInProcess(ctx context.Context, file, now string) (*pipeline.Env, *pipeline.Result, *countingGPU, error) {
	return runInProcess(ctx, file, now, nil)
}

// runInProcess is planInProcess with the Docker client wrapped by wrap
// (nil: as it is), for counting calls pipeline.Stats does not count.
func runInProcess(ctx context.Context, file, now string, wrap func(*client.Client) pipeline.Docker) (*pipeline.Env, *pipeline.Result, *countingGPU, error) {
	cfg, err := pipeline.LoadFile(file, pipeline.LoadOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	at, err := time.Parse(time.RFC3339, now)
	if err != nil {
		return nil, nil, nil, err
	}
	backend, err := pipeline.OpenGPU(cfg.GPU, os.Getenv(pipeline.SimEnvVar))
	if err != nil {
		return nil, nil, nil, err
	}
	gpu := &countingGPU{Backend: backend}
	defer gpu.Close()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, nil, nil, err
	}
	defer cli.Close()
	// As a run: the API version settled first, then the engine of every
	// run (undecoded list and inspect answers).
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return nil, nil, nil, err
	}
	var docker pipeline.Docker = pipeline.NewEngine(cli)
	if wrap != nil {
		docker = wrap(cli)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	host, _ := os.Hostname()
	env := &pipeline.Env{
		Pipeline:    cfg.Name,
		File:        cfg.File,
		Mode:        pipeline.ModePlan,
		Now:         at.UTC(),
		Host:        host,
		Docker:      docker,
		CallTimeout: 30 * time.Second,
		GPU:         gpu,
		GPURequired: cfg.GPU.Required,
		Policy:      cfg.Policy,
		Log:         log,
		Stats:       &pipeline.Stats{},
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res, err := pipeline.Run(ctx, env, cfg.Stages)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("in-process plan of %s: %w", file, err)
	}
	if err := pipereport.Build(env, res, nil).WriteJSON(io.Discard); err != nil {
		return nil, nil, nil, err
	}
	return env, res, gpu, nil
}

// profilePlan runs the plan pipeline of file in process under the CPU
// profiler, then writes a heap profile (allocations since the start of
// the process, and what is in use after the run) next to it:
// DIR/plan-N.cpu.pprof and DIR/plan-N.heap.pprof. `go tool pprof -top`
// reads them. The process start and the subprocess boundary are not in
// them; the stage code, the Docker client and JSON decoding are.
func profilePlan(ctx context.Context, dir, file, now string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cpu, err := os.Create(filepath.Join(dir, fmt.Sprintf("plan-%d.cpu.pprof", n)))
	if err != nil {
		return err
	}
	defer cpu.Close()
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return err
	}
	_, _, _, err = planInProcess(ctx, file, now)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	heap, err := os.Create(filepath.Join(dir, fmt.Sprintf("plan-%d.heap.pprof", n)))
	if err != nil {
		return err
	}
	defer heap.Close()
	runtime.GC()
	return pprof.Lookup("allocs").WriteTo(heap, 0)
}
