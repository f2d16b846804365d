package pipeline

import "strings"

// Tally is a run reduced to numbers. It is the one count of the run: the
// log stage's summary (line, pipeline.summary event, metrics), the JSON
// report's summary and the exit code all read it, so they cannot
// disagree.
type Tally struct {
	// Containers is split into the buckets below, each record in exactly
	// one: its outcome if it has one, else what its verdict says.
	Containers int
	Removed    int
	Stopped    int
	Planned    int // plan: would be acted on
	Kept       int
	Skipped    int
	Failed     int
	Gone       int
	Changed    int
	NotActed   int // run: an acting verdict no stage acted on

	// Remove counts the remove verdicts, whatever became of them.
	Remove int
	// Verdicts and Outcomes count every action and outcome by its JSON
	// value (empty ones left out).
	Verdicts map[Action]int
	Outcomes map[OutcomeStatus]int

	GPUs           map[GPUStatus]int
	GPUsReleased   int
	GPUsOrphaned   int
	GPUsUnrecorded int
}

// TallyBatch counts a batch.
func TallyBatch(b *Batch) Tally {
	t := Tally{
		Containers: len(b.Records),
		Verdicts:   map[Action]int{},
		Outcomes:   map[OutcomeStatus]int{},
		GPUs:       map[GPUStatus]int{},
	}
	for _, rec := range b.Records {
		if a := rec.Verdict.Action; a != ActionNone {
			t.Verdicts[a]++
		}
		if o := rec.Outcome.Status; o != OutcomeNone {
			t.Outcomes[o]++
		}
		if rec.Verdict.Action == ActionRemove {
			t.Remove++
		}
		switch rec.Outcome.Status {
		case OutcomeRemoved:
			t.Removed++
		case OutcomeStopped:
			t.Stopped++
		case OutcomeFailed:
			t.Failed++
		case OutcomeGone:
			t.Gone++
		case OutcomeChanged:
			t.Changed++
		case OutcomeKept:
			t.Kept++
		case OutcomePlanned:
			t.Planned++
		default:
			switch {
			case rec.Verdict.Action.Acts():
				t.NotActed++
			case rec.Verdict.Action == ActionKeep:
				t.Kept++
			default: // skip, or no stage decided
				t.Skipped++
			}
		}
	}
	for _, g := range b.GPUs {
		t.GPUs[g.Status]++
		switch g.Status {
		case GPUReleased:
			t.GPUsReleased++
		case GPUOrphaned:
			t.GPUsOrphaned++
		case GPUUnrecorded:
			t.GPUsUnrecorded++
		}
	}
	if len(b.GPUs) == 0 {
		// No reconciled view (a pipeline without a release stage, the
		// lifecycle's): the GPUs released are those SettleReleases
		// wrote a gpu.release line for (or would, in a plan), each
		// counted once.
		t.GPUsReleased = len(releasedWithoutView(b))
	}
	return t
}

// releasedWithoutView returns the GPUs, lower-cased, cleared for release
// on records whose container is gone (or planned to go), less those a
// container that stays still has an allocation record on (an NVML
// sighting is no allocation): a GPU is released when no one holds it,
// whatever each container's own gpu.release line says of its record.
func releasedWithoutView(b *Batch) map[string]bool {
	uuids := map[string]bool{}
	held := map[string]bool{}
	for _, rec := range b.Records {
		switch rec.Outcome.Status {
		case OutcomeRemoved, OutcomeGone, OutcomePlanned:
			if rec.Exempt {
				break
			}
			for _, u := range rec.ReleaseGPUs {
				uuids[strings.ToLower(u)] = true
			}
			continue
		}
		for _, g := range rec.GPUs {
			if g.Source != ClaimNVML {
				held[strings.ToLower(g.UUID)] = true
			}
		}
	}
	for _, rec := range b.Held {
		for _, g := range rec.GPUs {
			if g.Source != ClaimNVML {
				held[strings.ToLower(g.UUID)] = true
			}
		}
	}
	for u := range held {
		delete(uuids, u)
	}
	return uuids
}

// Tally counts the run's batch.
func (r *Result) Tally() Tally { return TallyBatch(r.Batch) }
