// Package exempt implements the "exempt" stage: it marks infrastructure and
// protected containers, which the engine then never lets any stage remove,
// stop or release.
package exempt

import (
	"context"
	_ "embed" // the sample stage block
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ds01/ds01-pipe/pipeline"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "exempt"

//go:embed sample.hcl
var sample string

// DS01's exemption labels. They always exempt, whatever labels says:
// the monitoring stack and admins rely on them.
const (
	LabelMonitoring = "ds01.monitoring"
	LabelProtected  = "ds01.protected"
)

// Attribute names, for error messages.
const (
	attrLabels       = "labels"
	attrNames        = "names"
	attrNamePrefixes = "name_prefixes"
)

// Exempt is the exempt stage.
type Exempt struct {
	Labels                   map[string]string `hcl:"labels,optional" doc:"Label key = value pairs that exempt a container (exact value). They add to ds01.monitoring = \"true\" and ds01.protected = \"true\", which always exempt."`
	Names                    []string          `hcl:"names,optional" doc:"Container names that are exempt (exact, without the leading \"/\")."`
	NamePrefixes             []string          `hcl:"name_prefixes,optional" doc:"Container name prefixes that exempt a container."`
	InfrastructureContainers bool              `hcl:"infrastructure_containers,optional" doc:"Exempt the containers named in the policy's monitoring.infrastructure_containers (exact names)."`
}

// New returns an exempt stage with its defaults.
func New() *Exempt {
	return &Exempt{
		Labels:                   builtinLabels(),
		InfrastructureContainers: true,
	}
}

func builtinLabels() map[string]string {
	return map[string]string{LabelMonitoring: "true", LabelProtected: "true"}
}

func isBuiltin(key, value string) bool {
	return (key == LabelMonitoring || key == LabelProtected) && value == "true"
}

// Init rejects entries that are surely mistakes (typically an unset
// variable): an empty prefix would exempt every container, an empty label
// value would match containers that lack the label.
func (e *Exempt) Init() error {
	for k, v := range e.Labels {
		if k == "" {
			return &pipeline.AttrError{Attr: attrLabels, Err: errors.New("a label key is empty")}
		}
		if v == "" {
			return &pipeline.AttrError{Attr: attrLabels, Err: fmt.Errorf("label %q has an empty value; give the exact value that exempts", k)}
		}
	}
	for _, n := range e.Names {
		if strings.TrimPrefix(n, "/") == "" {
			return &pipeline.AttrError{Attr: attrNames, Err: errors.New("a name is empty")}
		}
	}
	for _, p := range e.NamePrefixes {
		if strings.TrimPrefix(p, "/") == "" {
			return &pipeline.AttrError{Attr: attrNamePrefixes, Err: errors.New("a prefix is empty; it would exempt every container")}
		}
	}
	return nil
}

// Process marks exempt records. It never clears an exemption, and keeps
// the reason of the stage that set it first.
func (e *Exempt) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	var infra []string
	if e.InfrastructureContainers && env != nil && env.Policy != nil {
		infra = env.Policy.InfrastructureContainers()
	}
	m := newMatcher(e, infra)
	for _, rec := range batch.Records {
		if err := ctx.Err(); err != nil {
			return err
		}
		if rec.Exempt {
			continue
		}
		if reason, ok := m.match(&rec.Container); ok {
			rec.Exempt = true
			rec.ExemptReason = reason
		}
	}
	return nil
}

// Reason returns why a container is exempt, and whether it is, under the
// stage's settings and the policy's infrastructure container names (used
// only when InfrastructureContainers is on). It is the stage's rule without
// the batch: the DS01 labels first, then the configured labels (by key),
// the infrastructure names, names and name prefixes.
func (e *Exempt) Reason(c *pipeline.Container, infra []string) (string, bool) {
	return newMatcher(e, infra).match(c)
}

type labelRule struct{ key, value string }

type nameRule struct {
	name   string
	reason string
}

// matcher is the stage's settings in the order they are checked, with the
// reason each one gives. It is built per run: infrastructure names come
// from the run's policy.
type matcher struct {
	labels   []labelRule
	names    map[string]string // name -> reason
	prefixes []nameRule
}

func newMatcher(e *Exempt, infra []string) *matcher {
	m := &matcher{
		labels: []labelRule{{LabelMonitoring, "true"}, {LabelProtected, "true"}},
		names:  make(map[string]string, len(infra)+len(e.Names)),
	}
	keys := make([]string, 0, len(e.Labels))
	for k := range e.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a stable reason when several labels match
	for _, k := range keys {
		v := e.Labels[k]
		if k == "" || v == "" || isBuiltin(k, v) {
			continue
		}
		m.labels = append(m.labels, labelRule{k, v})
	}
	// The first list naming a container gives the reason.
	addName := func(n, reason string) {
		n = strings.TrimPrefix(n, "/")
		if _, dup := m.names[n]; n != "" && !dup {
			m.names[n] = reason
		}
	}
	if !e.InfrastructureContainers {
		infra = nil
	}
	for _, n := range infra {
		addName(n, "infrastructure container (monitoring.infrastructure_containers)")
	}
	for _, n := range e.Names {
		addName(n, "name listed in names")
	}
	for _, p := range e.NamePrefixes {
		if p = strings.TrimPrefix(p, "/"); p != "" {
			m.prefixes = append(m.prefixes, nameRule{p, fmt.Sprintf("name prefix %q", p)})
		}
	}
	return m
}

func (m *matcher) match(c *pipeline.Container) (string, bool) {
	for _, l := range m.labels {
		// An exact comparison, as DS01 does for "true": "True" or "1" do
		// not exempt, and a missing label never matches.
		if v, ok := c.Labels[l.key]; ok && v == l.value {
			return "label " + l.key + "=" + l.value, true
		}
	}
	if reason, ok := m.names[c.Name]; ok {
		return reason, true
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(c.Name, p.name) {
			return p.reason, true
		}
	}
	return "", false
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind:    Kind,
		Summary: "Marks infrastructure and protected containers exempt, with the reason: labels ds01.monitoring=true and ds01.protected=true (always), configured labels, names and name prefixes, and the policy's monitoring.infrastructure_containers. Exempt containers are never removed, stopped or released, whatever a later stage decides; no stage clears an exemption.",
		Sample:  sample,
		New:     func() pipeline.Stage { return New() },
		// The engine also applies this stage right after discovery,
		// wherever it stands, so its exemptions hold before anything acts.
		Contract: pipeline.Contract{
			Needs:  []pipeline.Field{pipeline.FieldFacts},
			Writes: []pipeline.Field{pipeline.FieldExemption},
		},
	})
}
