package policy

import "testing"

// Expected values come from running reference 4.5's algorithm in Python.
func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"h.baker@hertie-school.lan", "h_baker"},
		{"john.doe", "john_doe"},
		{"alice", "alice"},
		{"", ""},
		{"__a..b__", "a_b"},
		{"user@domain.org", "user"},
		{"test.user@sub.domain.edu", "test_user"},
		{"a-b c", "a_b_c"},
		{"müller.k", "m_ller_k"},
		{"a@b@c", "a"},
		{"@x", ""},
		{"...", ""},
		{"x:y", "x:y"},
		{"日本", ""},
		{"abcdefghijklmnopqrstuvwxyz_abcde", "abcdefghijklmnopqrstuvwxyz_abcde"}, // exactly 32: kept
		// Longer than 32: 27 characters, "_", 4 hex digits of the MD5 of the original.
		{"maximilian.alexander.von.humboldt@hertie-school.lan", "maximilian_alexander_von_hu_a310"},
		{"abcdefghijklmnopqrstuvwxyz_abcdef", "abcdefghijklmnopqrstuvwxyz_1b02"},
		{"abcdefghijklmnopqrstuvwxyz_abcdefgh", "abcdefghijklmnopqrstuvwxyz_64bf"},
		// The 27th character is "_": trimmed before the suffix.
		{"abcdefghijklmnopqrstuvwxyz_.____defghij", "abcdefghijklmnopqrstuvwxyz_2c2b"},
	}
	for _, tt := range tests {
		if got := Sanitize(tt.in); got != tt.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSanitizeFastPathAgrees(t *testing.T) {
	for _, u := range []string{"alice", "a_b", "a__b", "_a", "a_", "x:y", "a.b", "A9"} {
		if isSanitized(u) && Sanitize(u) != u {
			t.Errorf("isSanitized(%q) but Sanitize changes it to %q", u, Sanitize(u))
		}
	}
}

func TestSanitizeAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Sanitize("alice") }); n != 0 {
		t.Errorf("Sanitize of a clean name allocates %v times, want 0", n)
	}
}
