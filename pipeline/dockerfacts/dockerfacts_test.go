package dockerfacts_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

var (
	started  = time.Date(2026, 2, 14, 9, 0, 1, 123456789, time.UTC)
	finished = time.Date(2026, 2, 15, 12, 5, 3, 987654321, time.UTC)
)

func TestParseTime(t *testing.T) {
	cases := []struct {
		in     string
		want   time.Time
		ok     bool
		hasErr bool
	}{
		{"2026-02-16T15:50:03.412345678Z", time.Date(2026, 2, 16, 15, 50, 3, 412345678, time.UTC), true, false},
		{"2026-02-16T17:50:03+02:00", time.Date(2026, 2, 16, 15, 50, 3, 0, time.UTC), true, false},
		{"0001-01-01T00:00:00Z", time.Time{}, false, false},
		{"", time.Time{}, false, false},
		{"yesterday", time.Time{}, false, true},
	}
	for _, c := range cases {
		got, ok, err := dockerfacts.ParseTime(c.in)
		if !got.Equal(c.want) || ok != c.ok || (err != nil) != c.hasErr {
			t.Errorf("ParseTime(%q) = %v, %v, %v", c.in, got, ok, err)
		}
		if ok && got.Location() != time.UTC {
			t.Errorf("%q not in UTC", c.in)
		}
		if ok {
			if back, _, _ := dockerfacts.ParseTime(dockerfacts.FormatTime(got)); !back.Equal(got) {
				t.Errorf("FormatTime(%v) does not read back", got)
			}
		}
	}
	if s := dockerfacts.FormatTime(time.Time{}); s != "" {
		t.Errorf("FormatTime(zero) = %q, want \"\" (never)", s)
	}
}

func inspectAnswer() container.InspectResponse {
	return container.InspectResponse{
		ID:           "abc",
		Name:         "/proj",
		Created:      "2026-02-13T08:00:00.5Z",
		RestartCount: 2,
		State: &container.State{
			Status: "exited", ExitCode: 3, StartedAt: started.Format(time.RFC3339Nano),
			FinishedAt: finished.In(time.FixedZone("CET", 3600)).Format(time.RFC3339Nano),
		},
		Config: &container.Config{
			Image:  "img:1",
			Labels: map[string]string{"ds01.user": "alice"},
			Env:    []string{"SECRET=x", "NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-2", "PATH=/bin"},
		},
		HostConfig: &container.HostConfig{
			Runtime: "nvidia", AutoRemove: true,
			Resources: container.Resources{CgroupParent: "ds01.slice", DeviceRequests: []container.DeviceRequest{
				{Driver: "nvidia", Count: -1, DeviceIDs: []string{"0"}, Capabilities: [][]string{{"gpu"}}},
			}},
		},
	}
}

// FromInspect keeps the facts the record holds, in UTC, and nothing of the
// environment but NVIDIA_VISIBLE_DEVICES.
func TestFromInspect(t *testing.T) {
	got, warnings := dockerfacts.FromInspect(inspectAnswer())
	want := pipeline.Container{
		ID: "abc", Name: "proj", Image: "img:1", State: pipeline.StateExited, ExitCode: 3,
		Created:   time.Date(2026, 2, 13, 8, 0, 0, 5e8, time.UTC),
		StartedAt: started, FinishedAt: finished, RestartCount: 2,
		Labels:  map[string]string{"ds01.user": "alice"},
		Runtime: "nvidia", CgroupParent: "ds01.slice", AutoRemove: true,
		VisibleDevices: "GPU-1,GPU-2", HasVisibleDevices: true,
		DeviceRequests: []pipeline.DeviceRequest{{Driver: "nvidia", Count: -1, DeviceIDs: []string{"0"}, Capabilities: [][]string{{"gpu"}}}},
	}
	if diff := cmp.Diff(want, got); diff != "" || warnings != nil {
		t.Errorf("FromInspect (-want +got):\n%s\nwarnings %q", diff, warnings)
	}
	if got.FinishedAt.Location() != time.UTC {
		t.Errorf("FinishedAt in %v, want UTC", got.FinishedAt.Location())
	}
}

func TestFromInspectNeverAndUnparseable(t *testing.T) {
	in := inspectAnswer()
	in.State.StartedAt, in.State.FinishedAt, in.Created = "0001-01-01T00:00:00Z", "soon", ""
	got, warnings := dockerfacts.FromInspect(in)
	if !got.StartedAt.IsZero() || !got.FinishedAt.IsZero() || !got.Created.IsZero() {
		t.Errorf("never and unparseable read as %v / %v / %v, want zero", got.StartedAt, got.FinishedAt, got.Created)
	}
	if want := []string{`FinishedAt: unparseable timestamp "soon"`}; !cmp.Equal(want, warnings) {
		t.Errorf("warnings %q, want %q", warnings, want)
	}
	if e, w := dockerfacts.FromInspect(container.InspectResponse{ID: "e"}); e.State != "" || e.Labels != nil || w != nil {
		t.Errorf("an empty answer: %+v, %q", e, w)
	}
}

func TestInspect(t *testing.T) {
	d := pipelinetest.NewDocker(inspectAnswer())
	env := &pipeline.Env{Docker: d, Stats: &pipeline.Stats{}}
	got, _, err := dockerfacts.Inspect(context.Background(), env, "abc")
	if err != nil || got.Name != "proj" || !got.StartedAt.Equal(started) {
		t.Fatalf("Inspect = %+v, %v", got, err)
	}
	if _, _, err := dockerfacts.Inspect(context.Background(), env, "gone"); !cerrdefs.IsNotFound(err) {
		t.Errorf("a container the engine does not hold: %v, want not found", err)
	}
	boom := errors.New("boom")
	d.InspectErr["abc"] = boom
	if _, _, err := dockerfacts.Inspect(context.Background(), env, "abc"); !errors.Is(err, boom) {
		t.Errorf("error %v, want the engine's", err)
	}
	if n := env.Stats.InspectCalls.Load(); n != 3 {
		t.Errorf("%d inspect calls counted, want 3", n)
	}
	// No stats to count in: still answers.
	if _, _, err := dockerfacts.Inspect(context.Background(), &pipeline.Env{Docker: pipelinetest.NewDocker(inspectAnswer())}, "abc"); err != nil {
		t.Errorf("without stats: %v", err)
	}
}

func TestChanged(t *testing.T) {
	base := pipeline.Container{
		ID: "x", Name: "proj", State: pipeline.StateExited,
		StartedAt: started, FinishedAt: finished, RestartCount: 1,
		Labels: map[string]string{"a": "1", "b": "2"},
		// Facts that are not part of the fingerprint.
		Image: "img:1", PID: 0, ExitCode: 3,
	}
	tests := []struct {
		name   string
		change func(c *pipeline.Container)
		want   string
	}{
		{"identical", func(*pipeline.Container) {}, ""},
		{"other facts do not count", func(c *pipeline.Container) { c.Image, c.ExitCode = "img:2", 0 }, ""},
		{"same instant in another zone", func(c *pipeline.Container) { c.StartedAt = started.In(time.FixedZone("CET", 3600)) }, ""},
		{"state", func(c *pipeline.Container) { c.State = pipeline.StateDead }, "state exited -> dead"},
		{"restart count", func(c *pipeline.Container) { c.RestartCount = 4 }, "restarted (restart count 1 -> 4)"},
		{"renamed", func(c *pipeline.Container) { c.Name = "other" }, "renamed proj -> other"},
		{"label removed", func(c *pipeline.Container) { delete(c.Labels, "b") }, "relabelled: removed b"},
		{"labels all ways", func(c *pipeline.Container) {
			c.Labels = map[string]string{"a": "9", "z": "1", "c": ""}
		}, "relabelled: added c, z; removed b; changed a"},
		{"started", func(c *pipeline.Container) { c.StartedAt = started.Add(time.Second) },
			"started again (StartedAt 2026-02-14T09:00:01.123456789Z -> 2026-02-14T09:00:02.123456789Z)"},
		{"finished", func(c *pipeline.Container) { c.FinishedAt = time.Time{} },
			"finished again (FinishedAt 2026-02-15T12:05:03.987654321Z -> never)"},
		{"several", func(c *pipeline.Container) { c.State = pipeline.StateRunning; c.Name = "n"; c.Labels["a"] = "0" },
			"state exited -> running; renamed proj -> n; relabelled: changed a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := base
			after.Labels = maps.Clone(base.Labels)
			tt.change(&after)
			got, changed := dockerfacts.Changed(base, after)
			if got != tt.want || changed != (tt.want != "") {
				t.Errorf("Changed = %q, %v; want %q, %v", got, changed, tt.want, tt.want != "")
			}
			// The fingerprint sees the same changes, but for the name
			// (kept beside it) and with the label keys unnamed.
			diff := dockerfacts.Of(base).Diff(dockerfacts.Of(after))
			if (diff == "") != (tt.want == "" || tt.name == "renamed") {
				t.Errorf("Fingerprint Diff = %q for %q", diff, tt.want)
			}
			if strings.HasPrefix(tt.want, "relabelled") && diff != "relabelled" {
				t.Errorf("Fingerprint Diff = %q, want relabelled", diff)
			}
		})
	}

	t.Run("nil and empty labels are equal", func(t *testing.T) {
		a, b := base, base
		a.Labels, b.Labels = nil, map[string]string{}
		if what, changed := dockerfacts.Changed(a, b); changed {
			t.Errorf("Changed = %q, true", what)
		}
		if d := dockerfacts.Of(a).Diff(dockerfacts.Of(b)); d != "" {
			t.Errorf("Diff = %q", d)
		}
	})
	t.Run("live is always changed", func(t *testing.T) {
		for _, s := range []pipeline.State{pipeline.StateRunning, pipeline.StatePaused, pipeline.StateRestarting} {
			live := base
			live.State = s
			if what, changed := dockerfacts.Changed(live, live); !changed || what != "container is "+string(s) {
				t.Errorf("Changed(%s, %s) = %q, %v; want changed", s, s, what, changed)
			}
		}
	})
}

// A re-inspect reads timestamps as discovery did, so an unchanged container
// compares equal to its record whatever Docker's precision and zone.
func TestInspectAgainUnchanged(t *testing.T) {
	first, _ := dockerfacts.FromInspect(inspectAnswer())
	again := inspectAnswer()
	again.State.StartedAt = started.In(time.FixedZone("X", -7*3600)).Format(time.RFC3339Nano)
	second, _ := dockerfacts.FromInspect(again)
	if what, changed := dockerfacts.Changed(first, second); changed {
		t.Errorf("unchanged container reported changed: %s", what)
	}
	if dockerfacts.Of(first) != dockerfacts.Of(second) {
		t.Errorf("fingerprints differ: %+v, %+v", dockerfacts.Of(first), dockerfacts.Of(second))
	}
}

func TestFingerprintOf(t *testing.T) {
	c, _ := dockerfacts.FromInspect(inspectAnswer())
	want := dockerfacts.Fingerprint{
		State: "exited", StartedAt: "2026-02-14T09:00:01.123456789Z", FinishedAt: "2026-02-15T12:05:03.987654321Z",
		RestartCount: 2, LabelsSHA256: dockerfacts.LabelsHash(map[string]string{"ds01.user": "alice"}),
	}
	if got := dockerfacts.Of(c); got != want {
		t.Errorf("Of = %+v, want %+v", got, want)
	}
	never := dockerfacts.Of(pipeline.Container{State: pipeline.StateCreated})
	if never.StartedAt != "" || never.FinishedAt != "" || never.State != "created" {
		t.Errorf("a never-started container's fingerprint: %+v", never)
	}
	changed := dockerfacts.Of(pipeline.Container{State: pipeline.StateRunning, StartedAt: finished, RestartCount: 3, Labels: map[string]string{"k": "v"}})
	if got, want := never.Diff(changed), "state created -> running; started again (StartedAt never -> 2026-02-15T12:05:03.987654321Z); "+
		"restarted (restart count 0 -> 3); relabelled"; got != want {
		t.Errorf("Diff = %q, want %q", got, want)
	}
}

func TestLabelsHash(t *testing.T) {
	a := dockerfacts.LabelsHash(map[string]string{"a": "1", "b": "2"})
	if b := dockerfacts.LabelsHash(map[string]string{"b": "2", "a": "1"}); a != b {
		t.Error("the hash depends on map order")
	}
	if dockerfacts.LabelsHash(nil) != dockerfacts.LabelsHash(map[string]string{}) {
		t.Error("nil and empty labels hash differently")
	}
	// Quoting keeps "a=b" + "c" apart from "a" + "b=c".
	if dockerfacts.LabelsHash(map[string]string{"a=b": "c"}) == dockerfacts.LabelsHash(map[string]string{"a": "b=c"}) {
		t.Error("ambiguous label encoding")
	}
	// The encoding is the plan file's: pinned, so old plans stay readable.
	if got := dockerfacts.LabelsHash(nil); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("hash of no labels %s, want sha256 of nothing", got)
	}
}

func BenchmarkParseTime(b *testing.B) {
	const stamp = "2026-02-16T15:50:03.412345678Z"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := dockerfacts.ParseTime(stamp); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkChanged(b *testing.B) {
	before, _ := dockerfacts.FromInspect(inspectAnswer())
	before.Labels = map[string]string{"ds01.user": "alice", "ds01.managed": "true", "ds01.container_type": "atomic",
		"ds01.gpu.uuid": "GPU-b0000000-0000-4000-8000-000000000001", "com.docker.compose.project": "proj"}
	after := before
	after.Labels = maps.Clone(before.Labels)
	b.ReportAllocs()
	for b.Loop() {
		if what, changed := dockerfacts.Changed(before, after); changed {
			b.Fatal(what)
		}
	}
}
