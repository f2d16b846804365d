package planfile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
)

// Reasons the gate gives a container it takes a remove verdict from.
const (
	// ReasonNotInPlan: a run would remove the container now, but the plan
	// does not list it (it became due after the plan was made).
	ReasonNotInPlan pipeline.Reason = "not_in_plan"
	// ReasonChangedSincePlan: the plan lists the container, but its
	// fingerprint no longer matches.
	ReasonChangedSincePlan pipeline.Reason = "changed_since_plan"
)

// Gate restricts a run to a plan. It is applied after every stage, like
// the engine's own invariants, so no stage order and no later stage can
// give a container outside the plan a remove verdict that survives.
type Gate struct {
	byID    map[string]Container
	checked map[string]bool
	changed map[string]string // container ID -> what changed since the plan
}

// Gate returns a fresh gate for one apply run.
func (p *Plan) Gate() *Gate {
	g := &Gate{
		byID:    make(map[string]Container, len(p.Containers)),
		checked: make(map[string]bool, len(p.Containers)),
		changed: make(map[string]string),
	}
	for _, c := range p.Containers {
		g.byID[c.ID] = c
	}
	return g
}

// Before does nothing: the gate judges what a stage did (pipeline.Hook).
func (g *Gate) Before(*pipeline.Env, pipeline.StageInstance, *pipeline.Batch) {}

// After applies the gate to the batch after every stage, before the
// engine's own invariants (pipeline.Hook): apply passes the gate to the
// runner as a hook.
func (g *Gate) After(_ *pipeline.Env, _ pipeline.StageInstance, b *pipeline.Batch) { g.Apply(b) }

// Apply enforces the plan on a batch: a planned container whose
// fingerprint changed gets the outcome "changed" (checked once, when it
// first appears, that is right after discovery), and every remove verdict
// on a container that is not planned or has changed becomes a skip.
func (g *Gate) Apply(b *pipeline.Batch) {
	for _, rec := range b.Records {
		id := rec.Container.ID
		planned, ok := g.byID[id]
		if ok && !g.checked[id] {
			g.checked[id] = true
			// A record whose facts could not be read is never acted on;
			// comparing its partial facts would only report a false change.
			if rec.Incomplete == "" && rec.Outcome.Status != pipeline.OutcomeFailed {
				if what := changedSince(planned, rec.Container); what != "" {
					g.changed[id] = what
					rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeChanged, Error: "since the plan: " + what}
				}
			}
		}
		// Every acting verdict: remove, and the lifecycle's stop.
		if !rec.Verdict.Action.Acts() {
			continue
		}
		switch {
		case !ok:
			rec.Verdict = pipeline.Verdict{
				Action: pipeline.ActionSkip,
				Reason: ReasonNotInPlan,
				Detail: fmt.Sprintf("a run would %s it now (%s), but the plan does not list it", rec.Verdict.Action, rec.Verdict.Reason),
			}
		case g.changed[id] != "":
			rec.Verdict = pipeline.Verdict{
				Action: pipeline.ActionSkip,
				Reason: ReasonChangedSincePlan,
				Detail: g.changed[id],
			}
		}
	}
}

func changedSince(planned Container, now pipeline.Container) string {
	what := planned.Fingerprint.Diff(dockerfacts.Of(now))
	if planned.Name != "" && planned.Name != now.Name {
		rename := fmt.Sprintf("renamed %s -> %s", planned.Name, now.Name)
		if what == "" {
			return rename
		}
		return rename + "; " + what
	}
	return what
}

// Missing returns the planned containers the run never saw: removed (or
// moved out of the pipeline's scope) since the plan was made.
func (g *Gate) Missing() []Container {
	var out []Container
	for id, c := range g.byID {
		if !g.checked[id] {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Container) int { return strings.Compare(a.Name+a.ID, b.Name+b.ID) })
	return out
}

// Changed returns what changed since the plan for a container ID, or "".
func (g *Gate) Changed(id string) string { return g.changed[id] }

// Planned reports whether the plan lists a container ID.
func (g *Gate) Planned(id string) bool {
	_, ok := g.byID[id]
	return ok
}
