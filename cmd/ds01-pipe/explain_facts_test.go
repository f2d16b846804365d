package main

import (
	"testing"

	"github.com/ds01/ds01-pipe/pipeline/report"
)

// A container outside the pipeline's scope has no owner or type: the table
// says only its state, never "owner  (), type ".
func TestExplainFactsLine(t *testing.T) {
	for _, tc := range []struct {
		c    report.Container
		want string
	}{
		{report.Container{State: "created", Owner: "rita", OwnerSource: "ds01.user", Type: "docker"}, "created, owner rita (ds01.user), type docker"},
		{report.Container{State: "created"}, "created"},
		{report.Container{State: "exited", Owner: "unknown", OwnerSource: "unknown"}, "exited, owner unknown (unknown)"},
	} {
		if got := facts(tc.c); got != tc.want {
			t.Errorf("facts(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
}
