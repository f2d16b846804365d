package policy

import (
	"strconv"
	"strings"
)

// FileError reports a problem with one DS01 configuration file: a YAML syntax
// error, a value of the wrong type, an unreadable file, an exemption whose
// expires_on does not parse. Load returns it, possibly wrapped; find it with
// errors.As.
type FileError struct {
	Path         string
	Line, Column int // 1-based; 0 if unknown
	Msg          string
	// Err is the underlying error, if any (an *fs.PathError's cause, for
	// example), so errors.Is(err, fs.ErrPermission) works through a FileError.
	Err error
}

// Error renders "path:line:col: msg", leaving out the parts that are unknown.
func (e *FileError) Error() string {
	var where []string
	if e.Path != "" {
		where = append(where, e.Path)
	}
	if e.Line > 0 {
		where = append(where, strconv.Itoa(e.Line))
		if e.Column > 0 {
			where = append(where, strconv.Itoa(e.Column))
		}
	}
	if len(where) == 0 {
		return e.Msg
	}
	return strings.Join(where, ":") + ": " + e.Msg
}

// Unwrap returns the underlying error, if any.
func (e *FileError) Unwrap() error { return e.Err }
