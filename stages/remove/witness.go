package remove

import (
	"context"
	"encoding/json"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
)

// Witness timing. The engine that stalled the dead run may stay stalled a
// while (a daemon under load, one being restarted): the witness waits for
// it up to witnessEngineWait. Once it answers, the requests the run left
// in its socket are carried out within moments; witnessWindow (at least
// the run's call timeout, the time the run itself would have waited for
// an answer) bounds how long the witness looks for them. A container
// still there after that is left to the next run's journal check.
const (
	witnessEngineWait = 10 * time.Minute
	witnessMinWindow  = 5 * time.Second
	witnessPoll       = 200 * time.Millisecond
)

// witness is the remove stage's witness body (pipeline.StartWitness): it
// learns from the run each removal asked for (the journal's "asked" line)
// and each whose fate the run learnt ("settled"). When the run ended in
// order with every answer known, there is nothing to do. When it died, or
// ended with requests unanswered, every removal still open is looked up
// until the engine has carried it out (404: the container.remove line is
// written then, and the journal entry settled) or the window closes. The
// run's lock stays held meanwhile (the witness has the run's own open
// file), so no other run records the same removal.
func witness(ctx context.Context, w *pipeline.WitnessEnv, run io.Reader) error {
	var state journalState
	ended, err := pipeline.ReadRun(run, func(line []byte) {
		var e pendingEntry
		if json.Unmarshal(line, &e) == nil {
			state.apply(e)
		}
	})
	if ended {
		return nil
	}
	if err != nil {
		w.Log.WithError(err).Warn("reading the run's removals")
	}
	pending := state.entries()
	if len(pending) == 0 || w.Events == nil {
		return nil
	}
	log := w.Log.WithField("removals", len(pending))
	if err := w.ClaimLock(); err != nil {
		log.WithError(err).Warn("the run's lock names the run, not its witness")
	}
	log.Warn("the run ended before the engine answered these removals; recording the ones the engine carries out")

	var journal *pendingJournal
	if len(w.Files) > 0 {
		journal = &pendingJournal{f: w.Files[0]}
	}
	left := settleOpen(ctx, w, pending, journal)
	for _, e := range left {
		log.WithField("container", e.name()).WithField("id", e.ID).Warn("removal not recorded by the witness; the next run checks it again")
	}
	return nil
}

// settleOpen looks up each entry until its container is gone (recorded) or
// the time is up; it returns the entries still open. A container the
// engine is removing keeps the window open (up to witnessEngineWait): its
// removal is under way. An entry whose line cannot be written is left to
// the next run at once, with one error, not asked about again.
func settleOpen(ctx context.Context, w *pipeline.WitnessEnv, pending []pendingEntry, journal *pendingJournal) []pendingEntry {
	window := max(w.CallTimeout, witnessMinWindow)
	start := time.Now()
	var docker client.APIClient
	var answered time.Time
	var unwritten []pendingEntry
	for len(pending) > 0 {
		if docker == nil {
			var err error
			if docker, err = w.Engine(ctx); err != nil {
				if time.Since(start) > witnessEngineWait || !pause(ctx) {
					return append(unwritten, pending...)
				}
				continue
			}
			if answered.IsZero() {
				answered = time.Now()
			}
		}
		var keep []pendingEntry
		removing := false
		for i, e := range pending {
			if e.gone {
				// Known gone, its container.remove line written: only
				// its gpu.release lines are owed.
				if werr := recordGone(w.Events.Write, journal, &e, time.Now()); werr != nil {
					w.Log.WithError(werr).WithField("container", e.name()).WithField("id", e.ID).Error("GPU release of a removed container not recorded; the next run tries again")
					unwritten = append(unwritten, e)
				}
				continue
			}
			if docker == nil {
				// The engine stopped answering: the rest waits for it.
				keep = append(keep, pending[i:]...)
				break
			}
			cctx, cancel := w.Call(ctx)
			res, err := docker.ContainerInspect(cctx, e.ID, client.ContainerInspectOptions{})
			cancel()
			switch {
			case cerrdefs.IsNotFound(err):
				if werr := recordGone(w.Events.Write, journal, &e, time.Now()); werr != nil {
					w.Log.WithError(werr).WithField("container", e.name()).WithField("id", e.ID).Error("removal carried out after the run ended, and not recorded; the next run tries again")
					unwritten = append(unwritten, e)
					continue
				}
				w.Log.WithField("container", e.name()).WithField("id", e.ID).Info("removal carried out after the run ended, recorded")
			case err != nil:
				keep = append(keep, e)
				docker = nil // ask again whether the engine answers at all
			default:
				// Still there: not carried out yet, or never; or under way.
				removing = removing || (res.Container.State != nil && res.Container.State.Status == "removing")
				keep = append(keep, e)
			}
		}
		pending = keep
		windowOver := !answered.IsZero() && time.Since(answered) > window && !removing
		if len(pending) == 0 || windowOver || time.Since(start) > witnessEngineWait || !pause(ctx) {
			return append(unwritten, pending...)
		}
	}
	return unwritten
}

// pause waits one poll interval; false when ctx ended (the witness was
// told to stop).
func pause(ctx context.Context) bool {
	t := time.NewTimer(witnessPoll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
