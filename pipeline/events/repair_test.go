package events

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteRepairsMissingNewline checks that a file left without a final
// newline (a short write, a writer killed half-way through a line) gets one
// before the next line, in the same write, and only once: every line after
// the damaged one is one JSON object.
func TestWriteRepairsMissingNewline(t *testing.T) {
	for _, tt := range []struct {
		name, before, want string
	}{
		{"empty", "", ds01Examples[0].line + "\n" + ds01Examples[1].line + "\n"},
		{"whole lines", "{}\n", "{}\n" + ds01Examples[0].line + "\n" + ds01Examples[1].line + "\n"},
		{"cut line", `{"timestamp":"2026-`, `{"timestamp":"2026-` + "\n" + ds01Examples[0].line + "\n" + ds01Examples[1].line + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			if err := os.WriteFile(path, []byte(tt.before), 0o600); err != nil {
				t.Fatal(err)
			}
			w, err := OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			w.SetHost("") // DS01's example lines exactly
			for _, ex := range ds01Examples[:2] {
				if err := w.Write(ex.ev); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("file:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
}
