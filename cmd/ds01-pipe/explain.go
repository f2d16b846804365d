package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/report"
	"github.com/ds01/ds01-pipe/policy"
)

// explanation is the JSON answer of `ds01-pipe explain` (docs/explain.md).
// Field names are a public contract: extend, never rename.
type explanation struct {
	Container   report.Container `json:"container"`
	Action      *string          `json:"action"`
	ActsAt      *string          `json:"acts_at"`
	Rules       []explainRule    `json:"rules"`
	WouldChange []string         `json:"would_change"`
}

type explainRule struct {
	Stage  string `json:"stage"`
	Rule   string `json:"rule"`
	Source string `json:"source"`
}

func newExplainCmd(io IOStreams, g *globalOptions) *cobra.Command {
	o := &runOptions{mode: pipeline.ModePlan}
	cmd := &cobra.Command{
		Use:   "explain CONTAINER [PIPELINE]",
		Short: "Say when a container will be removed or stopped, and why",
		Long: `explain answers a container owner's question for one container (name, ID or ID
prefix): the facts, every rule of the pipeline that applies with the file and line it
comes from (the pipeline's stage, the policy value used: the owner's group, a user
override, a type entry, an exemption), the action and the instant it will happen, and
what would change the outcome.

PIPELINE defaults to the installed cleanup pipeline, ` + DefaultExplainPipeline + `.

It runs the pipeline as plan does, so it agrees with plan at the same --now: nothing is
removed, stopped, released or logged, no lock is taken, and report stages are not run.

Exit codes: 0 answered (also when nothing will happen), 1 no such container or Docker
unreachable, 78 configuration or usage error.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = explainPipeline
			if len(args) == 2 {
				o.file = args[1]
			}
			return explain(cmd, io, g, o, args[0])
		},
	}
	// The same flags as plan, described alike (run.go).
	cmd.Flags().StringArrayVar(&o.vars, "var", nil, helpVar)
	cmd.Flags().StringVar(&o.now, "now", "", helpNow)
	cmd.Flags().StringVar(&o.format, "format", "", "`FORMAT` of the answer: table or json (default: table on a terminal, json otherwise)")
	addCallTimeoutFlag(cmd, &o.callTimeout)
	return cmd
}

// DefaultExplainPipeline is the pipeline explain answers for when none is
// named: the cleanup pipeline as `make install` and the package place it.
const DefaultExplainPipeline = "/etc/ds01-pipe/pipelines/cleanup.hcl"

// explainPipeline is DefaultExplainPipeline; tests point it elsewhere.
var explainPipeline = DefaultExplainPipeline

// dropper is a stage that leaves records out of the run (filter).
type dropper interface {
	DroppedRecord(id string) (*pipeline.Record, string, hcl.Range, bool)
}

func explain(cmd *cobra.Command, io IOStreams, g *globalOptions, o *runOptions, target string) error {
	p, err := o.prepare(io, g)
	if err != nil {
		return err
	}
	log, now, format, cfg, text := p.log, p.now, p.format, p.cfg, p.text
	found, err := resolveContainer(cmd, o.callTimeout, target)
	if err != nil {
		return err
	}
	// Report stages write files or stdout; they cannot change a decision.
	run := *cfg
	run.Stages = nil
	for _, st := range cfg.Stages {
		if st.Ref.Kind != "report" {
			run.Stages = append(run.Stages, st)
		}
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Err)
	quiet.SetLevel(logrus.WarnLevel)
	if l, ok := log.Formatter.(*logrus.JSONFormatter); ok {
		quiet.SetFormatter(l)
	}
	env, res, runErr := pipeline.Execute(cmd.Context(), &run, pipeline.ExecOptions{
		Mode:        pipeline.ModePlan,
		Now:         now,
		Log:         quiet,
		SimFile:     lookupEnv(pipeline.SimEnvVar),
		CallTimeout: o.callTimeout,
	})
	switch {
	case pipeline.IsConfigError(runErr):
		return withCode(ExitConfigError, runErr)
	case runErr != nil:
		return withCode(ExitFailure, runErr)
	}
	ex := buildExplanation(cfg, &run, text, env, res, found)
	if format == "json" {
		enc := json.NewEncoder(io.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(ex)
	}
	return writeExplanation(io.Out, ex)
}

// resolveContainer finds the container as docker inspect does (full ID,
// exact name, unique ID prefix) and returns the facts a report shows of a
// container the pipeline does not see.
func resolveContainer(cmd *cobra.Command, callTimeout time.Duration, target string) (report.Container, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return report.Container{}, withCode(ExitFailure, fmt.Errorf("docker client: %w", err))
	}
	defer c.Close()
	if callTimeout <= 0 {
		callTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
	defer cancel()
	res, err := c.ContainerInspect(ctx, strings.TrimPrefix(target, "/"), client.ContainerInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
		return report.Container{}, withCode(ExitFailure, fmt.Errorf("no such container: %s", target))
	case err != nil:
		return report.Container{}, withCode(ExitFailure, fmt.Errorf("inspecting %s: %w", target, err))
	}
	facts, _ := dockerfacts.FromInspect(res.Container)
	return report.Container{ID: facts.ID, Name: facts.Name, State: string(facts.State), Image: facts.Image, GPUs: []string{}}, nil
}

// stagePositions returns where each stage block of the pipeline file
// starts, in file order (the order of Config.Stages), and the ranges of
// their attributes.
type stagePos struct {
	block hcl.Range
	attrs map[string]hcl.Range
}

func stagePositions(path string, text []byte) []stagePos {
	f, diags := hclparse.NewParser().ParseHCL(text, path)
	if diags.HasErrors() {
		return nil
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	var out []stagePos
	for _, b := range body.Blocks {
		if b.Type != "pipeline" {
			continue
		}
		for _, sb := range b.Body.Blocks {
			if sb.Type != "stage" {
				continue
			}
			sp := stagePos{block: sb.DefRange(), attrs: map[string]hcl.Range{}}
			for name, a := range sb.Body.Attributes {
				sp.attrs[name] = a.SrcRange
			}
			out = append(out, sp)
		}
	}
	return out
}

func posText(r hcl.Range) string {
	if r.Filename == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// explainer gathers the rules of one container.
type explainer struct {
	cfg       *pipeline.Config
	env       *pipeline.Env
	positions map[string]stagePos // by stage ref
	rules     []explainRule
	change    []string
}

func (e *explainer) stageSource(kind string) (string, string) {
	for _, st := range e.cfg.Stages {
		if st.Ref.Kind == kind {
			return st.Ref.String(), posText(e.positions[st.Ref.String()].block)
		}
	}
	return "", ""
}

func (e *explainer) add(kind, rule, source string) {
	ref, pos := e.stageSource(kind)
	if ref == "" {
		ref = kind
	}
	if source == "" {
		source = pos
	}
	e.rules = append(e.rules, explainRule{Stage: ref, Rule: rule, Source: source})
}

func buildExplanation(cfg, run *pipeline.Config, text []byte, env *pipeline.Env, res *pipeline.Result, found report.Container) *explanation {
	id := found.ID
	e := &explainer{cfg: cfg, env: env, positions: map[string]stagePos{}}
	pos := stagePositions(cfg.File, text)
	if len(pos) == len(cfg.Stages) {
		for i, st := range cfg.Stages {
			e.positions[st.Ref.String()] = pos[i]
		}
	}
	ex := &explanation{Rules: []explainRule{}, WouldChange: []string{}}
	var rec *pipeline.Record
	for _, r := range res.Batch.Records {
		if r.Container.ID == id {
			rec = r
		}
	}
	if rec == nil {
		for _, st := range run.Stages {
			d, ok := st.Stage.(dropper)
			if !ok {
				continue
			}
			if r, reason, when, ok := d.DroppedRecord(id); ok {
				ex.Container = report.ContainerOf(r)
				e.facts(r)
				e.rules = append(e.rules, explainRule{Stage: st.Ref.String(), Rule: "left out of the run: " + reason, Source: posText(when)})
				e.change = append(e.change, fmt.Sprintf("It is left out by the filter at %s: nothing in this pipeline acts on it unless that expression becomes true for it.", posText(when)))
				ex.Rules, ex.WouldChange = e.rules, e.change
				return ex
			}
		}
		ex.Container = found
		ref, src := e.stageSource("discover")
		ex.Rules = append(ex.Rules, explainRule{Stage: ref, Rule: "not in this pipeline's scope (name_prefix, labels or states of the discover stage)", Source: src})
		ex.WouldChange = append(ex.WouldChange, "It is outside the pipeline's scope: this pipeline never acts on it.")
		return ex
	}
	ex.Container = report.ContainerOf(rec)
	e.facts(rec)
	e.verdict(rec)
	action, at := actsAt(rec, env.Now)
	if action != "" && !actsIn(cfg, action) {
		// A verdict is only a decision: without the stage that carries it
		// out (an audit pipeline), nothing happens to the container.
		// A kept container's action is a future one: say when, never that
		// today's verdict (keep) says it.
		verdict := "the verdict says " + action
		if !rec.Verdict.Action.Acts() {
			verdict = fmt.Sprintf("the verdict would be %s from %s", action, at.UTC().Format(time.RFC3339))
		}
		e.rules = append(e.rules, explainRule{Stage: "pipeline", Rule: fmt.Sprintf("%s, but no %s stage of this pipeline acts on it: it is only reported", verdict, action), Source: cfg.File})
		action = ""
	}
	if action != "" {
		ex.Action = &action
		s := at.UTC().Format(time.RFC3339)
		ex.ActsAt = &s
	}
	e.whatWouldChange(rec, action)
	ex.Rules, ex.WouldChange = e.rules, e.change
	return ex
}

// facts records the attribute, classify and exempt rules.
func (e *explainer) facts(rec *pipeline.Record) {
	ref, _ := e.stageSource("discover")
	if ref != "" {
		e.add("discover", fmt.Sprintf("in scope: %s, state %s", rec.Container.Name, rec.Container.State), "")
	}
	if rec.Owner.Source != "" {
		e.add("attribute", ownerRule(rec), "")
	}
	if rec.Type != "" {
		e.add("classify", "type "+rec.Type, "")
	}
	if rec.Exempt {
		if ref, _ := e.stageSource("exempt"); ref != "" && !strings.HasPrefix(rec.ExemptReason, "label ds01.") {
			e.add("exempt", "exempt: "+rec.ExemptReason, "")
		} else {
			e.rules = append(e.rules, explainRule{Stage: "engine", Rule: "exempt: " + rec.ExemptReason + " (never removed, stopped or released)", Source: "container label"})
		}
	}
}

func ownerRule(rec *pipeline.Record) string {
	o := rec.Owner
	switch o.Source {
	case pipeline.OwnerFromUser, pipeline.OwnerFromAIME, pipeline.OwnerFromDevcontainer:
		v, _ := rec.Container.Label(string(o.Source))
		return fmt.Sprintf("owner %s from label %s=%q", o.Name, o.Source, v)
	case pipeline.OwnerFromNameUID:
		return fmt.Sprintf("owner %s from the name's ._.<uid> suffix and the passwd database", o.Name)
	}
	return "owner unknown: no ds01.user, aime.mlc.USER or devcontainer.local_folder label, no ._.<uid> name (the strictest hold applies)"
}

// verdict records the rule of the verdict and where its value is written.
func (e *explainer) verdict(rec *pipeline.Record) {
	v := rec.Verdict
	if v.Action == "" {
		return
	}
	kind := e.verdictStage()
	rule := fmt.Sprintf("%s (%s)", v.Action, v.Reason)
	if v.Detail != "" {
		rule += ": " + v.Detail
	}
	src := ""
	files := e.cfg.PolicyFiles
	switch {
	case v.Reason == pipeline.ReasonExempt && v.Rule != "":
		if p, ok := policy.ExemptionPosition(files, rec.Owner.Name, "container_hold_after_stop_h", e.env.Now); ok {
			src = p.String()
		}
	case strings.HasPrefix(v.Rule, kind+"."):
		// A stage attribute overrides the policy (decide.created_timeout).
		attr := strings.TrimPrefix(v.Rule, kind+".")
		ref, _ := e.stageSource(kind)
		src = posText(e.positions[ref].attrs[attr])
	case v.Rule != "":
		if p, ok := policy.Locate(files, v.Rule); ok {
			src = p.String()
		} else if strings.HasPrefix(v.Rule, "built-in") {
			src = v.Rule
		}
	}
	if v.Rule != "" {
		rule += "; rule " + v.Rule
	}
	e.add(kind, rule, src)
	if !rec.Owner.Known() || !strings.HasSuffix(v.Rule, "container_hold_after_stop_h") || v.Reason == pipeline.ReasonExempt {
		return
	}
	// Which layer of the owner's limits applied: an override, a group, the
	// default group.
	group := e.env.Policy.UserGroup(rec.Owner.Name)
	switch {
	case group == policy.GroupOverride:
		ov := ""
		if p, ok := policy.OverridePosition(files, rec.Owner.Name); ok {
			ov = p.String()
		}
		e.add(kind, fmt.Sprintf("%s has a user override: groups are not consulted, keys it does not set come from defaults", rec.Owner.Name), ov)
	default:
		if p, ok := policy.MemberPosition(files, group, rec.Owner.Name); ok {
			e.add(kind, fmt.Sprintf("%s is a member of group %s", rec.Owner.Name, group), p.String())
		} else {
			e.add(kind, fmt.Sprintf("%s is in no group: the default group %s applies", rec.Owner.Name, group), files.LimitsFile)
		}
	}
}

// actsIn reports whether the pipeline has the acting stage that carries
// out action (remove, stop): the stage kinds are named after the actions.
func actsIn(cfg *pipeline.Config, action string) bool {
	for _, st := range cfg.Stages {
		if st.Ref.Kind == action && st.Contract.Acts {
			return true
		}
	}
	return false
}

// verdictStage names the stage kind that decides: decide, or the last
// other stage of the pipeline that is known to set verdicts.
func (e *explainer) verdictStage() string {
	kind := "decide"
	for _, st := range e.cfg.Stages {
		switch st.Ref.Kind {
		case "decide", "lifecycle", "idle", "runtime":
			kind = st.Ref.Kind
		}
	}
	return kind
}

// actsAt returns the action the pipeline will take on the container and
// when: now for an acting verdict; for a container within its limit, the
// first whole second at which its age is strictly over the limit (the
// comparison decide makes); none otherwise.
func actsAt(rec *pipeline.Record, now time.Time) (string, time.Time) {
	v := rec.Verdict
	if v.Action.Acts() {
		return string(v.Action), now
	}
	if v.Action != pipeline.ActionKeep || !v.HasLimit || v.Clock == "" || rec.Exempt {
		return "", time.Time{}
	}
	due := now.Add(-v.Age).Add(v.Limit)
	switch v.Clock {
	case pipeline.ClockCreated, pipeline.ClockFinished:
		// decide compares strictly (age > limit, as DS01): the first whole
		// second after the limit.
		return string(pipeline.ActionRemove), due.Truncate(time.Second).Add(time.Second)
	case pipeline.ClockStarted, pipeline.ClockLastActivity:
		// The lifecycle stops once the limit is reached (age >= limit): the
		// first whole second at or after it. Max runtime counts from the
		// start; the idle timeout from the last activity, so that instant
		// holds only if the container stays idle. It is the earliest
		// instant: the stop also waits until the owner has had the full
		// notice, and happens at the first lifecycle run from then on.
		at := due.Truncate(time.Second)
		if at.Before(due) {
			at = at.Add(time.Second)
		}
		return string(pipeline.ActionStop), at
	}
	return "", time.Time{}
}

func (e *explainer) whatWouldChange(rec *pipeline.Record, action string) {
	c := rec.Container
	owner := rec.Owner.Name
	add := func(s string) { e.change = append(e.change, s) }
	if rec.Exempt {
		add("It is exempt (" + rec.ExemptReason + "): without that, it would be judged like any other container.")
		return
	}
	switch c.State {
	case pipeline.StateCreated:
		add("Starting it (docker start) ends the created-never-started timeout; once it stops, the post-stop hold applies.")
	case pipeline.StateExited:
		add("Starting it again resets the clock: the post-stop hold counts from its next stop.")
	default:
		if c.State.Live() {
			add("It is " + string(c.State) + ": a live container is never removed; once it stops, the post-stop hold applies.")
		}
	}
	switch rec.Verdict.Clock {
	case pipeline.ClockLastActivity:
		add("Using its GPU (or the keep-alive file) resets the idle clock: the stop comes only after it has been idle for the whole timeout.")
		if rec.Owner.Known() {
			add(fmt.Sprintf("An entry for %s in lifecycle-exemptions.yaml with exempt_from: [idle_timeout_h] exempts it from the idle timeout.", owner))
		}
	case pipeline.ClockStarted:
		add("The max runtime counts from its start: a restart starts it over.")
		if rec.Owner.Known() {
			add(fmt.Sprintf("An entry for %s in lifecycle-exemptions.yaml with exempt_from: [max_runtime_h] exempts it from the max runtime.", owner))
		}
	}
	if action == "" && rec.Verdict.Reason == pipeline.ReasonIndefiniteHold {
		add("Its limit is null (no limit): a value there would make it removable.")
	}
	add("The label ds01.protected=true (set when a container is created) exempts it.")
	if rec.Owner.Known() {
		add(fmt.Sprintf("An entry for %s in lifecycle-exemptions.yaml with exempt_from: [container_hold_after_stop_h] keeps its exited containers.", owner))
		add(fmt.Sprintf("A user override for %s in user-overrides.yaml (container_hold_after_stop_h), or membership of another group, changes the hold.", owner))
	} else {
		add("A ds01.user label naming its owner (set when a container is created) gives it the owner's hold instead of the strictest one.")
	}
}

func writeExplanation(w io.Writer, ex *explanation) error {
	c := ex.Container
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Container\t%s (%s)\n", safe(c.Name), shortID(c.ID))
	if c.State != "" {
		fmt.Fprintf(tw, "Facts\t%s\n", facts(c))
	}
	if ex.Action != nil {
		fmt.Fprintf(tw, "Action\t%s at %s\n", *ex.Action, *ex.ActsAt)
	} else {
		fmt.Fprintf(tw, "Action\tnone\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nRules")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range ex.Rules {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Stage, safe(r.Rule), safe(r.Source))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nWhat would change it")
	for _, s := range ex.WouldChange {
		fmt.Fprintf(w, "  - %s\n", safe(s))
	}
	return nil
}

// facts is the table's one-line summary of a container. A container outside
// the pipeline's scope was never attributed or classified: its owner and type
// are left out rather than printed empty.
func facts(c report.Container) string {
	parts := []string{c.State}
	if c.Owner != "" {
		parts = append(parts, fmt.Sprintf("owner %s (%s)", safe(c.Owner), c.OwnerSource))
	}
	if c.Type != "" {
		parts = append(parts, "type "+safe(c.Type))
	}
	return strings.Join(parts, ", ")
}

// safe replaces control and format characters of user-controlled text
// (names, labels, owners) for the terminal.
func safe(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x200b && r <= 0x200f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			b.WriteRune('\uFFFD')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
