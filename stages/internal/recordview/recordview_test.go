package recordview

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/report"
)

func fullRecord() *pipeline.Record {
	at := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)
	return &pipeline.Record{
		Container: pipeline.Container{ID: "abc", Name: "n", Image: "img", State: pipeline.StateExited, Created: at, StartedAt: at, FinishedAt: at,
			Labels: map[string]string{"k": "v"}},
		Owner: pipeline.Owner{Name: "alice", Source: pipeline.OwnerFromUser}, Type: "docker",
		Exempt: true, ExemptReason: "r", GPUs: []pipeline.GPUClaim{{UUID: "GPU-1"}}, GPUAll: true,
		Verdict:  pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonWithinHold, Rule: "x", Clock: pipeline.ClockFinished, Age: time.Hour, Limit: 2 * time.Hour, HasLimit: true, Detail: "d"},
		Outcome:  pipeline.Outcome{Status: pipeline.OutcomeKept, Error: "e"},
		Warnings: []string{"w"},
	}
}

// TestKeysAreTheReportKeys: every key the JSON report writes for a
// container, of a type the view can show, is a key of the view, with the
// same value.
func TestKeysAreTheReportKeys(t *testing.T) {
	rec := fullRecord()
	raw, err := json.Marshal(report.ContainerOf(rec))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	o := Of(rec)
	for key, want := range doc {
		f, ok := Lookup(key)
		if !ok {
			switch want.(type) {
			case string, bool, float64, nil, []any:
				if l, isList := want.([]any); isList && len(l) > 0 {
					if _, str := l[0].(string); !str {
						continue // a list of objects (lifecycle signals): not shown
					}
				}
				t.Errorf("report key %q is not in the view", key)
			}
			continue
		}
		got, _ := json.Marshal(f.Value(o))
		w, _ := json.Marshal(want)
		if string(got) != string(w) {
			t.Errorf("%s: view %s, report %s", key, got, w)
		}
	}
	if v := (Field{Key: LabelsKey, Kind: Map, index: -1}).Value(o); v.(map[string]string)["k"] != "v" {
		t.Errorf("labels = %v", v)
	}
}

// TestContractFieldsNameKeys: every key the contract mapping names exists,
// so a renamed report key cannot silently drop a read from a contract.
func TestContractFieldsNameKeys(t *testing.T) {
	keys := Keys()
	for k := range contractFields {
		if !slices.Contains(keys, k) {
			t.Errorf("contractFields names %q, which is no key", k)
		}
	}
	got := Reads([]string{"name", "verdict", "owner", "age_s", "labels"})
	want := []pipeline.Field{pipeline.FieldOwner, pipeline.FieldVerdict}
	if !slices.Equal(got, want) {
		t.Errorf("Reads = %v, want %v", got, want)
	}
}
