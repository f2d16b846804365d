package pipeline

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// GPUUnaccounted is the status of a GPU or MIG slice on which NVML lists a
// process that could not be explained: its /proc entry could not be read,
// its cgroup could not be parsed, or the container its cgroup names could
// not be identified. Such a GPU is never free and never released.
const GPUUnaccounted GPUStatus = "unaccounted"

// Statuses of the gpu.health_check event, one per GPU on which orphans were
// to be killed. DS01 writes cleaned and orphaned_shared; the others say
// what was left and why.
const (
	// HealthCleaned: no orphan remains on the GPU.
	HealthCleaned = "cleaned"
	// HealthShared: an orphan was left because it also runs on a GPU this
	// run did not release.
	HealthShared = "orphaned_shared"
	// HealthSurvived: an orphan survived SIGKILL.
	HealthSurvived = "survived_sigkill"
	// HealthDeadline: the run's deadline ended the kill before it was done.
	HealthDeadline = "deadline"
	// HealthKillFailed: an orphan could not safely be signalled (its /proc
	// entry changed, pidfd_open failed, ...).
	HealthKillFailed = "kill_failed"
)

// ReleasePlan is what the release stage leaves for the engine: the GPUs
// whose release waits on removals, and the orphaned processes that may be
// signalled once every GPU they run on is released. The release stage
// releases nothing and signals nothing itself: SettleReleases does both,
// after the removals, and only for containers confirmed gone.
type ReleasePlan struct {
	// KillOrphans is the release stage's kill_orphans: without it no
	// process is ever signalled.
	KillOrphans bool
	// KillGrace is how long orphans get between SIGTERM and SIGKILL.
	KillGrace time.Duration
	// Proc is where /proc is read for the re-check before each signal.
	Proc nvml.ProcFS

	// Pending are the GPUs released once their containers are gone.
	Pending []*PendingGPU
	// Orphans are the processes NVML lists that belong to no live container.
	Orphans []*Orphan

	settled bool
}

// PendingGPU is a GPU or MIG slice that is released once every record in
// Waiting is confirmed gone (outcome removed or gone).
type PendingGPU struct {
	UUID    string
	Waiting []*Record
	// Killable is true when orphans on this GPU may be signalled once it is
	// released: NVML listed its processes, and every claim being released
	// on it was enforced by the engine (a DeviceRequest, or
	// NVIDIA_VISIBLE_DEVICES under the nvidia runtime). Labels are written
	// by the container's owner and never make a GPU killable.
	Killable bool

	released bool
}

// Orphan is a process NVML lists that belongs to no live container, with
// what the kill step needs to recognise it again.
type Orphan struct {
	PID int
	// Identity is /proc's answer when the release stage mapped it; the
	// kill step refuses the signal if a fresh reading differs.
	Identity nvml.Identity
	// FormerContainer is the Docker container its cgroup names, confirmed
	// gone by the engine ("" for a host process).
	FormerContainer string
	// GPUs are every GPU and MIG slice NVML lists it on.
	GPUs []string

	// Signals are the signals delivered to it, in order.
	Signals []string
	// Exited is true once its exit is confirmed.
	Exited bool
	// Left says why it is still running (one of the Health* statuses but
	// cleaned), and Why in words.
	Left, Why string
}

// confirmedGone reports whether the record's container is gone (or, in a
// plan, would be): the only condition for its GPUs to count as released.
func confirmedGone(env *Env, rec *Record) bool {
	if rec.Exempt {
		return false
	}
	switch rec.Outcome.Status {
	case OutcomeRemoved, OutcomeGone:
		return true
	case OutcomePlanned:
		return env.Planning()
	}
	return false
}

// GPUReleaseEvent is the gpu.release line of one GPU of a container that is
// gone (DS01's details: container, gpu_uuid, reason).
func GPUReleaseEvent(at time.Time, source, user, container, uuid, reason string) events.Event {
	return events.Event{
		Time:   at,
		Type:   events.GPURelease,
		User:   user,
		Source: source,
		Details: []events.Field{
			events.F("container", container),
			events.F("gpu_uuid", uuid),
			events.F("reason", reason),
		},
	}
}

// SettleReleases is the engine step that turns the release stage's plan
// into facts once the removals are done; the remove stage calls it after
// its last removal. A GPU is released only when its container is gone:
//
//   - for each record whose container was removed (or was already gone) it
//     emits one gpu.release event per GPU; every other record keeps its
//     GPUs, and the rows the stage marked released go back to in_use;
//   - a GPU waiting on removals is reported released only when every one of
//     them is confirmed;
//   - then, with kill_orphans, the orphans running only on such GPUs are
//     signalled (SIGTERM, SIGKILL after the grace) and one gpu.health_check
//     per GPU says whether any orphan is left, and why.
//
// A pipeline without a removal never calls it: nothing is released and
// nothing signalled. In plan mode nothing is emitted or signalled; a
// planned removal counts as confirmed for the report. It runs once per
// batch.
func SettleReleases(ctx context.Context, env *Env, b *Batch) {
	plan := b.Release
	if plan != nil {
		if plan.settled {
			return
		}
		plan.settled = true
	}
	rows := make(map[string]*GPUReport, len(b.GPUs))
	for i := range b.GPUs {
		rows[strings.ToLower(b.GPUs[i].UUID)] = &b.GPUs[i]
	}

	kept := map[string]bool{} // GPUs whose container stays
	for _, rec := range b.Records {
		if len(rec.ReleaseGPUs) == 0 {
			continue
		}
		if !confirmedGone(env, rec) {
			for _, uuid := range rec.ReleaseGPUs {
				kept[strings.ToLower(uuid)] = true
			}
			if !env.Planning() {
				rec.ReleaseGPUs = nil
			}
			continue
		}
		if env.Planning() {
			continue
		}
		for _, uuid := range rec.ReleaseGPUs {
			b.Emit(GPUReleaseEvent(time.Now(), env.Source(), rec.Owner.Name, rec.Container.Name, uuid, string(rec.Verdict.Reason)))
		}
	}
	for uuid := range kept {
		if g := rows[uuid]; g != nil && g.Status == GPUReleased {
			g.Status = GPUInUse
		}
	}
	if plan == nil {
		return
	}

	orphansOn := map[string][]*Orphan{}
	for _, o := range plan.Orphans {
		for _, uuid := range o.GPUs {
			orphansOn[strings.ToLower(uuid)] = append(orphansOn[strings.ToLower(uuid)], o)
		}
	}
	pending := make(map[string]*PendingGPU, len(plan.Pending))
	for _, p := range plan.Pending {
		key := strings.ToLower(p.UUID)
		pending[key] = p
		p.released = !kept[key]
		for _, rec := range p.Waiting {
			p.released = p.released && confirmedGone(env, rec)
		}
		if g := rows[key]; g != nil && p.released && len(orphansOn[key]) == 0 {
			g.Status = GPUReleased
		}
	}
	if !plan.KillOrphans {
		return
	}
	settleKills(ctx, env, b, plan, pending, orphansOn, rows)
}

// settleKills signals the orphans whose every GPU was released this run
// and records what became of them.
func settleKills(ctx context.Context, env *Env, b *Batch, plan *ReleasePlan, pending map[string]*PendingGPU,
	orphansOn map[string][]*Orphan, rows map[string]*GPUReport) {
	log := releaseLog(env)
	eligible := func(uuid string) bool {
		p := pending[strings.ToLower(uuid)]
		return p != nil && p.released && p.Killable
	}
	var targets []*Orphan
	considered := map[*Orphan]bool{}
	for _, o := range plan.Orphans {
		var on, off []string
		for _, uuid := range o.GPUs {
			if eligible(uuid) {
				on = append(on, uuid)
			} else {
				off = append(off, uuid)
			}
		}
		if len(on) == 0 {
			continue
		}
		considered[o] = true
		if len(off) > 0 {
			o.Left, o.Why = HealthShared, "it also runs on "+strings.Join(off, ", ")+", which this run did not release"
			log.WithField("pid", o.PID).WithField("gpu_uuid", strings.Join(on, ",")).Info("orphaned GPU process not signalled: " + o.Why)
			continue
		}
		targets = append(targets, o)
	}
	if len(considered) == 0 {
		return
	}
	if env.Planning() {
		for _, o := range targets {
			log.WithField("pid", o.PID).WithField("gpu_uuid", strings.Join(o.GPUs, ",")).Info("plan: would kill orphaned GPU process")
		}
		return
	}
	k := &killer{proc: plan.Proc, grace: plan.KillGrace, log: log, live: livePIDs(b)}
	k.run(ctx, targets)

	now := time.Now()
	for _, p := range plan.Pending {
		key := strings.ToLower(p.UUID)
		var here []*Orphan
		for _, o := range orphansOn[key] {
			if considered[o] {
				here = append(here, o)
			}
		}
		if len(here) == 0 || !eligible(p.UUID) {
			continue
		}
		g := rows[key]
		killed, status := 0, HealthCleaned
		var left []string
		var why []string
		for _, o := range here {
			if o.Exited {
				if len(o.Signals) > 0 {
					killed++
				}
				if g != nil {
					markKilled(g, o)
				}
				continue
			}
			left = append(left, fmt.Sprint(o.PID))
			why = append(why, fmt.Sprintf("%d: %s", o.PID, o.Why))
			status = worse(status, o.Left)
		}
		if g != nil && len(left) == 0 {
			g.Status = GPUReleased
		}
		details := []events.Field{
			events.F("gpu_uuid", p.UUID),
			events.F("status", status),
			events.F("killed_processes", killed),
		}
		if len(left) > 0 {
			details = append(details,
				events.F("left_processes", len(left)),
				events.F("left_pids", strings.Join(left, ",")),
				events.F("left_reason", strings.Join(why, "; ")))
		}
		b.Emit(events.Event{Time: now, Type: events.GPUHealthCheck, Source: env.Source(), Details: details})
	}
}

// healthRank orders what can be left on a GPU, worst first.
var healthRank = []string{HealthKillFailed, HealthSurvived, HealthDeadline, HealthShared, HealthCleaned}

func worse(a, b string) string {
	for _, s := range healthRank {
		if a == s || b == s {
			return s
		}
	}
	return a
}

// markKilled marks o on a report row as killed (or gone by itself).
func markKilled(g *GPUReport, o *Orphan) {
	for i := range g.Processes {
		if g.Processes[i].PID == o.PID && len(o.Signals) > 0 {
			g.Processes[i].Killed = true
		}
	}
}

// livePIDs are the main PIDs of the batch's live containers: never signalled.
func livePIDs(b *Batch) map[int]bool {
	out := map[int]bool{}
	for _, rec := range b.Records {
		if rec.Container.State.Live() && rec.Container.PID > 0 {
			out[rec.Container.PID] = true
		}
	}
	return out
}

func releaseLog(env *Env) logrus.FieldLogger {
	if env.Log != nil {
		return env.Log.WithField("step", "gpu-release")
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
