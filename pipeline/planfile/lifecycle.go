package planfile

import "github.com/ds01/ds01-pipe/pipeline"

// planned reports whether a plan lists the record: a remove verdict a run
// would act on, or a stop verdict (the lifecycle pipeline) on a running or
// paused container that is not exempt and was read completely. The state
// is in the fingerprint: a container paused or resumed since the plan is
// changed_since_plan at apply.
func planned(rec *pipeline.Record) bool {
	switch rec.Verdict.Action {
	case pipeline.ActionRemove:
		return rec.Candidate()
	case pipeline.ActionStop:
		st := rec.Container.State
		return !rec.Exempt && rec.Incomplete == "" && (st == pipeline.StateRunning || st == pipeline.StatePaused)
	}
	return false
}
