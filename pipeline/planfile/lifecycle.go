package planfile

import "github.com/ds01/ds01-pipe/pipeline"

// planned reports whether a plan lists the record: a remove verdict a run
// would act on, or a stop verdict (the lifecycle pipeline) on a running
// container that is not exempt and was read completely.
func planned(rec *pipeline.Record) bool {
	switch rec.Verdict.Action {
	case pipeline.ActionRemove:
		return rec.Candidate()
	case pipeline.ActionStop:
		return !rec.Exempt && rec.Incomplete == "" && rec.Container.State == pipeline.StateRunning
	}
	return false
}
