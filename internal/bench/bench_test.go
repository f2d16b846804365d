package main

// Tests of the driver's pure parts. The measurements themselves run only
// through `make bench`; nothing here needs Docker or asserts a target.

import (
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/nvml"
)

// Every size's prefix must select exactly the first size fixtures of the
// one nested set.
func TestPlanPrefixesNest(t *testing.T) {
	for _, sizes := range [][]int{{20}, {100, 1000, 3000}, {100, 1000, 3000, 5000}} {
		fx := planFixtures(sizes)
		if len(fx) != sizes[len(sizes)-1] {
			t.Fatalf("sizes %v: %d fixtures", sizes, len(fx))
		}
		names := map[string]bool{}
		for _, f := range fx {
			if names[f.name] {
				t.Fatalf("sizes %v: duplicate name %s", sizes, f.name)
			}
			names[f.name] = true
		}
		for _, n := range sizes {
			prefix := planPrefix(sizes, n)
			for i, f := range fx {
				if got, want := strings.HasPrefix(f.name, prefix), i < n; got != want {
					t.Fatalf("sizes %v, N=%d: fixture %d (%s) has prefix %s: %v, want %v", sizes, n, i, f.name, prefix, got, want)
				}
			}
		}
	}
}

// The mix has every kind, owner rule and exemption the report describes,
// and a removal set has only what policy lets go.
func TestMix(t *testing.T) {
	kinds := map[kind]int{}
	owners := map[string]int{}
	exempt := 0
	for _, f := range planFixtures([]int{1000}) {
		kinds[f.kind]++
		switch {
		case f.labels["ds01.user"] != "":
			owners["ds01.user"]++
		case f.labels["aime.mlc.USER"] != "":
			owners["aime"]++
		case f.labels["devcontainer.local_folder"] != "":
			owners["devcontainer"]++
		case strings.Contains(f.name, "._."):
			owners["name"]++
		default:
			owners["none"]++
		}
		if f.labels["ds01.protected"] == "true" || f.labels["ds01.monitoring"] == "true" {
			exempt++
		}
	}
	for _, k := range []kind{kindCreated, kindExited, kindCreatedGPU, kindExitedGPU, kindRunning} {
		if kinds[k] == 0 {
			t.Errorf("no fixture of kind %s in %v", k, kinds)
		}
	}
	if kinds[kindRunning] != 4 {
		t.Errorf("%d running fixtures in 1000, want 4", kinds[kindRunning])
	}
	if len(owners) != 5 || exempt == 0 {
		t.Errorf("owner rules %v, %d exempt", owners, exempt)
	}
	run, prune := removalSets("0a1b2c3d")
	if run == prune || !strings.HasPrefix(run, removalSetPrefix) || !strings.HasPrefix(prune, removalSetPrefix) {
		t.Fatalf("removal sets %q, %q", run, prune)
	}
	for _, f := range removalFixtures(run, 500) {
		if f.kind.state() != "exited" || f.labels["ds01.protected"] != "" || f.labels["ds01.user"] == "keeper" ||
			!strings.HasPrefix(f.name, removalPrefix(run)) || strings.HasPrefix(f.name, planBase) {
			t.Fatalf("removal fixture %+v", f)
		}
	}
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		in               []float64
		median, min, max float64
	}{
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{7}, 7, 7, 7},
	} {
		s := summarize(c.in)
		if s.median != c.median || s.min != c.min || s.max != c.max {
			t.Errorf("summarize(%v) = %+v", c.in, s)
		}
	}
}

func TestParseAPICalls(t *testing.T) {
	stderr := `{"level":"debug","msg":"stage done","stage":"discover"}
not json
{"api_calls":"list=1 inspect=1000 remove=0","level":"debug","msg":"docker API calls"}
`
	got := parseAPICalls([]byte(stderr))
	if want := (apiCalls{list: 1, inspect: 1000, found: true}); got != want {
		t.Errorf("parseAPICalls = %+v, want %+v", got, want)
	}
	if got := parseAPICalls([]byte("{}\n")); got.found {
		t.Errorf("found api calls in %q", "{}")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-sizes", "1000,100", "-rss-sizes", "5000,1000"})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.allSizes(); len(got) != 3 || got[0] != 100 || got[1] != 1000 || got[2] != 5000 {
		t.Errorf("allSizes = %v", got)
	}
	for _, bad := range [][]string{{"-sizes", "0"}, {"-sizes", ""}, {"-gpu", "nvml"}, {"-workers", "300"}, {"extra"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

// The report renders every section from synthetic figures without
// panicking, and judges the targets.
func TestReportMarkdown(t *testing.T) {
	o, err := parseFlags([]string{"-sizes", "100,1000", "-rss-sizes", "10000", "-repeat", "2", "-sweep-size", "1000"})
	if err != nil {
		t.Fatal(err)
	}
	s := func(sec float64, rss int64) sample {
		return sample{wall: time.Duration(sec * float64(time.Second)), rssKiB: rss}
	}
	sum := pipeSummary{}
	sum.Summary.Stages = append(sum.Summary.Stages, struct {
		Stage     string  `json:"stage"`
		DurationS float64 `json:"duration_s"`
	}{"discover", 0.5})
	sum.Summary.DurationS = 0.6
	var plan []*planPoint
	for _, n := range []int{100, 1000, 10000} {
		pt := &planPoint{size: n, workers: 8, plan: series{s(1, 20000), s(1.2, 21000)}, floor: series{s(0.9, 0), s(1, 0)},
			calls: []apiCalls{{list: 1, inspect: n, found: true}, {list: 1, inspect: n, found: true}}}
		pt.stages.add(sum)
		plan = append(plan, pt)
	}
	rm := &removalPoint{workers: 4, run: series{s(10, 0), s(11, 0)}, prune: series{s(10, 0), s(10, 0)},
		calls: []apiCalls{{list: 1, inspect: 1000, remove: 500, found: true}}}
	rm.stages.add(sum)
	r := &report{
		command: "go run ./internal/bench", opts: o, started: time.Now(),
		plan: plan, planSweep: plan[1:2], removal: rm, removalSweep: []*removalPoint{rm},
		gpu:   &gpuCount{backend: "sim", snapshots: 1, queries: nvml.QueryStats{ProcessQueries: 7, DeviceQueries: 7}, devices: 3, migGPUs: 1, slices: 3},
		files: &inputs{dir: t.TempDir(), planFile: map[int]string{}, runFile: map[int]string{}},
	}
	md := r.markdown()
	for _, want := range []string{
		"| plan at 1000 containers within 1.5x of the floor | 1.16x",
		"| PASS |",
		"| removal of 500 expired containers within 1.3x of docker container prune | 1.05x",
		"| peak RSS of plan at 10000 containers under 64 MiB | 20.0 MiB",
		"| plan at 10000 containers within 1.2x of the floor | 1.16x",
		"| at most one inspect per container per run (run that removes) | run: 2.00 per container",
		"MISS",
		"### Where plan's time goes",
		"### Discover workers",
		"### Remove workers",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
