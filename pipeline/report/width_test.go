package report

import (
	"strings"
	"testing"
)

// TestTableWidth pins that the table fits the terminal it is written to,
// and that written anywhere else (width 0: a file, a pipe) it cuts no
// container name.
func TestTableWidth(t *testing.T) {
	long := "proj-" + strings.Repeat("x", 70) + "-end"
	doc := &Document{Pipeline: "cleanup", Mode: "plan", Containers: []Container{
		{ID: "c1", Name: long, Owner: "alice", OwnerSource: "ds01.user", Type: "atomic", State: "exited", Verdict: "remove", Reason: "hold_expired"},
	}}
	for _, tc := range []struct {
		width   int
		whole   bool
		maxLine int
	}{
		{0, true, 0},
		{80, false, 0},
		{120, false, 0},
		{200, true, 200},
	} {
		var b strings.Builder
		if err := doc.WriteTableWidth(&b, tc.width); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if got := strings.Contains(out, long); got != tc.whole {
			t.Errorf("width %d: whole name shown %v, want %v:\n%s", tc.width, got, tc.whole, out)
		}
		if !tc.whole && !strings.Contains(out, "…") {
			t.Errorf("width %d: name cut without an ellipsis:\n%s", tc.width, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if tc.maxLine > 0 && len([]rune(l)) > tc.maxLine {
				t.Errorf("width %d: line of %d columns: %q", tc.width, len([]rune(l)), l)
			}
		}
	}
}
