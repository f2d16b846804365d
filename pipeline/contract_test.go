package pipeline_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
	_ "github.com/ds01/ds01-pipe/stages/all" // the order fixtures of testdata/diagnostics use every kind
)

// The loader's diagnostics say which stage must come before which, at
// the offending stage block.
func TestCheckOrderMessages(t *testing.T) {
	facts := []pipeline.Field{pipeline.FieldFacts}
	reg := pipelinetest.Registry(t,
		pipelinetest.Kind("source", pipeline.Contract{Writes: facts}),
		pipelinetest.Kind("judge", pipeline.Contract{Needs: facts, Writes: []pipeline.Field{pipeline.FieldVerdict}}),
		pipelinetest.Kind("actor", pipeline.Contract{Needs: facts, Reads: []pipeline.Field{pipeline.FieldVerdict}, Writes: []pipeline.Field{pipeline.FieldRemoval}, Acts: true}),
		pipelinetest.Kind("killer", pipeline.Contract{Needs: facts, NeedsLater: []pipeline.Field{pipeline.FieldRemoval}, LaterBecause: "kill = true"}),
		pipelinetest.Kind("end", pipeline.Contract{Terminal: true, Finalizer: true}),
		pipelinetest.Kind("free", pipeline.Contract{}),
	)
	for _, tc := range []struct {
		name   string
		stages string
		want   []string // substrings of the error, in order; none: loads
	}{
		{"in order", `source judge actor end`, nil},
		{"undeclared kinds go anywhere", `free source free judge actor end`, nil},
		{"actor before judge", `source actor judge`, []string{
			"test.hcl:4:3: Stage out of order", "Stage actor reads the verdict, which stage judge (line 5) writes: judge must come before actor."}},
		{"judge before its facts", `judge source`, []string{
			"test.hcl:3:3: Stage out of order", "Stage judge needs the facts, which stage source (line 4) writes: source must come before judge."}},
		{"no source at all", `judge`, []string{
			"test.hcl:3:3: Missing stage", `Stage judge needs the facts, which no stage of this pipeline writes: add stage "source" before judge.`}},
		{"nothing after the end", `source end judge`, []string{
			"test.hcl:5:3: Stage after a terminal stage", "Stage end ends the pipeline (line 4): nothing may come after it. Move judge before end."}},
		{"kill without a later removal", `source killer judge`, []string{
			"test.hcl:4:3: Missing stage", `Stage killer (kill = true) needs the removal that a later stage writes: add stage "actor" after killer.`}},
		{"kill with a later removal", `source judge killer actor end`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("pipeline \"p\" {\n  gpu { backend = \"none\" }\n")
			for _, k := range strings.Fields(tc.stages) {
				b.WriteString("  stage \"" + k + "\" {}\n")
			}
			b.WriteString("}\n")
			// Two stages of one kind need names; none of the cases repeats
			// a kind except "free".
			src := strings.Replace(b.String(), "stage \"free\" {}", "stage \"free\" { name = \"a\" }", 1)
			_, err := pipelinetest.Load(t, reg, src)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
				return
			}
			if !pipeline.IsConfigError(err) {
				t.Fatalf("want a configuration error, got %v", err)
			}
			text := err.Error()
			for _, w := range tc.want {
				i := strings.Index(text, w)
				if i < 0 {
					t.Fatalf("want %q in:\n%s", w, text)
				}
				text = text[i+len(w):]
			}
		})
	}
}

// The contract of a configured stage: release with kill_orphans needs a
// later removal, without it does not.
func TestContractOfConfiguredStage(t *testing.T) {
	spec, ok := pipeline.DefaultRegistry.Lookup("release")
	if !ok {
		t.Fatal("release is not registered")
	}
	cfg, err := pipelinetest.Load(t, nil, "pipeline \"p\" {\n  gpu { backend = \"none\" }\n  stage \"discover\" {}\n  stage \"release\" { kill_orphans = false }\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Stages[1].Contract; len(c.NeedsLater) != 0 {
		t.Errorf("kill_orphans = false: needs later %v", c.NeedsLater)
	}
	if len(spec.Contract.NeedsLater) != 0 {
		t.Errorf("the kind's own contract needs later %v", spec.Contract.NeedsLater)
	}
	_, err = pipelinetest.Load(t, nil, "pipeline \"p\" {\n  gpu { backend = \"none\" }\n  stage \"discover\" {}\n  stage \"release\" { kill_orphans = true }\n}\n")
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), `Stage release (kill_orphans = true) needs the removal that a later stage writes: add stage "remove" after release.`) {
		t.Errorf("kill_orphans = true without remove: %v", err)
	}
}

// A kind that acts or records events may stand
// once in a pipeline: a second remove would find its own removals gone
// and report them so, a second release would log each GPU release twice.
// Kinds that only narrow or show the run (filter, report) may repeat.
func TestRepeatedStage(t *testing.T) {
	const head = "pipeline \"p\" {\n  gpu { backend = \"none\" }\n"
	base := []string{`discover`, `attribute`, `classify`, `exempt`, `decide`, `release`, `remove`}
	for _, tc := range []struct {
		name  string
		extra string // a second stage block, inserted after its kind
		want  string // "" loads
	}{
		{"remove twice", `remove`, `Stage remove.again repeats stage remove (line 9)`},
		{"release twice", `release`, `Stage release.again repeats stage release (line 8)`},
		{"filter twice", `filter`, ""},
		{"report twice", `report`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString(head)
			block := func(kind, name string) string {
				attrs := ""
				switch kind {
				case "filter":
					attrs = ` when = c.name != "x"`
				case "report":
					attrs = ` format = "csv" path = "-"`
				}
				if name != "" {
					attrs += ` name = "` + name + `"`
				}
				if attrs == "" {
					return "  stage \"" + kind + "\" {}\n"
				}
				return "  stage \"" + kind + "\" {\n   " + strings.ReplaceAll(attrs, `" `, "\"\n    ") + "\n  }\n"
			}
			stages := base
			if tc.extra == "filter" || tc.extra == "report" {
				stages = append(append([]string{}, base...), tc.extra)
			}
			for _, k := range stages {
				b.WriteString(block(k, ""))
				if k == tc.extra {
					b.WriteString(block(k, "again"))
				}
			}
			b.WriteString("  stage \"log\" {\n    events_file = \"\"\n    syslog = false\n  }\n}\n")
			_, err := pipelinetest.Load(t, pipeline.DefaultRegistry, b.String())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want no error, got:\n%v\n%s", err, b.String())
			case tc.want != "" && !pipeline.IsConfigError(err):
				t.Fatalf("want a configuration error, got %v\n%s", err, b.String())
			case tc.want != "" && !strings.Contains(err.Error(), "Repeated stage") || tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("want %q in:\n%v", tc.want, err)
			}
		})
	}
}

// A stage that acts needs a later stage that records its events (log):
// without one, containers would be removed or stopped with no audit line,
// and the run would end as if all were well.
func TestActingStageNeedsItsRecord(t *testing.T) {
	for _, tc := range []struct {
		name, stages, want string
	}{
		{"remove without log", `discover decide remove`, `Stage remove acts on containers, and what it does is recorded only by a later stage that reads the events: add stage "log" after remove.`},
		{"remove then log", `discover decide remove log`, ""},
		{"an audit needs no log", `discover decide`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("pipeline \"p\" {\n  gpu { backend = \"none\" }\n")
			for _, k := range strings.Fields(tc.stages) {
				if k == "log" {
					b.WriteString("  stage \"log\" {\n    events_file = \"\"\n    syslog = false\n  }\n")
					continue
				}
				b.WriteString("  stage \"" + k + "\" {}\n")
			}
			b.WriteString("}\n")
			_, err := pipelinetest.Load(t, pipeline.DefaultRegistry, b.String())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want no error, got:\n%v", err)
			case tc.want != "" && (!pipeline.IsConfigError(err) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want a configuration error with %q, got:\n%v", tc.want, err)
			}
		})
	}
}
