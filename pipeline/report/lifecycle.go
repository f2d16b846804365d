package report

import "github.com/ds01/ds01-pipe/pipeline"

// Signal is one piece of idle evidence of a container in the report:
// its value (null when there was no evidence this run, with the reason in
// missing) and where it came from.
type Signal struct {
	Name      string   `json:"name"`
	Value     *float64 `json:"value"`
	Source    string   `json:"source,omitempty"`
	Missing   string   `json:"missing,omitempty"`
	Threshold float64  `json:"threshold"`
	Active    bool     `json:"active"`
}

// lifecycleFields adds what the lifecycle stages measured and decided.
func lifecycleFields(rec *pipeline.Record, out *Container) {
	lc := rec.Lifecycle
	if lc == nil {
		return
	}
	if lc.HasIdle {
		out.IdleS = secondsPtr(lc.Idle)
	}
	if lc.HasRuntime {
		out.RuntimeS = secondsPtr(lc.Runtime)
	}
	if lc.Signals != nil {
		streak := lc.IdleStreak
		out.IdleStreak = &streak
	}
	for _, s := range lc.Signals {
		sig := Signal{Name: s.Name, Source: s.Source, Missing: s.Missing, Threshold: s.Threshold, Active: s.Active}
		if s.Known {
			v := s.Value
			sig.Value = &v
		}
		out.Signals = append(out.Signals, sig)
	}
	for _, n := range lc.Notices {
		out.Notices = append(out.Notices, string(n.Kind))
	}
}
