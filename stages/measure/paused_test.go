package measure

import (
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// A paused container is measured like a running one: it keeps its GPUs,
// and the lifecycle judges it. Other states are not measured.
func TestTargetsIncludePaused(t *testing.T) {
	var recs []*pipeline.Record
	want := map[pipeline.State]bool{
		pipeline.StateRunning: true, pipeline.StatePaused: true,
		pipeline.StateRestarting: false, pipeline.StateExited: false, pipeline.StateCreated: false,
	}
	i := byte('a')
	for s := range want {
		r := rec(cid(i), "GPU-0")
		r.Container.State = s
		recs = append(recs, r)
		i++
	}
	got := map[pipeline.State]bool{}
	for _, r := range Targets(recs, nil) {
		got[r.Container.State] = true
	}
	for s, w := range want {
		if got[s] != w {
			t.Errorf("%s measured: %v, want %v", s, got[s], w)
		}
	}
}

// The engine answers a paused container's stats with its cumulative
// counters, which do not move while its processes are frozen: two samples
// a moment apart read the same CPU time at two sample times, so the
// lifecycle reads 0 % CPU (evidence, not a missing sample).
func TestPausedStatsAgainstTheEngine(t *testing.T) {
	eng := dockertest.New(t)
	c := eng.Create(t, dockertest.Spec{Name: "paused", Args: []string{"busy"}, Start: true})
	if _, err := eng.Client().ContainerPause(t.Context(), c.ID, client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	env, _ := pipelinetest.Env(pipeline.ModeRun, eng.Client())
	stats, ok := env.Docker.(Stats)
	if !ok {
		t.Fatal("the engine client offers no stats")
	}
	first, err := readStats(t.Context(), env, stats, c.ID)
	if err != nil {
		t.Fatalf("stats of a paused container: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // real time between the samples
	second, err := readStats(t.Context(), env, stats, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Read.After(first.Read) || second.CPUTotalNs != first.CPUTotalNs || first.CPUTotalNs == 0 {
		t.Errorf("paused samples %+v then %+v: want the same non-zero CPU time at a later sample time", first, second)
	}
}
