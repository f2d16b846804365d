package pipelinetest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ds01/ds01-pipe/pipeline"
)

// Snapshot is a rendering of each field of a batch (pipeline.Field) at one
// moment, to tell which fields a stage changed. Records are told apart by
// identity: a record a stage adds changes the facts; one it drops changes
// nothing (a filter narrows the run, it writes no field).
type Snapshot struct {
	batch   map[pipeline.Field]string
	records map[*pipeline.Record]map[pipeline.Field]string
}

// Take renders every field of b. Warnings are left out: every stage may
// add them.
func Take(b *pipeline.Batch) Snapshot {
	s := Snapshot{batch: map[pipeline.Field]string{}, records: map[*pipeline.Record]map[pipeline.Field]string{}}
	add := func(f pipeline.Field, format string, args ...any) {
		s.batch[f] += fmt.Sprintf(format, args...) + "\n"
	}
	for _, r := range b.Records {
		s.records[r] = map[pipeline.Field]string{
			pipeline.FieldFacts:     fmt.Sprintf("%#v %q", r.Container, r.Incomplete),
			pipeline.FieldOwner:     fmt.Sprintf("%#v", r.Owner),
			pipeline.FieldType:      fmt.Sprintf("%q", r.Type),
			pipeline.FieldExemption: fmt.Sprintf("%v %q", r.Exempt, r.ExemptReason),
			pipeline.FieldVerdict:   fmt.Sprintf("%#v", r.Verdict),
			pipeline.FieldGPUClaims: fmt.Sprintf("%#v %v", r.GPUs, r.GPUAll),
			pipeline.FieldRelease:   fmt.Sprintf("%#v", r.ReleaseGPUs),
			pipeline.FieldOutcome:   fmt.Sprintf("%#v", r.Outcome),
		}
	}
	if b.GPU != nil {
		add(pipeline.FieldGPUView, "snapshot %#v", *b.GPU)
	}
	add(pipeline.FieldGPUView, "%#v %v", b.GPUs, b.GPUChecked)
	for _, ev := range b.TakeEvents() {
		add(pipeline.FieldEvents, "%#v", ev)
		b.Emit(ev)
	}
	return s
}

// Changed lists the fields whose rendering differs, in pipeline order.
func Changed(before, after Snapshot) []pipeline.Field {
	changed := map[pipeline.Field]bool{}
	for _, f := range pipeline.Fields {
		if before.batch[f] != after.batch[f] {
			changed[f] = true
		}
	}
	for r := range after.records {
		if _, ok := before.records[r]; !ok {
			changed[pipeline.FieldFacts] = true // added
		}
	}
	for r, was := range before.records {
		now, ok := after.records[r]
		if !ok {
			continue // dropped
		}
		for f, v := range was {
			if now[f] != v {
				changed[f] = true
			}
		}
	}
	var out []pipeline.Field
	for _, f := range pipeline.Fields {
		if changed[f] {
			out = append(out, f)
		}
	}
	return out
}

// Undeclared returns the fields in changed that c does not declare as
// written or amended, as text ("" when none).
func Undeclared(changed []pipeline.Field, c pipeline.Contract) string {
	var bad []string
	allowed := c.Changes()
	for _, f := range changed {
		if !slices.Contains(allowed, f) {
			bad = append(bad, string(f))
		}
	}
	return strings.Join(bad, ", ")
}
