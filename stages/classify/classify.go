// Package classify implements the "classify" stage: it gives every
// container its DS01 lifecycle type, which selects the container_types.<type>
// limits of the policy.
package classify

import (
	"context"
	_ "embed" // the sample stage block
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ds01/ds01-pipe/pipeline"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "classify"

//go:embed sample.hcl
var sample string

// Types the rules produce by themselves. Labels may yield any other string
// (orchestration, api, custom, infrastructure, ...).
const (
	Atomic       = "atomic"
	Devcontainer = "devcontainer"
	Compose      = "compose"
	Docker       = "docker"
)

// Labels and substrings the rules read.
const (
	labelContainerType = "ds01.container_type"
	labelInterface     = "ds01.interface"
	uidMarker          = "._." // DS01 atomic names: <project>._.<uid>
	devcontainerMark   = "devcontainer"
	composeMark        = "com.docker.compose"
	// maxTypeLen bounds a type taken from a label; real types are one word.
	maxTypeLen = 256
)

// Classify is the classify stage. It has no attributes: the rules are
// DS01's, and the policy decides what each type means.
type Classify struct{}

// New returns a classify stage.
func New() *Classify { return &Classify{} }

// Process sets Type on every record.
func (*Classify) Process(ctx context.Context, _ *pipeline.Env, batch *pipeline.Batch) error {
	for _, rec := range batch.Records {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec.Type = classify(&rec.Container, rec.Warn)
	}
	return nil
}

// Type returns the DS01 lifecycle type of a container. The first rule that
// matches decides:
//
//  1. label ds01.container_type, verbatim;
//  2. label ds01.interface, verbatim;
//  3. a name containing "._." gives "atomic";
//  4. any label key or value containing "devcontainer" gives "devcontainer";
//  5. any label key containing "com.docker.compose" gives "compose";
//  6. otherwise "docker".
//
// Labels that are empty or "<no value>" count as absent. A label value in
// rules 1 and 2 that is not usable as a type (control characters, invalid
// UTF-8, over 256 bytes) is skipped, so the result is always printable.
func Type(c *pipeline.Container) string {
	return classify(c, nil)
}

// classify is Type reporting skipped labels through warn (nil: silently).
func classify(c *pipeline.Container, warn func(string)) string {
	for _, key := range [...]string{labelContainerType, labelInterface} {
		v, ok := c.Label(key)
		if !ok {
			continue
		}
		if usableType(v) {
			return v
		}
		// The type is printed, logged and used as a policy key: a hostile
		// value must go no further. The warning names the label only.
		if warn != nil {
			warn("classify: label " + key + " is not a usable type (control characters, invalid UTF-8 or over 256 bytes); label ignored")
		}
	}
	if strings.Contains(c.Name, uidMarker) {
		return Atomic
	}
	// Rules 4 and 5 copy nothing out of the labels, so they read every label
	// as DS01 does, odd characters included (multi-line image descriptions
	// are common and harmless here).
	for k, v := range c.Labels {
		if strings.Contains(k, devcontainerMark) || strings.Contains(v, devcontainerMark) {
			return Devcontainer
		}
	}
	for k := range c.Labels {
		if strings.Contains(k, composeMark) {
			return Compose
		}
	}
	return Docker
}

// usableType reports whether a label value can be used verbatim as a type.
func usableType(s string) bool {
	if len(s) > maxTypeLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind:    Kind,
		Summary: "Gives every container its DS01 lifecycle type: label ds01.container_type, else label ds01.interface, else \"atomic\" for <name>._.<uid> names, \"devcontainer\" when any label key or value mentions devcontainer, \"compose\" for com.docker.compose labels, else \"docker\". The type selects container_types.<type> in the policy.",
		Sample:  sample,
		New:     func() pipeline.Stage { return New() },
		Contract: pipeline.Contract{
			Needs:  []pipeline.Field{pipeline.FieldFacts},
			Writes: []pipeline.Field{pipeline.FieldType},
		},
	})
}
