package lines

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestEachSkipsLongLines(t *testing.T) {
	long := strings.Repeat("x", 100)
	for _, c := range []struct {
		in      string
		want    []string
		skipped int
	}{
		{"a\nb\n", []string{"a", "b"}, 0},
		{"a\nb", []string{"a", "b"}, 0},
		{"a\n" + long + "\nc\n", []string{"a", "c"}, 1},
		{long + "\n" + long + "\n", nil, 2},
		{"a\n" + long, []string{"a"}, 1}, // a long last line without newline
		{"\n\n", []string{"", ""}, 0},
		{"", nil, 0},
		{strings.Repeat("y", 10) + "\n", []string{strings.Repeat("y", 10)}, 0}, // exactly max
	} {
		var got []string
		skipped, err := Each(iotest.OneByteReader(strings.NewReader(c.in)), 10, func(l []byte) bool {
			got = append(got, string(l))
			return true
		})
		if err != nil || skipped != c.skipped || strings.Join(got, "|") != strings.Join(c.want, "|") || len(got) != len(c.want) {
			t.Errorf("Each(%.20q) = %q, %d skipped, %v; want %q, %d", c.in, got, skipped, err, c.want, c.skipped)
		}
	}
}

func TestEachStops(t *testing.T) {
	n := 0
	_, err := Each(strings.NewReader("a\nb\nc\n"), 10, func([]byte) bool { n++; return n < 2 })
	if err != nil || n != 2 {
		t.Errorf("stopped after %d lines (%v), want 2", n, err)
	}
}

func TestEachReadError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := Each(iotest.ErrReader(boom), 10, func([]byte) bool { return true }); !errors.Is(err, boom) {
		t.Errorf("err %v, want boom", err)
	}
}
