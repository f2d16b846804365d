package pipelinetest_test

import (
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// The contract test's diff tells the fields apart and ignores what every
// stage may do (warn, drop records).
func TestChangedAndUndeclared(t *testing.T) {
	b := &pipeline.Batch{Records: []*pipeline.Record{pipelinetest.Exited("a"), pipelinetest.Exited("b")}}
	before := pipelinetest.Take(b)
	b.Records[0].Warn("odd")
	b.Records = b.Records[:1] // dropped
	if got := pipelinetest.Changed(before, pipelinetest.Take(b)); len(got) != 0 {
		t.Errorf("a warning and a dropped record changed %v", got)
	}

	before = pipelinetest.Take(b)
	b.Records[0].Verdict.Action = pipeline.ActionKeep
	b.Records[0].Owner.Name = "bob"
	b.Records = append(b.Records, pipelinetest.Exited("c"))
	b.GPUChecked = true
	got := pipelinetest.Changed(before, pipelinetest.Take(b))
	want := []pipeline.Field{pipeline.FieldFacts, pipeline.FieldOwner, pipeline.FieldVerdict, pipeline.FieldGPUView}
	if len(got) != len(want) {
		t.Fatalf("changed %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("changed %v, want %v", got, want)
		}
	}
	c := pipeline.Contract{Writes: []pipeline.Field{pipeline.FieldFacts, pipeline.FieldOwner}, Amends: []pipeline.Field{pipeline.FieldGPUView}}
	if bad := pipelinetest.Undeclared(got, c); bad != "verdict" {
		t.Errorf("undeclared %q, want verdict", bad)
	}
	if bad := pipelinetest.Undeclared([]pipeline.Field{pipeline.FieldOutcome}, pipeline.Contract{Writes: []pipeline.Field{pipeline.FieldRemoval}}); bad != "" {
		t.Errorf("a removal is an outcome: undeclared %q", bad)
	}
}
