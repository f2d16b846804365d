package lifecycle

import (
	"fmt"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/state"
	"github.com/ds01/ds01-pipe/policy"
)

// Warning points, in percent of the limit (reference 6.5, 7).
const (
	idleWarnPct     = 80
	idleFinalPct    = 95
	runtimeWarnPct  = 75
	runtimeFinalPct = 90
)

// Policy is what the decisions need of the DS01 limits model; *policy.Model
// satisfies it.
type Policy interface {
	IdlePolicy(user string) policy.IdlePolicy
	IdleTimeout(user, ctype string) policy.Limit
	MaxRuntime(user, ctype string) policy.Limit
	SigtermGrace(ctype string) policy.Limit
	GracePeriod() policy.Limit
	Exemption(user, key string, now time.Time) (bool, string)
}

// demand is the run's high-demand state.
type demand struct {
	On        bool
	Reduction float64
	Allocated int
	Total     int
	Ratio     float64
	Threshold float64
}

// judgement is the decision for one container run: the verdict, its
// lifecycle facts, the state to remember, and whether a
// maintenance.runtime_exempt event is due (once per container run).
type judgement struct {
	Verdict       pipeline.Verdict
	Entry         state.Entry
	RuntimeExempt string // the exemption's reason, when its event is due
	// StopDue is set when an idle stop passed every rule but the
	// keep-alive file, which the stage checks next (it needs Docker).
	IdleStopDue bool
	// RuntimeStop is the runtime clock's stop verdict when one is due
	// as well: it stands when the keep-alive file keeps the container
	// from the idle stop.
	RuntimeStop *pipeline.Verdict
}

// clockRule is one clock with warning points: idle or runtime.
type clockRule struct {
	warnPct, finalPct int
	warned, final     *time.Time
	warn, finalKind   pipeline.NoticeKind
}

// step applies the notice rules to one clock: a warning at the warning
// point and a final warning at the final point, each once; a stop only
// when the limit is reached AND the final warning was given at an earlier
// run AND the first warning at least the full notice period (the limit
// minus the warning point) ago. So a stop is never the first notice, not
// after missed runs, not when high demand shortens the limit.
func (c clockRule) step(now time.Time, elapsed, limit time.Duration) (notices []pipeline.NoticeKind, stop bool, stopAt time.Time) {
	warnAt := limit * time.Duration(c.warnPct) / 100
	finalAt := limit * time.Duration(c.finalPct) / 100
	if elapsed >= warnAt && c.warned.IsZero() {
		*c.warned = now
		notices = append(notices, c.warn)
	}
	if elapsed >= finalAt && c.final.IsZero() {
		*c.final = now
		notices = append(notices, c.finalKind)
	}
	if elapsed < limit {
		return notices, false, time.Time{}
	}
	notice := limit - warnAt
	stopAt = c.warned.Add(notice)
	if c.final.Before(now) && !now.Before(stopAt) {
		return notices, true, stopAt
	}
	if !stopAt.After(*c.final) {
		stopAt = c.final.Add(time.Second) // the next run after the final warning
	}
	return notices, false, stopAt
}

// inputs are the facts judge needs besides the record.
type inputs struct {
	Now    time.Time
	Prev   *state.Entry // nil: first time this container run is seen
	Policy Policy
	Demand demand
}

// judge decides one running GPU container. It is pure: everything it
// needs is in rec and in; the stage does the I/O.
func judge(rec *pipeline.Record, in inputs) judgement {
	now := in.Now
	c := &rec.Container
	lc := rec.Lifecycle
	if lc == nil {
		lc = &pipeline.Lifecycle{}
		rec.Lifecycle = lc
	}
	owner := rec.Owner.Name
	if owner == "" {
		owner = pipeline.UnknownOwner
	}

	e := state.Entry{ContainerID: c.ID, StartedAt: c.StartedAt, FirstSeen: now, LastActivity: now}
	if in.Prev != nil {
		e = *in.Prev
		notAfter(now, &e.FirstSeen, &e.LastActivity, &e.IdleWarned, &e.IdleFinalWarned, &e.IdleExemptNoticed,
			&e.RuntimeWarned, &e.RuntimeFinalWarned, &e.RuntimeExemptAt)
	}
	e.Name, e.LastSeen = c.Name, now

	// Clocks.
	if !c.StartedAt.IsZero() {
		lc.Runtime, lc.HasRuntime = max(now.Sub(c.StartedAt), 0), true
	}
	grace := in.Policy.GracePeriod()
	graceEnd := c.StartedAt
	if !grace.Unlimited && grace.Duration > 0 {
		graceEnd = c.StartedAt.Add(grace.Duration)
	}
	inGrace := lc.HasRuntime && now.Before(graceEnd)

	// Evidence.
	ip := in.Policy.IdlePolicy(owner)
	lc.Signals = signals(lc, ip, e.Sample)
	if lc.Stats != nil {
		e.Sample = &state.Sample{Read: lc.Stats.Read, CPUTotalNs: lc.Stats.CPUTotalNs, RxBytes: lc.Stats.RxBytes}
	}
	active, allKnown, missing := evidence(lc.Signals)
	switch {
	case active:
		e.LastActivity, e.IdleStreak = now, 0
		// A new idle period gets its own notices.
		e.IdleWarned, e.IdleFinalWarned, e.IdleExemptNoticed = time.Time{}, time.Time{}, time.Time{}
	case inGrace:
	case allKnown:
		e.IdleStreak++
	}
	lc.IdleStreak = e.IdleStreak
	lc.HighDemand = in.Demand.On
	idleFrom := e.LastActivity
	if idleFrom.Before(graceEnd) {
		idleFrom = graceEnd // idle time counts from the end of the grace period
	}
	idleApplies := rec.Type != typeDevcontainer
	if idleApplies && !inGrace && !active {
		lc.Idle, lc.HasIdle = max(now.Sub(idleFrom), 0), true
	} else if idleApplies && active {
		lc.HasIdle = true
	}
	window := int(ip.Window.Value)

	j := judgement{}
	var notices []pipeline.NoticeKind

	// Idle.
	var idle outcome
	timeout := in.Policy.IdleTimeout(owner, rec.Type)
	if in.Demand.On && !timeout.Unlimited && timeout.Duration > 0 {
		timeout.Duration = time.Duration(float64(timeout.Duration/time.Second)*in.Demand.Reduction) * time.Second
		timeout.Source += fmt.Sprintf(" x %g (high demand)", in.Demand.Reduction)
	}
	switch {
	case !idleApplies:
		idle = outcome{reason: pipeline.ReasonNotACandidate, detail: "devcontainers are exempt from idle stops"}
	case inGrace:
		idle = outcome{reason: pipeline.ReasonInGracePeriod, detail: fmt.Sprintf("started %s ago; idle checks begin after %s (%s)", human(lc.Runtime), grace, grace.Source)}
	case active:
		idle = outcome{reason: pipeline.ReasonActive, detail: activeDetail(lc.Signals)}
	case timeout.Unlimited:
		idle = outcome{reason: pipeline.ReasonNotACandidate, detail: "no idle timeout (" + timeout.Source + ")"}
		if !allKnown {
			idle.detail += "; no evidence this run: " + missing
		}
	case !allKnown:
		idle = outcome{reason: pipeline.ReasonIdleStreak, detail: fmt.Sprintf("no evidence this run (%s): idle streak stays %d/%d", missing, e.IdleStreak, window)}
	case e.IdleStreak < window:
		idle = outcome{reason: pipeline.ReasonIdleStreak, detail: fmt.Sprintf("idle streak %d/%d", e.IdleStreak, window)}
	default:
		if exempt, why := in.Policy.Exemption(owner, policy.KeyIdleTimeout, now); exempt {
			idle = outcome{reason: pipeline.ReasonExempt, detail: why}
			warnAt := timeout.Duration * idleWarnPct / 100
			if lc.Idle >= warnAt && e.IdleExemptNoticed.IsZero() {
				e.IdleExemptNoticed = now
				notices = append(notices, pipeline.NoticeIdleExempt)
			}
			break
		}
		rule := clockRule{warnPct: idleWarnPct, finalPct: idleFinalPct, warned: &e.IdleWarned, final: &e.IdleFinalWarned,
			warn: pipeline.NoticeIdleWarning, finalKind: pipeline.NoticeIdleFinalWarning}
		n, stop, stopAt := rule.step(now, lc.Idle, timeout.Duration)
		notices = append(notices, n...)
		idle = clockOutcome(lc.Idle, timeout.Duration, stop, stopAt, len(n) > 0, e.IdleWarned, pipeline.ReasonIdleTimeout, pipeline.ReasonIdleWarning, pipeline.ReasonIdleStreak)
		if in.Demand.On {
			idle.detail += fmt.Sprintf("; high demand: %d of %d GPU units allocated", in.Demand.Allocated, in.Demand.Total)
		}
	}
	idle.limit = timeout

	// Runtime.
	var rt outcome
	limit := in.Policy.MaxRuntime(owner, rec.Type)
	switch {
	case !lc.HasRuntime:
		rt = outcome{reason: pipeline.ReasonNotDecided, detail: "no start time"}
	case limit.Unlimited:
		rt = outcome{reason: pipeline.ReasonNotACandidate, detail: "no runtime limit (" + limit.Source + ")"}
	default:
		if exempt, why := in.Policy.Exemption(owner, policy.KeyMaxRuntime, now); exempt {
			rt = outcome{reason: pipeline.ReasonExempt, detail: why}
			if e.RuntimeExemptAt.IsZero() && lc.Runtime >= limit.Duration {
				e.RuntimeExemptAt = now
				j.RuntimeExempt = why
			}
			break
		}
		rule := clockRule{warnPct: runtimeWarnPct, finalPct: runtimeFinalPct, warned: &e.RuntimeWarned, final: &e.RuntimeFinalWarned,
			warn: pipeline.NoticeRuntimeWarning, finalKind: pipeline.NoticeRuntimeFinalWarning}
		rtWarned, rtFinal := e.RuntimeWarned, e.RuntimeFinalWarned
		n, stop, stopAt := rule.step(now, lc.Runtime, limit.Duration)
		if idle.stop && !stop && len(n) > 0 {
			// The container is stopped and removed for idleness in this
			// run: a runtime warning ("stopped in about 6h") beside the
			// stop notice would only mislead. They stay due, so a stop
			// the keep-alive file holds off gives them at the next run.
			n, e.RuntimeWarned, e.RuntimeFinalWarned = nil, rtWarned, rtFinal
		}
		notices = append(notices, n...)
		rt = clockOutcome(lc.Runtime, limit.Duration, stop, stopAt, len(n) > 0, e.RuntimeWarned, pipeline.ReasonRuntimeExceeded, pipeline.ReasonRuntimeWarning, pipeline.ReasonNotACandidate)
	}
	rt.limit = limit

	// One verdict: an idle stop first (DS01's idle job ran before the
	// runtime job each hour), then a runtime stop, then the most pressing
	// keep.
	idleV := verdictOf(idle, pipeline.ClockLastActivity, lc.Idle)
	rtV := verdictOf(rt, pipeline.ClockStarted, lc.Runtime)
	switch {
	case idle.stop:
		j.Verdict = idleV
		j.IdleStopDue = true
		lc.StopFor = pipeline.ReasonIdleTimeout
		if rt.stop {
			j.RuntimeStop = &rtV
		}
	case rt.stop:
		j.Verdict = rtV
		lc.StopFor = pipeline.ReasonRuntimeExceeded
	case rank(rt.reason) > rank(idle.reason):
		j.Verdict = rtV
		j.Verdict.Detail += "; idle: " + idle.detail
	default:
		j.Verdict = idleV
		j.Verdict.Detail += "; runtime: " + rt.detail
	}
	if lc.StopFor != "" {
		lc.StopGrace = in.Policy.SigtermGrace(rec.Type).Duration
	}
	lc.Notices = nil
	for _, k := range notices {
		lc.Notices = append(lc.Notices, noticeFor(k, rec, lc, idle.limit, rt.limit, in.Demand))
	}
	j.Entry = e
	return j
}

// outcome is one clock's result before it becomes a verdict.
type outcome struct {
	reason pipeline.Reason
	detail string
	stop   bool
	limit  policy.Limit
}

func clockOutcome(elapsed, limit time.Duration, stop bool, stopAt time.Time, warnedNow bool, warned time.Time, stopReason, warnReason, quiet pipeline.Reason) outcome {
	switch {
	case stop:
		return outcome{reason: stopReason, stop: true, detail: fmt.Sprintf("%s of %s; owner warned at %s", human(elapsed), human(limit), stamp(warned))}
	case elapsed >= limit:
		return outcome{reason: warnReason, detail: fmt.Sprintf("%s of %s reached; stop deferred until the owner has had the full notice (not before %s)", human(elapsed), human(limit), stamp(stopAt))}
	case warnedNow || !warned.IsZero():
		return outcome{reason: warnReason, detail: fmt.Sprintf("%s of %s; owner warned at %s", human(elapsed), human(limit), stamp(warned))}
	default:
		return outcome{reason: quiet, detail: fmt.Sprintf("%s of %s", human(elapsed), human(limit))}
	}
}

// rank orders keep reasons by how close the container is to a stop.
func rank(r pipeline.Reason) int {
	switch r {
	case pipeline.ReasonIdleWarning, pipeline.ReasonRuntimeWarning:
		return 5
	case pipeline.ReasonExempt:
		return 4
	case pipeline.ReasonIdleStreak:
		return 3
	case pipeline.ReasonInGracePeriod:
		return 2
	case pipeline.ReasonActive:
		return 1
	}
	return 0
}

func verdictOf(o outcome, clock pipeline.Clock, age time.Duration) pipeline.Verdict {
	v := pipeline.Verdict{Action: pipeline.ActionKeep, Reason: o.reason, Detail: o.detail, Rule: o.limit.Source, Clock: clock, Age: age}
	if o.stop {
		v.Action = pipeline.ActionStop
	}
	if !o.limit.Unlimited && o.limit.Source != "" {
		v.Limit, v.HasLimit = o.limit.Duration, true
	}
	return v
}

func human(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%.1fh", d.Hours())
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return d.String()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// notAfter moves each stored instant later than now back to now. Such an
// instant was written by a run whose clock was set forward (run --now
// with --allow-clock-override): left as it was, the last activity would
// stay in the future, idle time would read 0 until the wall clock caught
// up, and an idle container would never be stopped; a notice would count
// as given only from that future instant, holding every stop off as long.
func notAfter(now time.Time, instants ...*time.Time) {
	for _, t := range instants {
		if t.After(now) {
			*t = now
		}
	}
}
