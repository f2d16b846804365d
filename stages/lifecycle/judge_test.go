package lifecycle

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/state"
	"github.com/ds01/ds01-pipe/policy"
)

// The fixture is DS01's resource-limits.yaml (testdata/lifecycle): sam is
// a student (idle 0.5 h, runtime 24 h, CPU threshold 2 %, window 3, grace
// 30 min), rita a researcher (idle 1 h, runtime 48 h, window 4), ivan has
// no idle timeout and no runtime limit, exi is exempt from idle stops,
// rex from max runtime.
func model(t *testing.T) *policy.Model {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "lifecycle")
	m, err := policy.Load(policy.Files{
		LimitsFile:     filepath.Join(dir, "resource-limits.yaml"),
		GroupsDir:      filepath.Join(dir, "groups"),
		OverridesFile:  filepath.Join(dir, "user-overrides.yaml"),
		ExemptionsFile: filepath.Join(dir, "lifecycle-exemptions.yaml"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var start = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// life drives one container run through several lifecycle runs, carrying
// the state entry from run to run as the store does.
type life struct {
	t      *testing.T
	m      *policy.Model
	owner  string
	ctype  string
	start  time.Time
	entry  *state.Entry
	cpuNs  uint64
	rx     uint64
	demand demand
}

func newLife(t *testing.T, owner, ctype string) *life {
	return &life{t: t, m: model(t), owner: owner, ctype: ctype, start: start}
}

// obs is what one run observes: GPU utilisation (-1: not reported), the
// CPU percent and the bytes received since the previous run.
type obs struct {
	gpu float64
	cpu float64
	rx  uint64
}

var (
	idle   = obs{gpu: 0, cpu: 0.1}
	busy   = obs{gpu: 60, cpu: 0.1}
	nogpu  = obs{gpu: -1, cpu: 0.1}
	cpuHot = obs{gpu: 0, cpu: 4}
)

// at runs the lifecycle at start+d.
func (l *life) at(d time.Duration, o obs) (*pipeline.Record, judgement) {
	l.t.Helper()
	now := l.start.Add(d)
	rec := &pipeline.Record{
		Container: pipeline.Container{ID: "c0ffee", Name: "job", State: pipeline.StateRunning, StartedAt: l.start},
		Owner:     pipeline.Owner{Name: l.owner, Source: pipeline.OwnerFromUser},
		Type:      l.ctype,
		GPUs:      []pipeline.GPUClaim{{UUID: "GPU-a", Source: pipeline.ClaimDeviceRequest}},
	}
	// The counters advance by what the observation says over the real
	// time since the previous run.
	if l.entry != nil && l.entry.Sample != nil {
		elapsed := now.Sub(l.entry.Sample.Read)
		l.cpuNs += uint64(o.cpu / 100 * float64(elapsed.Nanoseconds()))
	}
	l.rx += o.rx
	gpu := pipeline.Signal{Name: pipeline.SignalGPU, Known: o.gpu >= 0, Value: max(o.gpu, 0), Source: pipeline.SourceNVMLDevice}
	if o.gpu < 0 {
		gpu.Missing = "not reported"
	}
	rec.Lifecycle = &pipeline.Lifecycle{GPU: gpu, Stats: &pipeline.StatsSample{Read: now, CPUTotalNs: l.cpuNs, RxBytes: l.rx}}
	j := judge(rec, inputs{Now: now, Prev: l.entry, Policy: l.m, Demand: l.demand})
	e := j.Entry
	l.entry = &e
	return rec, j
}

func kinds(rec *pipeline.Record) []pipeline.NoticeKind {
	var out []pipeline.NoticeKind
	for _, n := range rec.Lifecycle.Notices {
		out = append(out, n.Kind)
	}
	return out
}

func want(t *testing.T, when string, rec *pipeline.Record, j judgement, action pipeline.Action, reason pipeline.Reason, notices ...pipeline.NoticeKind) {
	t.Helper()
	if j.Verdict.Action != action || j.Verdict.Reason != reason {
		t.Errorf("%s: verdict %s/%s (%s), want %s/%s", when, j.Verdict.Action, j.Verdict.Reason, j.Verdict.Detail, action, reason)
	}
	if got := kinds(rec); !slices.Equal(got, notices) {
		t.Errorf("%s: notices %v, want %v", when, got, notices)
	}
}

const m15 = 15 * time.Minute

// Reference 11 #21: started 10 minutes ago, grace 30 minutes.
func TestGracePeriod(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	rec, j := l.at(10*time.Minute, idle)
	want(t, "10m", rec, j, pipeline.ActionKeep, pipeline.ReasonInGracePeriod)
	if !rec.Lifecycle.HasRuntime || rec.Lifecycle.Runtime != 10*time.Minute {
		t.Errorf("runtime = %v", rec.Lifecycle.Runtime)
	}
}

// #22, #23, #24: GPU 50 %, GPU exactly at the threshold (strict <), CPU
// over the threshold: active, and an active run resets streak and flags.
func TestActiveSignals(t *testing.T) {
	for name, o := range map[string]obs{"gpu 50": {gpu: 50}, "gpu = threshold": {gpu: 5}, "cpu 4%": cpuHot, "network": {gpu: 0, rx: 2 << 20}} {
		t.Run(name, func(t *testing.T) {
			l := newLife(t, "sam", "atomic")
			l.at(45*time.Minute, idle)
			l.at(60*time.Minute, idle)
			if l.entry.IdleStreak != 1 {
				t.Fatalf("streak = %d, want 1", l.entry.IdleStreak)
			}
			rec, j := l.at(75*time.Minute, o)
			want(t, "active run", rec, j, pipeline.ActionKeep, pipeline.ReasonActive)
			if l.entry.IdleStreak != 0 || !l.entry.LastActivity.Equal(start.Add(75*time.Minute)) {
				t.Errorf("after activity: streak %d, last activity %s", l.entry.IdleStreak, l.entry.LastActivity)
			}
		})
	}
}

// #25 fixed: the first observation has no previous stats sample, so no
// CPU or network evidence: the streak does not move. Missing evidence
// (GPU not reported, #34 fixed) never advances it either.
func TestMissingEvidenceNeverAdvancesTheStreak(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	rec, j := l.at(45*time.Minute, idle)
	want(t, "first", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleStreak)
	if l.entry.IdleStreak != 0 {
		t.Errorf("first observation advanced the streak to %d", l.entry.IdleStreak)
	}
	for i := 1; i <= 10; i++ {
		rec, j = l.at(45*time.Minute+time.Duration(i)*m15, nogpu)
		want(t, "no gpu evidence", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleStreak)
	}
	if l.entry.IdleStreak != 0 {
		t.Errorf("streak %d after runs without GPU evidence", l.entry.IdleStreak)
	}
	if !strings.Contains(j.Verdict.Detail, "no evidence this run") {
		t.Errorf("detail %q does not say why", j.Verdict.Detail)
	}
}

// #26 fixed: idle for three runs (the window), warnings at 80 % and 95 %
// of the 30 min timeout, and the stop only at a later run, after the full
// notice period (6 min) since the first warning: never in the same run.
func TestIdleWarnThenStop(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	l.at(30*time.Minute, idle) // first sample; grace ends at 30m
	var rec *pipeline.Record
	var j judgement
	for i := 1; i <= 2; i++ {
		rec, j = l.at(30*time.Minute+time.Duration(i)*m15, idle)
		want(t, "streak", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleStreak)
	}
	rec, j = l.at(75*time.Minute, idle) // streak 3/3, idle 45m >= 30m
	want(t, "75m", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleWarning, pipeline.NoticeIdleWarning, pipeline.NoticeIdleFinalWarning)
	if rec.Lifecycle.Idle != 45*time.Minute {
		t.Errorf("idle = %v, want 45m from the end of the grace period", rec.Lifecycle.Idle)
	}
	rec, j = l.at(90*time.Minute, idle)
	want(t, "90m", rec, j, pipeline.ActionStop, pipeline.ReasonIdleTimeout)
	if rec.Lifecycle.StopFor != pipeline.ReasonIdleTimeout || rec.Lifecycle.StopGrace != 60*time.Second {
		// #36: atomic is DS01's own type, stopped with policies.sigterm_grace_s
		// (docker stop -t 60), never with container_types.unknown's 30 s.
		t.Errorf("stop for %q, grace %v; want idle_timeout with atomic's 60s (policies.sigterm_grace_s)", rec.Lifecycle.StopFor, rec.Lifecycle.StopGrace)
	}
	if j.Verdict.Clock != pipeline.ClockLastActivity || j.Verdict.Limit != 30*time.Minute {
		t.Errorf("verdict %+v", j.Verdict)
	}
}

// A missed timer tick: the first run that sees the container idle past
// its timeout warns, and stops nothing.
func TestMissedTicksNeverStopWithoutNotice(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	l.entry = &state.Entry{ContainerID: "c0ffee", StartedAt: start, FirstSeen: start.Add(time.Hour), LastActivity: start.Add(time.Hour),
		IdleStreak: 5, Sample: &state.Sample{Read: start.Add(time.Hour)}}
	rec, j := l.at(9*time.Hour, idle)
	want(t, "after 8h without runs", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleWarning, pipeline.NoticeIdleWarning, pipeline.NoticeIdleFinalWarning)
	rec, j = l.at(9*time.Hour+time.Minute, idle)
	want(t, "a minute later", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleWarning)
	rec, j = l.at(9*time.Hour+6*time.Minute, idle)
	want(t, "after the notice period", rec, j, pipeline.ActionStop, pipeline.ReasonIdleTimeout)
}

// #35 fixed: a container active for 20 hours, then idle: idle time counts
// from its last activity, and the owner gets the warnings first.
func TestLongActiveThenIdle(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	for h := time.Hour; h <= 20*time.Hour; h += time.Hour {
		l.at(h, busy)
	}
	var rec *pipeline.Record
	var j judgement
	for i := 1; i <= 3; i++ {
		rec, j = l.at(20*time.Hour+time.Duration(i)*m15, idle)
	}
	want(t, "third idle run", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleWarning, pipeline.NoticeIdleWarning, pipeline.NoticeIdleFinalWarning)
	if rec.Lifecycle.Idle != 45*time.Minute {
		t.Errorf("idle = %v, want 45m since the last active run", rec.Lifecycle.Idle)
	}
	rec, j = l.at(21*time.Hour, idle)
	want(t, "next run", rec, j, pipeline.ActionStop, pipeline.ReasonIdleTimeout)
}

// Warnings are given once: later runs in the warning zone repeat none, and
// a new idle period after activity gets its own.
func TestWarningsOncePerIdlePeriod(t *testing.T) {
	l := newLife(t, "rita", "atomic") // idle 1 h, window 4
	l.at(30*time.Minute, idle)
	n := 0
	for i := 1; i <= 5; i++ {
		rec, _ := l.at(30*time.Minute+time.Duration(i)*m15, idle)
		n += len(rec.Lifecycle.Notices)
	}
	// The window (4 runs) ends at 90m with 60 idle minutes: both warnings
	// in that run, none again at 105m.
	if n != 2 {
		t.Errorf("%d notices over five idle runs, want 2", n)
	}
	l.at(3*time.Hour, busy)
	if !l.entry.IdleWarned.IsZero() {
		t.Error("activity did not clear the idle warnings")
	}
}

// #29: an owner exempt from idle stops gets one FYI notice and is never
// stopped.
func TestIdleExemptFYI(t *testing.T) {
	l := newLife(t, "exi", "atomic")
	total := 0
	var rec *pipeline.Record
	var j judgement
	for i := 0; i <= 20; i++ {
		rec, j = l.at(30*time.Minute+time.Duration(i)*m15, idle)
		if j.Verdict.Action == pipeline.ActionStop {
			t.Fatalf("exempt owner stopped: %+v", j.Verdict)
		}
		total += len(rec.Lifecycle.Notices)
	}
	if total != 1 || l.entry.IdleExemptNoticed.IsZero() {
		t.Errorf("%d notices, want one FYI", total)
	}
	if j.Verdict.Reason != pipeline.ReasonExempt || !strings.Contains(j.Verdict.Detail, "Permanent exemption: interactive demo") {
		t.Errorf("verdict %+v", j.Verdict)
	}
}

// #30: idle_timeout_h null for the owner: never idle-stopped. #32 fixed:
// the api type's null idle timeout is no limit (DS01 used 0.25 h). #20:
// devcontainers are exempt from idle only.
func TestNoIdleLimit(t *testing.T) {
	for _, tc := range []struct{ owner, ctype string }{{"ivan", "atomic"}, {"sam", "api"}, {"sam", "devcontainer"}} {
		l := newLife(t, tc.owner, tc.ctype)
		for i := 0; i <= 30; i++ {
			_, j := l.at(30*time.Minute+time.Duration(i)*m15, idle)
			if j.Verdict.Action == pipeline.ActionStop || j.Verdict.Reason == pipeline.ReasonIdleWarning {
				t.Fatalf("%s/%s: %+v", tc.owner, tc.ctype, j.Verdict)
			}
		}
	}
}

// #31: high demand halves the docker type's 30 min timeout to 15 min,
// and still the owner is warned before the stop.
func TestHighDemandShortensButWarns(t *testing.T) {
	l := newLife(t, "sam", "docker")
	l.at(30*time.Minute, idle)
	l.at(45*time.Minute, idle)
	l.at(60*time.Minute, idle) // streak 2
	l.demand = demand{On: true, Reduction: 0.5, Allocated: 8, Total: 10, Ratio: 0.8, Threshold: 0.8}
	rec, j := l.at(65*time.Minute, idle) // streak 3, idle 35m: past 15m at once
	want(t, "high demand", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleWarning, pipeline.NoticeIdleWarning, pipeline.NoticeIdleFinalWarning)
	if j.Verdict.Limit != 15*time.Minute {
		t.Errorf("limit = %v, want 15m", j.Verdict.Limit)
	}
	if !strings.Contains(rec.Lifecycle.Notices[0].Body, "HIGH DEMAND") {
		t.Errorf("warning does not mention high demand: %q", rec.Lifecycle.Notices[0].Body)
	}
	rec, j = l.at(80*time.Minute, idle)
	want(t, "next run", rec, j, pipeline.ActionStop, pipeline.ReasonIdleTimeout)
}

// #36-#38: runtime warnings at 75 % (18 h) and 90 % (21.6 h) of 24 h, the
// stop at 24 h: here with hourly runs, as DS01's cron.
func TestRuntimeWarnThenStop(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	got := map[time.Duration][]pipeline.NoticeKind{}
	var rec *pipeline.Record
	var j judgement
	for h := time.Hour; h <= 24*time.Hour; h += time.Hour {
		rec, j = l.at(h, busy)
		if n := kinds(rec); len(n) > 0 {
			got[h] = n
		}
		if h < 24*time.Hour && j.Verdict.Action == pipeline.ActionStop {
			t.Fatalf("stopped at %v", h)
		}
	}
	if len(got) != 2 || got[18*time.Hour][0] != pipeline.NoticeRuntimeWarning || got[22*time.Hour][0] != pipeline.NoticeRuntimeFinalWarning {
		t.Errorf("notices %v, want the warning at 18h and the final one at 22h", got)
	}
	want(t, "24h", rec, j, pipeline.ActionStop, pipeline.ReasonRuntimeExceeded)
	if rec.Lifecycle.StopFor != pipeline.ReasonRuntimeExceeded || j.Verdict.Clock != pipeline.ClockStarted {
		t.Errorf("stop for %q, clock %q", rec.Lifecycle.StopFor, j.Verdict.Clock)
	}
}

// #36 fixed: a container first seen past its runtime limit is warned, and
// stopped only after the full notice period (25 % of 24 h = 6 h).
func TestRuntimeFirstSeenLate(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	rec, j := l.at(25*time.Hour, busy)
	want(t, "25h", rec, j, pipeline.ActionKeep, pipeline.ReasonRuntimeWarning, pipeline.NoticeRuntimeWarning, pipeline.NoticeRuntimeFinalWarning)
	_, j = l.at(30*time.Hour, busy)
	if j.Verdict.Action == pipeline.ActionStop {
		t.Fatal("stopped before the notice period")
	}
	_, j = l.at(31*time.Hour, busy)
	if j.Verdict.Action != pipeline.ActionStop {
		t.Fatalf("not stopped after the notice period: %+v", j.Verdict)
	}
}

// #39: a devcontainer at 100 h of its 168 h: nothing. #41 fixed: the api
// type has a 24 h runtime limit. #40: an exempt owner gets one
// runtime_exempt event per container run and is never stopped.
func TestRuntimeLimits(t *testing.T) {
	l := newLife(t, "sam", "devcontainer")
	rec, j := l.at(100*time.Hour, busy)
	if j.Verdict.Action != pipeline.ActionKeep || len(rec.Lifecycle.Notices) != 0 {
		t.Errorf("devcontainer at 100h: %+v, %v", j.Verdict, kinds(rec))
	}
	if _, j = l.at(127*time.Hour, busy); j.Verdict.Reason != pipeline.ReasonRuntimeWarning {
		t.Errorf("devcontainer at 127h: %+v", j.Verdict)
	}

	l = newLife(t, "sam", "api")
	if rec, _ = l.at(19*time.Hour, busy); !slices.Equal(kinds(rec), []pipeline.NoticeKind{pipeline.NoticeRuntimeWarning}) {
		t.Errorf("api at 19h: notices %v, want the runtime warning", kinds(rec))
	}

	l = newLife(t, "rex", "atomic")
	events := 0
	for h := 400 * time.Hour; h <= 500*time.Hour; h += 25 * time.Hour {
		_, j = l.at(h, busy)
		if j.Verdict.Action == pipeline.ActionStop {
			t.Fatal("exempt owner stopped")
		}
		if j.RuntimeExempt != "" {
			events++
		}
	}
	if events != 1 {
		t.Errorf("%d runtime_exempt events over five runs, want 1", events)
	}
}

// #43: a restart resets the runtime clock; the state key (ID + StartedAt)
// changes, so the new run starts fresh (B-22 fixed: no inherited flags).
func TestRestartStartsFresh(t *testing.T) {
	l := newLife(t, "sam", "compose")
	l.at(70*time.Hour, busy)
	if l.entry.RuntimeWarned.IsZero() {
		t.Fatal("no runtime warning at 70h of 72h")
	}
	l.start = start.Add(70 * time.Hour)
	l.entry = nil // the store has no entry under the new StartedAt
	rec, j := l.at(time.Hour, busy)
	if rec.Lifecycle.Runtime != time.Hour || j.Verdict.Action != pipeline.ActionKeep || len(rec.Lifecycle.Notices) != 0 {
		t.Errorf("after the restart: runtime %v, %+v, %v", rec.Lifecycle.Runtime, j.Verdict, kinds(rec))
	}
}

// A CPU counter that went backwards is no evidence: the run starts fresh
// from the new sample.
func TestCounterBackwards(t *testing.T) {
	lc := &pipeline.Lifecycle{GPU: pipeline.Signal{Known: true}, Stats: &pipeline.StatsSample{Read: start.Add(time.Hour), CPUTotalNs: 5, RxBytes: 1}}
	sigs := signals(lc, model(t).IdlePolicy("sam"), &state.Sample{Read: start, CPUTotalNs: 50, RxBytes: 10})
	if sigs[1].Known || sigs[2].Known || !strings.Contains(sigs[1].Missing, "backwards") {
		t.Errorf("signals %+v", sigs)
	}
	// Rates are over Docker's sample times, whatever the policy clock.
	lc.Stats = &pipeline.StatsSample{Read: start.Add(10 * time.Second), CPUTotalNs: 5e9 + 50, RxBytes: 10 + 3<<20}
	sigs = signals(lc, model(t).IdlePolicy("sam"), &state.Sample{Read: start, CPUTotalNs: 50, RxBytes: 10})
	if !sigs[1].Known || sigs[1].Value != 50 || !sigs[1].Active || sigs[2].Value != 3<<20 || !sigs[2].Active {
		t.Errorf("signals %+v", sigs)
	}
}

// An expired exemption (expires_on in the past) is no exemption.
func TestExpiredExemption(t *testing.T) {
	l := newLife(t, "old", "atomic")
	l.at(30*time.Minute, idle)
	var j judgement
	for i := 1; i <= 5; i++ {
		_, j = l.at(30*time.Minute+time.Duration(i)*m15, idle)
	}
	if j.Verdict.Action != pipeline.ActionStop {
		t.Errorf("expired exemption still protects: %+v", j.Verdict)
	}
}

// A container name with control characters cannot drive the terminals the
// notice goes to.
func TestNoticeEscapesNames(t *testing.T) {
	rec := &pipeline.Record{Container: pipeline.Container{Name: "job\x1b[2J\nline"}}
	n := noticeFor(pipeline.NoticeIdleWarning, rec, &pipeline.Lifecycle{Idle: time.Hour}, policy.Limit{Duration: time.Hour}, policy.Limit{}, demand{})
	if strings.ContainsAny(n.Body, "\x1b\n") || !strings.Contains(n.Body, `job\x1b[2J\nline`) {
		t.Errorf("body %q", n.Body)
	}
}

// Both clocks due: the idle stop wins (it removes), and the runtime stop
// is kept at hand for when the keep-alive file holds off the idle one.
func TestBothStopsDue(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	for h := time.Hour; h <= 23*time.Hour; h += time.Hour {
		l.at(h, busy)
	}
	for i := 1; i <= 3; i++ {
		l.at(23*time.Hour+time.Duration(i)*m15, idle)
	}
	rec, j := l.at(24*time.Hour, idle)
	want(t, "24h", rec, j, pipeline.ActionStop, pipeline.ReasonIdleTimeout)
	if j.RuntimeStop == nil || j.RuntimeStop.Reason != pipeline.ReasonRuntimeExceeded {
		t.Errorf("runtime stop at hand: %+v", j.RuntimeStop)
	}
}

// One run with the clock set forward (run --now ... --allow-clock-override)
// must not switch idle detection off until the wall clock catches up: the
// instants it stored count as the next run's now, and the container is
// warned and stopped on the usual schedule from there.
func TestClockSetForwardOnce(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	l.at(30*time.Minute, idle)
	// What a run at start+12h left (its last activity and notices).
	ahead := start.Add(12 * time.Hour)
	l.entry.LastActivity, l.entry.RuntimeWarned = ahead, ahead
	var stopped time.Duration
	for d := 45 * time.Minute; d <= 3*time.Hour && stopped == 0; d += m15 {
		rec, j := l.at(d, idle)
		if l.entry.LastActivity.After(start.Add(d)) || l.entry.RuntimeWarned.After(start.Add(d)) {
			t.Fatalf("at %v: instants stay in the future: %+v", d, l.entry)
		}
		if j.Verdict.Action == pipeline.ActionStop {
			if rec.Lifecycle.StopFor != pipeline.ReasonIdleTimeout {
				t.Fatalf("at %v: stop for %q", d, rec.Lifecycle.StopFor)
			}
			stopped = d
		}
	}
	if stopped == 0 || stopped > 2*time.Hour {
		t.Errorf("stopped at %v; want the idle stop within the usual schedule (by 2h), not after the clock set forward", stopped)
	}
}

// An idle stop in the run that reaches the runtime warning point sends the
// owner the stop notice alone, not "stopped in about 6h" beside it; the
// runtime warning stays due (given at the next run if the stop is held off).
func TestIdleStopWithoutRuntimeWarning(t *testing.T) {
	l := newLife(t, "sam", "atomic")
	for d := 30 * time.Minute; d <= 17*time.Hour; d += time.Hour {
		l.at(d, busy)
	}
	for _, d := range []time.Duration{17*time.Hour + 15*time.Minute, 17*time.Hour + 30*time.Minute} {
		rec, j := l.at(d, idle)
		want(t, "streak", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleStreak)
	}
	rec, j := l.at(17*time.Hour+45*time.Minute, idle) // streak 3/3, idle 45m of 30m
	want(t, "17h45", rec, j, pipeline.ActionKeep, pipeline.ReasonIdleWarning, pipeline.NoticeIdleWarning, pipeline.NoticeIdleFinalWarning)
	rec, j = l.at(18*time.Hour, idle) // idle stop; runtime 18h = 75 % of 24h
	want(t, "18h", rec, j, pipeline.ActionStop, pipeline.ReasonIdleTimeout)
	if !l.entry.RuntimeWarned.IsZero() || !l.entry.RuntimeFinalWarned.IsZero() {
		t.Errorf("runtime warnings recorded as given (%v, %v) though not sent", l.entry.RuntimeWarned, l.entry.RuntimeFinalWarned)
	}
}
