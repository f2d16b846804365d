package main

import "github.com/ds01/ds01-pipe/pipeline"

// stdoutTaken reports whether a stage of the pipeline writes its own output
// to standard output (a report stage with path = "-"). The command's table
// or JSON document would be mixed into it, so the command leaves its own
// report out; the summary and diagnostics stay on stderr.
func stdoutTaken(stages []pipeline.StageInstance) bool {
	for _, st := range stages {
		if w, ok := st.Stage.(interface{ WritesStdout() bool }); ok && w.WritesStdout() {
			return true
		}
	}
	return false
}
