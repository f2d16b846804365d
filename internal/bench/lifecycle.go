package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
)

// The lifecycle pass (`-lifecycle-sizes`): the lifecycle pipeline's plan
// over N running GPU containers against the cleanup plan over the same
// containers, on the same host, with the Docker and NVML calls of one
// lifecycle plan counted in process.

// Targets of the lifecycle pass.
const (
	targetLifecycleRSSRatio = 1.5 // peak RSS of the lifecycle plan over the cleanup plan's
	setLifecycle            = "lc"
	lifecycleBase           = namePrefix + "lc-"
)

// lifecycleUnits are the GPU units the fixtures claim: three whole GPUs and
// the MIG slices of the fourth (the sim file's layout).
func lifecycleUnits() []string { return append(append([]string{}, simGPUs[:3]...), simMIGs...) }

// lifecycleFixtures returns sizes[len-1] running probes, in nested tiers as
// the plan set, each owned by a student with a GPU unit by label.
func lifecycleFixtures(sizes []int) []fixture {
	n := sizes[len(sizes)-1]
	units := lifecycleUnits()
	out := make([]fixture, 0, n)
	tier := 0
	for i := range n {
		for i >= sizes[tier] {
			tier++
		}
		out = append(out, fixture{
			name: lifecycleBase + tierInfix(tier, len(sizes)) + fmt.Sprintf("%05d", i),
			kind: kindRunning,
			args: []string{"forever"},
			labels: map[string]string{
				"ds01.user":           removalUsers[i%len(removalUsers)],
				"ds01.container_type": "atomic",
				"ds01.gpu.uuid":       units[i%len(units)],
			},
		})
	}
	return out
}

func lifecyclePrefix(sizes []int, size int) string {
	for t, s := range sizes {
		if s == size {
			return lifecycleBase + strings.Repeat("1", len(sizes)-1-t)
		}
	}
	panic(fmt.Sprintf("size %d is not among %v", size, sizes))
}

// lifecyclePoint is the pass at one size.
type lifecyclePoint struct {
	n           int
	life, clean series
	lifeSum     pipeSummary
	calls       *lifecycleCalls
	lifeFile    string
	cleanFile   string
}

// lifecycleCalls is what one in-process lifecycle plan cost.
type lifecycleCalls struct {
	records, judged   int
	list, inspect     int64
	stats, statPath   int64
	snapshots         int
	deviceQ, processQ int
	units             int
}

// countingDocker counts the lifecycle's Docker calls that pipeline.Stats
// does not (stats samples, archive stat calls).
type countingDocker struct {
	*client.Client
	stats, statPath atomic.Int64
}

func (c *countingDocker) ContainerStats(ctx context.Context, id string, o client.ContainerStatsOptions) (client.ContainerStatsResult, error) {
	c.stats.Add(1)
	return c.Client.ContainerStats(ctx, id, o)
}

func (c *countingDocker) ContainerStatPath(ctx context.Context, id string, o client.ContainerStatPathOptions) (client.ContainerStatPathResult, error) {
	c.statPath.Add(1)
	return c.Client.ContainerStatPath(ctx, id, o)
}

// measureLifecycle runs the lifecycle pass at every -lifecycle-sizes.
func measureLifecycle(ctx context.Context, r *runner, o *options, fx *fixtures, in *inputs) ([]*lifecyclePoint, setStats, error) {
	sizes := append([]int{}, o.lifecycleSizes...)
	sort.Ints(sizes)
	progress("lifecycle fixtures: %d running containers in tiers %v", sizes[len(sizes)-1], sizes)
	st, err := fx.ensure(ctx, setLifecycle, lifecycleFixtures(sizes))
	if err != nil {
		return nil, st, fmt.Errorf("lifecycle fixtures: %w", err)
	}
	progress("lifecycle fixtures ready: %s", st)
	pids, err := fx.runningPIDs(ctx, setLifecycle)
	if err != nil {
		return nil, st, err
	}
	lin := *in
	lin.simFile = filepath.Join(in.dir, "lc-gpus.json")
	if err := writeLifecycleSim(lin.simFile, pids); err != nil {
		return nil, st, err
	}
	var out []*lifecyclePoint
	for _, n := range sizes {
		p := &lifecyclePoint{n: n}
		prefix := lifecyclePrefix(sizes, n)
		stateDir := filepath.Join(in.dir, fmt.Sprintf("lc-state-%d", n))
		p.lifeFile = filepath.Join(in.dir, fmt.Sprintf("lifecycle-%d.hcl", n))
		if err := os.WriteFile(p.lifeFile, []byte(lin.lifecycleHCL(prefix, stateDir, o.workers)), 0o644); err != nil {
			return nil, st, err
		}
		p.cleanFile = filepath.Join(in.dir, fmt.Sprintf("lifecycle-cleanup-%d.hcl", n))
		if err := os.WriteFile(p.cleanFile, []byte(lin.pipelineHCL(pipelineSpec{
			name: "bench-plan", prefix: prefix, discoverWorkers: o.workers, removeWorkers: o.removeWorkers, release: true,
		})), 0o644); err != nil {
			return nil, st, err
		}
		// One run fills the state store (warnings only: nothing is
		// stopped at a container's first run), so that the plans read N
		// entries and compute rates from a previous sample.
		if _, _, _, err := r.pipeRun(ctx, "run", p.lifeFile); err != nil {
			return nil, st, fmt.Errorf("priming the lifecycle state: %w", err)
		}
		for i := range o.repeat {
			lifeFirst := i%2 == 0
			for _, life := range []bool{lifeFirst, !lifeFirst} {
				file := p.cleanFile
				if life {
					file = p.lifeFile
				}
				s, sum, _, err := r.pipeRun(ctx, "plan", file)
				if err != nil {
					return nil, st, err
				}
				if life {
					p.life = append(p.life, s)
					p.lifeSum = sum
				} else {
					p.clean = append(p.clean, s)
				}
			}
		}
		if p.calls, err = lifecycleInProcess(ctx, p.lifeFile, r.now); err != nil {
			return nil, st, err
		}
		progress("lifecycle N=%d: plan %s s, cleanup plan %s s", n, secs(summarize(p.life.walls()).median), secs(summarize(p.clean.walls()).median))
		out = append(out, p)
	}
	return out, st, nil
}

// lifecycleInProcess runs one lifecycle plan in this process with the
// Docker client and the GPU back end wrapped to count their calls.
func lifecycleInProcess(ctx context.Context, file, now string) (*lifecycleCalls, error) {
	var counting *countingDocker
	env, res, gpu, err := runInProcess(ctx, file, now, func(c *client.Client) pipeline.Docker {
		counting = &countingDocker{Client: c}
		return counting
	})
	if err != nil {
		return nil, err
	}
	c := &lifecycleCalls{
		records: len(res.Batch.Records), list: env.Stats.ListCalls.Load(), inspect: env.Stats.InspectCalls.Load(),
		stats: counting.stats.Load(), statPath: counting.statPath.Load(),
		snapshots: gpu.snapshots, deviceQ: gpu.queries.DeviceQueries, processQ: gpu.queries.ProcessQueries,
	}
	for _, rec := range res.Batch.Records {
		if rec.Lifecycle != nil {
			c.judged++
		}
	}
	if snap := res.Batch.GPU; snap != nil {
		for _, d := range snap.Devices {
			c.units += 1 + len(d.MIG)
		}
	}
	return c, nil
}

// lifecycleHCL renders the shipped lifecycle chain scoped to the fixtures,
// with nothing sent anywhere.
func (in *inputs) lifecycleHCL(prefix, stateDir string, workers int) string {
	// in.simFile is the lifecycle's simulation (with utilisation).
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	in.header(p, "bench-lifecycle")
	p("  stage \"discover\" {")
	p("    name_prefix = %q", prefix)
	p("    states      = [\"running\"]")
	p("    workers     = %d", workers)
	p("  }")
	p("  stage \"attribute\" {}")
	p("  stage \"classify\" {}")
	p("  stage \"exempt\" {}")
	p("  stage \"measure\" {}")
	p("  stage \"lifecycle\" {")
	p("    state_dir = %q", stateDir)
	p("  }")
	p("  stage \"notify\" {")
	p("    terminals      = false")
	p("    container_file = \"\"")
	p("  }")
	p("  stage \"stop\" {")
	p("    syslog = false")
	p("  }")
	p("  stage \"remove\" {}")
	p("  stage \"log\" {")
	p("    events_file = \"\"")
	p("    syslog      = false")
	p("  }")
	p("}")
	return b.String()
}

// writeLifecycleSim writes simDevices with utilisation: every fixture's
// PID on its unit with sm_util 0, the whole GPUs and the slices at 0 %,
// the MIG parent reporting none (NVML's [N/A]).
func writeLifecycleSim(path string, pids []int) error {
	zero := 0
	devs := simDevices()
	for i := range 3 {
		devs[i].Util = &zero
	}
	for j := range devs[3].MIG {
		devs[3].MIG[j].Util = &zero
	}
	// The fixtures' units cycle GPU 0, 1, 2, slice 0, 1, 2 in creation
	// order; the PIDs come in list order, so only the spread matters.
	for i, pid := range pids {
		p := simProc{PID: pid, UMem: 1024, SMUtil: &zero}
		if u := i % 6; u < 3 {
			devs[u].Processes = append(devs[u].Processes, p)
		} else {
			devs[3].MIG[u-3].Processes = append(devs[3].MIG[u-3].Processes, p)
		}
	}
	return writeSimFile(path, devs)
}

// lifecycleSection renders the lifecycle pass.
func (r *report) lifecycleSection(p func(string, ...any)) {
	if len(r.opts.lifecycleSizes) == 0 {
		return
	}
	p("### Lifecycle pass")
	p("")
	if r.lifecycleErr != nil {
		p("Not measured: %s", oneLine(r.lifecycleErr))
		p("")
		return
	}
	p("`ds01-pipe plan` of the lifecycle chain (discover of running containers, measure, lifecycle with a primed state store, notify, stop, remove, log; nothing acted) against the cleanup plan over the same running GPU containers. Fixtures (untimed): %s.", r.lifecycleFixtures)
	p("")
	p("| N | lifecycle plan s | cleanup plan s | ratio | lifecycle peak RSS MiB | cleanup peak RSS MiB | RSS ratio (target ≤ %.1f) |", targetLifecycleRSSRatio)
	p("|---:|---|---|---:|---|---|---|")
	for _, pt := range r.lifecycle {
		lr, cr := summarize(pt.life.rssMiB()), summarize(pt.clean.rssMiB())
		rssRatio := lr.median / cr.median
		p("| %d | %s | %s | %.2fx | %s | %s | %.2fx %s |", pt.n, fmtSpread(summarize(pt.life.walls()), 3), fmtSpread(summarize(pt.clean.walls()), 3),
			summarize(ratios(pt.life, pt.clean)).median, fmtSpread(lr, 1), fmtSpread(cr, 1), rssRatio, verdict(rssRatio <= targetLifecycleRSSRatio))
	}
	p("")
	p("Calls of one lifecycle plan, counted in process (target: one stats sample and at most one inspect per running container, one utilisation query per device or slice):")
	p("")
	p("| N | containers judged | list | inspect / container | stats / container | keep-alive stat | GPU snapshots | NVML device queries / unit | NVML process queries / unit |")
	p("|---:|---:|---:|---|---|---:|---:|---|---|")
	for _, pt := range r.lifecycle {
		c := pt.calls
		per := func(v int64, n int) string {
			if n == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", float64(v)/float64(n))
		}
		ok := c.records > 0 && c.stats == int64(c.judged) && c.inspect <= int64(c.records)
		p("| %d | %d | %d | %s | %s %s | %d | %d | %s | %s |", pt.n, c.judged, c.list, per(c.inspect, c.records), per(c.stats, c.judged), verdict(ok),
			c.statPath, c.snapshots, per(int64(c.deviceQ), c.units), per(int64(c.processQ), c.units))
	}
	p("")
	p("The simulator counts one device query (utilisation included) and one process query per device and MIG slice. The NVML adapter adds one utilisation query per GPU and MIG slice and one per-process utilisation query per whole GPU with processes. A run that idle-stops containers takes one more snapshot after the stops.")
	p("")
}
