package all_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
	_ "github.com/ds01/ds01-pipe/stages/all"
)

// inputs configures each kind for the contract test: a stage body that
// touches nothing outside the test's folder (DIR). A new kind adds its
// line here; its stages then run in plan and run mode over a batch that a
// whole cleanup pipeline would have built.
var inputs = map[string]string{
	"discover":  ``,
	"attribute": `passwd_lookup = false`,
	"classify":  ``,
	"exempt":    `names = ["named"]`,
	"decide":    `idle_events_file = ""`,
	"release":   `proc_root = "DIR/proc"`,
	"remove":    ``,
	"filter":    `when = c.name != "named"`,
	"report": `
    format = "jsonl"
    path   = "DIR/report.jsonl"`,
	"measure":   `proc_root = "DIR/proc"`,
	"lifecycle": `state_dir = "DIR/state"`,
	"notify": `
    terminals      = false
    container_file = ""`,
	"stop": `syslog = false`,
	"log": `
    events_file = "DIR/events.jsonl"
    syslog      = false`,
}

// batch is what the stages before any kind would have left: facts,
// owner, type, verdicts, GPU claims.
func batch() ([]*pipeline.Record, *pipelinetest.Docker) {
	old := pipelinetest.Exited("old")
	old.GPUs = []pipeline.GPUClaim{{UUID: "GPU-00000000-0000-0000-0000-000000000001", Source: pipeline.ClaimDeviceRequest}}
	prot := pipelinetest.Exited("prot", "ds01.protected", "true")
	prot.Exempt, prot.ExemptReason = true, "label ds01.protected=true"
	prot.Verdict = pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonExempt}
	named := pipelinetest.Exited("named")
	busy := pipelinetest.Running("busy")
	busy.Verdict = pipeline.Verdict{Action: pipeline.ActionStop, Reason: pipeline.ReasonIdleTimeout}
	recs := []*pipeline.Record{old, prot, named, busy}
	d := pipelinetest.NewDocker()
	for _, r := range recs {
		d.Add(pipelinetest.Response(r))
	}
	return recs, d
}

// Every registered kind changes only the fields its contract declares.
func TestStagesWriteOnlyWhatTheyDeclare(t *testing.T) {
	for _, spec := range pipeline.DefaultRegistry.Specs() {
		t.Run(spec.Kind, func(t *testing.T) {
			body, ok := inputs[spec.Kind]
			if !ok {
				t.Fatalf("no input for stage kind %q: add a stage body to inputs in %s", spec.Kind, "stages/all/contract_test.go")
			}
			if !spec.Contract.Declared() {
				t.Fatalf("stage kind %q declares no contract (Spec.Contract)", spec.Kind)
			}
			for _, mode := range []pipeline.Mode{pipeline.ModePlan, pipeline.ModeRun} {
				dir := t.TempDir()
				if err := os.MkdirAll(filepath.Join(dir, "proc"), 0o755); err != nil {
					t.Fatal(err)
				}
				src := fmt.Sprintf("pipeline \"t\" {\n  gpu { backend = \"none\" }\n  stage %q {\n    %s\n  }\n}\n", spec.Kind, strings.ReplaceAll(body, "DIR", dir))
				cfg, err := pipelinetest.Load(t, pipelinetest.Only(t, spec.Kind), src)
				if err != nil {
					t.Fatalf("%s", err)
				}
				st := cfg.Stages[0]
				recs, docker := batch()
				env, _ := pipelinetest.Env(mode, docker)
				env.Policy = cfg.Policy
				b := &pipeline.Batch{Records: recs}
				before := pipelinetest.Take(b)
				if err := st.Stage.Process(context.Background(), env, b); err != nil {
					t.Logf("%s mode: %v", mode, err)
				}
				changed := pipelinetest.Changed(before, pipelinetest.Take(b))
				if bad := pipelinetest.Undeclared(changed, st.Contract); bad != "" {
					t.Errorf("%s mode: %s changed %s, which its contract does not declare (changed: %v)", mode, spec.Kind, bad, changed)
				}
			}
		})
	}
}

// Every contract names known fields only.
func TestContractsNameKnownFields(t *testing.T) {
	for _, spec := range pipeline.DefaultRegistry.Specs() {
		c := spec.Contract
		for _, f := range slices.Concat(c.Needs, c.Reads, c.Writes, c.Amends, c.NeedsLater) {
			if !slices.Contains(pipeline.Fields, f) {
				t.Errorf("%s: unknown field %q", spec.Kind, f)
			}
		}
	}
}

// The shipped chains, in order: every sample stage block must load at
// least at one place of one of them (its own place, for a kind the chain
// holds). Kinds not registered are left out of a chain.
var chains = [][]string{
	{"discover", "attribute", "classify", "exempt", "decide", "release", "remove", "log"},
	{"discover", "attribute", "classify", "exempt", "measure", "lifecycle", "notify", "stop", "remove", "log"},
}

func TestSamplesLoadInAPipeline(t *testing.T) {
	for _, spec := range pipeline.DefaultRegistry.Specs() {
		t.Run(spec.Kind, func(t *testing.T) {
			if strings.TrimSpace(spec.Sample) == "" {
				t.Fatal("no sample")
			}
			var errs []string
			for _, chain := range chains {
				chain = slices.DeleteFunc(slices.Clone(chain), func(k string) bool {
					_, ok := pipeline.DefaultRegistry.Lookup(k)
					return !ok
				})
				for _, src := range placements(spec, chain) {
					_, err := pipelinetest.Load(t, nil, src)
					if err == nil {
						return
					}
					errs = append(errs, err.Error())
				}
			}
			t.Errorf("the sample loads nowhere in the shipped chains:\n%s", strings.Join(errs, "\n---\n"))
		})
	}
}

// placements returns the pipelines with spec's sample in chain: in its
// own place when the chain holds the kind, else at every place.
func placements(spec pipeline.Spec, chain []string) []string {
	build := func(pos int) string {
		var blocks []string
		for i, k := range chain {
			if i == pos {
				blocks = append(blocks, spec.Sample)
			}
			if k != spec.Kind {
				blocks = append(blocks, fmt.Sprintf("stage %q {}", k))
			}
		}
		if pos == len(chain) {
			blocks = append(blocks, spec.Sample)
		}
		return "pipeline \"t\" {\n  gpu { backend = \"none\" }\n" + strings.Join(blocks, "\n") + "\n}\n"
	}
	if i := slices.Index(chain, spec.Kind); i >= 0 {
		return []string{build(i)}
	}
	var out []string
	for pos := 0; pos <= len(chain); pos++ {
		out = append(out, build(pos))
	}
	return out
}

// Every shipped pipeline loads (with the reference DS01 configuration).
func TestShippedPipelinesLoad(t *testing.T) {
	files, err := filepath.Glob("../../pipelines/*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped pipelines: %v", err)
	}
	config, err := filepath.Abs("../../deploy/ds01")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		if strings.Contains(string(src), `variable "ds01_config"`) {
			vars["ds01_config"] = config
		}
		if _, err := pipeline.LoadFile(file, pipeline.LoadOptions{Vars: vars}); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}
