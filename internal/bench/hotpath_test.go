package main

// Go benchmarks of pure per-container work that has no benchmark in its own
// package (`make gobench` runs them with the others): reading GPU claims,
// and building and encoding the JSON report. They need no Docker engine.
// Docker timestamps and the changed-container check are benchmarked in
// pipeline/dockerfacts.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	pipereport "github.com/ds01/ds01-pipe/pipeline/report"
)

// simSnapshot returns the benchmark's simulated GPUs as a snapshot.
func simSnapshot(tb testing.TB) *nvml.Snapshot {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "gpus.json")
	if err := writeSim(path, []int{4242}); err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	snap, err := nvml.ParseSim(path, data)
	if err != nil {
		tb.Fatal(err)
	}
	return snap
}

// benchContainer is a discovered container like the fixtures: DS01 labels,
// GPU records of every kind, Docker timestamps.
func benchContainer(i int) pipeline.Container {
	created := time.Date(2026, 2, 16, 15, 50, 3, 412345678, time.UTC).Add(time.Duration(i) * time.Second)
	return pipeline.Container{
		ID:         fmt.Sprintf("%064x", i),
		Name:       fmt.Sprintf("thesis-%05d._.1000", i),
		Image:      "ds01/pytorch:2.4",
		State:      pipeline.StateExited,
		Created:    created,
		StartedAt:  created.Add(time.Minute),
		FinishedAt: created.Add(time.Hour),
		Labels: map[string]string{
			"ds01.user":           "alice",
			"ds01.managed":        "true",
			"ds01.container_type": "atomic",
			"ds01.gpu.uuids":      simGPUs[0] + "," + simMIGs[1],
			"aime.mlc.USER":       "alice",
			"maintainer":          "ds01",
		},
		VisibleDevices:    simGPUs[0] + "," + simMIGs[1],
		HasVisibleDevices: true,
		DeviceRequests: []pipeline.DeviceRequest{{
			Driver: "nvidia", DeviceIDs: []string{simGPUs[2], "1", "3:0"}, Capabilities: [][]string{{"gpu"}},
		}},
	}
}

func BenchmarkClaims(b *testing.B) {
	snap := simSnapshot(b)
	c := benchContainer(1)
	b.ReportAllocs()
	for b.Loop() {
		claims, _, warnings := pipeline.Claims(&c, snap)
		if len(claims) != 5 || len(warnings) != 0 {
			b.Fatalf("claims %v, warnings %v", claims, warnings)
		}
	}
}

// BenchmarkReport builds and encodes the JSON report of a 1000-container
// plan, what plan does after its stages.
func BenchmarkReport(b *testing.B) {
	const n = 1000
	env := &pipeline.Env{Pipeline: "bench", Mode: pipeline.ModePlan, Now: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	batch := &pipeline.Batch{}
	for i := range n {
		rec := &pipeline.Record{
			Container: benchContainer(i),
			Owner:     pipeline.Owner{Name: "alice", Source: pipeline.OwnerFromUser},
			Type:      "atomic",
			Verdict: pipeline.Verdict{
				Action: pipeline.ActionRemove, Reason: pipeline.ReasonHoldExpired,
				Rule: "defaults.container_hold_after_stop_h", Clock: pipeline.ClockFinished,
				Age: 300 * time.Hour, Limit: 30 * time.Minute, HasLimit: true,
			},
			GPUs:    []pipeline.GPUClaim{{UUID: simGPUs[0], Source: pipeline.ClaimLabel}},
			Outcome: pipeline.Outcome{Status: pipeline.OutcomePlanned},
		}
		batch.Records = append(batch.Records, rec)
	}
	res := &pipeline.Result{Batch: batch, Elapsed: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		if err := pipereport.Build(env, res, nil).WriteJSON(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
