package policy

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
)

// maxSanitized is the Linux user and group name limit DS01 truncates to.
const maxSanitized = 32

// Sanitize maps a username to the form DS01 uses for systemd slices and, as a
// fallback, for config lookups (reference 4.5): drop everything from the first
// "@"; turn "." and every character outside [A-Za-z0-9_:] into "_"; squeeze
// runs of "_"; trim "_" at both ends; if longer than 32 characters, keep the
// first 27 (trailing "_" removed), then "_" and the first 4 hex digits of the
// MD5 of the original name. "h.baker@hertie-school.lan" becomes "h_baker".
func Sanitize(user string) string {
	if isSanitized(user) {
		return user // the common case, without allocating
	}
	name, _, _ := strings.Cut(user, "@")
	var b strings.Builder
	b.Grow(len(name))
	lastUnderscore := false
	for _, r := range name {
		if !isSliceRune(r) {
			r = '_' // also covers "."
		}
		if r == '_' {
			if lastUnderscore {
				continue
			}
			lastUnderscore = true
		} else {
			lastUnderscore = false
		}
		b.WriteRune(r)
	}
	s := strings.Trim(b.String(), "_")
	if len(s) > maxSanitized {
		sum := md5.Sum([]byte(user))
		s = strings.TrimRight(s[:27], "_") + "_" + hex.EncodeToString(sum[:])[:4]
	}
	return s
}

// isSliceRune reports whether r survives sanitising unchanged.
func isSliceRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':'
}

// isSanitized reports whether Sanitize would return user unchanged.
func isSanitized(user string) bool {
	if len(user) > maxSanitized {
		return false
	}
	if user == "" {
		return true
	}
	if user[0] == '_' || user[len(user)-1] == '_' {
		return false
	}
	for i := 0; i < len(user); i++ {
		c := user[i]
		if c >= 0x80 || !isSliceRune(rune(c)) || c == '_' && user[i+1] == '_' {
			return false
		}
	}
	return true
}
