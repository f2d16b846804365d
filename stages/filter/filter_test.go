package filter_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/stages/filter"
)

// load loads a one-stage pipeline whose filter has the given when.
func load(t *testing.T, when string, vars map[string]string) (*filter.Stage, error) {
	t.Helper()
	reg := pipeline.NewRegistry()
	reg.MustRegister(pipeline.Spec{Kind: filter.Kind, New: func() pipeline.Stage { return filter.New() }})
	src := "variable \"who\" { default = \"alice\" }\npipeline \"p\" {\n  stage \"filter\" {\n    when = " + when + "\n  }\n}\n"
	cfg, err := pipeline.Load("f.hcl", []byte(src), pipeline.LoadOptions{Registry: reg, Vars: vars})
	if err != nil {
		return nil, err
	}
	return cfg.Stages[0].Stage.(*filter.Stage), nil
}

func mustLoad(t *testing.T, when string) *filter.Stage {
	t.Helper()
	s, err := load(t, when, nil)
	if err != nil {
		t.Fatalf("load %q: %v", when, err)
	}
	return s
}

func TestLoadErrorsAtTheirPosition(t *testing.T) {
	tests := []struct {
		when string
		want []string // substrings of the error
	}{
		{`c.nmae == "x"`, []string{"f.hcl:4:13:", "Unsupported attribute", "nmae"}},
		{`c.age_s + "x" > 1`, []string{"f.hcl:4:", "Invalid operand", "number"}},
		{`c.name`, []string{"f.hcl:4:12:", "when is not a condition", "string"}},
		{`c.labels`, []string{"when is not a condition", "map of string"}},
		{`d.name == "x"`, []string{"f.hcl:4:12:", "Unknown variable", `"d"`}},
		{`var.nope == c.name`, []string{"f.hcl:4:", "Unsupported attribute", "nope"}},
		{`nosuch(c.name)`, []string{"f.hcl:4:12:", "Call to unknown function"}},
		{`startswith(c.name)`, []string{"f.hcl:4:", "Not enough function arguments"}},
		{`contains(c.gpus, 1, 2)`, []string{"Too many function arguments"}},
		{`c.exempt && "yes"`, []string{"Invalid operand"}},
		{`null`, []string{"when is null"}},
		{`c.gpus[0] == 3 || c.labels.x`, nil}, // valid: types convert, checked per record
	}
	for _, tt := range tests {
		_, err := load(t, tt.when, nil)
		if tt.want == nil {
			if err != nil {
				t.Errorf("when = %s: unexpected error %v", tt.when, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("when = %s: loaded, want an error", tt.when)
			continue
		}
		if !pipeline.IsConfigError(err) {
			t.Errorf("when = %s: %T is not a configuration error", tt.when, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("when = %s: error lacks %q:\n%v", tt.when, w, err)
			}
		}
	}
}

func TestMissingWhen(t *testing.T) {
	reg := pipeline.NewRegistry()
	reg.MustRegister(pipeline.Spec{Kind: filter.Kind, New: func() pipeline.Stage { return filter.New() }})
	_, err := pipeline.Load("f.hcl", []byte("pipeline \"p\" {\n  stage \"filter\" {}\n}\n"), pipeline.LoadOptions{Registry: reg})
	if err == nil || !strings.Contains(err.Error(), "f.hcl:2:3:") || !strings.Contains(err.Error(), "when") {
		t.Fatalf("want a missing-when error, got %v", err)
	}
}

func record(name string, mut func(*pipeline.Record)) *pipeline.Record {
	rec := &pipeline.Record{
		Container: pipeline.Container{
			ID: "id-" + name, Name: name, State: pipeline.StateExited,
			Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			Labels:  map[string]string{"ds01.user": "alice", "team": "vision"},
		},
		Owner: pipeline.Owner{Name: "alice", Source: pipeline.OwnerFromUser},
		Type:  "docker",
		GPUs:  []pipeline.GPUClaim{{UUID: "GPU-1", Source: pipeline.ClaimDeviceRequest}},
		Verdict: pipeline.Verdict{
			Action: pipeline.ActionKeep, Reason: pipeline.ReasonWithinHold, Clock: pipeline.ClockFinished,
			Age: 90 * time.Minute, Limit: 2 * time.Hour, HasLimit: true,
		},
	}
	if mut != nil {
		mut(rec)
	}
	return rec
}

func TestMatch(t *testing.T) {
	bare := record("bare", func(r *pipeline.Record) {
		r.Verdict = pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonNotACandidate}
		r.Container.Labels = nil
		r.GPUs = nil
		r.Owner = pipeline.Owner{Name: "unknown", Source: pipeline.OwnerUnknown}
	})
	hostile := record("h", func(r *pipeline.Record) {
		r.Container.Labels = map[string]string{"a\nb": "=cmd|' /C calc'!A0", "bad\xff": "v\xfe"}
		r.Owner.Name = "=HYPERLINK(\"x\")"
	})
	rec := record("web-1", nil)
	tests := []struct {
		when string
		rec  *pipeline.Record
		want bool
		err  string
	}{
		{`c.owner == "alice"`, rec, true, ""},
		{`c.owner == var.who`, rec, true, ""},
		{`c.owner_source == "unknown"`, bare, true, ""},
		{`c.id == "id-web-1" && c.name == "web-1" && c.state == "exited"`, rec, true, ""},
		{`c.type == "docker" && !c.exempt && c.exempt_reason == ""`, rec, true, ""},
		{`contains(c.gpus, "GPU-1")`, rec, true, ""},
		{`length(c.gpus) == 0`, bare, true, ""},
		{`c.verdict == "keep" && c.reason == "within_hold"`, rec, true, ""},
		{`c.age_s == 5400 && c.limit_s == 7200 && c.left_s == 1800`, rec, true, ""},
		{`c.age_s > seconds("1h")`, rec, true, ""},
		{`c.age_s > seconds("2h")`, rec, false, ""},
		{`c.outcome == ""`, rec, true, ""},
		{`c.labels["team"] == "vision"`, rec, true, ""},
		{`lookup(c.labels, "team", "") == "vision"`, bare, false, ""},
		{`lookup(c.labels, "a\nb", "") == "=cmd|' /C calc'!A0"`, hostile, true, ""},
		{`contains(keys(c.labels), "bad\uFFFD")`, hostile, true, ""},
		{`startswith(c.owner, "=")`, hostile, true, ""},
		{`startswith(c.name, "web-") && endswith(c.name, "-1")`, rec, true, ""},
		{`strcontains(c.name, "b-")`, rec, true, ""},
		{`matches(c.name, "^web-[0-9]+$")`, rec, true, ""},
		{`matches(c.name, "^db")`, rec, false, ""},
		{`can(regex("^db", c.name))`, rec, false, ""},
		{`lower(upper(c.name)) == c.name`, rec, true, ""},
		{`coalesce(c.age_s, -1) < 0`, bare, true, ""},
		{`c.age_s == null`, bare, true, ""},
		{`c.age_s == null ? false : c.age_s > 10`, bare, false, ""},
		// Failures drop the record with a reason, never a panic.
		{`c.age_s > 10`, bare, false, "f.hcl:4:"},
		{`c.labels["team"] == "x"`, bare, false, "Invalid index"},
		{`regex("^db", c.name) == "db"`, rec, false, "did not match"},
		{`c.gpus[0] == "GPU-1"`, bare, false, "Invalid index"},
	}
	for _, tt := range tests {
		s := mustLoad(t, tt.when)
		got, err := s.Match(tt.rec)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("when = %s on %s: error %v, want one containing %q", tt.when, tt.rec.Container.Name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("when = %s on %s: %v", tt.when, tt.rec.Container.Name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("when = %s on %s: %v, want %v", tt.when, tt.rec.Container.Name, got, tt.want)
		}
	}
}

func TestVarsReachTheExpression(t *testing.T) {
	s, err := load(t, `c.owner == var.who`, map[string]string{"who": "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Match(record("x", nil)); err != nil || ok {
		t.Fatalf("owner alice with var.who = bob: %v, %v; want false", ok, err)
	}
}

func TestProcessDropsAndRecords(t *testing.T) {
	s := mustLoad(t, `c.age_s > 60`)
	keep := record("keep", nil)
	no := record("no", func(r *pipeline.Record) { r.Verdict.Age = time.Second })
	bad := record("bad", func(r *pipeline.Record) { r.Verdict = pipeline.Verdict{} })
	batch := &pipeline.Batch{Records: []*pipeline.Record{keep, no, bad}}
	if err := s.Process(t.Context(), &pipeline.Env{}, batch); err != nil {
		t.Fatal(err)
	}
	if len(batch.Records) != 1 || batch.Records[0] != keep {
		t.Fatalf("kept %d records, want only keep", len(batch.Records))
	}
	d := s.Dropped()
	if len(d) != 2 || d[0].Name != "no" || d[0].Reason != "when is false" || d[1].Name != "bad" || !strings.Contains(d[1].Reason, "null") {
		t.Fatalf("dropped = %+v", d)
	}
	// The records left out still hold their GPUs: release reads them.
	if len(batch.Held) != 2 || batch.Held[0] != no || batch.Held[1] != bad {
		t.Errorf("held = %v, want the two records left out", batch.Held)
	}
}

// TestWarningsAreBounded: an expression that fails for every container
// warns for the first few and counts the rest.
func TestWarningsAreBounded(t *testing.T) {
	s := mustLoad(t, `c.age_s > 60`)
	var recs []*pipeline.Record
	for i := 0; i < 50; i++ {
		recs = append(recs, record(fmt.Sprint("r", i), func(r *pipeline.Record) { r.Verdict = pipeline.Verdict{} }))
	}
	log, hook := test.NewNullLogger()
	if err := s.Process(t.Context(), &pipeline.Env{Log: log}, &pipeline.Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	entries := hook.AllEntries()
	if len(entries) != 11 || !strings.Contains(entries[10].Message, "40 more") {
		t.Fatalf("%d log lines, last %q; want 10 and a count of 40", len(entries), entries[len(entries)-1].Message)
	}
	if len(s.Dropped()) != 50 {
		t.Errorf("dropped %d, want 50", len(s.Dropped()))
	}
}
