package report_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/report"
)

// Every JSON document says which version of the schema (docs/report.md)
// it follows, also when the run ended before its stages ran.
func TestSchemaVersion(t *testing.T) {
	env := &pipeline.Env{Pipeline: "p", Mode: pipeline.ModePlan, Now: time.Date(2026, 2, 16, 16, 0, 0, 0, time.UTC)}
	for name, res := range map[string]*pipeline.Result{"no result": nil, "empty run": {Batch: &pipeline.Batch{}}} {
		var buf bytes.Buffer
		if err := report.Build(env, res, nil).WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		if v, ok := doc["schema_version"].(float64); !ok || v != report.SchemaVersion || report.SchemaVersion != 1 {
			t.Errorf("%s: schema_version = %v, want 1", name, doc["schema_version"])
		}
	}
}
