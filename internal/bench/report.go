package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Targets of the performance issue.
const (
	targetPlanSize     = 1000
	targetPlanRatio    = 1.5
	targetRemovalRatio = 1.3
	// At the size of a large host: plan's peak RSS, and plan against the
	// floor (the list and inspects it cannot do without).
	targetRSSSize    = 10000
	targetRSSMiB     = 64
	targetLargeRatio = 1.2
)

// report is everything measured, rendered as Markdown.
type report struct {
	command      string
	opts         *options
	started      time.Time
	elapsed      time.Duration
	machine      machine
	version      string
	release      bool
	planFixtures setStats
	files        *inputs
	rssFloorKiB  int64 // peak RSS maxrss reports for /bin/true

	plan            []*planPoint
	planSweep       []*planPoint
	planSweepErr    error
	gpu             *gpuCount
	gpuErr          error
	removal         *removalPoint
	removalErr      error
	removalSweep    []*removalPoint
	removalSweepErr error

	lifecycle         []*lifecyclePoint
	lifecycleFixtures setStats
	lifecycleErr      error
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	o := r.opts
	m := r.machine

	p("## Benchmark: ds01-pipe against the Docker API floor")
	p("")
	p("- Command: `%s` (from the module root; `make bench` runs it with the Makefile's LDFLAGS)", r.command)
	p("- Date: %s UTC, %s in all (fixture creation included)", r.started.UTC().Format("2006-01-02 15:04"), r.elapsed.Round(time.Second))
	p("- Machine: %d CPUs (%s), %d MiB memory, kernel %s, %s", m.cpus, m.cpuModel, m.memMiB, m.kernel, m.goVersion)
	p("- Docker: Engine %s (API %s), storage driver %s, %s; %d containers on the engine at the start (other users' included)",
		m.dockerVersion, m.dockerAPI, m.storage, m.cgroup, m.containers)
	p("- Load average (1 min) at the start %s, at the end %s: other work on the machine shares the CPUs with dockerd", m.loadStart, loadAvg())
	rel := "not registered in this build, so not in the pipelines"
	if r.release {
		rel = "registered, so in the pipelines"
	}
	p("- ds01-pipe: `%s`; release stage %s; GPU back end: %s", r.version, rel, r.gpuBackend())
	p("- Plan fixtures (untimed): %s", r.planFixtures)
	p("- Every figure is the median of %d repetitions with (min–max); both sides of a comparison run in the same repetition, alternating which goes first.", o.repeat)
	p("")

	r.targets(p)
	r.planTable(p)
	r.stageTable(p)
	r.removalTable(p)
	r.apiTable(p)
	r.gpuSection(p)
	r.lifecycleSection(p)
	r.sweepTables(p)
	r.commands(p)
	return b.String()
}

func (r *report) gpuBackend() string {
	if r.files != nil && r.files.simFile != "" {
		return fmt.Sprintf("sim (4 GPUs, one in MIG mode with 3 slices; %d running fixtures and PID 1 listed as GPU processes)", r.files.simPIDs)
	}
	return "none"
}

// targets renders the targets with PASS or MISS.
func (r *report) targets(p func(string, ...any)) {
	p("### Targets")
	p("")
	p("| target | measured | result |")
	p("|---|---|---|")

	if pt := r.planAt(targetPlanSize); pt != nil {
		ratio := summarize(pt.plan.walls()).median / summarize(pt.floor.walls()).median
		p("| plan at %d containers within %.1fx of the floor | %.2fx (%s s vs %s s) | %s |", targetPlanSize, targetPlanRatio,
			ratio, secs(summarize(pt.plan.walls()).median), secs(summarize(pt.floor.walls()).median), verdict(ratio <= targetPlanRatio))
	} else {
		p("| plan at %d containers within %.1fx of the floor | not measured (add %d to -sizes) | n/a |", targetPlanSize, targetPlanRatio, targetPlanSize)
	}

	switch rm := r.removal; {
	case r.removalErr != nil:
		p("| removal within %.1fx of docker container prune | failed: %s | n/a |", targetRemovalRatio, oneLine(r.removalErr))
	case rm == nil || len(rm.run) == 0:
		p("| removal within %.1fx of docker container prune | not measured (-removal-size 0) | n/a |", targetRemovalRatio)
	default:
		ratio := summarize(rm.run.walls()).median / summarize(rm.prune.walls()).median
		p("| removal of %d expired containers within %.1fx of docker container prune | %.2fx (%s s vs %s s) | %s |", r.opts.removalSize,
			targetRemovalRatio, ratio, secs(summarize(rm.run.walls()).median), secs(summarize(rm.prune.walls()).median), verdict(ratio <= targetRemovalRatio))
	}

	if pt := r.planAt(targetRSSSize); pt != nil {
		ratio := summarize(pt.plan.walls()).median / summarize(pt.floor.walls()).median
		p("| plan at %d containers within %.1fx of the floor | %.2fx (%s s vs %s s) | %s |", targetRSSSize, targetLargeRatio,
			ratio, secs(summarize(pt.plan.walls()).median), secs(summarize(pt.floor.walls()).median), verdict(ratio <= targetLargeRatio))
		rss := summarize(pt.plan.rssMiB())
		p("| peak RSS of plan at %d containers under %d MiB | %.1f MiB (max %.1f) | %s |", targetRSSSize, targetRSSMiB, rss.median, rss.max, verdict(rss.max < targetRSSMiB))
	} else if len(r.plan) > 0 {
		last := r.plan[len(r.plan)-1]
		p("| peak RSS of plan at %d containers under %d MiB | not measured (add -rss-sizes %d); at %d: %.1f MiB | n/a |",
			targetRSSSize, targetRSSMiB, targetRSSSize, last.size, summarize(last.plan.rssMiB()).max)
	}

	lists, inspects := true, 0.0
	for _, pt := range r.plan {
		for _, c := range pt.calls {
			lists = lists && c.found && c.list == 1
			inspects = max(inspects, float64(c.inspect)/float64(pt.size))
		}
	}
	if len(r.plan) > 0 {
		p("| one list call per run | plan: %s | %s |", map[bool]string{true: "1 in every run", false: "not 1 in some run (see below)"}[lists], verdict(lists))
		p("| at most one inspect per container per run (plan) | plan: at most %.2f per container | %s |", inspects, verdict(inspects <= 1))
	}
	if rm := r.removal; rm != nil && len(rm.calls) > 0 {
		c := rm.calls[0]
		n := float64(r.opts.removalSize)
		p("| at most one inspect per container per run (run that removes) | run: %.2f per container (%d discovery + %d re-inspects before removal) | %s (the re-inspect is the remove stage's (stages/remove); see below) |",
			float64(c.inspect)/n, int(n), c.inspect-int(n), verdict(float64(c.inspect)/n <= 1))
	}
	if g := r.gpu; g != nil && g.backend == "sim" {
		units := g.devices + g.slices
		p("| one NVML process query per device or MIG slice | %d process queries for %d GPUs + %d MIG slices, in %d snapshot(s) (simulator's count) | %s |",
			g.queries.ProcessQueries, g.devices+g.migGPUs, g.slices, g.snapshots, verdict(g.queries.ProcessQueries <= units+g.migGPUs && g.snapshots == 1))
	} else {
		p("| one NVML process query per device or MIG slice | not measured (GPU back end none) | n/a |")
	}
	p("")
}

func (r *report) planAt(size int) *planPoint {
	for _, pt := range r.plan {
		if pt.size == size && len(pt.plan) > 0 && len(pt.floor) > 0 {
			return pt
		}
	}
	return nil
}

func (r *report) planTable(p func(string, ...any)) {
	p("### Plan against the floor (discover workers %d, floor workers %d)", r.opts.workers, r.opts.workers)
	p("")
	p("| N | plan s | floor s | ratio of medians | ratio per repetition | plan per container ms | plan peak RSS MiB |")
	p("|---:|---|---|---:|---|---:|---|")
	for _, pt := range r.plan {
		if len(pt.plan) == 0 || len(pt.floor) == 0 {
			continue
		}
		ps, fs := summarize(pt.plan.walls()), summarize(pt.floor.walls())
		rr := summarize(ratios(pt.plan, pt.floor))
		p("| %d | %s | %s | %.2fx | %.2f–%.2f | %.2f | %s |", pt.size, fmtSpread(ps, 3), fmtSpread(fs, 3),
			ps.median/fs.median, rr.min, rr.max, ps.median*1000/float64(pt.size), fmtSpread(summarize(pt.plan.rssMiB()), 1))
	}
	p("")
	p("The floor is `internal/bench/floor`: one ContainerList (All, the same anchored name filter) and an inspect of every container on the same number of workers, decoding each answer; nothing else. Both are whole processes timed from start to exit.")
	p("")
	p("Peak RSS is the child's ru_maxrss, read by the small `internal/bench/maxrss` program that starts it: a child started straight from this driver would report the driver's own RSS (see maxrss's doc comment). For /bin/true it reports %.1f MiB, the least it can show.", float64(r.rssFloorKiB)/1024)
	p("")
}

// stageTable splits plan's wall time: each stage, the whole pipeline
// inside the process, and the rest (process start, loading the pipeline
// and the policy, the ping, writing the report), all medians in ms.
func (r *report) stageTable(p func(string, ...any)) {
	var order []string
	for _, pt := range r.plan {
		if len(pt.stages.order) > len(order) {
			order = pt.stages.order
		}
	}
	if len(order) == 0 {
		return
	}
	p("### Where plan's time goes (medians, ms, from plan's own report)")
	p("")
	head, line := "| N | process wall |", "|---:|---:|"
	for _, st := range order {
		head += " " + st + " |"
		line += "---:|"
	}
	p("%s outside the pipeline | floor |", head)
	p("%s---:|---:|", line)
	for _, pt := range r.plan {
		if len(pt.plan) == 0 {
			continue
		}
		wall := summarize(pt.plan.walls()).median
		row := fmt.Sprintf("| %d | %.0f |", pt.size, wall*1000)
		for _, st := range order {
			row += fmt.Sprintf(" %.0f |", summarize(pt.stages.secs[st]).median*1000)
		}
		outside := wall - summarize(pt.stages.secs[pipelineTotal]).median
		p("%s %.0f | %.0f |", row, outside*1000, summarize(pt.floor.walls()).median*1000)
	}
	p("")
	p("Stage durations are rounded to the millisecond by ds01-pipe's report. \"outside the pipeline\" is process start, loading the pipeline file and the policy, opening the GPU view, the Docker ping, and encoding and writing the JSON report.")
	p("")
}

func (r *report) removalTable(p func(string, ...any)) {
	p("### Removal of %d expired containers", r.opts.removalSize)
	p("")
	if r.removalErr != nil {
		p("Failed: %s", oneLine(r.removalErr))
		p("")
	}
	rm := r.removal
	if rm == nil || len(rm.run) == 0 || len(rm.prune) == 0 {
		p("Not measured.")
		p("")
		return
	}
	rs, ps := summarize(rm.run.walls()), summarize(rm.prune.walls())
	n := float64(r.opts.removalSize)
	p("| | wall s | per container ms |")
	p("|---|---|---:|")
	p("| `ds01-pipe run` (remove workers %d) | %s | %.2f |", rm.workers, fmtSpread(rs, 3), rs.median*1000/n)
	p("| `docker container prune` | %s | %.2f |", fmtSpread(ps, 3), ps.median*1000/n)
	rr := summarize(ratios(rm.run, rm.prune))
	p("")
	p("Ratio of medians %.2fx; per repetition %.2f–%.2f. Each repetition re-creates both sets (exited containers, the plan set's owner and GPU-record mix, nothing exempt), untimed: %s.",
		rs.median/ps.median, rr.min, rr.max, createRate(rm.createSets))
	p("")
	if len(rm.stages.order) > 0 {
		var parts []string
		for _, st := range rm.stages.order {
			parts = append(parts, fmt.Sprintf("%s %.0f", st, summarize(rm.stages.secs[st]).median*1000))
		}
		p("Stages of the run (medians, ms): %s; outside the pipeline %.0f.", strings.Join(parts, ", "),
			(rs.median-summarize(rm.stages.secs[pipelineTotal]).median)*1000)
		p("")
	}
}

func (r *report) apiTable(p func(string, ...any)) {
	p("### Docker API calls (ds01-pipe's `docker API calls` debug line)")
	p("")
	p("| run | N | list | inspect | remove | inspects per container |")
	p("|---|---:|---:|---:|---:|---:|")
	for _, pt := range r.plan {
		for _, c := range distinct(pt.calls) {
			p("| plan | %d | %d | %d | %d | %.2f |", pt.size, c.list, c.inspect, c.remove, float64(c.inspect)/float64(pt.size))
		}
	}
	if rm := r.removal; rm != nil {
		for _, c := range distinct(rm.calls) {
			n := r.opts.removalSize
			p("| run | %d | %d | %d | %d | %.2f |", n, c.list, c.inspect, c.remove, float64(c.inspect)/float64(n))
		}
	}
	p("")
	p("Each distinct count seen across the repetitions is one row. A run that removes inspects every container once in discover and once more just before removing it (the remove stage's changed-container check).")
	p("")
}

func (r *report) gpuSection(p func(string, ...any)) {
	p("### NVML queries")
	p("")
	if r.gpuErr != nil {
		p("Failed: %s", oneLine(r.gpuErr))
		p("")
		return
	}
	g := r.gpu
	if g == nil {
		return
	}
	logged := false
	for _, pt := range r.plan {
		for _, c := range distinct(pt.calls) {
			if c.nvmlFound {
				if !logged {
					p("From ds01-pipe's `NVML queries` debug line:")
					p("")
				}
				logged = true
				p("- plan at N=%d: %d snapshot(s), %d process queries, %d device queries", pt.size, c.nvmlSnapshots, c.nvmlProcess, c.nvmlDevice)
			}
		}
	}
	if logged {
		p("")
	} else {
		p("ds01-pipe does not log its NVML query counts (`nvml.Snapshot.Queries` is filled but printed nowhere).")
	}
	p("Measured by running the N=%d plan pipeline in this process with the GPU back end wrapped to count every snapshot: %d snapshot(s) per run, %d process queries and %d device queries, for %d whole GPU(s), %d GPU(s) in MIG mode and %d MIG slice(s) (back end %s). The same run made %d list and %d inspect calls for %d containers.",
		r.plan[0].size, g.snapshots, g.queries.ProcessQueries, g.queries.DeviceQueries, g.devices, g.migGPUs, g.slices, g.backend,
		g.dockerAPI.list, g.dockerAPI.inspect, g.records)
	p("")
}

func (r *report) sweepTables(p func(string, ...any)) {
	if !r.opts.sweep {
		return
	}
	p("### Discover workers (plan at N=%d, %d repetitions)", r.opts.sweepSize, r.opts.sweepRepeat)
	p("")
	if r.planSweepErr != nil {
		p("Failed: %s", oneLine(r.planSweepErr))
		p("")
	}
	if len(r.planSweep) > 0 {
		p("| workers | plan s | floor s (same workers) | ratio of medians |")
		p("|---:|---|---|---:|")
		for _, pt := range r.planSweep {
			if len(pt.plan) == 0 || len(pt.floor) == 0 {
				continue
			}
			ps, fs := summarize(pt.plan.walls()), summarize(pt.floor.walls())
			p("| %d | %s | %s | %.2fx |", pt.workers, fmtSpread(ps, 3), fmtSpread(fs, 3), ps.median/fs.median)
		}
		p("")
	}
	if r.opts.removalSize == 0 {
		return
	}
	p("### Remove workers (run removing %d, %d repetitions)", r.opts.removalSize, r.opts.sweepRepeat)
	p("")
	if r.removalSweepErr != nil {
		p("Failed: %s", oneLine(r.removalSweepErr))
		p("")
	}
	if len(r.removalSweep) > 0 && r.removal != nil && len(r.removal.prune) > 0 {
		prune := summarize(r.removal.prune.walls()).median
		p("| workers | run s | ratio to the prune median above (%s s) |", secs(prune))
		p("|---:|---|---:|")
		for _, pt := range r.removalSweep {
			if len(pt.run) == 0 {
				continue
			}
			rs := summarize(pt.run.walls())
			p("| %d | %s | %.2fx |", pt.workers, fmtSpread(rs, 3), rs.median/prune)
		}
		p("")
	}
}

func (r *report) commands(p func(string, ...any)) {
	if r.files == nil {
		return
	}
	pr := &runner{now: r.opts.now}
	sizes := r.opts.allSizes()
	p("### Commands and pipeline")
	p("")
	p("```")
	for _, n := range sizes {
		p("ds01-pipe %s", strings.Join(pr.pipeArgs("plan", filepath.Base(r.files.planFile[n])), " "))
		p("floor -name-prefix %s -workers %d", planPrefix(sizes, n), r.opts.workers)
	}
	if r.opts.removalSize > 0 {
		p("ds01-pipe %s", strings.Join(pr.pipeArgs("run", filepath.Base(r.files.runFile[r.opts.removeWorkers])), " "))
		p("docker %s", strings.Join(pruneArgs(r.files.rmPrune), " "))
	}
	p("```")
	p("")
	if b, err := os.ReadFile(r.files.planFile[sizes[0]]); err == nil {
		p("`%s` (the other files differ in name_prefix, workers, and for run in the discover labels):", filepath.Base(r.files.planFile[sizes[0]]))
		p("")
		p("```hcl")
		p("%s", strings.TrimRight(strings.ReplaceAll(string(b), r.files.dir+"/", "$WORK/"), "\n"))
		p("```")
		p("")
	}
}

func distinct(calls []apiCalls) []apiCalls {
	var out []apiCalls
	for _, c := range calls {
		seen := false
		for _, d := range out {
			seen = seen || d == c
		}
		if !seen {
			out = append(out, c)
		}
	}
	return out
}

func createRate(sets []setStats) string {
	var n, started int
	var took time.Duration
	for _, s := range sets {
		n += s.created
		started += s.started
		took += s.took
	}
	if n == 0 || took == 0 {
		return "no containers created"
	}
	return fmt.Sprintf("%d containers created and started in %s, %.1f/s", n, took.Round(time.Second), float64(n)/took.Seconds())
}

func fmtSpread(s spread, decimals int) string {
	return fmt.Sprintf("%.*f (%.*f–%.*f)", decimals, s.median, decimals, s.min, decimals, s.max)
}

func secs(v float64) string { return fmt.Sprintf("%.3f", v) }

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "|", `\|`)
}
