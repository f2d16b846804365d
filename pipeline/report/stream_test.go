package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// WriteJSON streams the containers but writes exactly what one json.Encoder
// with the same indent writes: no containers (null or []), one, several,
// with text JSON escapes (HTML, quotes, newlines, non-ASCII).
func TestWriteJSONIsTheEncodersOutput(t *testing.T) {
	age := int64(90)
	stamp := "2026-02-16T15:50:03.412345678Z"
	one := Container{ID: "a", Name: `x<y>&"z"`, State: "exited", Created: &stamp, GPUs: []string{}, Verdict: "remove",
		Reason: "hold_expired", AgeS: &age, Warnings: []string{"line\nbreak", "ü \u2028"}}
	two := Container{ID: "b", Name: "containers", GPUs: []string{"GPU-1"}, Verdict: "keep"}
	docs := map[string]*Document{
		"nil":     {SchemaVersion: SchemaVersion, Pipeline: "p", Mode: "plan"},
		"empty":   {SchemaVersion: SchemaVersion, Pipeline: "p", Containers: []Container{}, GPUs: []GPU{}},
		"one":     {SchemaVersion: SchemaVersion, Pipeline: "p", Containers: []Container{one}},
		"several": {SchemaVersion: SchemaVersion, Pipeline: "\"containers\": null", Containers: []Container{one, two, one}, Summary: Summary{Containers: 3}},
	}
	for name, d := range docs {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := d.WriteJSON(&got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.String() != want.String() {
			t.Errorf("%s: WriteJSON wrote\n%s\nwant\n%s", name, got.String(), want.String())
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteJSONReportsWriteErrors(t *testing.T) {
	d := &Document{Containers: make([]Container, 100)}
	if err := d.WriteJSON(failingWriter{}); err == nil || err.Error() != "disk full" {
		t.Errorf("error %v, want the writer's", err)
	}
}
