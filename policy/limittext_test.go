package policy

import (
	"testing"
	"time"
)

// A limit written as text: the no-limit words of the policy files, Go
// durations (negative: at the next run), "" for unset, and an error that
// names the text for anything else.
func TestParseLimitText(t *testing.T) {
	cases := []struct {
		in   string
		want Limit
		ok   bool
		err  bool
	}{
		{"", Limit{}, false, false},
		{"  ", Limit{}, false, false},
		{"never", Limit{Unlimited: true}, true, false},
		{" Indefinite ", Limit{Unlimited: true}, true, false},
		{"NULL", Limit{Unlimited: true}, true, false},
		{"none", Limit{Unlimited: true}, true, false},
		{"1h30m", Limit{Duration: 90 * time.Minute}, true, false},
		{"-1h", Limit{Duration: -time.Hour}, true, false},
		{"0s", Limit{}, true, false},
		{"24", Limit{}, false, true},
		{"forever", Limit{}, false, true},
	}
	for _, c := range cases {
		got, ok, err := ParseLimitText(c.in)
		if got != c.want || ok != c.ok || (err != nil) != c.err {
			t.Errorf("ParseLimitText(%q) = %+v, %v, %v", c.in, got, ok, err)
		}
	}
}
