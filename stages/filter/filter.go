// Package filter implements the "filter" stage: it keeps the records an
// HCL expression selects and drops the others from the run, so later
// stages, the report and the summary never see them. A filter only ever
// removes records: it cannot widen what a later stage may do.
package filter

import (
	"context"
	_ "embed" // the sample stage block
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/stages/internal/recordview"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "filter"

//go:embed sample.hcl
var sample string

// RecordVar is the name of the record in a when expression.
const RecordVar = "c"

// Stage is the filter stage.
type Stage struct {
	When hcl.Expression `hcl:"when" doc:"A boolean HCL expression, evaluated per container with the container as the object c (the JSON report's container keys: c.name, c.owner, c.verdict, c.age_s, ..., and c.labels as a map). Containers for which it is false leave the run; so do those for which it fails (a null operand, regex without a match), with a warning."`

	ctx *hcl.EvalContext // the pipeline's variables and functions, with the filter's

	mu      sync.Mutex
	dropped []Drop
}

// Drop is a record the stage took out of the run, and why.
type Drop struct {
	ID     string
	Name   string
	Reason string // "when is false", or the evaluation error
	Record *pipeline.Record
}

// New returns a filter stage.
func New() *Stage { return &Stage{} }

// CheckExprs checks when against a record whose every value is unknown
// but typed, so an unknown attribute (c.nmae), a type error (c.age_s +
// "x") or a result that is not a bool is a diagnostic at its file:line:col
// when the pipeline loads, not a surprise per record at run time.
func (s *Stage) CheckExprs(parent *hcl.EvalContext) hcl.Diagnostics {
	if parent == nil {
		parent = &hcl.EvalContext{}
	}
	s.ctx = parent.NewChild()
	s.ctx.Functions = functions()
	if absent(s.When) {
		return nil // Init reported it
	}
	for _, tr := range s.When.Variables() {
		if tr.RootName() == "var" || tr.RootName() == RecordVar {
			continue
		}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Unknown variable",
			Detail:   fmt.Sprintf("A when expression can refer to the container as %s (c.name, c.owner, ...) and to variables as var.NAME, not to %q.", RecordVar, tr.RootName()),
			Subject:  tr.SourceRange().Ptr(),
		}}
	}
	v, diags := s.eval(cty.UnknownVal(objectType))
	if diags.HasErrors() {
		return diags
	}
	if v.IsKnown() && v.IsNull() {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "when is null",
			Detail:   "when must be true or false for every container.",
			Subject:  s.When.Range().Ptr(),
		}}
	}
	if t := v.Type(); t != cty.Bool && t != cty.DynamicPseudoType {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "when is not a condition",
			Detail:   fmt.Sprintf("when must be true or false; this expression gives %s. Compare it with something (==, >, contains(...)).", t.FriendlyName()),
			Subject:  s.When.Range().Ptr(),
		}}
	}
	return nil
}

// absent reports whether when was left out: the decoder then gives a
// synthetic null expression rather than one parsed from the file.
func absent(expr hcl.Expression) bool {
	_, parsed := expr.(hclsyntax.Expression)
	return !parsed
}

// Init checks that when was given.
func (s *Stage) Init() error {
	if absent(s.When) {
		return &pipeline.AttrError{Attr: "when", Err: errors.New("a filter needs when = <expression>")}
	}
	return nil
}

func (s *Stage) eval(c cty.Value) (cty.Value, hcl.Diagnostics) {
	ctx := s.ctx
	if ctx == nil {
		// A stage built outside the loader: no pipeline variables.
		ctx = &hcl.EvalContext{Functions: functions()}
	}
	child := ctx.NewChild()
	child.Variables = map[string]cty.Value{RecordVar: c}
	return s.When.Value(child)
}

// Match evaluates when for one record. An error means the record cannot
// be judged; the stage then drops it, which is the side of caution: a
// filter narrows what later stages see, and a record it cannot judge must
// not slip through to a stage that acts.
func (s *Stage) Match(rec *pipeline.Record) (bool, error) {
	v, diags := s.eval(Value(rec))
	if diags.HasErrors() {
		return false, errors.New(diagText(diags))
	}
	if v.IsNull() || !v.IsKnown() {
		return false, fmt.Errorf("when is null at %s", s.When.Range())
	}
	if v.Type() != cty.Bool {
		return false, fmt.Errorf("when gives %s, not true or false, at %s", v.Type().FriendlyName(), s.When.Range())
	}
	return v.True(), nil
}

// diagText renders diagnostics on one line each, with their position.
func diagText(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		text := d.Summary
		if d.Detail != "" {
			text += ": " + d.Detail
		}
		if d.Subject != nil {
			text = fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, text)
		}
		parts = append(parts, text)
	}
	return strings.Join(parts, "; ")
}

// maxWarnings bounds the per-container warnings of one run: an expression
// that fails for every container of a busy host must not flood the log.
const maxWarnings = 10

// Process keeps the records for which when is true.
func (s *Stage) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	kept := make([]*pipeline.Record, 0, len(batch.Records))
	var dropped []Drop
	failed := 0
	for _, rec := range batch.Records {
		if err := ctx.Err(); err != nil {
			return err
		}
		ok, err := s.Match(rec)
		switch {
		case err != nil:
			dropped = append(dropped, Drop{ID: rec.Container.ID, Name: rec.Container.Name, Reason: err.Error(), Record: rec})
			failed++
			if failed <= maxWarnings && env != nil && env.Log != nil {
				env.Log.WithField("stage", Kind).WithField("container", rec.Container.Name).Warnf("filter: cannot evaluate when, container left out: %v", err)
			}
		case ok:
			kept = append(kept, rec)
		default:
			dropped = append(dropped, Drop{ID: rec.Container.ID, Name: rec.Container.Name, Reason: "when is false", Record: rec})
		}
	}
	if failed > maxWarnings && env != nil && env.Log != nil {
		env.Log.WithField("stage", Kind).Warnf("filter: %d more containers left out because when could not be evaluated for them", failed-maxWarnings)
	}
	batch.Records = kept
	for _, d := range dropped {
		batch.Held = append(batch.Held, d.Record)
	}
	s.mu.Lock()
	s.dropped = dropped
	s.mu.Unlock()
	return nil
}

// Dropped returns the records the last run of the stage left out.
func (s *Stage) Dropped() []Drop {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Drop(nil), s.dropped...)
}

// DroppedRecord returns the record of a container the last run of the
// stage left out, why, and where when is written (for explain).
func (s *Stage) DroppedRecord(id string) (*pipeline.Record, string, hcl.Range, bool) {
	for _, d := range s.Dropped() {
		if d.ID == id {
			return d.Record, d.Reason, s.When.Range(), true
		}
	}
	return nil, "", hcl.Range{}, false
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind:    Kind,
		Summary: "Keeps the containers an HCL expression (when) selects; the others leave the run, so later stages, reports and the summary never see them. The container is the object c, with the JSON report's keys (c.name, c.owner, c.type, c.exempt, c.gpus, c.verdict, c.reason, c.age_s, c.limit_s, ...) and c.labels. Unknown keys and type errors are found when the pipeline loads. A filter only removes records: it never widens what a later stage may do.",
		Sample:  sample,
		New:     func() pipeline.Stage { return New() },
		// It reads what earlier stages wrote and only takes records out:
		// no field of any record changes, so it widens nothing.
		Contract: pipeline.Contract{Needs: []pipeline.Field{pipeline.FieldFacts}},
		// It reads just the parts of the record when refers to, so it may
		// stand before the stages that write the others (a filter on
		// c.name before decide narrows what decide and remove see).
		Configure: func(st pipeline.Stage, c pipeline.Contract) pipeline.Contract {
			if s, ok := st.(*Stage); ok {
				c.Reads = recordview.Reads(s.keys())
			}
			return c
		},
	})
}

// keys lists the keys of c that when refers to; c as a whole (or indexed
// by a computed key) counts as every key.
func (s *Stage) keys() []string {
	if absent(s.When) {
		return nil
	}
	var out []string
	for _, tr := range s.When.Variables() {
		if tr.RootName() != RecordVar {
			continue
		}
		if len(tr) < 2 {
			return recordview.Keys()
		}
		switch step := tr[1].(type) {
		case hcl.TraverseAttr:
			out = append(out, step.Name)
		case hcl.TraverseIndex:
			if step.Key.Type() == cty.String {
				out = append(out, step.Key.AsString())
			}
		}
	}
	return out
}
