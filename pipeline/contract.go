package pipeline

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Field names a part of what a run knows (a group of Record members, or of
// the Batch) that stages read and write. The names are what `ds01-pipe
// stages` shows and what the loader's diagnostics say.
type Field string

// The parts of the record and the batch. Record's doc says which members
// each one covers and which stage kinds write it.
const (
	// FieldFacts: Record.Container and Record.Incomplete, and the list of
	// records itself (Batch.Records).
	FieldFacts Field = "facts"
	// FieldOwner: Record.Owner.
	FieldOwner Field = "owner"
	// FieldType: Record.Type.
	FieldType Field = "type"
	// FieldExemption: Record.Exempt and Record.ExemptReason.
	FieldExemption Field = "exemption"
	// FieldVerdict: Record.Verdict.
	FieldVerdict Field = "verdict"
	// FieldGPUClaims: Record.GPUs and Record.GPUAll.
	FieldGPUClaims Field = "gpu-claims"
	// FieldGPUView: Batch.GPU (the run's one snapshot), Batch.GPUs and
	// Batch.GPUChecked (the reconciled per-device view).
	FieldGPUView Field = "gpu-view"
	// FieldRelease: Record.ReleaseGPUs, the GPUs cleared for release once
	// their container is confirmed gone.
	FieldRelease Field = "gpu-release"
	// FieldOutcome: Record.Outcome.
	FieldOutcome Field = "outcome"
	// FieldRemoval is the part of FieldOutcome that confirms a container is
	// gone (removed, gone): what GPU releases and process signals wait for.
	// A stage that writes it may write Record.Outcome.
	FieldRemoval Field = "removal"
	// FieldEvents: the events queued for the log (Batch.Emit).
	FieldEvents Field = "events"
)

// Fields lists every field, in pipeline order.
var Fields = []Field{FieldFacts, FieldOwner, FieldType, FieldExemption, FieldVerdict, FieldGPUClaims, FieldGPUView, FieldRelease, FieldOutcome, FieldRemoval, FieldEvents, FieldLifecycle}

// Contract is what a stage kind declares about its place in a pipeline:
// what it needs from earlier stages, what it reads, what it writes. The
// loader checks every pipeline's order against the contracts of its stages
// (see checkOrder) before anything runs, and a test runs every registered kind
// and fails when it changes a field it did not declare. Every record
// member may get warnings (Record.Warn) from any stage.
type Contract struct {
	// Needs are fields an earlier stage must write: without them the stage
	// cannot do its work (every stage but discover needs the facts).
	Needs []Field
	// Reads are fields the stage uses when a pipeline has a stage that
	// writes them; such a stage must then come earlier.
	Reads []Field
	// Writes are the fields the stage produces.
	Writes []Field
	// Amends are fields the stage changes on some records after another
	// stage wrote them (release keeps a container whose GPU is busy). They
	// satisfy no Needs and order nothing: a stage that must see the
	// amendment reads a field the amending stage writes (remove reads the
	// gpu-release that release writes).
	Amends []Field
	// NeedsLater are fields a later stage must write (release with
	// kill_orphans: processes are signalled only once a removal confirms
	// their container is gone). LaterBecause names the attribute that
	// asked for it, for the diagnostic.
	NeedsLater   []Field
	LaterBecause string

	// Acts: the stage changes containers (remove, stop). The engine
	// guarantees that no acting verdict on an exempt, protected or (for
	// remove) live container reaches it.
	Acts bool
	// Terminal: nothing may come after the stage (log: it records what the
	// run did, so a stage after it would act unrecorded).
	Terminal bool
	// Finalizer: the stage runs even after an earlier stage failed or the
	// run's deadline passed, with a short deadline of its own (log).
	Finalizer bool
}

// Declared reports whether a kind declared any contract at all.
func (c Contract) Declared() bool {
	return len(c.Needs)+len(c.Reads)+len(c.Writes)+len(c.Amends)+len(c.NeedsLater) > 0 || c.Acts || c.Terminal || c.Finalizer
}

// Changes lists the fields the stage may change: its writes and amends.
func (c Contract) Changes() []Field {
	out := slices.Concat(c.Writes, c.Amends)
	if slices.Contains(out, FieldRemoval) && !slices.Contains(out, FieldOutcome) {
		out = append(out, FieldOutcome) // a removal is an outcome
	}
	return out
}

// writes reports whether the contract produces f (not merely amends it).
func (c Contract) writes(f Field) bool { return slices.Contains(c.Writes, f) }

// ContractOf returns the contract of one configured stage of the kind:
// the kind's Contract, refined by Configure when the kind has one.
func (s Spec) ContractOf(st Stage) Contract {
	c := s.Contract
	if s.Configure != nil && st != nil {
		c = s.Configure(st, c)
	}
	return c
}

// orderedStage is what CheckOrder needs of one stage block.
type orderedStage struct {
	ref      StageRef
	contract Contract
	rng      hcl.Range
}

// checkOrder checks a pipeline's stage order against the stages'
// contracts and returns one diagnostic per stage that cannot work where
// it stands, at that stage's block, saying what must come before it (or
// after it). writers maps each field to the kinds that write it, for the
// advice when no stage of the pipeline does.
func checkOrder(stages []orderedStage, writers, readers map[Field][]string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for i := range stages {
		if d := checkStage(stages, i, writers, readers); d != nil {
			diags = append(diags, d)
		}
	}
	return diags
}

func checkStage(stages []orderedStage, i int, writers, readers map[Field][]string) *hcl.Diagnostic {
	st := stages[i]
	diag := func(summary, detail string) *hcl.Diagnostic {
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: st.rng.Ptr()}
	}
	for j := 0; j < i; j++ {
		if stages[j].contract.Terminal {
			return diag("Stage after a terminal stage", fmt.Sprintf(
				"Stage %s ends the pipeline (%s): nothing may come after it. Move %s before %s.",
				stages[j].ref, at(stages[j].rng), st.ref, stages[j].ref))
		}
	}
	if once(st.contract) {
		for j := 0; j < i; j++ {
			if stages[j].ref.Kind == st.ref.Kind {
				return diag("Repeated stage", fmt.Sprintf(
					"Stage %s repeats stage %s (%s): a stage of kind %q acts on containers or records events, "+
						"so a second one would act on the same containers again or record the same events twice "+
						"(a removal reported as gone, each GPU release logged twice). Keep one %s stage.",
					st.ref, stages[j].ref, at(stages[j].rng), st.ref.Kind, st.ref.Kind))
			}
		}
	}
	for _, f := range st.contract.Needs {
		if len(writers[f]) == 0 || firstWriter(stages[:i], f) >= 0 {
			// No kind of the registry writes f (a registry made for a
			// test): the need cannot be met, nor judged.
			continue
		}
		if k := firstWriter(stages[i+1:], f); k >= 0 {
			w := stages[i+1+k]
			return diag("Stage out of order", fmt.Sprintf(
				"Stage %s needs the %s, which stage %s (%s) writes: %s must come before %s.",
				st.ref, f, w.ref, at(w.rng), w.ref, st.ref))
		}
		return diag("Missing stage", fmt.Sprintf(
			"Stage %s needs the %s, which no stage of this pipeline writes: add %s before %s.",
			st.ref, f, kindList(writers[f]), st.ref))
	}
	if st.contract.Terminal {
		// What comes after a terminal stage gets its own diagnostic.
		return nil
	}
	for _, f := range slices.Concat(st.contract.Needs, st.contract.Reads) {
		for k := i + 1; k < len(stages); k++ {
			w := stages[k]
			if w.contract.writes(f) {
				return diag("Stage out of order", fmt.Sprintf(
					"Stage %s reads the %s, which stage %s (%s) writes: %s must come before %s.",
					st.ref, f, w.ref, at(w.rng), w.ref, st.ref))
			}
		}
	}
	if st.contract.Acts && len(readers[FieldEvents]) > 0 && firstReader(stages[i+1:], FieldEvents) < 0 {
		// What a stage that acts did is known only through the events it
		// queues; without a later stage that records them, containers
		// would be removed or stopped with no audit line at all.
		return diag("Missing stage", fmt.Sprintf(
			"Stage %s acts on containers, and what it does is recorded only by a later stage that reads the events: add %s after %s.",
			st.ref, kindList(readers[FieldEvents]), st.ref))
	}
	for _, f := range st.contract.NeedsLater {
		if len(writers[f]) == 0 || firstWriter(stages[i+1:], f) >= 0 {
			continue
		}
		because := ""
		if st.contract.LaterBecause != "" {
			because = " (" + st.contract.LaterBecause + ")"
		}
		return diag("Missing stage", fmt.Sprintf(
			"Stage %s%s needs the %s that a later stage writes: add %s after %s.",
			st.ref, because, f, kindList(writers[f]), st.ref))
	}
	return nil
}

// once reports whether a pipeline may hold only one stage of the kind: a
// kind that acts on containers or queues events does it again in full
// when repeated, and its second outcomes and events overwrite or double
// the first's. (A second discover widens the scope: it adds only the
// containers the first did not list.)
func once(c Contract) bool {
	return c.Acts || c.writes(FieldEvents) || c.writes(FieldRemoval)
}

// firstReader returns the index of the first stage that needs or reads f, or -1.
func firstReader(stages []orderedStage, f Field) int {
	for i, st := range stages {
		if slices.Contains(st.contract.Needs, f) || slices.Contains(st.contract.Reads, f) {
			return i
		}
	}
	return -1
}

// firstWriter returns the index of the first stage that writes f, or -1.
func firstWriter(stages []orderedStage, f Field) int {
	for i, st := range stages {
		if st.contract.writes(f) {
			return i
		}
	}
	return -1
}

func at(r hcl.Range) string { return fmt.Sprintf("line %d", r.Start.Line) }

// kindList renders the kinds that write a field as advice: `stage "decide"`.
func kindList(kinds []string) string {
	if len(kinds) == 0 {
		return "a stage that writes it"
	}
	q := make([]string, len(kinds))
	for i, k := range kinds {
		q[i] = fmt.Sprintf("stage %q", k)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// Readers maps each field to the kinds whose contract needs or reads it,
// sorted by kind.
func (r *Registry) Readers() map[Field][]string {
	out := map[Field][]string{}
	for _, s := range r.Specs() {
		for _, f := range slices.Concat(s.Contract.Needs, s.Contract.Reads) {
			if !slices.Contains(out[f], s.Kind) {
				out[f] = append(out[f], s.Kind)
			}
		}
	}
	return out
}

// Writers maps each field to the kinds whose contract writes it (not
// amends), sorted by kind.
func (r *Registry) Writers() map[Field][]string {
	out := map[Field][]string{}
	for _, s := range r.Specs() {
		for _, f := range s.Contract.Writes {
			out[f] = append(out[f], s.Kind)
		}
	}
	return out
}
