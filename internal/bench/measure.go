package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"
)

// sample is one timed process.
type sample struct {
	wall   time.Duration
	rssKiB int64 // peak resident set (getrusage ru_maxrss, KiB on Linux)
}

// series is the samples of one measurement point.
type series []sample

// walls returns the wall times in seconds.
func (s series) walls() []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = x.wall.Seconds()
	}
	return out
}

// rssMiB returns the peak RSS values in MiB.
func (s series) rssMiB() []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = float64(x.rssKiB) / 1024
	}
	return out
}

// spread is a median with its minimum and maximum.
type spread struct {
	median, min, max float64
	n                int
}

func summarize(v []float64) spread {
	if len(v) == 0 {
		return spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{median: m, min: s[0], max: s[len(s)-1], n: len(s)}
}

// ratios divides a by b pairwise (the same repetition of both).
func ratios(a, b series) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	for i := range n {
		out[i] = a[i].wall.Seconds() / b[i].wall.Seconds()
	}
	return out
}

// apiCalls are the Docker API calls one ds01-pipe run reported, and its
// NVML queries where it logs them.
type apiCalls struct {
	list, inspect, remove int
	found                 bool

	// From an "NVML queries" debug line with the field
	// nvml_queries="snapshots=S device=D process=P", which ds01-pipe does
	// not print yet (see RESULTS.md).
	nvmlSnapshots, nvmlDevice, nvmlProcess int
	nvmlFound                              bool
}

// pipeSummary is the part of ds01-pipe's JSON report the benchmark checks.
type pipeSummary struct {
	Summary struct {
		Containers int            `json:"containers"`
		Remove     int            `json:"remove"`
		Removed    int            `json:"removed"`
		Failed     int            `json:"failed"`
		Verdicts   map[string]int `json:"verdicts"`
		Stages     []struct {
			Stage     string  `json:"stage"`
			DurationS float64 `json:"duration_s"`
		} `json:"stages"`
		DurationS float64 `json:"duration_s"`
	} `json:"summary"`
}

// runner runs the built programs.
type runner struct {
	maxrss      string // ./maxrss, which runs every timed program
	pipe, floor string
	now         string
	work        string
}

// timed runs a program through the maxrss program, which times it from
// start to exit and reads its peak RSS (see ./maxrss for why).
func (r *runner) timed(ctx context.Context, name string, args ...string) (sample, []byte, []byte, error) {
	res, err := os.CreateTemp(r.work, "exec-*.result")
	if err != nil {
		return sample{}, nil, nil, err
	}
	res.Close()
	defer os.Remove(res.Name())
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.maxrss, append([]string{res.Name(), name}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	s, rerr := readMaxRSSResult(res.Name())
	if err != nil {
		return s, stdout.Bytes(), stderr.Bytes(), fmt.Errorf("%s %q: %w\n%s", name, args, err, tail(stderr.Bytes(), 2000))
	}
	return s, stdout.Bytes(), stderr.Bytes(), rerr
}

// pipeArgs are the arguments of a ds01-pipe run of file. Debug logging in
// JSON is on for every run: it is what prints the API call counts, and it
// adds one line per stage to a plan and one per removed container to a run.
func (r *runner) pipeArgs(mode, file string) []string {
	args := []string{mode, "--format", "json", "--log-level", "debug", "--log-format", "json", "--now", r.now}
	if mode == "run" {
		args = append(args, "--allow-clock-override")
	}
	return append(args, file)
}

// pipeRun runs ds01-pipe and returns its report's summary and API counts.
func (r *runner) pipeRun(ctx context.Context, mode, file string) (sample, pipeSummary, apiCalls, error) {
	s, out, errOut, err := r.timed(ctx, r.pipe, r.pipeArgs(mode, file)...)
	var sum pipeSummary
	if err != nil {
		return s, sum, apiCalls{}, err
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		return s, sum, apiCalls{}, fmt.Errorf("ds01-pipe %s %s: report: %w", mode, file, err)
	}
	return s, sum, parseAPICalls(errOut), nil
}

// parseAPICalls finds ds01-pipe's "docker API calls" debug line, and an
// "NVML queries" line if there is one.
func parseAPICalls(stderr []byte) apiCalls {
	var c apiCalls
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var line struct {
			Msg      string `json:"msg"`
			APICalls string `json:"api_calls"`
			NVML     string `json:"nvml_queries"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch line.Msg {
		case "docker API calls":
			if _, err := fmt.Sscanf(line.APICalls, "list=%d inspect=%d remove=%d", &c.list, &c.inspect, &c.remove); err == nil {
				c.found = true
			}
		case "NVML queries":
			if _, err := fmt.Sscanf(line.NVML, "snapshots=%d device=%d process=%d", &c.nvmlSnapshots, &c.nvmlDevice, &c.nvmlProcess); err == nil {
				c.nvmlFound = true
			}
		}
	}
	return c
}

// floorRun runs the floor program and checks it inspected want containers.
func (r *runner) floorRun(ctx context.Context, prefix string, workers, want int) (sample, error) {
	s, out, _, err := r.timed(ctx, r.floor, "-name-prefix", prefix, "-workers", strconv.Itoa(workers))
	if err != nil {
		return s, err
	}
	var listed, inspected, failed int
	if _, err := fmt.Sscanf(string(out), "listed=%d inspected=%d failed=%d", &listed, &inspected, &failed); err != nil {
		return s, fmt.Errorf("floor output %q: %w", out, err)
	}
	if inspected != want {
		return s, fmt.Errorf("floor inspected %d containers with prefix %s, want %d", inspected, prefix, want)
	}
	return s, nil
}

// planPoint is plan against the floor at one size (or worker count).
type planPoint struct {
	size, workers int
	plan, floor   series
	calls         []apiCalls
	stages        stageTimes
}

// measurePlan times plan and the floor at every size, interleaved: in each
// repetition every size runs both programs, the floor first in odd
// repetitions. One untimed warm-up pair runs first.
func measurePlan(ctx context.Context, r *runner, o *options, in *inputs, sizes []int) ([]*planPoint, error) {
	points := make([]*planPoint, len(sizes))
	for i, n := range sizes {
		points[i] = &planPoint{size: n, workers: o.workers}
	}
	if err := warmUp(ctx, r, in.planFile[sizes[0]], planPrefix(sizes, sizes[0]), o.workers, sizes[0]); err != nil {
		return nil, err
	}
	for rep := range o.repeat {
		for _, p := range points {
			if err := p.once(ctx, r, in.planFile[p.size], planPrefix(sizes, p.size), rep%2 == 1); err != nil {
				return points, err
			}
		}
		progress("plan: repetition %d/%d done", rep+1, o.repeat)
	}
	return points, nil
}

// measurePlanSweep times plan and the floor at -sweep-size for every
// discover worker count, interleaved in the same way.
func measurePlanSweep(ctx context.Context, r *runner, o *options, in *inputs) ([]*planPoint, error) {
	if len(in.planSweepFile) == 0 {
		return nil, fmt.Errorf("-sweep-size %d is not among the fixture sizes", o.sweepSize)
	}
	sizes := o.allSizes()
	points := make([]*planPoint, 0, len(o.sweepWorkers))
	for _, w := range o.sweepWorkers {
		points = append(points, &planPoint{size: o.sweepSize, workers: w})
	}
	for rep := range o.sweepRepeat {
		for _, p := range points {
			if err := p.once(ctx, r, in.planSweepFile[p.workers], planPrefix(sizes, p.size), rep%2 == 1); err != nil {
				return points, err
			}
		}
		progress("plan worker sweep: repetition %d/%d done", rep+1, o.sweepRepeat)
	}
	return points, nil
}

func warmUp(ctx context.Context, r *runner, file, prefix string, workers, n int) error {
	if _, _, _, err := r.pipeRun(ctx, "plan", file); err != nil {
		return err
	}
	_, err := r.floorRun(ctx, prefix, workers, n)
	return err
}

// once runs one plan and one floor run, in either order.
func (p *planPoint) once(ctx context.Context, r *runner, file, prefix string, floorFirst bool) error {
	runPlan := func() error {
		s, sum, calls, err := r.pipeRun(ctx, "plan", file)
		if err != nil {
			return err
		}
		if sum.Summary.Containers != p.size {
			return fmt.Errorf("plan %s saw %d containers, want %d", file, sum.Summary.Containers, p.size)
		}
		p.plan = append(p.plan, s)
		p.calls = append(p.calls, calls)
		p.stages.add(sum)
		return nil
	}
	runFloor := func() error {
		s, err := r.floorRun(ctx, prefix, p.workers, p.size)
		if err != nil {
			return err
		}
		p.floor = append(p.floor, s)
		return nil
	}
	order := []func() error{runPlan, runFloor}
	if floorFirst {
		order[0], order[1] = order[1], order[0]
	}
	for _, f := range order {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// pipelineTotal names the whole in-process run among the stage timings.
const pipelineTotal = "(pipeline)"

// stageTimes are the stage durations (seconds) of the runs of one point,
// from ds01-pipe's report; pipelineTotal is the whole run inside the process.
type stageTimes struct {
	secs  map[string][]float64
	order []string // in pipeline order, pipelineTotal last
}

func (t *stageTimes) add(sum pipeSummary) {
	if t.secs == nil {
		t.secs = map[string][]float64{}
	}
	add := func(name string, d float64) {
		if _, ok := t.secs[name]; !ok {
			t.order = append(t.order, name)
		}
		t.secs[name] = append(t.secs[name], d)
	}
	for _, st := range sum.Summary.Stages {
		add(st.Stage, st.DurationS)
	}
	add(pipelineTotal, sum.Summary.DurationS)
}

// removalPoint is ds01-pipe run against docker container prune.
type removalPoint struct {
	workers    int
	run, prune series
	calls      []apiCalls
	stages     stageTimes
	createSets []setStats
}

// measureRemoval removes -removal-size expired containers with ds01-pipe
// run and an identical set with docker container prune, both re-created
// (untimed) before every repetition, the prune first in odd repetitions.
func measureRemoval(ctx context.Context, r *runner, o *options, fx *fixtures, in *inputs) (*removalPoint, error) {
	p := &removalPoint{workers: o.removeWorkers}
	for rep := range o.repeat {
		for _, set := range []string{in.rmRun, in.rmPrune} {
			st, err := fx.ensure(ctx, set, removalFixtures(set, o.removalSize))
			if err != nil {
				return p, err
			}
			p.createSets = append(p.createSets, st)
		}
		steps := []func() error{
			func() error { return p.runOnce(ctx, r, fx, in.rmRun, in.runFile[p.workers], o.removalSize) },
			func() error { return p.pruneOnce(ctx, r, fx, in.rmPrune, o.removalSize) },
		}
		if rep%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, f := range steps {
			if err := f(); err != nil {
				return p, err
			}
		}
		progress("removal: repetition %d/%d done (run %s, prune %s)", rep+1, o.repeat,
			p.run[len(p.run)-1].wall.Round(time.Millisecond), p.prune[len(p.prune)-1].wall.Round(time.Millisecond))
	}
	return p, nil
}

// measureRemovalSweep times ds01-pipe run alone for every remove worker count.
func measureRemovalSweep(ctx context.Context, r *runner, o *options, fx *fixtures, in *inputs) ([]*removalPoint, error) {
	points := make([]*removalPoint, 0, len(o.sweepRemoveWorkers))
	for _, w := range o.sweepRemoveWorkers {
		points = append(points, &removalPoint{workers: w})
	}
	for rep := range o.sweepRepeat {
		for _, p := range points {
			st, err := fx.ensure(ctx, in.rmRun, removalFixtures(in.rmRun, o.removalSize))
			if err != nil {
				return points, err
			}
			p.createSets = append(p.createSets, st)
			if err := p.runOnce(ctx, r, fx, in.rmRun, in.runFile[p.workers], o.removalSize); err != nil {
				return points, err
			}
		}
		progress("removal worker sweep: repetition %d/%d done", rep+1, o.sweepRepeat)
	}
	return points, nil
}

func (p *removalPoint) runOnce(ctx context.Context, r *runner, fx *fixtures, set, file string, n int) error {
	s, sum, calls, err := r.pipeRun(ctx, "run", file)
	if err != nil {
		return err
	}
	if sum.Summary.Removed != n || sum.Summary.Failed != 0 {
		return fmt.Errorf("ds01-pipe run removed %d of %d containers (%d failed; verdicts %v)",
			sum.Summary.Removed, n, sum.Summary.Failed, sum.Summary.Verdicts)
	}
	if left, err := fx.count(ctx, set); err != nil || left != 0 {
		return errors.Join(fmt.Errorf("after ds01-pipe run, %d containers of set %s are left", left, set), err)
	}
	p.run = append(p.run, s)
	p.calls = append(p.calls, calls)
	p.stages.add(sum)
	return nil
}

func (p *removalPoint) pruneOnce(ctx context.Context, r *runner, fx *fixtures, set string, n int) error {
	s, _, _, err := r.timed(ctx, "docker", pruneArgs(set)...)
	if err != nil {
		return err
	}
	if left, err := fx.count(ctx, set); err != nil || left != 0 {
		return errors.Join(fmt.Errorf("after docker container prune, %d of %d containers of set %s are left", left, n, set), err)
	}
	p.prune = append(p.prune, s)
	return nil
}

func pruneArgs(set string) []string {
	return []string{"container", "prune", "-f", "--filter", "label=" + labelSet + "=" + set}
}

// tail returns at most the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
