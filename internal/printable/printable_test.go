package printable

import "testing"

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"Müller 東京", "Müller 東京"},
		{"two\nlines", `two\nlines`},
		{"\x1b]0;PWN\x07", `\x1b]0;PWN\a`},
		{"bidi\u202eexe", `bidi\u202eexe`},
		{"bad\xffutf8", `bad\xffutf8`},
		{`quote"back\slash`, `quote"back\slash`},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestText(t *testing.T) {
	in := "file.hcl:1:2: bad\n\tsource\x1b[2J line\nlast"
	want := "file.hcl:1:2: bad\n\tsource\\x1b[2J line\nlast"
	if got := Text(in); got != want {
		t.Errorf("Text(%q) = %q, want %q", in, got, want)
	}
	if got := Text("a\n\tb"); got != "a\n\tb" {
		t.Errorf("clean text changed: %q", got)
	}
}
