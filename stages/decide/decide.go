// Package decide implements the "decide" stage: the policy verdict for every
// container (remove, keep or skip), with the rule that applied, the clock the
// age was measured from, the age and the limit.
//
// The decision itself is Decide, a pure function of a record, the run's
// clock, the limits model and the idle kills read from DS01's events.jsonl.
// The stage only gathers those inputs once per run and applies Decide to
// every record, so a test can feed Decide any policy without files or Docker.
package decide

import (
	"context"
	_ "embed" // the sample stage block
	"errors"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
	"github.com/ds01/ds01-pipe/policy"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "decide"

//go:embed sample.hcl
var sample string

// Attribute names, for error messages and limit sources.
const (
	attrCreatedTimeout   = "created_timeout"
	attrUnknownOwnerHold = "unknown_owner_hold"
	attrIdleEventsFile   = "idle_events_file"
)

// DefaultIdleEventsFile is where DS01's idle checker logs its idle kills.
const DefaultIdleEventsFile = "/var/log/ds01/events.jsonl"

// KeyContainerHold is the DS01 key of the post-stop container hold. It is
// also the exempt_from entry of lifecycle-exemptions.yaml that exempts an
// owner's exited containers from removal.
const KeyContainerHold = "container_hold_after_stop_h"

// Rules of verdicts that no policy limit gives.
const (
	// RuleIdleKill marks a removal because DS01's idle checker stopped the container.
	RuleIdleKill = "events " + events.IdleKill
	// RuleExemption marks a keep because of a lifecycle exemption.
	RuleExemption = "lifecycle-exemptions.yaml " + KeyContainerHold
)

// Policy is what Decide needs of the DS01 limits model. *policy.Model
// satisfies it; the stage wraps it to apply its own attributes.
type Policy interface {
	// CreatedTimeout is how long a created-never-started container may exist.
	CreatedTimeout() policy.Limit
	// ContainerHold is how long an exited container is kept after it stopped.
	ContainerHold(owner string, known bool, ctype string) policy.Limit
	// Exemption reports whether user is exempt from key at now, with a reason.
	Exemption(user, key string, now time.Time) (bool, string)
}

// Stage is the decide stage.
type Stage struct {
	CreatedTimeout   string  `hcl:"created_timeout,optional" doc:"How long a created-but-never-started container may exist before it is removed, GPU or not. \"\" takes policies.created_container_timeout_m from the policy (30m if unset, never if null); a Go duration (\"45m\") or \"never\" overrides it for this stage."`
	UnknownOwnerHold string  `hcl:"unknown_owner_hold,optional" doc:"Post-stop hold of exited containers whose owner is unknown. \"\" takes the policy's strictest chain (container_types.<type>, container_types.unknown, defaults, 30m); a Go duration (\"15m\") or \"never\" overrides it for this stage."`
	IdleEventsFile   *string `hcl:"idle_events_file,optional" doc:"DS01's events.jsonl. An exited container with a maintenance.idle_kill event from its latest run was stopped by the idle checker and is removed at once, with no hold. Unset: the log stage's events_file (its \"\" turns the rule off), or /var/log/ds01/events.jsonl in a pipeline without a log stage. Read once per run; a missing file means no idle kills, an unreadable one a warning. As root, a file that users can write (DS01 suggests chmod 666) is not trusted: its idle kills are ignored, with a warning. \"\" turns the rule off."`

	// files are the pipeline's trust rule and its log stage's events file.
	files pipeline.FileSettings
}

// New returns a decide stage with its defaults.
func New() *Stage {
	return &Stage{}
}

// UseFiles takes the pipeline's trust rule and its events writer, so idle
// kills come from where this pipeline's log stage writes events.
func (s *Stage) UseFiles(fs pipeline.FileSettings) { s.files = fs }

// eventsPath is the file idle kills are read from; "" turns the rule off.
func (s *Stage) eventsPath() string {
	switch {
	case s.IdleEventsFile != nil:
		return *s.IdleEventsFile
	case s.files.HasEventsWriter:
		return s.files.EventsFile
	}
	return DefaultIdleEventsFile
}

// Init checks the duration attributes, so that a typo fails validation
// instead of surfacing in the middle of a run.
func (s *Stage) Init() error {
	_, err := s.overrides(policy.Default())
	return err
}

// Process sets the verdict of every record.
func (s *Stage) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	if env.Now.IsZero() {
		// Every age would be measured from year 1: refuse rather than guess.
		return errors.New("decide: the run has no clock (Env.Now is zero)")
	}
	model := env.Policy
	if model == nil {
		model = policy.Default()
	}
	p, err := s.overrides(model)
	if err != nil {
		return err
	}
	var kills map[string]time.Time
	if needsIdleKills(batch.Records) {
		kills = s.idleKills(ctx, env.Log)
	}
	now := env.Now.UTC()
	for _, rec := range batch.Records {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec.Verdict = Decide(rec, now, p, kills)
	}
	return nil
}

// needsIdleKills reports whether any record can reach the idle-stopped rule.
// events.jsonl grows to 100 MB before logrotate, so a run with no exited
// candidate does not read it at all.
func needsIdleKills(recs []*pipeline.Record) bool {
	for _, rec := range recs {
		if rec.Candidate() && rec.Container.State == pipeline.StateExited {
			return true
		}
	}
	return false
}

// idleKills reads the idle kills for this run. A read error, or a file that
// untrusted users could have written, only disables the rule: its
// containers then follow the ordinary hold, which keeps them longer, never
// removes them sooner (fail closed).
func (s *Stage) idleKills(ctx context.Context, log logrus.FieldLogger) map[string]time.Time {
	path := s.eventsPath()
	if path == "" {
		return nil
	}
	kills, stats, err := events.ReadIdleKillsTrusted(ctx, path, s.files.Trust)
	if err != nil {
		if log != nil {
			var ie *safefile.InsecureError
			if errors.As(err, &ie) {
				log.WithField("stage", Kind).WithError(err).Warnf("%s: idle kills in %s are ignored, since users could have written them; idle-stopped containers follow the post-stop hold", attrIdleEventsFile, path)
			} else {
				log.WithField("stage", Kind).WithError(err).Warnf("%s: cannot read idle kills; idle-stopped containers follow the post-stop hold this run", attrIdleEventsFile)
			}
		}
		return nil
	}
	if stats.Truncated > 0 && log != nil {
		log.WithField("stage", Kind).Warnf("%s: %s is larger than %d bytes; idle kills were read from its last %d bytes only", attrIdleEventsFile, path, events.MaxReadBytes, events.MaxReadBytes)
	}
	if n := stats.Skipped(); n > 0 && log != nil {
		// Other writers share the file; a damaged line costs at most an
		// idle kill that goes unseen, so this is no warning.
		log.WithField("stage", Kind).Debugf("%s: skipped %d of %d lines of %s", attrIdleEventsFile, n, stats.Lines, path)
	}
	return kills
}

// overrides returns base with the stage's attributes applied.
func (s *Stage) overrides(base Policy) (Policy, error) {
	created, err := parseLimit(attrCreatedTimeout, s.CreatedTimeout)
	if err != nil {
		return nil, err
	}
	unknown, err := parseLimit(attrUnknownOwnerHold, s.UnknownOwnerHold)
	if err != nil {
		return nil, err
	}
	if created == nil && unknown == nil {
		return base, nil
	}
	return overridden{Policy: base, created: created, unknownHold: unknown}, nil
}

// parseLimit reads a duration attribute: "" is unset (nil), DS01's no-limit
// words are Unlimited, anything else must be a Go duration. Negative values
// are allowed and mean "at the next run", as in the policy files.
func parseLimit(attr, text string) (*policy.Limit, error) {
	l, ok, err := policy.ParseLimitText(text)
	if err != nil {
		return nil, &pipeline.AttrError{Attr: attr, Err: err}
	}
	if !ok {
		return nil, nil
	}
	l.Source = Kind + "." + attr
	return &l, nil
}

// overridden is a Policy with the stage's attributes over it.
type overridden struct {
	Policy
	created     *policy.Limit // nil: the policy's
	unknownHold *policy.Limit // nil: the policy's
}

func (o overridden) CreatedTimeout() policy.Limit {
	if o.created != nil {
		return *o.created
	}
	return o.Policy.CreatedTimeout()
}

func (o overridden) ContainerHold(owner string, known bool, ctype string) policy.Limit {
	if !known && o.unknownHold != nil {
		return *o.unknownHold
	}
	return o.Policy.ContainerHold(owner, known, ctype)
}

// Decide returns the verdict for one record at now. idleKills maps container
// names to the time of their latest maintenance.idle_kill event; nil turns
// the idle-stopped rule off. The rules, first match wins:
//
//  1. exempt record: skip (exempt).
//  2. inspect failed: skip (not_decided).
//  3. any state but created or exited: skip (not_a_candidate).
//  4. created: remove once older than the created timeout (strict), else keep.
//  5. exited, FinishedAt unknown: skip (no_finish_time).
//  6. exited by the idle checker during its latest run: remove (idle_stopped).
//  7. owner exempt from container_hold_after_stop_h: keep (exempt).
//  8. exited: remove once stopped longer than the hold (strict), else keep.
//
// Ages are differences of absolute instants, so no time zone enters.
func Decide(rec *pipeline.Record, now time.Time, p Policy, idleKills map[string]time.Time) pipeline.Verdict {
	if rec == nil {
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotDecided, Detail: "no record"}
	}
	c := &rec.Container
	if rec.Exempt {
		detail := rec.ExemptReason
		if detail == "" {
			detail = "exempt"
		}
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonExempt, Detail: detail}
	}
	if rec.Incomplete != "" {
		detail := "container facts are incomplete: " + rec.Incomplete
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotDecided, Detail: detail}
	}
	switch c.State {
	case pipeline.StateCreated:
		return decideCreated(c, now, p)
	case pipeline.StateExited:
		return decideExited(rec, now, p, idleKills)
	}
	state := string(c.State)
	if state == "" {
		state = "in no known state"
	}
	return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotACandidate, Detail: "container is " + state}
}

// decideCreated is rule 4: one timeout for every created container, GPU or
// not and whoever owns it (DS01's cleanup phase A; B-3 fixed).
func decideCreated(c *pipeline.Container, now time.Time, p Policy) pipeline.Verdict {
	if c.Created.IsZero() {
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotDecided, Detail: "no creation time"}
	}
	limit := p.CreatedTimeout()
	v := pipeline.Verdict{Rule: limit.Source, Clock: pipeline.ClockCreated, Age: now.Sub(c.Created)}
	return judge(v, limit, pipeline.ReasonCreatedNeverStarted, "created "+human(v.Age)+" ago, never started")
}

// decideExited is rules 5 to 8.
func decideExited(rec *pipeline.Record, now time.Time, p Policy, idleKills map[string]time.Time) pipeline.Verdict {
	c := &rec.Container
	if c.FinishedAt.IsZero() {
		return pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNoFinishTime, Detail: "no valid FinishedAt"}
	}
	v := pipeline.Verdict{Clock: pipeline.ClockFinished, Age: now.Sub(c.FinishedAt)}
	if at, ok := idleKilled(c, idleKills); ok {
		v.Action, v.Reason, v.Rule = pipeline.ActionRemove, pipeline.ReasonIdleStopped, RuleIdleKill
		v.Detail = "stopped by the idle checker at " + at.UTC().Format(time.RFC3339)
		return v
	}
	if name := rec.Owner.Name; name != "" {
		if ok, reason := p.Exemption(name, KeyContainerHold, now); ok {
			v.Action, v.Reason, v.Rule, v.Detail = pipeline.ActionKeep, pipeline.ReasonExempt, RuleExemption, reason
			return v
		}
	}
	hold := p.ContainerHold(rec.Owner.Name, rec.Owner.Known(), rec.Type)
	v.Rule = hold.Source
	return judge(v, hold, pipeline.ReasonHoldExpired, "stopped "+human(v.Age)+" ago")
}

// idleKilled reports whether the idle checker stopped this very container in
// its latest run. DS01 keys idle kills by name only, so an event before the
// container's last start belongs to an older container of the same name, or
// to a run the owner has since restarted: neither says anything about why
// the container stopped this time. Without any start or creation time the
// event cannot be placed, and the container follows the hold.
func idleKilled(c *pipeline.Container, idleKills map[string]time.Time) (time.Time, bool) {
	at, ok := idleKills[c.Name]
	if !ok {
		return time.Time{}, false
	}
	since := c.StartedAt
	if since.IsZero() {
		since = c.Created
	}
	if since.IsZero() || at.Before(since) {
		return time.Time{}, false
	}
	return at, true
}

// judge completes v (Clock, Age and Rule set) against limit: unlimited keeps
// for good; an age strictly over the limit removes with reason; otherwise the
// container is within its hold. The comparison is DS01's strict ">", so a
// container exactly at its limit is kept for one more run. desc describes
// the age for Detail.
func judge(v pipeline.Verdict, limit policy.Limit, reason pipeline.Reason, desc string) pipeline.Verdict {
	if limit.Unlimited {
		v.Action, v.Reason = pipeline.ActionKeep, pipeline.ReasonIndefiniteHold
		v.Detail = desc + "; no limit"
		return v
	}
	v.Limit, v.HasLimit = limit.Duration, true
	if v.Age > limit.Duration {
		v.Action, v.Reason = pipeline.ActionRemove, reason
		v.Detail = desc + ", over the limit of " + limit.String()
		return v
	}
	v.Action, v.Reason = pipeline.ActionKeep, pipeline.ReasonWithinHold
	v.Detail = desc + "; limit " + limit.String() + ", removable in " + human(limit.Duration-v.Age)
	return v
}

// human renders a duration to the second, without the zero tails
// time.Duration prints ("40m", not "40m0s").
func human(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind:    Kind,
		Summary: "Decides per container: remove, keep or skip, with the rule, the clock (created or finished), the age and the limit. Exempt, live and half-read containers are skipped. A created-never-started container is removed once older than the created timeout; an exited one at once if DS01's idle checker stopped it, else once stopped longer than its owner's post-stop hold (an unknown owner gets its type's hold). Comparisons are strict, as in DS01; null or \"never\" means no limit.",
		Sample:  sample,
		New:     func() pipeline.Stage { return New() },
		Contract: pipeline.Contract{
			Needs:  []pipeline.Field{pipeline.FieldFacts},
			Reads:  []pipeline.Field{pipeline.FieldOwner, pipeline.FieldType, pipeline.FieldExemption},
			Writes: []pipeline.Field{pipeline.FieldVerdict},
		},
	})
}
