//go:build linux

package main

// Integration tests of the cleanup decisions ("The cleanup decisions"): the
// CLI runs in-process against the real Docker engine, with the DS01
// configuration in testdata/cleanup, and every test checks the JSON report
// (`--format json`) and the events.jsonl lines a run leaves.
//
// Ages come from `--now` (with --allow-clock-override on run), set relative
// to the timestamps Docker gave the test's containers: no test sleeps. Each
// test has its own dockertest.Engine, so its own name prefix, and runs the
// pipeline scoped to that prefix.
//
// The pipelines here have no release stage, so that they do not depend on
// it; TestShippedCleanupPipeline runs the shipped pipelines/cleanup.hcl,
// which has one.
//
// Fixture (testdata/cleanup, see its comments): alice is a student (hold
// 0.5 h, the default group's); rita is a researcher (2 h); fay is faculty
// (6 h); multi is listed as researcher and faculty (researcher comes first:
// 2 h); oscar is a researcher with a user override (defaults' 0.5 h); nora's
// hold is null, neg's -1, zero's 0; keeper is exempt from
// container_hold_after_stop_h; unknown-owner compose containers hold 2 h.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

// cleanupHCL is the cleanup pipeline of pipelines/cleanup.hcl without its
// release stage, its lock and syslog.
const cleanupHCL = `
variable "prefix" { default = "" }
variable "ds01_config" { default = "" }
variable "events_file" { default = "" }

pipeline "cleanup" {
  timeout = "2m"

  policy {
    limits_file     = "${var.ds01_config}/resource-limits.yaml"
    groups_dir      = "${var.ds01_config}/groups"
    overrides_file  = "${var.ds01_config}/user-overrides.yaml"
    exemptions_file = "${var.ds01_config}/lifecycle-exemptions.yaml"
  }

  gpu { backend = "none" }

  stage "discover"  { name_prefix = var.prefix }
  stage "attribute" {}
  stage "classify"  {}
  stage "exempt"    {}
  stage "decide"    { idle_events_file = var.events_file }
  stage "remove"    {}
  stage "log" {
    events_file = var.events_file
    syslog      = false
  }
}
`

// Holds of the fixture, as the report's limit_s.
const (
	studentHoldS    = 1800  // defaults.container_hold_after_stop_h: 0.5
	researcherHoldS = 7200  // groups.researcher.container_hold_after_stop_h: 2
	facultyHoldS    = 21600 // groups.faculty.container_hold_after_stop_h: 6
	composeHoldS    = 7200  // container_types.compose.container_hold_after_stop_h: 2
	createdLimitS   = 1800  // policies.created_container_timeout_m: 30
)

// noLimit in verdictWant.limit means limit_s is null (no limit, or none applied).
const noLimit = math.MinInt64

// Label keys, event types and other values the tests use.
const (
	labelDS01User       = "ds01.user"
	labelDS01Protected  = "ds01.protected"
	labelDS01Monitoring = "ds01.monitoring"
	sourceCleanup       = "ds01-pipe/cleanup"
	evContainerRemove   = "container.remove"
	evIdleKill          = "maintenance.idle_kill"
	evPipelineSummary   = "pipeline.summary"
	unresolvableUID     = "4242424" // resolves on no test host (checked)
)

// ---------------------------------------------------------------------------
// Helpers: fixture, CLI, report, events, Docker facts.

// cleanupFixture is one test's pipeline, DS01 configuration and events file,
// scoped to one engine's prefix.
type cleanupFixture struct {
	eng      *dockertest.Engine
	prefix   string
	config   string // DS01 configuration folder
	pipeline string // pipeline file
	events   string // events.jsonl, read by decide and written by log
}

// newCleanup returns a fixture for eng using testdata/cleanup.
func newCleanup(t *testing.T, eng *dockertest.Engine) *cleanupFixture {
	t.Helper()
	return newCleanupWithConfig(t, eng, cleanupConfigDir(t))
}

func newCleanupWithConfig(t *testing.T, eng *dockertest.Engine, config string) *cleanupFixture {
	t.Helper()
	dir := t.TempDir()
	return &cleanupFixture{
		eng:      eng,
		prefix:   eng.Prefix(),
		config:   config,
		pipeline: writeFile(t, dir, "cleanup.hcl", cleanupHCL),
		events:   filepath.Join(dir, "events.jsonl"),
	}
}

// cleanupConfigDir is the absolute path of testdata/cleanup.
func cleanupConfigDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata", "cleanup"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "resource-limits.yaml")); err != nil {
		t.Fatalf("the DS01 fixture is missing: %v", err)
	}
	return dir
}

// args builds the command line of a plan or run at now.
func (f *cleanupFixture) args(mode, format string, now time.Time, extra ...string) []string {
	args := []string{mode, "--format", format, "--now", now.UTC().Format(time.RFC3339Nano),
		"--var", "prefix=" + f.prefix,
		"--var", "ds01_config=" + f.config,
		"--var", "events_file=" + f.events,
	}
	if mode == "run" {
		args = append(args, "--allow-clock-override")
	}
	args = append(args, extra...)
	return append(args, f.pipeline)
}

// exec runs plan or run with JSON output and returns the exit code, the
// report (nil when stdout is empty) and stderr. stdout that is not one JSON
// document fails the test.
func (f *cleanupFixture) exec(t *testing.T, mode string, now time.Time, extra ...string) (ExitCode, *cleanupReport, string) {
	t.Helper()
	code, out, errOut := cli(t, f.args(mode, "json", now, extra...)...)
	if out == "" {
		return code, nil, errOut
	}
	return code, parseCleanupReport(t, out), errOut
}

// mustExec is exec that requires exit 0 and a report in the given mode.
func (f *cleanupFixture) mustExec(t *testing.T, mode string, now time.Time) *cleanupReport {
	t.Helper()
	code, rep, errOut := f.exec(t, mode, now)
	if code != ExitOK || rep == nil {
		t.Fatalf("%s at %s: exit %d, want 0\nstderr:\n%s", mode, now.Format(time.RFC3339), code, errOut)
	}
	if rep.Mode != mode || rep.Pipeline != "cleanup" {
		t.Errorf("report header: pipeline %q, mode %q; want cleanup, %s", rep.Pipeline, rep.Mode, mode)
	}
	return rep
}

func (f *cleanupFixture) plan(t *testing.T, now time.Time) *cleanupReport {
	t.Helper()
	return f.mustExec(t, "plan", now)
}

func (f *cleanupFixture) run(t *testing.T, now time.Time) *cleanupReport {
	t.Helper()
	return f.mustExec(t, "run", now)
}

// cleanupReport is the JSON document of plan and run (docs/exit-codes.md),
// decoded by the names of the public contract.
type cleanupReport struct {
	Pipeline   string            `json:"pipeline"`
	Mode       string            `json:"mode"`
	Now        string            `json:"now"`
	Containers []reportContainer `json:"containers"`
	GPUs       []json.RawMessage `json:"gpus"`
	Summary    struct {
		Containers int `json:"containers"`
		Remove     int `json:"remove"`
		Removed    int `json:"removed"`
		Failed     int `json:"failed"`
	} `json:"summary"`
}

type reportContainer struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	State        string   `json:"state"`
	Owner        string   `json:"owner"`
	OwnerSource  string   `json:"owner_source"`
	Type         string   `json:"type"`
	Exempt       bool     `json:"exempt"`
	ExemptReason string   `json:"exempt_reason"`
	GPUs         []string `json:"gpus"`
	Verdict      string   `json:"verdict"`
	Reason       string   `json:"reason"`
	Rule         string   `json:"rule"`
	Detail       string   `json:"detail"`
	AgeS         *int64   `json:"age_s"`
	LimitS       *int64   `json:"limit_s"`
	Outcome      string   `json:"outcome"`
	Error        string   `json:"error"`
	Warnings     []string `json:"warnings"`
}

func parseCleanupReport(t *testing.T, out string) *cleanupReport {
	t.Helper()
	var rep cleanupReport
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, clip(out))
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON document:\n%s", clip(out))
	}
	return &rep
}

// find returns the report's line for a container.
func (r *cleanupReport) find(id string) (reportContainer, bool) {
	for _, c := range r.Containers {
		if c.ID == id {
			return c, true
		}
	}
	return reportContainer{}, false
}

// verdictWant is what a container's report line must say. limit is
// limit_s, or noLimit for null.
type verdictWant struct {
	verdict, reason         string
	owner, ownerSource, typ string
	limit                   int64
	outcome                 string
	rule                    string // checked only when set
	exempt                  bool
	exemptReason            string
	minAge, maxAge          int64 // age_s bounds, checked when maxAge > 0
	gpus                    []string
	gpusChecked             bool // gpus is checked
}

// expect checks one container's line of the report and returns it.
func (r *cleanupReport) expect(t *testing.T, c dockertest.Container, w verdictWant) reportContainer {
	t.Helper()
	got, ok := r.find(c.ID)
	if !ok {
		t.Errorf("%s: not in the %s report", c.Name, r.Mode)
		return got
	}
	var diffs []string
	field := func(name, g, w string) {
		if g != w {
			diffs = append(diffs, fmt.Sprintf("%s = %q, want %q", name, g, w))
		}
	}
	field("verdict", got.Verdict, w.verdict)
	field("reason", got.Reason, w.reason)
	field("owner", got.Owner, w.owner)
	field("owner_source", got.OwnerSource, w.ownerSource)
	field("type", got.Type, w.typ)
	field("outcome", got.Outcome, w.outcome)
	field("limit_s", secondsText(got.LimitS), secondsText(limitOrNull(w.limit)))
	if w.rule != "" {
		field("rule", got.Rule, w.rule)
	}
	if got.Exempt != w.exempt {
		diffs = append(diffs, fmt.Sprintf("exempt = %t, want %t", got.Exempt, w.exempt))
	}
	field("exempt_reason", got.ExemptReason, w.exemptReason)
	if w.maxAge > 0 && (got.AgeS == nil || *got.AgeS < w.minAge || *got.AgeS > w.maxAge) {
		diffs = append(diffs, fmt.Sprintf("age_s = %s, want %d..%d", secondsText(got.AgeS), w.minAge, w.maxAge))
	}
	if w.gpusChecked && !slices.Equal(got.GPUs, w.gpus) {
		diffs = append(diffs, fmt.Sprintf("gpus = %q, want %q", got.GPUs, w.gpus))
	}
	if got.Name != c.Name {
		diffs = append(diffs, fmt.Sprintf("name = %q, want %q", got.Name, c.Name))
	}
	if len(diffs) > 0 {
		t.Errorf("%s (%s at %s):\n  %s\n  detail: %s; error: %s", c.Name, r.Mode, r.Now,
			strings.Join(diffs, "\n  "), got.Detail, got.Error)
	}
	return got
}

func limitOrNull(s int64) *int64 {
	if s == noLimit {
		return nil
	}
	return &s
}

func secondsText(p *int64) string {
	if p == nil {
		return "null"
	}
	return strconv.FormatInt(*p, 10)
}

// Shorthands for the common verdicts.
func wantRemoved(reason, owner, source, typ string, limit int64) verdictWant {
	return verdictWant{verdict: "remove", reason: reason, owner: owner, ownerSource: source, typ: typ, limit: limit, outcome: "removed"}
}

func wantKept(reason, owner, source, typ string, limit int64) verdictWant {
	return verdictWant{verdict: "keep", reason: reason, owner: owner, ownerSource: source, typ: typ, limit: limit}
}

func wantSkipped(reason, owner, source, typ string) verdictWant {
	return verdictWant{verdict: "skip", reason: reason, owner: owner, ownerSource: source, typ: typ, limit: noLimit}
}

func wantExempt(label, owner, source, typ string) verdictWant {
	w := wantSkipped("exempt", owner, source, typ)
	w.exempt, w.exemptReason = true, "label "+label+"=true"
	return w
}

// eventLine is one line of events.jsonl.
type eventLine struct {
	Timestamp     string         `json:"timestamp"`
	EventType     string         `json:"event_type"`
	SchemaVersion string         `json:"schema_version"`
	User          string         `json:"user"`
	Source        string         `json:"source"`
	Details       map[string]any `json:"details"`
	raw           string
}

// eventHost is the host name every event line carries last in its details.
func eventHost(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// readEventLines returns the lines of an events file; a missing file has none.
// Every line must be one valid JSON object.
func readEventLines(t *testing.T, path string) []eventLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []eventLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if !json.Valid(line) {
			t.Errorf("%s:%d is not valid JSON: %s", path, n, clip(string(line)))
			continue
		}
		var ev eventLine
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Errorf("%s:%d: %v", path, n, err)
			continue
		}
		ev.raw = string(line)
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("%s does not end with a newline", path)
	}
	return out
}

// eventsOfType returns the events of one type.
func eventsOfType(evs []eventLine, typ string) []eventLine {
	var out []eventLine
	for _, ev := range evs {
		if ev.EventType == typ {
			out = append(out, ev)
		}
	}
	return out
}

// ds01Timestamp is DS01's event time: UTC, microseconds, "Z".
var ds01Timestamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

// expectRemoveEvent checks that exactly one container.remove names the
// container, from this pipeline, for wantUser, with exactly these details
// besides "container" and "host".
func expectRemoveEvent(t *testing.T, evs []eventLine, name, wantUser string, details map[string]any) eventLine {
	t.Helper()
	var found []eventLine
	for _, ev := range eventsOfType(evs, evContainerRemove) {
		if ev.Details["container"] == name {
			found = append(found, ev)
		}
	}
	if len(found) != 1 {
		t.Errorf("%d container.remove events for %s, want 1", len(found), name)
		return eventLine{}
	}
	ev := found[0]
	wantDetails := map[string]any{"container": name, "host": eventHost(t)}
	for k, v := range details {
		wantDetails[k] = v
	}
	if ev.User != wantUser || ev.Source != sourceCleanup || ev.SchemaVersion != "1" ||
		!ds01Timestamp.MatchString(ev.Timestamp) || !reflect.DeepEqual(ev.Details, wantDetails) {
		t.Errorf("container.remove for %s:\n  got  %s\n  want user %q, source %q, schema 1, a DS01 timestamp, details %v",
			name, clip(ev.raw), wantUser, sourceCleanup, wantDetails)
	}
	return ev
}

// expectNoRemoveEvent checks that no container.remove names the container.
func expectNoRemoveEvent(t *testing.T, evs []eventLine, names ...string) {
	t.Helper()
	for _, ev := range eventsOfType(evs, evContainerRemove) {
		if slices.Contains(names, fmt.Sprint(ev.Details["container"])) {
			t.Errorf("unexpected container.remove: %s", clip(ev.raw))
		}
	}
}

// exitedSpec is an exited probe container.
func exitedSpec(name string, labels map[string]string) dockertest.Spec {
	return dockertest.Spec{Name: name, Labels: labels, Args: []string{"exit", "3"}, Start: true, Wait: true}
}

func ownedBy(name string) map[string]string { return map[string]string{labelDS01User: name} }

// containerExists reports whether the engine still has the container.
func containerExists(t *testing.T, eng *dockertest.Engine, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := eng.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	switch {
	case err == nil:
		return true
	case cerrdefs.IsNotFound(err):
		return false
	}
	t.Fatalf("inspect %s: %v", id, err)
	return false
}

// expectExist checks which containers still exist.
func expectExist(t *testing.T, eng *dockertest.Engine, want bool, cs ...dockertest.Container) {
	t.Helper()
	for _, c := range cs {
		if got := containerExists(t, eng, c.ID); got != want {
			if want {
				t.Errorf("%s was removed; it must still exist", c.Name)
			} else {
				t.Errorf("%s still exists; it should have been removed", c.Name)
			}
		}
	}
}

// finishedAt, startedAt and createdAt are Docker's own timestamps of a
// container.
func finishedAt(t *testing.T, eng *dockertest.Engine, c dockertest.Container) time.Time {
	t.Helper()
	st := eng.Inspect(t, c.ID).State
	if st == nil {
		t.Fatalf("%s has no state", c.Name)
	}
	return parseDockerTime(t, c.Name+" FinishedAt", st.FinishedAt)
}

func startedAt(t *testing.T, eng *dockertest.Engine, c dockertest.Container) time.Time {
	t.Helper()
	st := eng.Inspect(t, c.ID).State
	if st == nil {
		t.Fatalf("%s has no state", c.Name)
	}
	return parseDockerTime(t, c.Name+" StartedAt", st.StartedAt)
}

func createdAt(t *testing.T, eng *dockertest.Engine, c dockertest.Container) time.Time {
	t.Helper()
	return parseDockerTime(t, c.Name+" Created", eng.Inspect(t, c.ID).Created)
}

func parseDockerTime(t *testing.T, what, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || ts.Year() < 2000 {
		t.Fatalf("%s = %q: not a usable time (%v)", what, s, err)
	}
	return ts.UTC()
}

// latestFinish is the last FinishedAt among cs: at latestFinish+d every one
// of them has been stopped for at least d (and at most d plus the seconds
// it took to create them).
func latestFinish(t *testing.T, eng *dockertest.Engine, cs ...dockertest.Container) time.Time {
	t.Helper()
	var last time.Time
	for _, c := range cs {
		if f := finishedAt(t, eng, c); f.After(last) {
			last = f
		}
	}
	return last
}

// ds01EventLine formats one DS01 event line, as DS01's own scripts write it.
func ds01EventLine(at time.Time, typ, who, source, details string) string {
	return fmt.Sprintf(`{"timestamp":%q,"event_type":%q,"schema_version":"1","user":%q,"source":%q,"details":%s}`+"\n",
		at.UTC().Format("2006-01-02T15:04:05.000000Z"), typ, who, source, details)
}

// clip shortens long text for a failure message.
func clip(s string) string {
	const max = 2000
	if len(s) <= max {
		return s
	}
	return s[:max] + fmt.Sprintf("... (%d bytes)", len(s))
}

// copyCleanupConfig copies testdata/cleanup to a fresh folder a test may break.
func copyCleanupConfig(t *testing.T) string {
	t.Helper()
	src := cleanupConfigDir(t)
	dst := filepath.Join(t.TempDir(), "ds01")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// replaceIn replaces old by new (exactly once) in a file of dir and returns
// the file's path and the 1-based line the replacement starts on.
func replaceIn(t *testing.T, dir, name, old, new string) (string, int) {
	t.Helper()
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if strings.Count(text, old) != 1 {
		t.Fatalf("%s: %q occurs %d times, want once", path, old, strings.Count(text, old))
	}
	line := strings.Count(text[:strings.Index(text, old)], "\n") + 1
	if err := os.WriteFile(path, []byte(strings.Replace(text, old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, line
}

// ---------------------------------------------------------------------------
// Created-never-started containers.

func TestCleanupCreatedNeverStarted(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	fresh := eng.Create(t, dockertest.Spec{Name: "scratch", Labels: ownedBy("alice")})
	protected := eng.Create(t, dockertest.Spec{Name: "protected", Labels: map[string]string{labelDS01Protected: "true", labelDS01User: "alice"}})
	born := createdAt(t, eng, fresh)

	// 29 minutes: within the 30-minute created timeout.
	rep := f.run(t, born.Add(29*time.Minute))
	w := wantKept("within_hold", "alice", "ds01.user", "docker", createdLimitS)
	w.rule, w.minAge, w.maxAge = "policies.created_container_timeout_m", 29*60, 29*60
	rep.expect(t, fresh, w)
	rep.expect(t, protected, wantExempt(labelDS01Protected, "alice", "ds01.user", "docker"))
	expectExist(t, eng, true, fresh, protected)

	// 31 minutes: removed, with DS01's event.
	rep = f.run(t, born.Add(31*time.Minute))
	w = wantRemoved("created_never_started", "alice", "ds01.user", "docker", createdLimitS)
	w.minAge, w.maxAge = 31*60, 31*60
	rep.expect(t, fresh, w)
	rep.expect(t, protected, wantExempt(labelDS01Protected, "alice", "ds01.user", "docker"))
	expectExist(t, eng, false, fresh)
	if rep.Summary.Removed != 1 {
		t.Errorf("summary.removed = %d, want 1", rep.Summary.Removed)
	}

	// Five days: a protected container is never removed.
	rep = f.run(t, createdAt(t, eng, protected).Add(5*24*time.Hour))
	rep.expect(t, protected, wantExempt(labelDS01Protected, "alice", "ds01.user", "docker"))
	expectExist(t, eng, true, protected)

	evs := readEventLines(t, f.events)
	ev := expectRemoveEvent(t, evs, fresh.Name, "alice", map[string]any{"reason": "created_never_started", "age": "31m"})
	// DS01's key order, byte for byte.
	wantTail := fmt.Sprintf(`,"event_type":"container.remove","schema_version":"1","user":"alice","source":"ds01-pipe/cleanup","details":{"container":%q,"reason":"created_never_started","age":"31m","host":%q}}`, fresh.Name, eventHost(t))
	if ev.raw != "" && !strings.HasSuffix(ev.raw, wantTail) {
		t.Errorf("container.remove line:\n  got  %s\n  want ...%s", ev.raw, wantTail)
	}
	if n := len(eventsOfType(evs, evContainerRemove)); n != 1 {
		t.Errorf("%d container.remove events over three runs, want 1", n)
	}
	if n := len(eventsOfType(evs, evPipelineSummary)); n != 3 {
		t.Errorf("%d pipeline.summary events, want one per run (3)", n)
	}
}

// ---------------------------------------------------------------------------
// Exited containers: the owner chain, the type rules, exemptions, holds.

func TestCleanupOwnerRules(t *testing.T) {
	t.Parallel()
	if u, err := user.LookupId("0"); err != nil || u.Username != "root" {
		t.Fatalf("this test needs uid 0 to be root in the passwd database: %v %v", u, err)
	}
	if u, err := user.LookupId(unresolvableUID); err == nil {
		t.Fatalf("uid %s resolves to %q on this host; the test needs a uid that does not", unresolvableUID, u.Username)
	}
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	byLabel := eng.Create(t, exitedSpec("labelled", ownedBy("alice")))
	byAIME := eng.Create(t, exitedSpec("aime", map[string]string{"aime.mlc.USER": "bob"}))
	byFolder := eng.Create(t, exitedSpec("devc", map[string]string{"devcontainer.local_folder": "/home/carol/p"}))
	byUID := eng.Create(t, exitedSpec("thesis._.0", nil))
	byBadUID := eng.Create(t, exitedSpec("thesis._."+unresolvableUID, nil))
	all := []dockertest.Container{byLabel, byAIME, byFolder, byUID, byBadUID}

	// 40 minutes after the last one stopped: every hold here is 0.5 h.
	rep := f.run(t, latestFinish(t, eng, all...).Add(40*time.Minute))
	w := wantRemoved("hold_expired", "alice", "ds01.user", "docker", studentHoldS)
	w.rule = "defaults.container_hold_after_stop_h"
	w.minAge, w.maxAge = 40*60, 45*60
	rep.expect(t, byLabel, w)
	rep.expect(t, byAIME, wantRemoved("hold_expired", "bob", "aime.mlc.USER", "docker", studentHoldS))
	rep.expect(t, byFolder, wantRemoved("hold_expired", "carol", "devcontainer.local_folder", "devcontainer", studentHoldS))
	rep.expect(t, byUID, wantRemoved("hold_expired", "root", "name._.uid", "atomic", studentHoldS))
	// Unknown owner: container_types.atomic has no entry, container_types.unknown
	// no hold, so defaults' 0.5 h.
	rep.expect(t, byBadUID, wantRemoved("hold_expired", "unknown", "unknown", "atomic", studentHoldS))
	expectExist(t, eng, false, all...)
	if rep.Summary.Removed != len(all) || rep.Summary.Failed != 0 {
		t.Errorf("summary: removed %d, failed %d; want %d, 0", rep.Summary.Removed, rep.Summary.Failed, len(all))
	}

	evs := readEventLines(t, f.events)
	ev := expectRemoveEvent(t, evs, byLabel.Name, "alice", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "docker"})
	wantTail := fmt.Sprintf(`"details":{"container":%q,"reason":"hold_expired","stopped_duration":"0h","container_type":"docker","host":%q}}`, byLabel.Name, eventHost(t))
	if ev.raw != "" && !strings.HasSuffix(ev.raw, wantTail) {
		t.Errorf("container.remove line:\n  got  %s\n  want ...%s", ev.raw, wantTail)
	}
	expectRemoveEvent(t, evs, byAIME.Name, "bob", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "docker"})
	expectRemoveEvent(t, evs, byFolder.Name, "carol", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "devcontainer"})
	expectRemoveEvent(t, evs, byUID.Name, "root", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "atomic"})
	expectRemoveEvent(t, evs, byBadUID.Name, "unknown", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "atomic"})
}

func TestCleanupTypeRules(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	labels := func(kv ...string) map[string]string {
		m := ownedBy("alice")
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	verbatim := eng.Create(t, exitedSpec("ctype", labels("ds01.container_type", "orchestration", "ds01.interface", "api")))
	iface := eng.Create(t, exitedSpec("iface", labels("ds01.interface", "api")))
	atomic := eng.Create(t, exitedSpec("job._.1001", labels()))
	devc := eng.Create(t, exitedSpec("devc", labels("devcontainer.metadata", "[]")))
	compose := eng.Create(t, exitedSpec("compose", labels("com.docker.compose.project", "web", "com.docker.compose.service", "db")))
	plain := eng.Create(t, exitedSpec("plain", labels()))
	// Nobody's: the hold then depends on the type.
	composeAnon := eng.Create(t, exitedSpec("compose-anon", map[string]string{"com.docker.compose.project": "web"}))
	plainAnon := eng.Create(t, exitedSpec("plain-anon", nil))
	all := []dockertest.Container{verbatim, iface, atomic, devc, compose, plain, composeAnon, plainAnon}

	rep := f.run(t, latestFinish(t, eng, all...).Add(40*time.Minute))
	types := []struct {
		c   dockertest.Container
		typ string
	}{{verbatim, "orchestration"}, {iface, "api"}, {atomic, "atomic"}, {devc, "devcontainer"}, {compose, "compose"}, {plain, "docker"}}
	evs := readEventLines(t, f.events)
	for _, tc := range types {
		rep.expect(t, tc.c, wantRemoved("hold_expired", "alice", "ds01.user", tc.typ, studentHoldS))
		expectRemoveEvent(t, evs, tc.c.Name, "alice", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": tc.typ})
	}
	w := wantKept("within_hold", "unknown", "unknown", "compose", composeHoldS)
	w.rule = "container_types.compose.container_hold_after_stop_h"
	rep.expect(t, composeAnon, w)
	w = wantRemoved("hold_expired", "unknown", "unknown", "docker", studentHoldS)
	w.rule = "defaults.container_hold_after_stop_h"
	rep.expect(t, plainAnon, w)
	expectRemoveEvent(t, evs, plainAnon.Name, "unknown", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "docker"})
	expectExist(t, eng, true, composeAnon)
	expectExist(t, eng, false, verbatim, iface, atomic, devc, compose, plain, plainAnon)
}

func TestCleanupExemptions(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	monitoring := eng.Create(t, exitedSpec("monitoring", map[string]string{labelDS01Monitoring: "true", labelDS01User: "alice"}))
	protected := eng.Create(t, exitedSpec("protected", map[string]string{labelDS01Protected: "true", labelDS01User: "alice"}))
	// Values compare exactly, as in DS01: "True" does not protect.
	notQuite := eng.Create(t, exitedSpec("protected-True", map[string]string{labelDS01Protected: "True", labelDS01User: "alice"}))
	// keeper is exempt from container_hold_after_stop_h in lifecycle-exemptions.yaml.
	keeper := eng.Create(t, exitedSpec("keeper", ownedBy("keeper")))
	// alice is exempt from idle_timeout_h and max_runtime_h only.
	alice := eng.Create(t, exitedSpec("alice", ownedBy("alice")))
	all := []dockertest.Container{monitoring, protected, notQuite, keeper, alice}

	last := latestFinish(t, eng, all...)
	for _, days := range []int{1, 30} {
		rep := f.run(t, last.Add(time.Duration(days)*24*time.Hour))
		rep.expect(t, monitoring, wantExempt(labelDS01Monitoring, "alice", "ds01.user", "docker"))
		rep.expect(t, protected, wantExempt(labelDS01Protected, "alice", "ds01.user", "docker"))
		w := wantKept("exempt", "keeper", "ds01.user", "docker", noLimit)
		w.rule = "lifecycle-exemptions.yaml container_hold_after_stop_h"
		rep.expect(t, keeper, w)
		if got, ok := rep.find(keeper.ID); ok && !strings.Contains(got.Detail, "thesis archive") {
			t.Errorf("keeper's detail %q does not give the exemption's reason", got.Detail)
		}
		if days == 1 {
			rep.expect(t, notQuite, wantRemoved("hold_expired", "alice", "ds01.user", "docker", studentHoldS))
			rep.expect(t, alice, wantRemoved("hold_expired", "alice", "ds01.user", "docker", studentHoldS))
		}
		expectExist(t, eng, true, monitoring, protected, keeper)
	}
	expectExist(t, eng, false, notQuite, alice)
	expectNoRemoveEvent(t, readEventLines(t, f.events), monitoring.Name, protected.Name, keeper.Name)
}

func TestCleanupUserOverrideHolds(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	// Created in this order, so that at zero's FinishedAt no age is negative.
	never := eng.Create(t, exitedSpec("nora", ownedBy("nora")))
	negative := eng.Create(t, exitedSpec("neg", ownedBy("neg")))
	zero := eng.Create(t, exitedSpec("zero", ownedBy("zero")))
	stopped := finishedAt(t, eng, zero)

	// At the instant zero stopped: a hold of 0 is not yet over (strict >).
	rep := f.plan(t, stopped)
	w := wantKept("within_hold", "zero", "ds01.user", "docker", 0)
	w.rule = "user-overrides.yaml zero.container_hold_after_stop_h"
	rep.expect(t, zero, w)
	w = verdictWant{verdict: "remove", reason: "hold_expired", owner: "neg", ownerSource: "ds01.user", typ: "docker", limit: -3600, outcome: "planned"}
	rep.expect(t, negative, w)
	rep.expect(t, never, wantKept("indefinite_hold", "nora", "ds01.user", "docker", noLimit))

	// One second later zero goes too; nora stays.
	rep = f.run(t, stopped.Add(time.Second))
	w = wantRemoved("hold_expired", "zero", "ds01.user", "docker", 0)
	w.minAge, w.maxAge = 1, 1
	rep.expect(t, zero, w)
	rep.expect(t, negative, wantRemoved("hold_expired", "neg", "ds01.user", "docker", -3600))
	rep.expect(t, never, wantKept("indefinite_hold", "nora", "ds01.user", "docker", noLimit))
	expectExist(t, eng, false, zero, negative)

	// Thirty days later nora's container is still kept.
	rep = f.run(t, finishedAt(t, eng, never).Add(30*24*time.Hour))
	w = wantKept("indefinite_hold", "nora", "ds01.user", "docker", noLimit)
	w.rule = "user-overrides.yaml nora.container_hold_after_stop_h"
	w.minAge, w.maxAge = 30*24*3600, 30*24*3600
	rep.expect(t, never, w)
	expectExist(t, eng, true, never)

	evs := readEventLines(t, f.events)
	expectRemoveEvent(t, evs, zero.Name, "zero", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "docker"})
	expectRemoveEvent(t, evs, negative.Name, "neg", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "docker"})
	expectNoRemoveEvent(t, evs, never.Name)
}

func TestCleanupGroupPrecedence(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	rita := eng.Create(t, exitedSpec("rita", ownedBy("rita")))    // researcher: 2 h
	multi := eng.Create(t, exitedSpec("multi", ownedBy("multi"))) // researcher and faculty: the first, 2 h
	oscar := eng.Create(t, exitedSpec("oscar", ownedBy("oscar"))) // researcher with an override: defaults' 0.5 h
	fay := eng.Create(t, exitedSpec("fay", ownedBy("fay")))       // faculty: 6 h
	last := latestFinish(t, eng, rita, multi, oscar, fay)

	const researcherRule = "groups.researcher.container_hold_after_stop_h"
	rep := f.run(t, last.Add(time.Hour))
	w := wantKept("within_hold", "rita", "ds01.user", "docker", researcherHoldS)
	w.rule = researcherRule
	rep.expect(t, rita, w)
	w = wantKept("within_hold", "multi", "ds01.user", "docker", researcherHoldS)
	w.rule = researcherRule
	rep.expect(t, multi, w)
	w = wantRemoved("hold_expired", "oscar", "ds01.user", "docker", studentHoldS)
	w.rule = "defaults.container_hold_after_stop_h"
	rep.expect(t, oscar, w)
	w = wantKept("within_hold", "fay", "ds01.user", "docker", facultyHoldS)
	w.rule = "groups.faculty.container_hold_after_stop_h"
	rep.expect(t, fay, w)
	expectExist(t, eng, true, rita, multi, fay)
	expectExist(t, eng, false, oscar)

	rep = f.run(t, last.Add(3*time.Hour))
	rep.expect(t, rita, wantRemoved("hold_expired", "rita", "ds01.user", "docker", researcherHoldS))
	rep.expect(t, multi, wantRemoved("hold_expired", "multi", "ds01.user", "docker", researcherHoldS))
	rep.expect(t, fay, wantKept("within_hold", "fay", "ds01.user", "docker", facultyHoldS))
	expectExist(t, eng, false, rita, multi)
	expectExist(t, eng, true, fay)

	evs := readEventLines(t, f.events)
	expectRemoveEvent(t, evs, rita.Name, "rita", map[string]any{"reason": "hold_expired", "stopped_duration": "3h", "container_type": "docker"})
	expectRemoveEvent(t, evs, oscar.Name, "oscar", map[string]any{"reason": "hold_expired", "stopped_duration": "1h", "container_type": "docker"})
}

func TestCleanupIdleStoppedRemovedAtOnce(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	idle := eng.Create(t, exitedSpec("idle", ownedBy("alice")))
	idleNever := eng.Create(t, exitedSpec("idle-nora", ownedBy("nora"))) // hold null: the idle kill wins
	stale := eng.Create(t, exitedSpec("stale-kill", ownedBy("alice")))   // its idle kill predates this run

	// DS01's idle checker logs the kill when it stops the container, after
	// its start. (Not at FinishedAt: for a process that exits at once,
	// Docker's FinishedAt, containerd's exit time, can precede StartedAt.)
	lines := ds01EventLine(startedAt(t, eng, idle).Add(time.Millisecond), evIdleKill, "alice", "check-idle-containers",
		fmt.Sprintf(`{"container":%q,"idle_duration":"2h","container_type":"docker"}`, idle.Name)) +
		ds01EventLine(startedAt(t, eng, idleNever).Add(time.Millisecond), evIdleKill, "nora", "check-idle-containers",
			fmt.Sprintf(`{"container":%q,"idle_duration":"40m","container_type":"docker"}`, idleNever.Name)) +
		ds01EventLine(startedAt(t, eng, stale).Add(-time.Hour), evIdleKill, "alice", "check-idle-containers",
			fmt.Sprintf(`{"container":%q,"idle_duration":"1h","container_type":"docker"}`, stale.Name))
	writeFile(t, filepath.Dir(f.events), filepath.Base(f.events), lines)

	rep := f.run(t, latestFinish(t, eng, idle, idleNever, stale).Add(time.Minute))
	w := wantRemoved("idle_stopped", "alice", "ds01.user", "docker", noLimit)
	w.rule, w.minAge, w.maxAge = "events maintenance.idle_kill", 60, 5*60
	rep.expect(t, idle, w)
	rep.expect(t, idleNever, wantRemoved("idle_stopped", "nora", "ds01.user", "docker", noLimit))
	rep.expect(t, stale, wantKept("within_hold", "alice", "ds01.user", "docker", studentHoldS))
	expectExist(t, eng, false, idle, idleNever)
	expectExist(t, eng, true, stale)

	evs := readEventLines(t, f.events)
	if len(evs) < 3 || evs[0].raw+"\n"+evs[1].raw+"\n"+evs[2].raw+"\n" != lines {
		t.Errorf("the idle checker's lines were not kept as the first lines of %s", f.events)
	}
	expectRemoveEvent(t, evs, idle.Name, "alice", map[string]any{"reason": "idle_stopped", "stopped_duration": "0h", "container_type": "docker"})
	expectRemoveEvent(t, evs, idleNever.Name, "nora", map[string]any{"reason": "idle_stopped", "stopped_duration": "0h", "container_type": "docker"})
	expectNoRemoveEvent(t, evs, stale.Name)
}

// ---------------------------------------------------------------------------
// What is never touched.

func TestCleanupNeverRemovesLiveContainers(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	running := eng.Create(t, dockertest.Spec{Name: "running", Labels: ownedBy("alice"), Args: []string{"forever"}, Start: true})
	paused := eng.Create(t, dockertest.Spec{Name: "paused", Labels: ownedBy("alice"), Args: []string{"forever"}, Start: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := eng.Client().ContainerPause(ctx, paused.ID, client.ContainerPauseOptions{}); err != nil {
		t.Fatalf("pause %s: %v", paused.Name, err)
	}
	t.Cleanup(func() { // before the engine's cleanup force-removes it
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = eng.Client().ContainerUnpause(ctx, paused.ID, client.ContainerUnpauseOptions{})
	})
	if st := eng.Inspect(t, paused.ID).State; st == nil || string(st.Status) != "paused" {
		t.Fatalf("%s is not paused: %+v", paused.Name, st)
	}

	born := createdAt(t, eng, running)
	for _, now := range []time.Time{born.Add(31 * time.Minute), born.Add(365 * 24 * time.Hour)} {
		rep := f.run(t, now)
		rep.expect(t, running, wantSkipped("not_a_candidate", "alice", "ds01.user", "docker"))
		rep.expect(t, paused, wantSkipped("not_a_candidate", "alice", "ds01.user", "docker"))
		expectExist(t, eng, true, running, paused)
	}
	if evs := readEventLines(t, f.events); len(eventsOfType(evs, evContainerRemove)) != 0 {
		t.Errorf("container.remove events for live containers: %v", eventsOfType(evs, evContainerRemove))
	}
}

func TestCleanupLeavesBystandersAlone(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	other := dockertest.New(t)
	f := newCleanup(t, eng)
	mine := eng.Create(t, exitedSpec("mine", ownedBy("alice")))
	bystanders := []dockertest.Container{
		other.Create(t, exitedSpec("bystander", ownedBy("alice"))),
		other.Create(t, dockertest.Spec{Name: "bystander-created", Labels: ownedBy("alice")}),
		// Holds the prefix, but not at the start of its name.
		other.Create(t, exitedSpec("x-"+eng.Prefix()+"sneaky", ownedBy("alice"))),
	}

	rep := f.run(t, latestFinish(t, eng, mine).Add(30*24*time.Hour))
	rep.expect(t, mine, wantRemoved("hold_expired", "alice", "ds01.user", "docker", studentHoldS))
	if len(rep.Containers) != 1 {
		t.Errorf("the run saw %d containers, want 1 (its own)", len(rep.Containers))
	}
	for _, b := range bystanders {
		if _, listed := rep.find(b.ID); listed {
			t.Errorf("%s, outside the prefix, is in the report", b.Name)
		}
	}
	expectExist(t, other, true, bystanders...)
	expectExist(t, eng, false, mine)
}

// ---------------------------------------------------------------------------
// plan and run agree.

func TestCleanupPlanAgreesWithRun(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	cs := []dockertest.Container{
		eng.Create(t, dockertest.Spec{Name: "created", Labels: ownedBy("alice")}),
		eng.Create(t, dockertest.Spec{Name: "created-protected", Labels: map[string]string{labelDS01Protected: "true"}}),
		eng.Create(t, exitedSpec("alice", ownedBy("alice"))),
		eng.Create(t, exitedSpec("rita", ownedBy("rita"))),
		eng.Create(t, exitedSpec("nora", ownedBy("nora"))),
		eng.Create(t, exitedSpec("anon", nil)),
		eng.Create(t, exitedSpec("monitoring", map[string]string{labelDS01Monitoring: "true"})),
		eng.Create(t, dockertest.Spec{Name: "running", Labels: ownedBy("alice"), Args: []string{"forever"}, Start: true}),
	}
	now := time.Now().UTC().Add(40 * time.Minute)

	plan := f.plan(t, now)
	if len(plan.Containers) != len(cs) {
		t.Fatalf("plan lists %d containers, want %d", len(plan.Containers), len(cs))
	}
	expectExist(t, eng, true, cs...)
	if _, err := os.Stat(f.events); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("plan wrote %s (stat: %v); a plan has no side effects", f.events, err)
	}
	code, _, _ := f.exec(t, "plan", now, "--detailed-exitcode")
	if code != ExitChanges {
		t.Errorf("plan --detailed-exitcode: exit %d, want %d (something would be removed)", code, ExitChanges)
	}

	run := f.run(t, now)
	removals := 0
	for _, c := range cs {
		p, _ := plan.find(c.ID)
		r, ok := run.find(c.ID)
		if !ok {
			t.Errorf("%s: in the plan, not in the run", c.Name)
			continue
		}
		if p.Verdict != r.Verdict || p.Reason != r.Reason || p.Owner != r.Owner || p.Type != r.Type ||
			secondsText(p.LimitS) != secondsText(r.LimitS) {
			t.Errorf("%s: plan says %s/%s (owner %s, type %s, limit %s), run says %s/%s (owner %s, type %s, limit %s)",
				c.Name, p.Verdict, p.Reason, p.Owner, p.Type, secondsText(p.LimitS), r.Verdict, r.Reason, r.Owner, r.Type, secondsText(r.LimitS))
		}
		switch p.Verdict {
		case "remove":
			removals++
			if p.Outcome != "planned" || r.Outcome != "removed" {
				t.Errorf("%s: plan outcome %q, run outcome %q; want planned, removed", c.Name, p.Outcome, r.Outcome)
			}
			expectExist(t, eng, false, c)
		default:
			if p.Outcome != "" || r.Outcome != "" {
				t.Errorf("%s (%s): outcomes %q, %q; want none", c.Name, p.Verdict, p.Outcome, r.Outcome)
			}
			expectExist(t, eng, true, c)
		}
	}
	// created, alice and anon go; the rest stay.
	if removals != 3 || plan.Summary.Remove != 3 || run.Summary.Removed != 3 {
		t.Errorf("removals: %d in the plan (summary %d), %d in the run; want 3", removals, plan.Summary.Remove, run.Summary.Removed)
	}
	if n := len(eventsOfType(readEventLines(t, f.events), evContainerRemove)); n != 3 {
		t.Errorf("%d container.remove events, want 3", n)
	}
}

// ---------------------------------------------------------------------------
// Bad input.

func TestCleanupBadPolicyFilesTouchNothing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		corrupt func(t *testing.T, dir string) (file string, line int)
		want    string // also in stderr
	}{
		{
			name: "limits file does not parse",
			corrupt: func(t *testing.T, dir string) (string, int) {
				return replaceIn(t, dir, "resource-limits.yaml",
					"  container_hold_after_stop_h: 0.5 ", "  container_hold_after_stop_h: hold: 0.5 ")
			},
			want: "invalid YAML",
		},
		{
			name: "hold is not a number",
			corrupt: func(t *testing.T, dir string) (string, int) {
				return replaceIn(t, dir, "user-overrides.yaml",
					"  container_hold_after_stop_h: null", `  container_hold_after_stop_h: "abc"`)
			},
			want: `"abc"`,
		},
		{
			name: "members file cannot be read",
			corrupt: func(t *testing.T, dir string) (string, int) {
				path := filepath.Join(dir, "groups", "faculty.members")
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
				return path, 0
			},
			want: "cannot read",
		},
		{
			name: "expires_on is not a date",
			corrupt: func(t *testing.T, dir string) (string, int) {
				return replaceIn(t, dir, "lifecycle-exemptions.yaml",
					`expires_on: "2099-12-31T23:59:59Z"`, `expires_on: "next spring"`)
			},
			want: "expires_on",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyCleanupConfig(t)
			file, line := tc.corrupt(t, dir)
			eng := dockertest.New(t)
			f := newCleanupWithConfig(t, eng, dir)
			candidate := eng.Create(t, exitedSpec("candidate", ownedBy("alice")))
			now := finishedAt(t, eng, candidate).Add(30 * 24 * time.Hour)

			where := file
			if line > 0 {
				where = fmt.Sprintf("%s:%d:", file, line)
			}
			for _, mode := range []string{"run", "plan"} {
				code, rep, errOut := f.exec(t, mode, now)
				if code != ExitConfigError {
					t.Errorf("%s: exit %d, want %d", mode, code, ExitConfigError)
				}
				if !strings.Contains(errOut, where) || !strings.Contains(errOut, tc.want) {
					t.Errorf("%s: stderr does not name %q with %q:\n%s", mode, where, tc.want, errOut)
				}
				if rep != nil {
					t.Errorf("%s: a report reached stdout despite the configuration error", mode)
				}
			}
			code, _, errOut := cli(t, "validate", "--var", "ds01_config="+dir, f.pipeline)
			if code != ExitConfigError || !strings.Contains(errOut, where) {
				t.Errorf("validate: exit %d, want %d naming %q:\n%s", code, ExitConfigError, where, errOut)
			}
			expectExist(t, eng, true, candidate)
			if _, err := os.Stat(f.events); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed run wrote %s (stat: %v)", f.events, err)
			}
		})
	}
}

func TestCleanupHostileLabelsAndNames(t *testing.T) {
	t.Parallel()
	eng := dockertest.New(t)
	f := newCleanup(t, eng)
	huge := strings.Repeat("u", 64<<10)
	hostileOwner := []dockertest.Container{
		eng.Create(t, exitedSpec("newline", map[string]string{labelDS01User: "eve\nmallory", "note": "line one\nline two\r\n"})),
		eng.Create(t, exitedSpec("ansi", map[string]string{labelDS01User: "\x1b[31mred\x1b[0m", "ds01.container_type": "\x1b[2J\x1b[Hboom"})),
		eng.Create(t, exitedSpec("huge", map[string]string{labelDS01User: huge, "ds01.container_type": huge, "description": strings.Repeat("d", 64<<10)})),
	}
	// Docker takes labels as JSON, and the client's encoder (like any JSON
	// encoder) turns invalid UTF-8 into U+FFFD before the engine sees it:
	// these bytes reach ds01-pipe only in that form. Sent all the same.
	nonUTF8 := eng.Create(t, exitedSpec("non-utf8", map[string]string{labelDS01User: "al\xffce", "blob": "\xfe\xff\xc3\x28"}))
	weird := []dockertest.Container{
		eng.Create(t, exitedSpec("._._.._", nil)),           // token "_": no such login
		eng.Create(t, exitedSpec("x._.", nil)),              // empty token
		eng.Create(t, exitedSpec("-.-._.99999999999", nil)), // uid out of range
	}
	all := append(append(slices.Clone(hostileOwner), nonUTF8), weird...)
	now := latestFinish(t, eng, all...).Add(40 * time.Minute)

	// The table first (a plan), while every container is still there.
	code, table, errOut := cli(t, f.args("plan", "table", now)...)
	if code != ExitOK {
		t.Fatalf("plan --format table: exit %d\n%s", code, errOut)
	}
	if strings.ContainsAny(table, "\x1b\r") || !utf8.ValidString(table) {
		t.Errorf("the table holds a raw escape, a carriage return or invalid UTF-8:\n%q", table)
	}
	rows := 0
	for _, line := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		switch {
		case line == "", strings.HasPrefix(line, "CONTAINER"), strings.HasPrefix(line, "cleanup (plan)"):
		case strings.HasPrefix(line, eng.Prefix()):
			rows++
		default:
			t.Errorf("table line that is neither a header, a container row nor the summary (a broken cell?): %q", line)
		}
	}
	if rows != len(all) {
		t.Errorf("the table has %d container rows, want %d:\n%s", rows, len(all), table)
	}

	code, out, errOut := cli(t, f.args("run", "json", now)...)
	if code != ExitOK {
		t.Fatalf("run: exit %d\n%s", code, errOut)
	}
	if !json.Valid([]byte(out)) {
		t.Fatalf("the report is not valid JSON:\n%s", clip(out))
	}
	rep := parseCleanupReport(t, out)
	for _, c := range hostileOwner {
		got := rep.expect(t, c, wantRemoved("hold_expired", "unknown", "unknown", "docker", studentHoldS))
		if len(got.Warnings) == 0 {
			t.Errorf("%s: no warning about its unusable label", c.Name)
		}
		for _, w := range got.Warnings {
			if strings.Contains(w, "mallory") || strings.Contains(w, "\x1b") || strings.Contains(w, "uuuu") {
				t.Errorf("%s: a warning repeats the label's value: %q", c.Name, w)
			}
		}
	}
	if got, ok := rep.find(nonUTF8.ID); !ok || got.Verdict != "remove" || got.Outcome != "removed" || !utf8.ValidString(got.Owner) {
		t.Errorf("%s: %+v", nonUTF8.Name, got)
	}
	for _, c := range weird {
		rep.expect(t, c, wantRemoved("hold_expired", "unknown", "unknown", "atomic", studentHoldS))
	}
	expectExist(t, eng, false, all...)

	evs := readEventLines(t, f.events)
	for _, c := range append(hostileOwner, weird...) {
		expectRemoveEvent(t, evs, c.Name, "unknown", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": rep.typeOf(c.ID)})
	}
	for _, ev := range evs {
		if len(ev.raw) > 4000 || strings.ContainsAny(ev.raw, "\x1b\n") {
			t.Errorf("events line too long or with a raw control character: %s", clip(ev.raw))
		}
	}
}

func (r *cleanupReport) typeOf(id string) string {
	c, _ := r.find(id)
	return c.Type
}

// ---------------------------------------------------------------------------
// The shipped pipeline.

// TestShippedCleanupPipeline runs pipelines/cleanup.hcl as installed, with
// its release stage, lock and syslog. It fails, saying so, where the
// release stage is not registered (stages/release, stages/all/release.go).
func TestShippedCleanupPipeline(t *testing.T) {
	t.Parallel()
	shipped, err := filepath.Abs(filepath.Join("..", "..", "pipelines", "cleanup.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	eng := dockertest.New(t)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	lock := filepath.Join(dir, "run", "cleanup.lock")
	stale := eng.Create(t, exitedSpec("stale", ownedBy("alice")))
	held := eng.Create(t, exitedSpec("held", ownedBy("rita")))
	protected := eng.Create(t, dockertest.Spec{Name: "protected", Labels: map[string]string{labelDS01Protected: "true"}})
	now := latestFinish(t, eng, stale, held).Add(40 * time.Minute)

	code, out, errOut := cli(t, "run", "--format", "json", "--allow-clock-override",
		"--now", now.Format(time.RFC3339Nano),
		"--var", "ds01_config="+cleanupConfigDir(t),
		"--var", "prefix="+eng.Prefix(),
		"--var", "events_file="+events,
		"--var", "lock_file="+lock,
		"--var", "gpu_backend=none",
		shipped)
	if code == ExitConfigError && strings.Contains(errOut, `"release"`) {
		t.Fatalf("pipelines/cleanup.hcl uses the release stage, which is not registered (yet?):\n%s", errOut)
	}
	if code != ExitOK {
		t.Fatalf("exit %d, want 0\n%s", code, errOut)
	}
	rep := parseCleanupReport(t, out)
	rep.expect(t, stale, wantRemoved("hold_expired", "alice", "ds01.user", "docker", studentHoldS))
	rep.expect(t, held, wantKept("within_hold", "rita", "ds01.user", "docker", researcherHoldS))
	rep.expect(t, protected, wantExempt(labelDS01Protected, "unknown", "unknown", "docker"))
	expectExist(t, eng, false, stale)
	expectExist(t, eng, true, held, protected)
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("the run took no lock at %s: %v", lock, err)
	}
	evs := readEventLines(t, events)
	expectRemoveEvent(t, evs, stale.Name, "alice", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "docker"})
	if len(eventsOfType(evs, evPipelineSummary)) != 1 {
		t.Errorf("want one pipeline.summary event in %s", events)
	}
}

// ---------------------------------------------------------------------------
// A private dockerd: containers with real GPU requests, a removal that fails.
// These set DOCKER_HOST, so they do not run in parallel.

func TestCleanupExitedGPUContainers(t *testing.T) {
	eng := dockertest.PrivateDaemon(t)
	t.Setenv("DOCKER_HOST", eng.Host())
	f := newCleanup(t, eng)
	const (
		uuidOld  = "GPU-8c1f0e2a-0000-4000-8000-000000000001"
		uuidHeld = "GPU-8c1f0e2a-0000-4000-8000-000000000002"
	)
	old := eng.Create(t, dockertest.Spec{Name: "gpu-old", Labels: ownedBy("alice"), GPUs: []string{uuidOld}, Args: []string{"exit", "0"}, Start: true, Wait: true})
	held := eng.Create(t, dockertest.Spec{Name: "gpu-held", Labels: ownedBy("rita"), GPUs: []string{uuidHeld}, Args: []string{"exit", "0"}, Start: true, Wait: true})
	for _, c := range []dockertest.Container{old, held} {
		in := eng.Inspect(t, c.ID)
		if in.HostConfig == nil || len(in.HostConfig.DeviceRequests) != 1 || in.State == nil || string(in.State.Status) != "exited" {
			t.Fatalf("%s is not an exited container with a GPU request: %+v", c.Name, in.State)
		}
	}

	// alice's 0.5 h is over at 40 minutes, rita's 2 h is not.
	rep := f.run(t, latestFinish(t, eng, old, held).Add(40*time.Minute))
	w := wantRemoved("hold_expired", "alice", "ds01.user", "docker", studentHoldS)
	w.gpus, w.gpusChecked = []string{uuidOld}, true
	rep.expect(t, old, w)
	w = wantKept("within_hold", "rita", "ds01.user", "docker", researcherHoldS)
	w.gpus, w.gpusChecked = []string{uuidHeld}, true
	rep.expect(t, held, w)
	expectExist(t, eng, false, old)
	expectExist(t, eng, true, held)
	expectRemoveEvent(t, readEventLines(t, f.events), old.Name, "alice",
		map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "docker"})
}

// TestCleanupFailedRemovalExits2 makes one removal fail for real: a file in
// the container's writable layer is made immutable, so the engine cannot
// delete the layer and answers the removal with an error (the container
// becomes "dead"). This needs the overlay2 driver on a file system with
// the immutable attribute (ext4, xfs); it runs on a private dockerd, so the
// host's engine is never involved.
func TestCleanupFailedRemovalExits2(t *testing.T) {
	eng := dockertest.PrivateDaemon(t)
	t.Setenv("DOCKER_HOST", eng.Host())
	f := newCleanup(t, eng)
	stuck := eng.Create(t, exitedSpec("stuck", ownedBy("alice")))
	fine := eng.Create(t, exitedSpec("fine", ownedBy("alice")))
	pinLayer(t, eng, stuck)

	code, rep, errOut := f.exec(t, "run", latestFinish(t, eng, stuck, fine).Add(40*time.Minute))
	if code != ExitPartial {
		t.Errorf("exit %d, want %d (done, but an action failed)\n%s", code, ExitPartial, errOut)
	}
	if rep == nil {
		t.Fatalf("no report on stdout\n%s", errOut)
	}
	w := wantRemoved("hold_expired", "alice", "ds01.user", "docker", studentHoldS)
	w.outcome = "failed"
	if got := rep.expect(t, stuck, w); !strings.Contains(got.Error, "remove") {
		t.Errorf("%s: error %q does not say the removal failed", stuck.Name, got.Error)
	}
	rep.expect(t, fine, wantRemoved("hold_expired", "alice", "ds01.user", "docker", studentHoldS))
	if rep.Summary.Failed != 1 || rep.Summary.Removed != 1 {
		t.Errorf("summary: failed %d, removed %d; want 1, 1", rep.Summary.Failed, rep.Summary.Removed)
	}
	expectExist(t, eng, false, fine)
	evs := readEventLines(t, f.events)
	expectNoRemoveEvent(t, evs, stuck.Name)
	expectRemoveEvent(t, evs, fine.Name, "alice", map[string]any{"reason": "hold_expired", "stopped_duration": "0h", "container_type": "docker"})
}

// pinLayer puts an immutable file into the container's writable overlay2
// layer, and takes the attribute off again when the test ends, before the
// engine's cleanup removes the container.
func pinLayer(t *testing.T, eng *dockertest.Engine, c dockertest.Container) {
	t.Helper()
	gd := eng.Inspect(t, c.ID).GraphDriver
	if gd == nil || gd.Name != "overlay2" || gd.Data["UpperDir"] == "" {
		t.Skipf("the private dockerd does not use overlay2 (%+v): cannot pin a layer", gd)
	}
	path := filepath.Join(gd.Data["UpperDir"], "ds01-pipe-test-pinned")
	if err := os.WriteFile(path, []byte("immutable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setImmutable(path, true); err != nil {
		t.Skipf("cannot make %s immutable on this file system: %v", path, err)
	}
	t.Cleanup(func() {
		if err := setImmutable(path, false); err != nil {
			t.Errorf("take the immutable attribute off %s: %v", path, err)
		}
	})
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (chattr +i).
const fsImmutableFL = 0x00000010

// setImmutable sets or clears the immutable attribute (chattr +i / -i).
func setImmutable(path string, on bool) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	flags, err := unix.IoctlGetUint32(int(file.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	return unix.IoctlSetPointerInt(int(file.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
}
