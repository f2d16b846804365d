package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

func testResult() (*pipeline.Env, *pipeline.Result) {
	now := time.Date(2026, 2, 16, 16, 0, 0, 0, time.UTC)
	env := &pipeline.Env{Pipeline: "cleanup", Mode: pipeline.ModePlan, Now: now}
	hostile := "evil\n\x1b[31mred\x1b[0m\"quoted\"\xff\u202e\u2028" + strings.Repeat("x", 300)
	recs := []*pipeline.Record{
		{
			Container: pipeline.Container{ID: strings.Repeat("a", 64), Name: "thesis._.1001", State: pipeline.StateExited,
				Created: now.Add(-3 * time.Hour), StartedAt: now.Add(-3 * time.Hour), FinishedAt: now.Add(-2 * time.Hour)},
			Owner: pipeline.Owner{Name: "dave", Source: pipeline.OwnerFromNameUID}, Type: "atomic",
			GPUs:    []pipeline.GPUClaim{{UUID: "GPU-8c1f0000-0000-0000-0000-000000000000", Source: pipeline.ClaimDeviceRequest}},
			Verdict: pipeline.Verdict{Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired, Clock: pipeline.ClockFinished, Age: 2 * time.Hour, Limit: 30 * time.Minute, HasLimit: true},
			Outcome: pipeline.Outcome{Status: pipeline.OutcomePlanned},
		},
		{
			Container: pipeline.Container{ID: strings.Repeat("b", 64), Name: hostile, State: pipeline.StateCreated, Created: now.Add(-time.Minute)},
			Owner:     pipeline.Owner{Name: hostile, Source: pipeline.OwnerFromUser}, Type: hostile,
			Verdict: pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonIndefiniteHold, Clock: pipeline.ClockCreated, Age: time.Minute},
		},
		{
			Container: pipeline.Container{ID: strings.Repeat("c", 64), Name: "grafana", State: pipeline.StateRunning},
			Exempt:    true, ExemptReason: "label ds01.monitoring=true",
			Verdict: pipeline.Verdict{Action: pipeline.ActionSkip, Reason: pipeline.ReasonExempt},
		},
	}
	batch := &pipeline.Batch{
		Records: recs,
		GPU:     &nvml.Snapshot{Backend: "sim", Available: true},
		GPUs: []pipeline.GPUReport{
			{UUID: "GPU-8c1f0000-0000-0000-0000-000000000000", Index: 0, ClaimedBy: []string{recs[0].Container.ID},
				Processes: []pipeline.GPUProcess{{PID: 4242, UsedMemoryMiB: 1024}, {PID: 77, ContainerID: strings.Repeat("f", 64)}}, Status: pipeline.GPUOrphaned},
			{UUID: "MIG-3e1a0000-0000-0000-0000-000000000000", Index: 1, MIGParent: "GPU-8c1f0000-0000-0000-0000-000000000000", Status: pipeline.GPUFree},
		},
		GPUChecked: true,
	}
	return env, &pipeline.Result{Batch: batch, Timings: []pipeline.StageTiming{{Ref: pipeline.StageRef{Kind: "discover"}, Duration: 1500 * time.Millisecond}}}
}

func TestBuildJSONContract(t *testing.T) {
	env, res := testResult()
	var buf bytes.Buffer
	if err := Build(env, res, nil).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("invalid JSON: %v", err)
	}
	for _, k := range []string{"pipeline", "mode", "now", "containers", "gpus", "summary"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("document lacks %q", k)
		}
	}
	c := doc["containers"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "name", "state", "owner", "owner_source", "type", "exempt", "exempt_reason", "gpus", "verdict", "reason", "age_s", "limit_s", "outcome", "error"} {
		if _, ok := c[k]; !ok {
			t.Errorf("container lacks %q", k)
		}
	}
	if c["owner_source"] != "name._.uid" || c["age_s"] != 7200.0 || c["limit_s"] != 1800.0 || c["verdict"] != "remove" || c["outcome"] != "planned" {
		t.Errorf("container fields: %v", c)
	}
	kept := doc["containers"].([]any)[1].(map[string]any)
	if kept["limit_s"] != nil || kept["gpus"] == nil {
		t.Errorf("no limit must be null and gpus an empty list: %v", kept)
	}
	g := doc["gpus"].([]any)
	first, mig := g[0].(map[string]any), g[1].(map[string]any)
	if first["mig_parent"] != nil || mig["mig_parent"] != "GPU-8c1f0000-0000-0000-0000-000000000000" || first["status"] != "orphaned" {
		t.Errorf("gpus: %v", g)
	}
	procs := first["processes"].([]any)
	if procs[0].(map[string]any)["container_id"] != nil || procs[0].(map[string]any)["used_memory_mib"] != 1024.0 {
		t.Errorf("processes: %v", procs)
	}
}

func TestTableIsSafeAndNarrow(t *testing.T) {
	env, res := testResult()
	var buf bytes.Buffer
	if err := Build(env, res, nil).WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\u202e\u2028") || strings.Contains(out, "\xff") {
		t.Errorf("raw control bytes reached the table:\n%q", out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	// 1 header + 3 containers, blank, 1 header + 2 GPUs, blank, summary.
	if len(lines) != 10 {
		t.Errorf("%d lines, want 10 (a newline in a value must not add lines):\n%s", len(lines), out)
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 120 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	for _, want := range []string{"dave*", "2h00m", "30m", "hold_expired", "dave/thesis._.1001", "4242(no container)", "mig 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		45 * time.Second: "45s", 12 * time.Minute: "12m", 3*time.Hour + 5*time.Minute: "3h05m",
		52 * time.Hour: "2d4h", -time.Hour: "-1h00m",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}
