//go:build linux

package main

// Integration tests of `ds01-pipe explain` against the real Docker engine,
// on the cleanup fixture (testdata/cleanup, see cleanup_test.go): every
// owner rule and every source of a hold, checked against plan at the same
// --now, and the predicted instant checked by planning just before and at it.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

type explainDoc struct {
	Container   reportContainer `json:"container"`
	Action      *string         `json:"action"`
	ActsAt      *string         `json:"acts_at"`
	Rules       []explainRule   `json:"rules"`
	WouldChange []string        `json:"would_change"`
}

func (f *cleanupFixture) explain(t *testing.T, target string, now time.Time) explainDoc {
	t.Helper()
	args := f.args("explain", "json", now)
	args = append(args[:len(args)-1], target, f.pipeline)
	code, out, errOut := cli(t, args...)
	if code != ExitOK {
		t.Fatalf("explain %s: exit %d\nstderr:\n%s", target, code, errOut)
	}
	var doc explainDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("explain %s: stdout is not the JSON answer: %v\n%s", target, err, out)
	}
	if doc.Rules == nil || doc.WouldChange == nil {
		t.Errorf("explain %s: rules and would_change must be lists, never null:\n%s", target, out)
	}
	return doc
}

// hasRule reports whether a rule of the stage mentions text and its
// source ends with source ("" = any).
func hasRule(doc explainDoc, stage, text, source string) bool {
	for _, r := range doc.Rules {
		if r.Stage == stage && strings.Contains(r.Rule, text) && strings.Contains(r.Source, source) {
			return true
		}
	}
	return false
}

func TestExplainAgreesWithPlan(t *testing.T) {
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	alice := eng.Create(t, exitedSpec("alice", ownedBy("alice")))
	rita := eng.Create(t, exitedSpec("rita", ownedBy("rita")))
	oscar := eng.Create(t, exitedSpec("oscar", ownedBy("oscar")))
	keeper := eng.Create(t, exitedSpec("keeper", ownedBy("keeper")))
	aime := eng.Create(t, exitedSpec("aime", map[string]string{"aime.mlc.USER": "fay"}))
	dev := eng.Create(t, exitedSpec("dev", map[string]string{"devcontainer.local_folder": "/home/rita/project"}))
	compose := eng.Create(t, exitedSpec("compose", map[string]string{"com.docker.compose.project": "p"}))
	prot := eng.Create(t, exitedSpec("prot", map[string]string{labelDS01User: "alice", labelDS01Protected: "true"}))
	created := eng.Create(t, dockertest.Spec{Name: "created", Labels: ownedBy("alice")})
	now := latestFinish(t, eng, alice, rita, oscar, keeper, aime, dev, compose, prot).Add(time.Minute)
	limits := filepath.Join(f.config, "resource-limits.yaml")

	tests := []struct {
		c      dockertest.Container
		action string // "" = null
		rules  [][3]string
	}{
		{alice, "remove", [][3]string{{"attribute", "label ds01.user", ""}, {"decide", "defaults.container_hold_after_stop_h", limits + ":76"}, {"decide", "member of group student", "student.members:2"}}},
		{rita, "remove", [][3]string{{"decide", "groups.researcher.container_hold_after_stop_h", limits + ":122"}, {"decide", "member of group researcher", "researcher.members:2"}}},
		{oscar, "remove", [][3]string{{"decide", "defaults.container_hold_after_stop_h", "resource-limits.yaml:76"}, {"decide", "oscar has a user override", "user-overrides.yaml:9"}}},
		{keeper, "", [][3]string{{"decide", "keep (exempt)", "lifecycle-exemptions.yaml:10"}}},
		{aime, "remove", [][3]string{{"attribute", "label aime.mlc.USER", ""}, {"decide", "groups.faculty", limits + ":154"}}},
		{dev, "remove", [][3]string{{"attribute", "label devcontainer.local_folder", ""}, {"decide", "groups.researcher", limits + ":122"}}},
		{compose, "remove", [][3]string{{"attribute", "owner unknown", ""}, {"classify", "type compose", ""}, {"decide", "container_types.compose.container_hold_after_stop_h", limits + ":265"}}},
		{prot, "", [][3]string{{"engine", "label ds01.protected=true", ""}}},
		{created, "remove", [][3]string{{"decide", "policies.created_container_timeout_m", limits + ":238"}}},
	}
	for _, at := range []time.Time{now, now.Add(3 * time.Hour), now.Add(8 * time.Hour)} {
		plan := f.plan(t, at)
		for _, tt := range tests {
			doc := f.explain(t, tt.c.Name, at)
			p, ok := plan.find(tt.c.ID)
			if !ok {
				t.Fatalf("plan lacks %s", tt.c.Name)
			}
			got := doc.Container
			if got.ID != p.ID || got.Verdict != p.Verdict || got.Reason != p.Reason || got.Owner != p.Owner || got.OwnerSource != p.OwnerSource ||
				got.Type != p.Type || secondsText(got.LimitS) != secondsText(p.LimitS) || secondsText(got.AgeS) != secondsText(p.AgeS) {
				t.Errorf("%s at %s: explain says %+v, plan %+v", tt.c.Name, at.Format(time.RFC3339), got, p)
			}
			acting := p.Verdict == "remove" || p.Verdict == "stop"
			switch {
			case acting && (doc.Action == nil || *doc.Action != p.Verdict || *doc.ActsAt != at.UTC().Format(time.RFC3339)):
				t.Errorf("%s at %s: plan says %s now, explain %v at %v", tt.c.Name, at.Format(time.RFC3339), p.Verdict, doc.Action, doc.ActsAt)
			case !acting && doc.Action != nil && at != now:
				// Predictions are checked below at the first instant.
			}
		}
	}
	if _, err := os.Stat(f.events); err == nil {
		t.Errorf("explain or plan wrote %s", f.events)
	}
	for _, tt := range tests {
		doc := f.explain(t, tt.c.ID[:12], now)
		if doc.Container.ID != tt.c.ID {
			t.Errorf("explain by ID prefix found %s, want %s", doc.Container.ID, tt.c.ID)
		}
		for _, r := range tt.rules {
			if !hasRule(doc, r[0], r[1], r[2]) {
				t.Errorf("%s: no %s rule %q from %q in %+v", tt.c.Name, r[0], r[1], r[2], doc.Rules)
			}
		}
		if (doc.Action == nil) != (tt.action == "") || (doc.Action != nil && *doc.Action != tt.action) {
			t.Errorf("%s: action %v, want %q", tt.c.Name, doc.Action, tt.action)
			continue
		}
		if doc.ActsAt == nil {
			continue
		}
		// The predicted instant is the first whole second plan removes it.
		when, err := time.Parse(time.RFC3339, *doc.ActsAt)
		if err != nil {
			t.Fatalf("%s: acts_at %q: %v", tt.c.Name, *doc.ActsAt, err)
		}
		if when.After(now) {
			before, _ := f.plan(t, when.Add(-time.Second)).find(tt.c.ID)
			atIt, _ := f.plan(t, when).find(tt.c.ID)
			if before.Verdict != "keep" || atIt.Verdict != "remove" {
				t.Errorf("%s: acts_at %s, but plan a second before says %s and at it %s", tt.c.Name, *doc.ActsAt, before.Verdict, atIt.Verdict)
			}
		}
	}
}

// TestExplainDefaultPipeline: without PIPELINE, explain reads the
// installed cleanup pipeline.
func TestExplainDefaultPipeline(t *testing.T) {
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	c := eng.Create(t, exitedSpec("alice", ownedBy("alice")))
	saved := explainPipeline
	t.Cleanup(func() { explainPipeline = saved })
	explainPipeline = filepath.Join(t.TempDir(), "missing.hcl")
	code, _, errOut := cli(t, "explain", "--format", "json", c.Name)
	if code != ExitConfigError || !strings.Contains(errOut, explainPipeline) {
		t.Errorf("exit %d, stderr %q; want 78 naming %s", code, errOut, explainPipeline)
	}
	explainPipeline = f.pipeline
	args := f.args("explain", "json", finishedAt(t, eng, c).Add(time.Hour))
	args = append(args[:len(args)-1], c.Name)
	if code, out, errOut := cli(t, args...); code != ExitOK || !strings.Contains(out, `"action": "remove"`) {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestExplainUnknownContainer(t *testing.T) {
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	args := f.args("explain", "json", time.Now())
	args = append(args[:len(args)-1], eng.Prefix()+"nosuch", f.pipeline)
	code, out, errOut := cli(t, args...)
	if code != ExitFailure || out != "" || !strings.Contains(errOut, "no such container") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout, \"no such container\"", code, out, errOut)
	}
}

func TestExplainOutOfScopeAndFiltered(t *testing.T) {
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	other := eng.Create(t, exitedSpec("other", ownedBy("rita")))
	// The pipeline with a filter that keeps only alice's containers.
	dir := t.TempDir()
	f.pipeline = writeFile(t, dir, "filtered.hcl", strings.Replace(cleanupHCL, `stage "decide"`, `stage "filter" { when = c.owner == "alice" }
  stage "decide"`, 1))
	now := finishedAt(t, eng, other).Add(10 * time.Hour)
	doc := f.explain(t, other.Name, now)
	if doc.Action != nil || !hasRule(doc, "filter", "left out of the run", "filtered.hcl:") {
		t.Errorf("a filtered-out container: %+v", doc)
	}
	if rep := f.plan(t, now); len(rep.Containers) != 0 {
		t.Errorf("plan shows %d containers the filter drops", len(rep.Containers))
	}
	f.pipeline = writeFile(t, dir, "scoped.hcl", cleanupHCL)
	args := f.args("explain", "json", now, "--var", "prefix=nomatch-")
	args = append(args[:len(args)-1], other.Name, f.pipeline)
	code, out, errOut := cli(t, args...)
	if code != ExitOK || !strings.Contains(out, "not in this pipeline's scope") || !strings.Contains(out, `"action": null`) ||
		!strings.Contains(out, `"name": "`+other.Name+`"`) || !strings.Contains(out, `"state": "exited"`) {
		t.Errorf("out of scope: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestExplainHoldSources covers the sources the first test does not: a
// hold set in user-overrides.yaml, a null hold, the name._.uid owner rule,
// an owner in no group, the exempt stage's own names, and a stage
// attribute that overrides the policy.
func TestExplainHoldSources(t *testing.T) {
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	f.pipeline = writeFile(t, t.TempDir(), "cleanup.hcl", strings.NewReplacer(
		`stage "exempt"    {}`, `stage "exempt"    { names = ["`+eng.Prefix()+`infra"] }`,
		`stage "decide"    { idle_events_file = var.events_file }`, `stage "decide"    {
    idle_events_file = var.events_file
    created_timeout  = "45m"
  }`).Replace(cleanupHCL))
	zero := eng.Create(t, exitedSpec("zero", ownedBy("zero")))
	nora := eng.Create(t, exitedSpec("nora", ownedBy("nora")))
	byUID := eng.Create(t, exitedSpec("thesis._.0", nil))
	infra := eng.Create(t, exitedSpec("infra", ownedBy("alice")))
	created := eng.Create(t, dockertest.Spec{Name: "created", Labels: ownedBy("rita")})
	now := latestFinish(t, eng, zero, nora, byUID, infra).Add(time.Minute)
	plan := f.plan(t, now)
	tests := []struct {
		c      dockertest.Container
		action string
		rules  [][3]string
	}{
		{zero, "remove", [][3]string{{"decide", "user-overrides.yaml zero.container_hold_after_stop_h", "user-overrides.yaml:8"}, {"decide", "zero has a user override", "user-overrides.yaml:7"}}},
		{nora, "", [][3]string{{"decide", "keep (indefinite_hold)", "user-overrides.yaml:"}}},
		{byUID, "remove", [][3]string{{"attribute", "owner root from the name's ._.<uid> suffix", ""}, {"decide", "root is in no group: the default group student applies", "resource-limits.yaml"}}},
		{infra, "", [][3]string{{"exempt", "exempt: name listed in names", "cleanup.hcl:"}}},
		{created, "remove", [][3]string{{"decide", "rule decide.created_timeout", "cleanup.hcl:"}}},
	}
	for _, tt := range tests {
		doc := f.explain(t, tt.c.Name, now)
		p, _ := plan.find(tt.c.ID)
		if doc.Container.Verdict != p.Verdict || doc.Container.Reason != p.Reason || doc.Container.Rule != p.Rule {
			t.Errorf("%s: explain %s/%s/%s, plan %s/%s/%s", tt.c.Name, doc.Container.Verdict, doc.Container.Reason, doc.Container.Rule, p.Verdict, p.Reason, p.Rule)
		}
		if (doc.Action == nil) != (tt.action == "") {
			t.Errorf("%s: action %v, want %q", tt.c.Name, doc.Action, tt.action)
		}
		for _, r := range tt.rules {
			if !hasRule(doc, r[0], r[1], r[2]) {
				t.Errorf("%s: no %s rule %q from %q in %+v", tt.c.Name, r[0], r[1], r[2], doc.Rules)
			}
		}
	}
	// The table names the same rules.
	args := f.args("explain", "table", now)
	args = append(args[:len(args)-1], zero.Name, f.pipeline)
	code, out, errOut := cli(t, args...)
	if code != ExitOK || !strings.Contains(out, "Action     remove at "+now.UTC().Format(time.RFC3339)) || !strings.Contains(out, "user-overrides.yaml:8") {
		t.Errorf("table: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestExplainLifecycleRuntime: on the shipped lifecycle pipeline, a busy
// GPU container within its max runtime, warned by the earlier runs, is to
// be stopped at its start plus max_runtime_h; plan agrees a second before
// and at that instant.
func TestExplainLifecycleRuntime(t *testing.T) {
	eng := dockertest.New(t)
	f := newLifecycle(t, eng)
	long, started := f.start(t, "long", "sam", "GPU-lc-0", "busy")
	f.setSim(t, map[int]simGPU{0: {util: pct(80)}})
	// The lifecycle timer's runs give the owner's notices (75 %, 90 %); a
	// stop waits for them.
	f.must(t, "run", started.Add(18*time.Hour))
	f.must(t, "run", started.Add(22*time.Hour))
	at := started.Add(22*time.Hour + time.Minute)
	stateBefore := f.stateDump(t)
	eventsBefore, _ := os.ReadFile(f.events)
	lock := filepath.Join(f.dir, "lifecycle.lock")
	lockBefore, _ := os.ReadFile(lock) // the runs' holder line
	args := []string{"explain", "--format", "json", "--now", at.UTC().Format(time.RFC3339Nano),
		"--var", "prefix=" + eng.Prefix(), "--var", "ds01_config=" + f.config, "--var", "events_file=" + f.events,
		"--var", "lock_file=" + filepath.Join(f.dir, "lifecycle.lock"), "--var", "gpu_backend=sim",
		"--var", "sim_file=" + f.sim, "--var", "state_dir=" + f.stateDir, long.Name, f.pipeline}
	code, out, errOut := cli(t, args...)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var doc explainDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	// Read-only: the state store and the events file are as they were.
	if after := f.stateDump(t); after != stateBefore {
		t.Errorf("explain changed the lifecycle state store:\n%s\n%s", stateBefore, after)
	}
	if after, _ := os.ReadFile(f.events); string(after) != string(eventsBefore) {
		t.Errorf("explain wrote events: %s", after[len(eventsBefore):])
	}
	if after, _ := os.ReadFile(lock); string(after) != string(lockBefore) {
		t.Errorf("explain took the lock: %q, was %q", after, lockBefore)
	}
	plan := f.must(t, "plan", at).line(t, long)
	if doc.Container.Verdict != plan.Verdict || doc.Container.Reason != plan.Reason {
		t.Errorf("explain %s/%s, plan %s/%s", doc.Container.Verdict, doc.Container.Reason, plan.Verdict, plan.Reason)
	}
	if doc.Action == nil || *doc.Action != "stop" || doc.ActsAt == nil {
		t.Fatalf("action %v at %v, want stop at start + 24 h\n%s", doc.Action, doc.ActsAt, out)
	}
	if !hasRule(doc, "lifecycle", "max_runtime_h", "") {
		t.Errorf("no lifecycle rule naming max_runtime_h: %+v", doc.Rules)
	}
	when, err := time.Parse(time.RFC3339, *doc.ActsAt)
	if err != nil {
		t.Fatal(err)
	}
	if d := when.Sub(started); d < 24*time.Hour || d >= 24*time.Hour+time.Second {
		t.Errorf("acts_at %s is %s after the start, want 24 h", *doc.ActsAt, d)
	}
	if v := f.must(t, "plan", when.Add(-time.Second)).line(t, long).Verdict; v != "keep" {
		t.Errorf("a second before acts_at plan says %s", v)
	}
	if v := f.must(t, "plan", when).line(t, long).Verdict; v != "stop" {
		t.Errorf("at acts_at plan says %s", v)
	}
}

// explainShipped runs explain (JSON) on a container with f's pipeline, a
// shipped one, at now, and decodes the answer.
func explainShipped(t *testing.T, f *cleanupFixture, name string, now time.Time) explainDoc {
	t.Helper()
	args := f.args("explain", "json", now, "--var", "state_dir="+filepath.Join(t.TempDir(), "state"), "--var", "gpu_backend=none")
	args = append(args[:len(args)-1], name, f.pipeline)
	code, out, errOut := cli(t, args...)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var doc explainDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestExplainAuditActsOnNothing: an audit pipeline decides but has no
// remove stage, so explain promises no action.
func TestExplainAuditActsOnNothing(t *testing.T) {
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	c := eng.Create(t, exitedSpec("alice", ownedBy("alice")))
	f.pipeline = shipped(t, "audit-next24h.hcl")
	now := finishedAt(t, eng, c).Add(10 * time.Hour)
	doc := explainShipped(t, f, c.Name, now)
	if doc.Container.Verdict != "remove" || doc.Action != nil || !hasRule(doc, "pipeline", "no remove stage", "audit-next24h.hcl") {
		t.Errorf("verdict %s, action %v, rules %+v; want remove, null and the reason", doc.Container.Verdict, doc.Action, doc.Rules)
	}
}

// TestExplainAuditFutureAction: in an audit pipeline a container within
// its hold is kept; the rule about the missing remove stage says when the
// verdict would be remove, never that today's verdict (keep) says remove.
func TestExplainAuditFutureAction(t *testing.T) {
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	c := eng.Create(t, exitedSpec("alice", ownedBy("alice")))
	f.pipeline = shipped(t, "audit-next24h.hcl")
	now := finishedAt(t, eng, c).Add(time.Minute)
	doc := explainShipped(t, f, c.Name, now)
	if doc.Container.Verdict != "keep" || doc.Action != nil || !hasRule(doc, "pipeline", "the verdict would be remove from ", "audit-next24h.hcl") {
		t.Errorf("verdict %s, action %v, rules %+v; want keep, null and when it would be remove", doc.Container.Verdict, doc.Action, doc.Rules)
	}
	for _, r := range doc.Rules {
		if strings.Contains(r.Rule, "the verdict says remove") {
			t.Errorf("rule %q: the verdict is keep", r.Rule)
		}
	}
}
