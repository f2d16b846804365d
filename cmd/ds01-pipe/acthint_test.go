package main

import (
	"testing"
	"time"
)

// A plan read on a terminal ends with the command that acts on it; the
// command must paste into a shell as it is, whatever the paths and values.
func TestActHint(t *testing.T) {
	for _, tc := range []struct {
		file string
		vars []string
		want string
	}{
		{"/etc/ds01-pipe/pipelines/cleanup.hcl", nil,
			"ds01-pipe run /etc/ds01-pipe/pipelines/cleanup.hcl"},
		{"/etc/ds01-pipe/pipelines/cleanup.hcl", []string{"ds01_config=/usr/local/share/ds01-pipe/ds01", "prefix=lab-"},
			"ds01-pipe run /etc/ds01-pipe/pipelines/cleanup.hcl --var ds01_config=/usr/local/share/ds01-pipe/ds01 --var prefix=lab-"},
		{"my pipes/it's.hcl", []string{"prefix=a b", "prefix=$(reboot)", "prefix="},
			`ds01-pipe run 'my pipes/it'\''s.hcl' --var 'prefix=a b' --var 'prefix=$(reboot)' --var prefix=`},
	} {
		want := "nothing was changed; to act on the wall clock: " + tc.want +
			" (or save the plan with --out PLAN and carry out just that with ds01-pipe apply PLAN)"
		if got := actHint(tc.file, tc.vars, time.Time{}); got != want {
			t.Errorf("actHint(%q, %q)\n got %s\nwant %s", tc.file, tc.vars, got, want)
		}
	}
	// A plan made at --now says so: the run it suggests decides on the wall
	// clock, and is never given --now.
	now := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	want := "nothing was changed; this plan was made at --now 2026-03-02T14:00:00Z: on the wall clock these containers may not be due yet (plan without --now to see what is); " +
		"to act on the wall clock: ds01-pipe run /etc/ds01-pipe/pipelines/lifecycle.hcl --var prefix=lc-demo" +
		" (or save the plan with --out PLAN and carry out just that with ds01-pipe apply PLAN)"
	if got := actHint("/etc/ds01-pipe/pipelines/lifecycle.hcl", []string{"prefix=lc-demo"}, now); got != want {
		t.Errorf("actHint at --now\n got %s\nwant %s", got, want)
	}
	if got := shellWord(""); got != "''" {
		t.Errorf("shellWord(\"\") = %s, want ''", got)
	}
}
