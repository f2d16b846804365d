package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func lifecycleFixture(t *testing.T) *Model {
	t.Helper()
	dir := filepath.Join("..", "testdata", "lifecycle")
	m, err := Load(Files{
		LimitsFile:     filepath.Join(dir, "resource-limits.yaml"),
		GroupsDir:      filepath.Join(dir, "groups"),
		OverridesFile:  filepath.Join(dir, "user-overrides.yaml"),
		ExemptionsFile: filepath.Join(dir, "lifecycle-exemptions.yaml"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIdlePolicyResolution(t *testing.T) {
	m := lifecycleFixture(t)
	for _, tc := range []struct {
		user            string
		cpu, gpu, net   float64
		window          float64
		cpuSourcePrefix string
	}{
		{"sam", 2.0, 5, 1048576, 3, "groups.student.policies"},
		{"nobody", 2.0, 5, 1048576, 3, "groups.student.policies"}, // default group
		{"rita", 3.0, 5, 1048576, 4, "groups.researcher.policies"},
		{"pol", 50, 5, 1048576, 1, "user-overrides.yaml"},       // override with policies: no group layer
		{"ivan", 2.0, 5, 1048576, 3, "groups.student.policies"}, // override without policies: group lookup goes on
	} {
		p := m.IdlePolicy(tc.user)
		if p.CPUThreshold.Value != tc.cpu || p.GPUThreshold.Value != tc.gpu || p.NetworkThreshold.Value != tc.net || p.Window.Value != tc.window {
			t.Errorf("%s: %+v", tc.user, p)
		}
		if tc.user != "pol" && !strings.HasPrefix(p.CPUThreshold.Source, tc.cpuSourcePrefix) {
			t.Errorf("%s: cpu source %q", tc.user, p.CPUThreshold.Source)
		}
	}
	if d := Default().IdlePolicy("x"); d.CPUThreshold.Value != DefaultCPUIdleThreshold || d.Window.Value != DefaultIdleWindow {
		t.Errorf("defaults: %+v", d)
	}
	hd := m.HighDemand()
	if hd.Threshold.Value != 0.8 || hd.Reduction.Value != 0.5 || hd.Off {
		t.Errorf("high demand: %+v", hd)
	}
}

func TestLifecycleLimits(t *testing.T) {
	m := lifecycleFixture(t)
	h := time.Hour
	for _, tc := range []struct {
		user, ctype   string
		idle, runtime time.Duration // -1: no limit
	}{
		{"sam", "atomic", 30 * time.Minute, 24 * h},
		{"rita", "orchestration", h, 48 * h},
		{"ivan", "atomic", -1, -1},                    // override null: no limit (#30)
		{"sam", "devcontainer", -1, 168 * h},          // idle exempt by null, runtime 168 h (#20, #39)
		{"sam", "api", -1, 24 * h},                    // B-4/B-5 fixed (#32, #41)
		{"sam", "docker", 30 * time.Minute, 48 * h},   // the type's values
		{"sam", "custom", 15 * time.Minute, 24 * h},   // no entry: unknown's
		{"ivan", "compose", 30 * time.Minute, 72 * h}, // external types ignore the owner's values
	} {
		check := func(what string, l Limit, want time.Duration) {
			if want < 0 {
				if !l.Unlimited {
					t.Errorf("%s/%s %s = %v, want no limit", tc.user, tc.ctype, what, l)
				}
				return
			}
			if l.Unlimited || l.Duration != want {
				t.Errorf("%s/%s %s = %v (%s), want %v", tc.user, tc.ctype, what, l, l.Source, want)
			}
		}
		check("idle", m.IdleTimeout(tc.user, tc.ctype), tc.idle)
		check("runtime", m.MaxRuntime(tc.user, tc.ctype), tc.runtime)
	}
	for ctype, want := range map[string]time.Duration{"devcontainer": 30 * time.Second, "compose": 45 * time.Second, "docker": 60 * time.Second, "atomic": 60 * time.Second, "orchestration": 60 * time.Second, "custom": 30 * time.Second} {
		if g := m.SigtermGrace(ctype); g.Duration != want {
			t.Errorf("sigterm grace of %s = %v (%s), want %v", ctype, g, g.Source, want)
		}
	}
	if g := m.GracePeriod(); g.Duration != 30*time.Minute {
		t.Errorf("grace = %v", g)
	}
	if k := m.KeepAliveMax(); k.Duration != 24*time.Hour {
		t.Errorf("keep-alive = %v", k)
	}
}

func TestLifecycleKeysRejected(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want string
	}{
		"unknown global key":  {"policies:\n  gpu_idle_treshold: 5\n", `limits.yaml:2:3: policies: unknown key "gpu_idle_treshold"; did you mean "gpu_idle_threshold"?`},
		"global key in group": {"groups:\n  student:\n    policies:\n      high_demand_threshold: 0.5\n", `limits.yaml:4:7: groups.student.policies: "high_demand_threshold" is a global setting`},
		"threshold word":      {"policies:\n  memory_idle_threshold: 5\n", `policies: unknown key "memory_idle_threshold"`},
		"gpu over 100":        {"policies:\n  gpu_idle_threshold: 150\n", `limits.yaml:2:23: policies.gpu_idle_threshold: 150 is out of range: want a number from 0 to 100 (percent)`},
		"negative cpu":        {"groups:\n  r:\n    policies: {cpu_idle_threshold: -1}\n", `groups.r.policies.cpu_idle_threshold: -1 is out of range`},
		"window fraction":     {"policies:\n  idle_detection_window: 2.5\n", `want a whole number from 1 to 1000`},
		"window zero":         {"policies:\n  idle_detection_window: 0\n", `idle_detection_window: 0 is out of range`},
		"reduction zero":      {"policies:\n  high_demand_idle_reduction: 0\n", `want a number above 0 to 1`},
		"threshold text":      {"policies:\n  cpu_idle_threshold: high\n", `policies.cpu_idle_threshold: want a number (percent of one CPU), got a string "high"`},
		"override key":        {"user_overrides:\n  bob:\n    policies: {idle_window: 3}\n", `user_overrides.bob.policies: unknown key "idle_window"`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "limits.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(Files{LimitsFile: path})
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Load = %v, want a FileError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\n does not contain %q", err, tc.want)
			}
		})
	}
}

func TestHighDemandNullIsOff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(path, []byte("policies:\n  high_demand_threshold: null\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := Load(Files{LimitsFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if !m.HighDemand().Off {
		t.Error("high_demand_threshold: null does not turn high-demand mode off")
	}
}

// Settings DS01's files carry and no job reads stay ignored.
func TestUnusedPolicyKeysIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(path, []byte("policies:\n  auto_stop_idle: true\n  checkpoint_warning: 1h\n  require_workspace_mount: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(Files{LimitsFile: path}); err != nil {
		t.Errorf("Load = %v", err)
	}
}

// TestLifecycleZeroIsNoLimit pins DS01's meaning of 0 (and -1) for the idle
// timeout and the maximum runtime: no limit, so that a DS01 configuration
// that writes 0 stops nothing. Other negative values act at the next run.
func TestLifecycleZeroIsNoLimit(t *testing.T) {
	dir := t.TempDir()
	limits := filepath.Join(dir, "resource-limits.yaml")
	if err := os.WriteFile(limits, []byte(`defaults:
  idle_timeout_h: 0.5
  max_runtime_h: 24
groups:
  zero:
    members: [zed]
    idle_timeout_h: 0
    max_runtime_h: -1
  negative:
    members: [neg]
    idle_timeout_h: -2
    max_runtime_h: 0.0
`), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(Files{LimitsFile: limits})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what     string
		got      Limit
		noLimit  bool
		duration time.Duration
	}{
		{"zed idle 0", m.IdleTimeout("zed", "atomic"), true, 0},
		{"zed runtime -1", m.MaxRuntime("zed", "atomic"), true, 0},
		{"neg idle -2", m.IdleTimeout("neg", "atomic"), false, -2 * time.Hour},
		{"neg runtime 0.0", m.MaxRuntime("neg", "atomic"), true, 0},
		{"default idle", m.IdleTimeout("other", "atomic"), false, 30 * time.Minute},
	} {
		if tc.got.Unlimited != tc.noLimit || (!tc.noLimit && tc.got.Duration != tc.duration) {
			t.Errorf("%s = %v (%s), want no limit %v / %v", tc.what, tc.got, tc.got.Source, tc.noLimit, tc.duration)
		}
	}
}
