package pipeline

import "strings"

// Terms describes the contract as short phrases in a fixed order, for
// `ds01-pipe stages` and the generated reference; quote renders a field
// name. A contract that declares nothing has no terms.
func (c Contract) Terms(quote func(Field) string) []string {
	var out []string
	list := func(what string, fs []Field) {
		if len(fs) == 0 {
			return
		}
		names := make([]string, len(fs))
		for i, f := range fs {
			names[i] = quote(f)
		}
		out = append(out, what+" "+strings.Join(names, ", "))
	}
	list("needs", c.Needs)
	list("reads", c.Reads)
	list("writes", c.Writes)
	list("amends", c.Amends)
	list("needs a later stage to write", c.NeedsLater)
	if c.Acts {
		out = append(out, "acts on containers")
	}
	if c.Finalizer {
		out = append(out, "runs even after a failure or the deadline (finalizer)")
	}
	if c.Terminal {
		out = append(out, "ends the pipeline (terminal)")
	}
	return out
}
