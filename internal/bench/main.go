// Command bench measures ds01-pipe on the local Docker engine against the
// Docker API floor, and prints a Markdown report (`make bench`).
//
// It builds ds01-pipe and the floor program (./floor), creates its own
// labelled, prefixed fixture containers (untimed, reused between runs with
// -keep) and then measures, each -repeat times and interleaved so that both
// sides of a comparison share the machine's noise:
//
//   - `ds01-pipe plan --format json` at each size against the floor: one
//     ContainerList and an inspect of every container on the same number of
//     workers;
//   - `ds01-pipe run` removing -removal-size expired containers against
//     `docker container prune` removing an identical set;
//   - the peak RSS of plan at each size (and at -rss-sizes);
//   - Docker API calls per container (from ds01-pipe's debug log) and NVML
//     queries per device (from an in-process run of the same pipeline);
//   - optionally, plan and removal times across worker counts.
//
// Targets are judged only in the printed report (PASS/MISS), never in
// `go test`. Everything it creates carries the label ds01-pipe.bench=1 and
// a name starting with "ds01bench-"; it never touches other containers.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

// defaultLDFlags are the Makefile's LDFLAGS with a fixed version; `make
// bench` passes the Makefile's own.
const defaultLDFlags = "-X main.version=bench -extldflags=-Wl,-z,lazy"

// options are the command-line flags.
type options struct {
	sizes              []int
	rssSizes           []int
	repeat             int
	workers            int
	removeWorkers      int
	removalSize        int
	sweep              bool
	sweepSize          int
	sweepRepeat        int
	sweepWorkers       []int
	sweepRemoveWorkers []int
	createWorkers      int
	keep               bool
	out                string
	profile            string
	ldflags            string
	now                string
	gpu                string
	lifecycleSizes     []int
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseFlags(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o, args); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var sizes, rss, sweepW, sweepRW, lifecycle string
	fs.StringVar(&sizes, "sizes", "100,1000,3000", "fixture sizes N at which plan is timed against the floor")
	fs.StringVar(&rss, "rss-sizes", "10000", "extra sizes, for peak RSS mainly (\"\" for none: creating 10,000 fixtures takes half an hour on 2 cores)")
	fs.IntVar(&o.repeat, "repeat", 5, "repetitions of every measurement")
	fs.IntVar(&o.workers, "workers", 8, "inspect workers of discover and of the floor")
	fs.IntVar(&o.removeWorkers, "remove-workers", 4, "workers of the remove stage in the removal measurement")
	fs.IntVar(&o.removalSize, "removal-size", 500, "expired containers removed per repetition, by ds01-pipe and by docker container prune each")
	fs.BoolVar(&o.sweep, "sweep", true, "also time plan and removal across worker counts")
	fs.IntVar(&o.sweepSize, "sweep-size", 1000, "fixture size of the discover worker sweep (one of -sizes or -rss-sizes)")
	fs.IntVar(&o.sweepRepeat, "sweep-repeat", 3, "repetitions of each sweep point")
	fs.StringVar(&sweepW, "sweep-workers", "2,4,8,16,32", "discover worker counts of the sweep")
	fs.StringVar(&sweepRW, "sweep-remove-workers", "2,4,8,16", "remove worker counts of the sweep")
	fs.IntVar(&o.createWorkers, "create-workers", 16, "parallel fixture creations (untimed)")
	fs.BoolVar(&o.keep, "keep", false, "keep the plan fixtures for the next run (which tops them up instead of recreating them)")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	fs.StringVar(&o.profile, "profile", "", "write CPU and heap profiles of an in-process plan at 1000 containers and at the largest size to this folder")
	fs.StringVar(&o.ldflags, "ldflags", defaultLDFlags, "-ldflags for building ds01-pipe")
	fs.StringVar(&o.now, "now", "2100-01-01T00:00:00Z", "the --now of every ds01-pipe run: far ahead, so that every finite hold has expired")
	fs.StringVar(&o.gpu, "gpu", "sim", "GPU back end of the pipelines: sim (a generated simulation file) or none")
	fs.StringVar(&lifecycle, "lifecycle-sizes", "100,500", "running GPU containers N at which the lifecycle plan is timed against the cleanup plan (\"\" skips the pass)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.sizes, err = parseInts("-sizes", sizes); err != nil {
		return nil, err
	}
	if len(o.sizes) == 0 {
		return nil, errors.New("-sizes: give at least one size")
	}
	if o.rssSizes, err = parseInts("-rss-sizes", rss); err != nil {
		return nil, err
	}
	if o.sweepWorkers, err = parseInts("-sweep-workers", sweepW); err != nil {
		return nil, err
	}
	if o.sweepRemoveWorkers, err = parseInts("-sweep-remove-workers", sweepRW); err != nil {
		return nil, err
	}
	if o.lifecycleSizes, err = parseInts("-lifecycle-sizes", lifecycle); err != nil {
		return nil, err
	}
	switch {
	case o.repeat < 1:
		return nil, errors.New("-repeat must be at least 1")
	case o.sweepRepeat < 1:
		return nil, errors.New("-sweep-repeat must be at least 1")
	case o.workers < 1 || o.workers > 256:
		return nil, errors.New("-workers must be between 1 and 256 (discover's bounds)")
	case o.removeWorkers < 1 || o.removeWorkers > 64:
		return nil, errors.New("-remove-workers must be between 1 and 64 (the remove stage's bounds)")
	case o.removalSize < 0:
		return nil, errors.New("-removal-size must not be negative")
	case o.createWorkers < 1:
		return nil, errors.New("-create-workers must be at least 1")
	case o.gpu != "sim" && o.gpu != "none":
		return nil, fmt.Errorf("-gpu must be sim or none, not %q", o.gpu)
	}
	if _, err := time.Parse(time.RFC3339, o.now); err != nil {
		return nil, fmt.Errorf("-now: %v", err)
	}
	return o, nil
}

// parseInts reads a comma-separated list of positive integers.
func parseInts(flagName, s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive integer", flagName, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// allSizes returns the sizes and the RSS sizes, sorted, without repeats.
func (o *options) allSizes() []int {
	all := slices.Concat(o.sizes, o.rssSizes)
	slices.Sort(all)
	return slices.Compact(all)
}

// bench runs the whole benchmark.
func bench(ctx context.Context, o *options, args []string) error {
	started := time.Now()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = cli.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true})
	cancel()
	if err != nil {
		return fmt.Errorf("the Docker engine at %s does not answer (start one: `bash .ci/run`): %w", cli.DaemonHost(), err)
	}

	rep := &report{command: "go run ./internal/bench " + shellJoin(args), opts: o, started: started}
	rep.machine = describeMachine(ctx, cli)
	progress("machine: %s", rep.machine.oneLine())

	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "ds01bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	progress("building ds01-pipe, the floor program and maxrss")
	bins, err := build(ctx, root, work, o.ldflags)
	if err != nil {
		return err
	}
	rep.version = bins.version
	kinds, err := stageKinds(ctx, bins.pipe)
	if err != nil {
		return err
	}
	rep.release = slices.Contains(kinds, "release")

	image, err := dockertest.ProbeImage(ctx, cli)
	if err != nil {
		return err
	}
	fx := &fixtures{cli: cli, image: image, workers: o.createWorkers}
	fx.removeOldRemovalSets(ctx)
	runID := randomHex(4)
	rmRun, rmPrune := removalSets(runID)
	defer func() {
		// The context may be cancelled (Ctrl-C): clean up regardless.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		sets := []string{rmRun, rmPrune}
		if !o.keep {
			sets = append(sets, setPlan, setLifecycle)
		}
		for _, set := range sets {
			if n, err := fx.removeSet(cctx, set); err != nil {
				progress("cleanup of set %s: %v", set, err)
			} else if n > 0 {
				progress("cleanup: removed %d containers of set %s", n, set)
			}
		}
	}()

	sizes := o.allSizes()
	progress("plan fixtures: %d containers in tiers %v", sizes[len(sizes)-1], sizes)
	st, err := fx.ensure(ctx, setPlan, planFixtures(sizes))
	if err != nil {
		return fmt.Errorf("plan fixtures: %w", err)
	}
	rep.planFixtures = st
	progress("plan fixtures ready: %s", st)

	files, err := writeInputs(ctx, work, runID, o, fx, rep.release, sizes)
	if err != nil {
		return err
	}
	rep.files = files
	r := &runner{maxrss: bins.maxrss, pipe: bins.pipe, floor: bins.floor, now: o.now, work: work}
	if s, _, _, err := r.timed(ctx, "/bin/true"); err == nil {
		rep.rssFloorKiB = s.rssKiB
	}

	rep.plan, err = measurePlan(ctx, r, o, files, sizes)
	if err != nil {
		return err
	}
	if o.sweep {
		rep.planSweep, rep.planSweepErr = measurePlanSweep(ctx, r, o, files)
	}
	rep.gpu, rep.gpuErr = measureGPU(ctx, files.planFile[sizes[0]], o.now)
	if o.profile != "" {
		for _, n := range sizes {
			if n != targetPlanSize && n != sizes[len(sizes)-1] {
				continue
			}
			if err := profilePlan(ctx, o.profile, files.planFile[n], o.now, n); err != nil {
				return fmt.Errorf("profile: %w", err)
			}
			progress("profiles of plan at N=%d written to %s", n, o.profile)
		}
	}
	if o.removalSize > 0 {
		rep.removal, rep.removalErr = measureRemoval(ctx, r, o, fx, files)
		if o.sweep && rep.removalErr == nil {
			rep.removalSweep, rep.removalSweepErr = measureRemovalSweep(ctx, r, o, fx, files)
		}
	}
	if len(o.lifecycleSizes) > 0 {
		rep.lifecycle, rep.lifecycleFixtures, rep.lifecycleErr = measureLifecycle(ctx, r, o, fx, files)
	}
	rep.elapsed = time.Since(started)

	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return fmt.Errorf("writing -out: %w", err)
		}
		abs, _ := filepath.Abs(o.out)
		progress("report written to %s", abs)
	}
	return ctx.Err()
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: it crashes the program instead
	return hex.EncodeToString(b)
}

// progress prints a timestamped line on stderr; the report goes to stdout.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// shellJoin quotes args for a command line that can be pasted into a shell.
func shellJoin(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ',' || r == '=' || r == ':' ||
				(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
		}) < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}
