package pipeline

import (
	"time"

	"github.com/ds01/ds01-pipe/pipeline/events"
)

// SettleReleases turns the release stage's intentions into facts once the
// removals are done. A GPU is released only when its container is gone:
// for each record whose container was removed (or was already gone) it
// emits one gpu.release event per GPU; for every other record the GPUs
// stay claimed and their report status goes back to in_use. In plan mode
// nothing is emitted and the statuses stay as planned.
func SettleReleases(env *Env, b *Batch) {
	if env.Planning() {
		return
	}
	byUUID := make(map[string]*GPUReport, len(b.GPUs))
	for i := range b.GPUs {
		byUUID[b.GPUs[i].UUID] = &b.GPUs[i]
	}
	for _, rec := range b.Records {
		if len(rec.ReleaseGPUs) == 0 {
			continue
		}
		switch rec.Outcome.Status {
		case OutcomeRemoved, OutcomeGone:
			for _, uuid := range rec.ReleaseGPUs {
				b.Emit(events.Event{
					Time:   time.Now(),
					Type:   events.GPURelease,
					User:   rec.Owner.Name,
					Source: env.Source(),
					Details: []events.Field{
						events.F("container", rec.Container.Name),
						events.F("gpu_uuid", uuid),
						events.F("reason", string(rec.Verdict.Reason)),
					},
				})
			}
		default:
			for _, uuid := range rec.ReleaseGPUs {
				if g := byUUID[uuid]; g != nil && g.Status == GPUReleased {
					g.Status = GPUInUse
				}
			}
			rec.ReleaseGPUs = nil
		}
	}
}
