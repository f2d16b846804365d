package decide

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/policy"
)

// now is the run clock of every test: a winter date, so that a host in
// Berlin would be UTC+1 and any local-time slip would show (B-1).
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	second = time.Second
	minute = time.Minute
	hour   = time.Hour
	day    = 24 * time.Hour
)

// load reads a policy fixture under testdata/<dir>: resource-limits.yaml and
// whichever of groups/, user-overrides.yaml and lifecycle-exemptions.yaml it has.
func load(t testing.TB, dir string) *policy.Model {
	t.Helper()
	dir = filepath.Join("testdata", dir)
	files := policy.Files{LimitsFile: filepath.Join(dir, "resource-limits.yaml")}
	if p := filepath.Join(dir, "groups"); exists(p) {
		files.GroupsDir = p
	}
	if p := filepath.Join(dir, "user-overrides.yaml"); exists(p) {
		files.OverridesFile = p
	}
	if p := filepath.Join(dir, "lifecycle-exemptions.yaml"); exists(p) {
		files.ExemptionsFile = p
	}
	m, err := policy.Load(files)
	if err != nil {
		t.Fatalf("loading %s: %v", dir, err)
	}
	return m
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func owner(name string, src pipeline.OwnerSource) pipeline.Owner {
	return pipeline.Owner{Name: name, Source: src}
}

var unknownOwner = owner(pipeline.UnknownOwner, pipeline.OwnerUnknown)

// exited is an exited container of user (found by ds01.user) that stopped
// ago before now, after running for a day.
func exited(user string, ago time.Duration, mods ...func(*pipeline.Record)) *pipeline.Record {
	fin := now.Add(-ago)
	r := &pipeline.Record{
		Container: pipeline.Container{
			ID: "id-" + user, Name: "c-" + user, State: pipeline.StateExited,
			Created: fin.Add(-2 * day), StartedAt: fin.Add(-day), FinishedAt: fin,
			Labels: map[string]string{"ds01.user": user},
		},
		Owner: owner(user, pipeline.OwnerFromUser),
		Type:  "docker",
	}
	for _, m := range mods {
		m(r)
	}
	return r
}

// created is a created-never-started container, created ago before now.
func created(ago time.Duration, mods ...func(*pipeline.Record)) *pipeline.Record {
	r := &pipeline.Record{
		Container: pipeline.Container{ID: "id-new", Name: "new", State: pipeline.StateCreated, Created: now.Add(-ago)},
		Owner:     owner("alice", pipeline.OwnerFromUser),
		Type:      "docker",
	}
	for _, m := range mods {
		m(r)
	}
	return r
}

func withType(t string) func(*pipeline.Record) { return func(r *pipeline.Record) { r.Type = t } }

func withOwner(o pipeline.Owner) func(*pipeline.Record) {
	return func(r *pipeline.Record) { r.Owner = o }
}

func withName(n string) func(*pipeline.Record) {
	return func(r *pipeline.Record) { r.Container.Name = n }
}

func withState(s pipeline.State) func(*pipeline.Record) {
	return func(r *pipeline.Record) { r.Container.State = s }
}

func exemptBy(reason string) func(*pipeline.Record) {
	return func(r *pipeline.Record) { r.Exempt, r.ExemptReason = true, reason }
}

func withGPU(r *pipeline.Record) {
	r.GPUs = []pipeline.GPUClaim{{UUID: "GPU-x", Source: pipeline.ClaimDeviceRequest}}
	r.Container.DeviceRequests = []pipeline.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-x"}, Capabilities: [][]string{{"gpu"}}}}
}

// verdicts builds expected verdicts tersely.
func remove(reason pipeline.Reason, rule string, clock pipeline.Clock, age, limit time.Duration) pipeline.Verdict {
	return pipeline.Verdict{Action: pipeline.ActionRemove, Reason: reason, Rule: rule, Clock: clock, Age: age, Limit: limit, HasLimit: true}
}

func within(rule string, clock pipeline.Clock, age, limit time.Duration) pipeline.Verdict {
	return pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonWithinHold, Rule: rule, Clock: clock, Age: age, Limit: limit, HasLimit: true}
}

func indefinite(rule string, clock pipeline.Clock, age time.Duration) pipeline.Verdict {
	return pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonIndefiniteHold, Rule: rule, Clock: clock, Age: age}
}

func skip(reason pipeline.Reason) pipeline.Verdict {
	return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: reason}
}

const (
	ruleDefaultsHold = "defaults.container_hold_after_stop_h"
	ruleCreated      = "policies.created_container_timeout_m"
	ruleOverrides    = "user-overrides.yaml %s.container_hold_after_stop_h"
)

type decideCase struct {
	name   string
	p      Policy
	rec    *pipeline.Record
	kills  map[string]time.Time
	want   pipeline.Verdict
	detail string // a substring Detail must contain
}

func runDecideCases(t *testing.T, tests []decideCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.rec, now, tt.p, tt.kills)
			detail := got.Detail
			got.Detail = ""
			if got != tt.want {
				t.Errorf("Decide:\n got  %+v\n want %+v", got, tt.want)
			}
			if !strings.Contains(detail, tt.detail) {
				t.Errorf("Detail = %q, want it to contain %q", detail, tt.detail)
			}
			if got.Action == pipeline.ActionKeep && got.HasLimit {
				if left, ok := got.Left(); !ok || left < 0 {
					t.Errorf("kept within its limit but Left() = %v, %v", left, ok)
				}
			}
		})
	}
}

// TestDecideDS01Scenarios pins the cleanup scenarios of the DS01 scripts (NOTES.md)
// section 11 against the DS01 configuration files (the real
// resource-limits.yaml of HEAD).
func TestDecideDS01Scenarios(t *testing.T) {
	ds01 := load(t, "ds01")
	nullCreated := load(t, "nullcreated")
	tests := []decideCase{
		{name: "1: exited 40m, student hold 0.5h: removed", p: ds01, rec: exited("alice", 40*minute),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 40*minute, 30*minute), detail: "over the limit of 30m"},
		{name: "2: exited 20m: kept", p: ds01, rec: exited("alice", 20*minute),
			want: within(ruleDefaultsHold, pipeline.ClockFinished, 20*minute, 30*minute), detail: "removable in 10m"},
		{name: "3: override with null hold: indefinite", p: ds01, rec: exited("keeper", 30*day),
			want: indefinite(fmt.Sprintf(ruleOverrides, "keeper"), pipeline.ClockFinished, 30*day)},
		{name: "4: ds01.protected, any age", p: ds01, rec: exited("alice", 300*day, exemptBy("label ds01.protected=true")),
			want: skip(pipeline.ReasonExempt), detail: "ds01.protected"},
		{name: "4: ds01.monitoring, any age", p: ds01, rec: exited("alice", 300*day, exemptBy("label ds01.monitoring=true")),
			want: skip(pipeline.ReasonExempt), detail: "ds01.monitoring"},
		{name: "5: aime.mlc.USER researcher, 35m: removed", p: ds01, rec: exited("bob", 35*minute, withOwner(owner("bob", pipeline.OwnerFromAIME))),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 35*minute, 30*minute)},
		{name: "6: devcontainer folder owner, 35m: removed", p: ds01, rec: exited("carol", 35*minute, withOwner(owner("carol", pipeline.OwnerFromDevcontainer)), withType("devcontainer")),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 35*minute, 30*minute)},
		{name: "7: owner from name._.uid, atomic, 35m: removed", p: ds01, rec: exited("dave", 35*minute, withOwner(owner("dave", pipeline.OwnerFromNameUID)), withType("atomic"), withName("thesis._.1001")),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 35*minute, 30*minute)},
		{name: "8: unknown owner, atomic, no type entry: defaults, removed", p: ds01, rec: exited("x", 35*minute, withOwner(unknownOwner), withType("atomic"), withName("thesis._.4242")),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 35*minute, 30*minute)},
		{name: "9: FinishedAt zero: skipped", p: ds01, rec: exited("alice", 0, func(r *pipeline.Record) { r.Container.FinishedAt = time.Time{} }),
			want: skip(pipeline.ReasonNoFinishTime), detail: "no valid FinishedAt"},
		{name: "10: exited GPU container, 35m: removed (release is the release stage's)", p: ds01, rec: exited("alice", 35*minute, withGPU),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 35*minute, 30*minute)},
		{name: "11: hold 0, stopped 1s ago: removed", p: ds01, rec: exited("zero", second),
			want: remove(pipeline.ReasonHoldExpired, fmt.Sprintf(ruleOverrides, "zero"), pipeline.ClockFinished, second, 0)},
		{name: "12: hold -1h, stopped 1s ago: removed, not never", p: ds01, rec: exited("neg", second),
			want: remove(pipeline.ReasonHoldExpired, fmt.Sprintf(ruleOverrides, "neg"), pipeline.ClockFinished, second, -hour)},
		{name: "13: created 31m, timeout 30m: removed", p: ds01, rec: created(31 * minute),
			want: remove(pipeline.ReasonCreatedNeverStarted, ruleCreated, pipeline.ClockCreated, 31*minute, 30*minute), detail: "never started"},
		{name: "13: created GPU container 31m: removed", p: ds01, rec: created(31*minute, withGPU),
			want: remove(pipeline.ReasonCreatedNeverStarted, ruleCreated, pipeline.ClockCreated, 31*minute, 30*minute)},
		{name: "14: created 29m: kept", p: ds01, rec: created(29 * minute),
			want: within(ruleCreated, pipeline.ClockCreated, 29*minute, 30*minute), detail: "removable in 1m"},
		{name: "15: created, ds01.protected, 5 days: skipped", p: ds01, rec: created(5*day, exemptBy("label ds01.protected=true")),
			want: skip(pipeline.ReasonExempt)},
		{name: "16 (fixed): created timeout null: kept for good", p: nullCreated, rec: created(minute),
			want: indefinite(ruleCreated, pipeline.ClockCreated, minute), detail: "no limit"},
		{name: "17: running", p: ds01, rec: exited("alice", 300*day, withState(pipeline.StateRunning)),
			want: skip(pipeline.ReasonNotACandidate), detail: "container is running"},
		{name: "17: paused", p: ds01, rec: exited("alice", 300*day, withState(pipeline.StatePaused)),
			want: skip(pipeline.ReasonNotACandidate), detail: "container is paused"},
		{name: "17: dead", p: ds01, rec: exited("alice", 300*day, withState(pipeline.StateDead)),
			want: skip(pipeline.ReasonNotACandidate), detail: "container is dead"},
	}
	runDecideCases(t, tests)
}

// TestDecideRules covers each rule and its edges.
func TestDecideRules(t *testing.T) {
	ds01 := load(t, "ds01")
	failed := func(r *pipeline.Record) {
		r.Incomplete = "inspect: no such container"
		r.Outcome = pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: "inspect: no such container"}
	}
	tests := []decideCase{
		// Rule 1 comes before everything, even a failed inspect.
		{name: "exempt wins over a failed inspect", p: ds01, rec: exited("alice", day, exemptBy("name listed in names"), failed),
			want: skip(pipeline.ReasonExempt), detail: "names"},
		{name: "exempt without a reason", p: ds01, rec: created(day, exemptBy("")),
			want: skip(pipeline.ReasonExempt), detail: "exempt"},
		// Rule 2.
		{name: "inspect failed", p: ds01, rec: exited("alice", day, failed),
			want: skip(pipeline.ReasonNotDecided), detail: "no such container"},
		// Rule 3: every state but created and exited.
		{name: "restarting", p: ds01, rec: exited("alice", day, withState(pipeline.StateRestarting)),
			want: skip(pipeline.ReasonNotACandidate), detail: "restarting"},
		{name: "removing", p: ds01, rec: exited("alice", day, withState(pipeline.StateRemoving)),
			want: skip(pipeline.ReasonNotACandidate), detail: "removing"},
		{name: "no state", p: ds01, rec: exited("alice", day, withState("")),
			want: skip(pipeline.ReasonNotACandidate)},
		{name: "an unheard-of state", p: ds01, rec: exited("alice", day, withState("hibernating")),
			want: skip(pipeline.ReasonNotACandidate), detail: "hibernating"},
		// Rule 4.
		{name: "created exactly at the timeout: kept (strict >)", p: ds01, rec: created(30 * minute),
			want: within(ruleCreated, pipeline.ClockCreated, 30*minute, 30*minute), detail: "removable in 0s"},
		{name: "created 1ns over the timeout: removed", p: ds01, rec: created(30*minute + 1),
			want: remove(pipeline.ReasonCreatedNeverStarted, ruleCreated, pipeline.ClockCreated, 30*minute+1, 30*minute)},
		{name: "created without a creation time", p: ds01, rec: created(0, func(r *pipeline.Record) { r.Container.Created = time.Time{} }),
			want: skip(pipeline.ReasonNotDecided), detail: "no creation time"},
		{name: "created: an override user's null hold does not apply (B-3)", p: ds01, rec: created(31*minute, withOwner(owner("keeper", pipeline.OwnerFromUser))),
			want: remove(pipeline.ReasonCreatedNeverStarted, ruleCreated, pipeline.ClockCreated, 31*minute, 30*minute)},
		{name: "created: a hold exemption does not apply (as DS01 phase A)", p: ds01, rec: created(31*minute, withOwner(owner("gina", pipeline.OwnerFromUser))),
			want: remove(pipeline.ReasonCreatedNeverStarted, ruleCreated, pipeline.ClockCreated, 31*minute, 30*minute)},
		{name: "created in the future (clock skew): kept", p: ds01, rec: created(-5 * minute),
			want: within(ruleCreated, pipeline.ClockCreated, -5*minute, 30*minute)},
		// Rule 8 edges.
		{name: "exited exactly at the hold: kept (strict >)", p: ds01, rec: exited("alice", 30*minute),
			want: within(ruleDefaultsHold, pipeline.ClockFinished, 30*minute, 30*minute)},
		{name: "exited 1ns over the hold: removed", p: ds01, rec: exited("alice", 30*minute+1),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 30*minute+1, 30*minute)},
		{name: "hold 0, finished this very instant: kept (0 > 0 is false)", p: ds01, rec: exited("zero", 0),
			want: within(fmt.Sprintf(ruleOverrides, "zero"), pipeline.ClockFinished, 0, 0)},
		{name: "hold -1h, FinishedAt in the future: still removed", p: ds01, rec: exited("neg", -10*minute),
			want: remove(pipeline.ReasonHoldExpired, fmt.Sprintf(ruleOverrides, "neg"), pipeline.ClockFinished, -10*minute, -hour)},
		{name: "override found through the sanitised name", p: ds01, rec: exited("h.baker@hertie-school.lan", 90*day),
			want: indefinite(fmt.Sprintf(ruleOverrides, "h_baker"), pipeline.ClockFinished, 90*day)},
		{name: "override wins over admin membership", p: ds01, rec: exited("frank", 90*minute),
			want: within(fmt.Sprintf(ruleOverrides, "frank"), pipeline.ClockFinished, 90*minute, 2*hour)},
		// Rule 7.
		{name: "permanent hold exemption: kept", p: ds01, rec: exited("gina", 90*day),
			want:   pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonExempt, Rule: RuleExemption, Clock: pipeline.ClockFinished, Age: 90 * day},
			detail: "Permanent exemption: thesis deadline"},
		{name: "temporary hold exemption in force: kept", p: ds01, rec: exited("jill", 2*day),
			want:   pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonExempt, Rule: RuleExemption, Clock: pipeline.ClockFinished, Age: 2 * day},
			detail: "Temporary exemption until 2026-06-30T23:59:59Z"},
		{name: "expired hold exemption: the hold applies", p: ds01, rec: exited("hank", 40*minute),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 40*minute, 30*minute)},
		{name: "idle and runtime exemptions do not cover the hold", p: ds01, rec: exited("ivy", 40*minute),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 40*minute, 30*minute)},
		{name: "nil record", p: ds01, rec: nil, want: skip(pipeline.ReasonNotDecided)},
	}
	runDecideCases(t, tests)
}

// TestDecideIdleStopped covers rule 6: an idle-stopped container is removed
// at once, with no hold, but only for an event of its own latest run.
func TestDecideIdleStopped(t *testing.T) {
	ds01 := load(t, "ds01")
	idle := func(ago time.Duration, mods ...func(*pipeline.Record)) *pipeline.Record {
		return exited("bob", ago, append([]func(*pipeline.Record){withName("train._.1002"), withType("atomic")}, mods...)...)
	}
	killAt := func(at time.Time) map[string]time.Time { return map[string]time.Time{"train._.1002": at} }
	idleStopped := func(age time.Duration) pipeline.Verdict {
		return pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonIdleStopped, Rule: RuleIdleKill, Clock: pipeline.ClockFinished, Age: age}
	}
	tests := []decideCase{
		{name: "stopped by the idle checker a minute ago: removed, no hold", p: ds01, rec: idle(minute), kills: killAt(now.Add(-minute)),
			want: idleStopped(minute), detail: "idle checker"},
		{name: "even when the owner's hold is never", p: ds01, rec: idle(minute, withOwner(owner("keeper", pipeline.OwnerFromUser))), kills: killAt(now.Add(-minute)),
			want: idleStopped(minute)},
		{name: "even for an unknown owner", p: ds01, rec: idle(minute, withOwner(unknownOwner)), kills: killAt(now.Add(-minute)),
			want: idleStopped(minute)},
		{name: "event exactly at Created counts", p: ds01, rec: idle(minute, func(r *pipeline.Record) { r.Container.StartedAt = time.Time{} }),
			kills: killAt(now.Add(-minute - 2*day)), want: idleStopped(minute)},
		{name: "event of an older container of the same name: the hold applies", p: ds01, rec: idle(minute),
			kills: killAt(now.Add(-10 * day)), want: within(ruleDefaultsHold, pipeline.ClockFinished, minute, 30*minute)},
		{name: "event before the latest start (restarted since): the hold applies", p: ds01, rec: idle(minute),
			kills: killAt(now.Add(-minute - day - hour)), want: within(ruleDefaultsHold, pipeline.ClockFinished, minute, 30*minute)},
		{name: "no start or creation time: the event cannot be placed", p: ds01,
			rec:   idle(minute, func(r *pipeline.Record) { r.Container.StartedAt, r.Container.Created = time.Time{}, time.Time{} }),
			kills: killAt(now.Add(-minute)), want: within(ruleDefaultsHold, pipeline.ClockFinished, minute, 30*minute)},
		{name: "another container's event", p: ds01, rec: idle(minute), kills: map[string]time.Time{"other": now},
			want: within(ruleDefaultsHold, pipeline.ClockFinished, minute, 30*minute)},
		{name: "rule off (nil map)", p: ds01, rec: idle(minute), kills: nil,
			want: within(ruleDefaultsHold, pipeline.ClockFinished, minute, 30*minute)},
		{name: "exempt record with an idle kill: skipped", p: ds01, rec: idle(minute, exemptBy("label ds01.monitoring=true")), kills: killAt(now.Add(-minute)),
			want: skip(pipeline.ReasonExempt)},
		{name: "no FinishedAt wins over the idle kill", p: ds01, rec: idle(minute, func(r *pipeline.Record) { r.Container.FinishedAt = time.Time{} }), kills: killAt(now.Add(-minute)),
			want: skip(pipeline.ReasonNoFinishTime)},
		{name: "a created container is never idle-stopped", p: ds01, rec: created(minute, withName("train._.1002")), kills: killAt(now.Add(-30 * second)),
			want: within(ruleCreated, pipeline.ClockCreated, minute, 30*minute)},
	}
	runDecideCases(t, tests)
}

// TestDecidePrecedence follows group, override and container type
// resolution through to the verdict, on a limits file whose groups and
// types set the hold.
func TestDecidePrecedence(t *testing.T) {
	custom := load(t, "custom")
	const (
		ruleResearcher = "groups.researcher.container_hold_after_stop_h"
		ruleFaculty    = "groups.faculty.container_hold_after_stop_h"
	)
	unknownOf := func(typ string, ago time.Duration) *pipeline.Record {
		return exited("x", ago, withOwner(unknownOwner), withType(typ))
	}
	tests := []decideCase{
		{name: "researcher: group hold 2h, 90m: kept", p: custom, rec: exited("bob", 90*minute),
			want: within(ruleResearcher, pipeline.ClockFinished, 90*minute, 2*hour)},
		{name: "researcher: group hold 2h, 3h: removed", p: custom, rec: exited("bob", 3*hour),
			want: remove(pipeline.ReasonHoldExpired, ruleResearcher, pipeline.ClockFinished, 3*hour, 2*hour)},
		{name: "researcher through the sanitised name", p: custom, rec: exited("j.doe@hertie-school.lan", 90*minute),
			want: within(ruleResearcher, pipeline.ClockFinished, 90*minute, 2*hour)},
		{name: "faculty: group hold null: indefinite", p: custom, rec: exited("fay", 60*day),
			want: indefinite(ruleFaculty, pipeline.ClockFinished, 60*day)},
		{name: "override over the group", p: custom, rec: exited("olga", 3*hour),
			want: within("user-overrides.yaml olga.container_hold_after_stop_h", pipeline.ClockFinished, 3*hour, 4*hour)},
		{name: "no group: defaults", p: custom, rec: exited("zoe", 40*minute),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 40*minute, 30*minute)},
		{name: "known owner of an atomic container: the type entry is not used", p: custom, rec: exited("zoe", 40*minute, withType("atomic")),
			want: remove(pipeline.ReasonHoldExpired, ruleDefaultsHold, pipeline.ClockFinished, 40*minute, 30*minute)},
		{name: "unknown owner, atomic: its type entry", p: custom, rec: unknownOf("atomic", 40*minute),
			want: within("container_types.atomic.container_hold_after_stop_h", pipeline.ClockFinished, 40*minute, hour)},
		{name: "unknown owner, devcontainer: type entry null", p: custom, rec: unknownOf("devcontainer", 40*day),
			want: indefinite("container_types.devcontainer.container_hold_after_stop_h", pipeline.ClockFinished, 40*day)},
		{name: "unknown owner, compose (no entry): container_types.unknown", p: custom, rec: unknownOf("compose", 20*minute),
			want: remove(pipeline.ReasonHoldExpired, "container_types.unknown.container_hold_after_stop_h", pipeline.ClockFinished, 20*minute, 15*minute)},
		{name: "unknown owner, no type: container_types.unknown", p: custom, rec: unknownOf("", 20*minute),
			want: remove(pipeline.ReasonHoldExpired, "container_types.unknown.container_hold_after_stop_h", pipeline.ClockFinished, 20*minute, 15*minute)},
		{name: "owner from the chain but named unknown: unknown's chain", p: custom, rec: exited("unknown", 40*minute, withType("atomic")),
			want: within("container_types.atomic.container_hold_after_stop_h", pipeline.ClockFinished, 40*minute, hour)},
		{name: "created timeout from policies: 45m", p: custom, rec: created(40 * minute),
			want: within(ruleCreated, pipeline.ClockCreated, 40*minute, 45*minute)},
	}
	runDecideCases(t, tests)
}

// TestDecideStageOverrides checks the stage attributes reach the verdict
// and leave everything else to the policy.
func TestDecideStageOverrides(t *testing.T) {
	ds01 := load(t, "ds01")
	with := func(created, unknown string) Policy {
		p, err := (&Stage{CreatedTimeout: created, UnknownOwnerHold: unknown}).overrides(ds01)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []decideCase{
		{name: "created_timeout 45m: 40m kept", p: with("45m", ""), rec: created(40 * minute),
			want: within("decide.created_timeout", pipeline.ClockCreated, 40*minute, 45*minute)},
		{name: "created_timeout never", p: with("never", ""), rec: created(40 * day),
			want: indefinite("decide.created_timeout", pipeline.ClockCreated, 40*day)},
		{name: "created_timeout 0s: anything created is removed", p: with("0s", ""), rec: created(second),
			want: remove(pipeline.ReasonCreatedNeverStarted, "decide.created_timeout", pipeline.ClockCreated, second, 0)},
		{name: "unknown_owner_hold 10m: unknown owner", p: with("", "10m"), rec: exited("x", 15*minute, withOwner(unknownOwner)),
			want: remove(pipeline.ReasonHoldExpired, "decide.unknown_owner_hold", pipeline.ClockFinished, 15*minute, 10*minute)},
		{name: "unknown_owner_hold NEVER", p: with("", " NEVER "), rec: exited("x", 15*day, withOwner(unknownOwner)),
			want: indefinite("decide.unknown_owner_hold", pipeline.ClockFinished, 15*day)},
		{name: "unknown_owner_hold leaves known owners alone", p: with("", "10m"), rec: exited("alice", 15*minute),
			want: within(ruleDefaultsHold, pipeline.ClockFinished, 15*minute, 30*minute)},
		{name: "created_timeout leaves exited containers alone", p: with("1s", ""), rec: exited("alice", 15*minute),
			want: within(ruleDefaultsHold, pipeline.ClockFinished, 15*minute, 30*minute)},
		{name: "exemptions pass through the override wrapper", p: with("1s", "1s"), rec: exited("gina", 15*day),
			want: pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonExempt, Rule: RuleExemption, Clock: pipeline.ClockFinished, Age: 15 * day}},
	}
	runDecideCases(t, tests)
}

// TestDecideNoLocalTime runs one decision with the process in a zone far
// from UTC and timestamps in other zones: the ages must not move (B-1).
func TestDecideNoLocalTime(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	tokyo := time.FixedZone("JST", 9*3600)
	rec := exited("alice", 20*minute)
	rec.Container.FinishedAt = rec.Container.FinishedAt.In(tokyo)
	got := Decide(rec, now.In(berlin), load(t, "ds01"), nil)
	if got.Age != 20*minute || got.Action != pipeline.ActionKeep {
		t.Fatalf("got %+v, want kept at age 20m", got)
	}
}

func TestInit(t *testing.T) {
	good := []Stage{
		{},
		{CreatedTimeout: "45m", UnknownOwnerHold: "15m"},
		{CreatedTimeout: "never", UnknownOwnerHold: "Never"},
		{CreatedTimeout: "none", UnknownOwnerHold: "indefinite"},
		{CreatedTimeout: "1h30m", UnknownOwnerHold: "0s"},
		{CreatedTimeout: "-5m"},
		{CreatedTimeout: "  "},
	}
	for _, s := range good {
		if err := s.Init(); err != nil {
			t.Errorf("Init(%+v) = %v, want nil", s, err)
		}
	}
}

func TestInitFail(t *testing.T) {
	tests := []struct {
		stage Stage
		attr  string
	}{
		{Stage{CreatedTimeout: "30"}, attrCreatedTimeout}, // DS01's bare minutes: ambiguous here
		{Stage{CreatedTimeout: "abc"}, attrCreatedTimeout},
		{Stage{CreatedTimeout: "1d"}, attrCreatedTimeout},
		{Stage{UnknownOwnerHold: "0.5"}, attrUnknownOwnerHold},
		{Stage{UnknownOwnerHold: "forever"}, attrUnknownOwnerHold},
		{Stage{CreatedTimeout: "45m", UnknownOwnerHold: "1 h"}, attrUnknownOwnerHold},
	}
	for _, tt := range tests {
		err := tt.stage.Init()
		var ae *pipeline.AttrError
		if !errors.As(err, &ae) {
			t.Errorf("Init(%+v) = %v, want an *AttrError", tt.stage, err)
			continue
		}
		if ae.Attr != tt.attr {
			t.Errorf("Init(%+v): attribute %q, want %q", tt.stage, ae.Attr, tt.attr)
		}
	}
}

// TestSample decodes sample.hcl into the stage, as the loader does, and
// checks that it shows the defaults.
func TestSample(t *testing.T) {
	f, diags := hclsyntax.ParseConfig([]byte(sample), "sample.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	content, diags := f.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "stage", LabelNames: []string{"kind"}}}})
	if diags.HasErrors() || len(content.Blocks) != 1 || content.Blocks[0].Labels[0] != Kind {
		t.Fatalf("sample.hcl must hold one stage %q block: %v", Kind, diags)
	}
	s := &Stage{}
	if diags := gohcl.DecodeBody(content.Blocks[0].Body, nil, s); diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, New()) {
		t.Errorf("sample.hcl gives %+v, want the defaults %+v", *s, *New())
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```hcl\n"+sample+"```") {
		t.Error("README.md's sample block differs from sample.hcl")
	}
	spec, ok := pipeline.DefaultRegistry.Lookup(Kind)
	if !ok || spec.Sample != sample {
		t.Fatalf("kind %q not registered with its sample", Kind)
	}
	if _, ok := spec.New().(*Stage); !ok {
		t.Fatalf("spec.New() = %T", spec.New())
	}
}

func newEnv(p *policy.Model) (*pipeline.Env, *logtest.Hook) {
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	return &pipeline.Env{Now: now, Policy: p, Log: log}, hook
}

// TestProcess runs the stage over a batch, with the idle kills read from a
// DS01 events file.
func TestProcess(t *testing.T) {
	ds01 := load(t, "ds01")
	recs := map[string]*pipeline.Record{
		"hold expired":   exited("alice", 40*minute),
		"within hold":    exited("alice", 20*minute, withName("c2")),
		"idle stopped":   exited("bob", 10*minute, withName("train._.1002")),
		"reused name":    exited("bob", 10*minute, withName("reused-name")),
		"created":        created(31 * minute),
		"running":        exited("alice", day, withState(pipeline.StateRunning)),
		"exempt":         exited("alice", day, exemptBy("label ds01.protected=true")),
		"no finish time": exited("alice", 0, func(r *pipeline.Record) { r.Container.FinishedAt = time.Time{} }),
	}
	want := map[string]pipeline.Reason{
		"hold expired":   pipeline.ReasonHoldExpired,
		"within hold":    pipeline.ReasonWithinHold,
		"idle stopped":   pipeline.ReasonIdleStopped,
		"reused name":    pipeline.ReasonWithinHold, // its idle kill is 9 days old
		"created":        pipeline.ReasonCreatedNeverStarted,
		"running":        pipeline.ReasonNotACandidate,
		"exempt":         pipeline.ReasonExempt,
		"no finish time": pipeline.ReasonNoFinishTime,
	}
	batch := &pipeline.Batch{}
	for _, r := range recs {
		batch.Records = append(batch.Records, r)
	}
	s := New()
	s.IdleEventsFile = ptr(filepath.Join("testdata", "events.jsonl"))
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	env, hook := newEnv(ds01)
	if err := s.Process(context.Background(), env, batch); err != nil {
		t.Fatal(err)
	}
	for name, r := range recs {
		if r.Verdict.Reason != want[name] {
			t.Errorf("%s: verdict %+v, want reason %s", name, r.Verdict, want[name])
		}
	}
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			t.Errorf("unexpected %s: %s", e.Level, e.Message)
		}
	}
	// The file's last line is cut short: a debug note, nothing more.
	if e := hook.LastEntry(); e == nil || e.Level != logrus.DebugLevel || !strings.Contains(e.Message, "skipped 1") {
		t.Errorf("want a debug note about the damaged line, got %+v", e)
	}
}

// TestProcessIdleEventsFile checks that events.jsonl can only ever hold
// containers back: missing, unreadable or turned off, the idle-stopped
// container follows the hold, and the run goes on.
func TestProcessIdleEventsFile(t *testing.T) {
	ds01 := load(t, "ds01")
	tests := []struct {
		name     string
		file     string
		states   []pipeline.State
		want     pipeline.Reason
		warnings int
	}{
		{"events file", filepath.Join("testdata", "events.jsonl"), nil, pipeline.ReasonIdleStopped, 0},
		{"missing file: no idle kills", filepath.Join(t.TempDir(), "nope.jsonl"), nil, pipeline.ReasonWithinHold, 0},
		{"unreadable (a directory): warning, hold", t.TempDir(), nil, pipeline.ReasonWithinHold, 1},
		{"rule off", "", nil, pipeline.ReasonWithinHold, 0},
		{"nothing exited: file not read", t.TempDir(), []pipeline.State{pipeline.StateRunning}, pipeline.ReasonNotACandidate, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := exited("bob", 10*minute, withName("train._.1002"))
			for _, st := range tt.states {
				rec.Container.State = st
			}
			env, hook := newEnv(ds01)
			s := &Stage{IdleEventsFile: &tt.file}
			if err := s.Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{rec}}); err != nil {
				t.Fatalf("Process = %v, want nil", err)
			}
			if rec.Verdict.Reason != tt.want {
				t.Errorf("verdict %+v, want reason %s", rec.Verdict, tt.want)
			}
			warnings := 0
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel {
					warnings++
				}
			}
			if warnings != tt.warnings {
				t.Errorf("%d warnings, want %d: %v", warnings, tt.warnings, hook.AllEntries())
			}
		})
	}
}

func TestProcessDefaults(t *testing.T) {
	t.Run("no policy: DS01's built-in values", func(t *testing.T) {
		rec := exited("alice", 40*minute)
		env, _ := newEnv(nil)
		if err := (&Stage{}).Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{rec}}); err != nil {
			t.Fatal(err)
		}
		want := remove(pipeline.ReasonHoldExpired, "built-in defaults.container_hold_after_stop_h", pipeline.ClockFinished, 40*minute, 30*minute)
		rec.Verdict.Detail = ""
		if rec.Verdict != want {
			t.Errorf("got %+v, want %+v", rec.Verdict, want)
		}
	})
	t.Run("no clock: error, nothing decided", func(t *testing.T) {
		rec := exited("alice", 40*minute)
		env, _ := newEnv(policy.Default())
		env.Now = time.Time{}
		if err := (&Stage{}).Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{rec}}); err == nil {
			t.Error("Process with a zero clock = nil, want an error")
		}
		if rec.Verdict.Action != pipeline.ActionNone {
			t.Errorf("verdict %+v set without a clock", rec.Verdict)
		}
	})
	t.Run("bad attribute: error", func(t *testing.T) {
		env, _ := newEnv(policy.Default())
		err := (&Stage{CreatedTimeout: "soon"}).Process(context.Background(), env, &pipeline.Batch{})
		var ae *pipeline.AttrError
		if !errors.As(err, &ae) {
			t.Errorf("Process = %v, want an *AttrError", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		env, _ := newEnv(policy.Default())
		err := (&Stage{}).Process(ctx, env, &pipeline.Batch{Records: []*pipeline.Record{exited("alice", minute)}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Process = %v, want context.Canceled", err)
		}
	})
}

// Values the property test draws for duration keys, in the key's unit:
// null and the no-limit words, zero, negative and positive numbers, quoted
// numbers, and "" for a key left out.
var (
	genHolds   = []string{"", "null", "never", "' Indefinite '", "0", "-1", "-0.25", "0.001", "0.25", "0.5", "2", "'0.5'", "1000000"}
	genCreated = []string{"", "null", "none", "0", "-1", "-30", "0.5", "1", "30", "45", "'30'"}
	genExpiry  = []string{"null", "'2025-01-01T00:00:00Z'", "'2026-03-01T12:00:00Z'", "'2026-03-01T12:00:01Z'", "2027-01-01"}
	genUsers   = []string{"alice", "bob", "carol", "dave", "erin", "h.baker@hertie-school.lan", "unknown", "", "zoe"}
	genTypes   = []string{"atomic", "devcontainer", "compose", "docker", "api", "unknown", "custom", ""}
	genStates  = []pipeline.State{
		pipeline.StateCreated, pipeline.StateRunning, pipeline.StatePaused, pipeline.StateRestarting,
		pipeline.StateRemoving, pipeline.StateExited, pipeline.StateDead, "",
	}
	genSources = []pipeline.OwnerSource{
		pipeline.OwnerFromUser, pipeline.OwnerFromAIME, pipeline.OwnerFromDevcontainer,
		pipeline.OwnerFromNameUID, pipeline.OwnerUnknown, "",
	}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// genPolicy writes a random DS01 configuration and loads it, with random
// stage overrides on top.
func genPolicy(t *testing.T, r *rand.Rand, dir string) Policy {
	t.Helper()
	var b strings.Builder
	kv := func(indent, key, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s%s: %s\n", indent, key, v)
		}
	}
	b.WriteString("defaults:\n  max_cpus: 32\n")
	kv("  ", KeyContainerHold, pick(r, genHolds))
	b.WriteString("default_group: student\ngroups:\n")
	for _, g := range []string{"student", "researcher", "faculty"} {
		fmt.Fprintf(&b, "  %s:\n    members: [%s]\n", g, pick(r, genUsers[:5]))
		kv("    ", KeyContainerHold, pick(r, genHolds))
	}
	b.WriteString("policies:\n  sigterm_grace_s: 60\n")
	kv("  ", "created_container_timeout_m", pick(r, genCreated))
	b.WriteString("container_types:\n")
	for _, typ := range genTypes[:6] {
		fmt.Fprintf(&b, "  %s:\n    max_runtime_h: 24\n", typ)
		kv("    ", KeyContainerHold, pick(r, genHolds))
	}
	limits := filepath.Join(dir, "resource-limits.yaml")
	var o strings.Builder
	for _, u := range []string{"dave", "h_baker"} {
		if v := pick(r, genHolds); v != "" {
			fmt.Fprintf(&o, "%s:\n  %s: %s\n", u, KeyContainerHold, v)
		}
	}
	overrides := filepath.Join(dir, "user-overrides.yaml")
	var e strings.Builder
	e.WriteString("exemptions:\n")
	for _, u := range genUsers[:5] {
		if r.IntN(2) == 0 {
			fmt.Fprintf(&e, "  - username: %q\n    exempt_from: [%s]\n    expires_on: %s\n", u, KeyContainerHold, pick(r, genExpiry))
		}
	}
	exemptions := filepath.Join(dir, "lifecycle-exemptions.yaml")
	for path, text := range map[string]string{limits: b.String(), overrides: o.String(), exemptions: e.String()} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := policy.Load(policy.Files{LimitsFile: limits, OverridesFile: overrides, ExemptionsFile: exemptions})
	if err != nil {
		t.Fatalf("generated policy does not load: %v\n%s", err, b.String())
	}
	attrs := []string{"", "", "never", "0s", "-1h", "1ns", "30m"}
	p, err := (&Stage{CreatedTimeout: pick(r, attrs), UnknownOwnerHold: pick(r, attrs)}).overrides(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// genTime is zero, or an instant up to 60 days around now.
func genTime(r *rand.Rand) time.Time {
	switch r.IntN(6) {
	case 0:
		return time.Time{}
	case 1:
		return now // exactly at the limit for a zero hold
	}
	return now.Add(time.Duration(r.Int64N(int64(60*day))) - 50*day)
}

func genRecord(r *rand.Rand, i int) *pipeline.Record {
	rec := &pipeline.Record{
		Container: pipeline.Container{
			ID: fmt.Sprintf("id%d", i), Name: fmt.Sprintf("c%d", r.IntN(40)),
			State:   pick(r, genStates),
			Created: genTime(r), StartedAt: genTime(r), FinishedAt: genTime(r),
		},
		Owner:  owner(pick(r, genUsers), pick(r, genSources)),
		Type:   pick(r, genTypes),
		Exempt: r.IntN(4) == 0,
	}
	if rec.Exempt {
		rec.ExemptReason = "label ds01.protected=true"
	}
	if r.IntN(10) == 0 {
		rec.Incomplete = "inspect failed"
		rec.Outcome = pipeline.Outcome{Status: pipeline.OutcomeFailed, Error: rec.Incomplete}
	}
	return rec
}

// TestNeverRemovesExemptOrLive is the safety property of the stage: over
// generated records and generated policies (null, zero and negative holds
// included), an exempt, live or half-read container is never removed, and
// every removal is explained by a limit or by an idle kill.
func TestNeverRemovesExemptOrLive(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 3))
	const policies, records = 100, 10_000
	ps := make([]Policy, policies)
	for i := range ps {
		ps[i] = genPolicy(t, r, t.TempDir())
	}
	removals := 0
	reasons := map[pipeline.Reason]int{}
	for i := range records {
		rec := genRecord(r, i)
		kills := map[string]time.Time{}
		for range r.IntN(3) {
			kills[fmt.Sprintf("c%d", r.IntN(40))] = genTime(r)
		}
		if r.IntN(4) == 0 {
			kills[rec.Container.Name] = genTime(r)
		}
		p := ps[r.IntN(len(ps))]
		v := Decide(rec, now, p, kills)
		if again := Decide(rec, now, p, kills); again != v {
			t.Fatalf("record %d: Decide is not deterministic: %+v, then %+v", i, v, again)
		}
		if v.Action == "" || v.Reason == "" {
			t.Errorf("record %d: incomplete verdict %+v", i, v)
		}
		reasons[v.Reason]++
		if v.Action != pipeline.ActionRemove {
			continue
		}
		removals++
		c := rec.Container
		switch {
		case rec.Exempt:
			t.Errorf("record %d: exempt container removed: %+v", i, v)
		case c.State.Live():
			t.Errorf("record %d: %s container removed: %+v", i, c.State, v)
		case c.State != pipeline.StateCreated && c.State != pipeline.StateExited:
			t.Errorf("record %d: %q container removed: %+v", i, c.State, v)
		case rec.Incomplete != "":
			t.Errorf("record %d: half-read container removed: %+v", i, v)
		case !v.HasLimit && v.Reason != pipeline.ReasonIdleStopped:
			t.Errorf("record %d: removal without a limit: %+v", i, v)
		case v.HasLimit && v.Age <= v.Limit:
			t.Errorf("record %d: removed at age %v within limit %v", i, v.Age, v.Limit)
		case v.Rule == "":
			t.Errorf("record %d: removal without a rule: %+v", i, v)
		}
	}
	t.Logf("verdicts by reason: %v", reasons)
	// Guard against a generator that never exercises removals.
	if removals < records/20 {
		t.Errorf("only %d removals in %d records: the generator is too tame", removals, records)
	}
}

// BenchmarkDecide decides a realistic mix (mostly running containers, some
// exited within and past their holds, a few created, exempt and
// idle-stopped ones) against the DS01 files of HEAD.
func BenchmarkDecide(b *testing.B) {
	p := load(b, "ds01")
	users := []string{"alice", "bob", "keeper", "h.baker@hertie-school.lan", "gina", "zoe"}
	var recs []*pipeline.Record
	for i := range 200 {
		u := users[i%len(users)]
		ago := time.Duration(i) * 7 * minute
		var rec *pipeline.Record
		switch {
		case i%10 < 6:
			rec = exited(u, ago, withState(pipeline.StateRunning))
		case i%10 < 8:
			rec = exited(u, ago, withType("atomic"))
		case i%10 == 8:
			rec = created(ago)
		default:
			rec = exited(u, ago, withOwner(unknownOwner), withType("compose"))
		}
		rec.Container.Name = fmt.Sprintf("c%d", i)
		if i%25 == 0 {
			rec.Exempt, rec.ExemptReason = true, "label ds01.monitoring=true"
		}
		recs = append(recs, rec)
	}
	kills := map[string]time.Time{"c7": now.Add(-minute), "c17": now.Add(-100 * day)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		recs[i%len(recs)].Verdict = Decide(recs[i%len(recs)], now, p, kills)
		i++
	}
}

func ptr[T any](v T) *T { return &v }
