package policy

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	h = time.Hour
	m = time.Minute
)

// ds01Files are DS01's real resource-limits.yaml with test groups, overrides
// and exemptions beside it.
func ds01Files() Files {
	dir := filepath.Join("testdata", "ds01")
	return Files{
		LimitsFile:     filepath.Join(dir, "resource-limits.yaml"),
		GroupsDir:      filepath.Join(dir, "groups"),
		OverridesFile:  filepath.Join(dir, "user-overrides.yaml"),
		ExemptionsFile: filepath.Join(dir, "lifecycle-exemptions.yaml"),
	}
}

func loadDS01(t testing.TB) *Model {
	t.Helper()
	model, err := Load(ds01Files())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return model
}

// lim builds an expected Limit.
func lim(d time.Duration, source string) Limit { return Limit{Duration: d, Source: source} }

func never(source string) Limit { return Limit{Unlimited: true, Source: source} }

// TestEffectiveValues pins reference 4.8 on DS01's real file.
func TestEffectiveValues(t *testing.T) {
	model := loadDS01(t)
	type values struct {
		Group                                 string
		Idle, Runtime, GPUHold, ContainerHold Limit
	}
	tests := []struct {
		user string
		want values
	}{
		{"alice", values{"student",
			lim(30*m, "defaults.idle_timeout_h"), lim(24*h, "defaults.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		{"nobody-in-any-group", values{"student",
			lim(30*m, "defaults.idle_timeout_h"), lim(24*h, "defaults.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		{"unknown", values{"student",
			lim(30*m, "defaults.idle_timeout_h"), lim(24*h, "defaults.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		{"zed", values{"student", // only in archived.members, which is not a group
			lim(30*m, "defaults.idle_timeout_h"), lim(24*h, "defaults.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		{"bob", values{"researcher",
			lim(1*h, "groups.researcher.idle_timeout_h"), lim(48*h, "groups.researcher.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		{"carol", values{"faculty",
			lim(2*h, "groups.faculty.idle_timeout_h"), lim(72*h, "groups.faculty.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		{"erin", values{"admin",
			lim(1*h, "groups.admin.idle_timeout_h"), lim(24*h, "groups.admin.max_runtime_h"),
			lim(1*h, "groups.admin.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		// In student.members and researcher.members: student comes first in the file.
		{"dual", values{"student",
			lim(30*m, "defaults.idle_timeout_h"), lim(24*h, "defaults.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		// In researcher.members and faculty.members: researcher comes first.
		{"multi", values{"researcher",
			lim(1*h, "groups.researcher.idle_timeout_h"), lim(48*h, "groups.researcher.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		// researcher.members lists j_doe, the sanitised form.
		{"j.doe@hertie-school.lan", values{"researcher",
			lim(1*h, "groups.researcher.idle_timeout_h"), lim(48*h, "groups.researcher.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(30*m, "defaults.container_hold_after_stop_h")}},
		// In admin.members but has an override: no group layer, so no admin gpu hold.
		{"frank", values{"override",
			lim(30*m, "defaults.idle_timeout_h"), lim(24*h, "defaults.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), lim(2*h, "user-overrides.yaml frank.container_hold_after_stop_h")}},
		// Override found through Sanitize.
		{"h.baker@hertie-school.lan", values{"override",
			lim(3*h, "user-overrides.yaml h_baker.idle_timeout_h"), lim(24*h, "defaults.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), never("user-overrides.yaml h_baker.container_hold_after_stop_h")}},
		{"words", values{"override",
			never("user-overrides.yaml words.idle_timeout_h"), never("user-overrides.yaml words.max_runtime_h"),
			lim(15*m, "defaults.gpu_hold_after_stop_h"), never("user-overrides.yaml words.container_hold_after_stop_h")}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			get := func(key string) Limit {
				l, err := model.Lookup(tt.user, key)
				if err != nil {
					t.Fatalf("Lookup(%q, %q): %v", tt.user, key, err)
				}
				return l
			}
			got := values{
				Group:         model.UserGroup(tt.user),
				Idle:          get("idle_timeout_h"),
				Runtime:       get("max_runtime_h"),
				GPUHold:       get("gpu_hold_after_stop_h"),
				ContainerHold: model.ContainerHold(tt.user, true, "docker"),
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("limits of %q (-want +got):\n%s", tt.user, diff)
			}
		})
	}
}

// TestTypeLimits pins the container_types row of reference 4.8.
func TestTypeLimits(t *testing.T) {
	model := loadDS01(t)
	tests := []struct {
		ctype, key string
		want       Limit
		ok         bool
	}{
		{"devcontainer", "idle_timeout_h", never("container_types.devcontainer.idle_timeout_h"), true},
		{"compose", "idle_timeout_h", lim(30*m, "container_types.compose.idle_timeout_h"), true},
		{"docker", "idle_timeout_h", lim(30*m, "container_types.docker.idle_timeout_h"), true},
		{"unknown", "idle_timeout_h", lim(15*m, "container_types.unknown.idle_timeout_h"), true},
		{"api", "idle_timeout_h", never("container_types.api.idle_timeout_h"), true},
		{"devcontainer", "max_runtime_h", lim(168*h, "container_types.devcontainer.max_runtime_h"), true},
		{"compose", "max_runtime_h", lim(72*h, "container_types.compose.max_runtime_h"), true},
		{"docker", "max_runtime_h", lim(48*h, "container_types.docker.max_runtime_h"), true},
		{"unknown", "max_runtime_h", lim(24*h, "container_types.unknown.max_runtime_h"), true},
		{"compose", "sigterm_grace_s", lim(45*time.Second, "container_types.compose.sigterm_grace_s"), true},
		{"atomic", "max_runtime_h", Limit{}, false},
		{"docker", "container_hold_after_stop_h", Limit{}, false},
	}
	for _, tt := range tests {
		got, ok := model.TypeLimit(tt.ctype, tt.key)
		if ok != tt.ok || got != tt.want {
			t.Errorf("TypeLimit(%q, %q) = %+v, %v; want %+v, %v", tt.ctype, tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

func TestOverrideHolds(t *testing.T) {
	model := loadDS01(t)
	tests := []struct {
		user string
		want Limit
	}{
		{"neg", lim(-h, "user-overrides.yaml neg.container_hold_after_stop_h")},  // negative: next run, not never
		{"zero", lim(0, "user-overrides.yaml zero.container_hold_after_stop_h")}, // 0: next run, not never
		{"h_baker", never("user-overrides.yaml h_baker.container_hold_after_stop_h")},
	}
	for _, tt := range tests {
		if got := model.ContainerHold(tt.user, true, ""); got != tt.want {
			t.Errorf("ContainerHold(%q) = %+v, want %+v", tt.user, got, tt.want)
		}
	}
}

// TestUnknownOwnerHold pins the strictest-value chain for containers without a
// known owner: the type's entry, then container_types.unknown, then defaults,
// then 30m built in. null at any step is a value (no limit), not a fall-through.
func TestUnknownOwnerHold(t *testing.T) {
	const base = `
defaults:
  container_hold_after_stop_h: 0.5
groups:
  student: {container_hold_after_stop_h: 5}
container_types:
  compose: {container_hold_after_stop_h: 0.1}
  api: {container_hold_after_stop_h: null}
  docker: {idle_timeout_h: 0.5}
  unknown: {container_hold_after_stop_h: 0.2}
`
	const noUnknown = `
defaults:
  container_hold_after_stop_h: 0.5
container_types:
  docker: {idle_timeout_h: 0.5}
`
	const nothing = `
container_types:
  docker: {idle_timeout_h: 0.5}
`
	tests := []struct {
		name, yaml, ctype string
		want              Limit
	}{
		{"type entry", base, "compose", lim(6*m, "container_types.compose.container_hold_after_stop_h")},
		{"type entry null", base, "api", never("container_types.api.container_hold_after_stop_h")},
		{"type without key", base, "docker", lim(12*m, "container_types.unknown.container_hold_after_stop_h")},
		{"type without entry", base, "atomic", lim(12*m, "container_types.unknown.container_hold_after_stop_h")},
		{"no type", base, "", lim(12*m, "container_types.unknown.container_hold_after_stop_h")},
		{"defaults", noUnknown, "docker", lim(30*m, "defaults.container_hold_after_stop_h")},
		{"built-in", nothing, "docker", lim(30*m, "built-in default")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := loadString(t, tt.yaml)
			if got := model.ContainerHold("unknown", false, tt.ctype); got != tt.want {
				t.Errorf("ContainerHold(unknown, false, %q) = %+v, want %+v", tt.ctype, got, tt.want)
			}
		})
	}
}

func TestCreatedTimeout(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       Limit
	}{
		{"number", "policies:\n  created_container_timeout_m: 45\n", lim(45*m, "policies.created_container_timeout_m")},
		{"zero", "policies:\n  created_container_timeout_m: 0\n", lim(0, "policies.created_container_timeout_m")},
		{"null", "policies:\n  created_container_timeout_m: null\n", never("policies.created_container_timeout_m")},
		{"word", "policies:\n  created_container_timeout_m: never\n", never("policies.created_container_timeout_m")},
		{"missing key", "policies:\n  grace_period_m: 30\n", lim(30*m, "built-in default")},
		{"missing section", "defaults: {}\n", lim(30*m, "built-in default")},
		{"empty file", "", lim(30*m, "built-in default")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := loadString(t, tt.yaml).CreatedTimeout(); got != tt.want {
				t.Errorf("CreatedTimeout() = %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := loadDS01(t).CreatedTimeout(); got != lim(30*m, "policies.created_container_timeout_m") {
		t.Errorf("DS01 CreatedTimeout() = %+v", got)
	}
}

// TestResolutionLayers covers inline members, inline user_overrides merged
// with the file, default_group, and keys falling through layers.
func TestResolutionLayers(t *testing.T) {
	dir := t.TempDir()
	limits := writeFile(t, dir, "resource-limits.yaml", `
defaults:
  idle_timeout_h: 0.5
  container_hold_after_stop_h: 1
default_group: guests
groups:
  staff:
    members: [sam, "t.ray"]
    idle_timeout_h: null
  guests:
    container_hold_after_stop_h: 0.1
user_overrides:
  olga: {idle_timeout_h: 4}
  pete: {idle_timeout_h: 5}
`)
	writeFile(t, dir, "groups/staff.members", "uma\n")
	overrides := writeFile(t, dir, "user-overrides.yaml", "pete: {max_runtime_h: 9}\n")
	model, err := Load(Files{LimitsFile: limits, GroupsDir: filepath.Join(dir, "groups"), OverridesFile: overrides})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, key string
		want      Limit
		group     string
	}{
		{"sam", "idle_timeout_h", never("groups.staff.idle_timeout_h"), "staff"},                          // inline member
		{"uma", "idle_timeout_h", never("groups.staff.idle_timeout_h"), "staff"},                          // file member
		{"t.ray", "container_hold_after_stop_h", lim(h, "defaults.container_hold_after_stop_h"), "staff"}, // falls through
		{"vic", "container_hold_after_stop_h", lim(6*m, "groups.guests.container_hold_after_stop_h"), "guests"},
		{"vic", "idle_timeout_h", lim(30*m, "defaults.idle_timeout_h"), "guests"},
		{"vic", "max_runtime_h", never("built-in default"), "guests"}, // set nowhere: DS01's null
		{"olga", "idle_timeout_h", lim(4*h, "user_overrides.olga.idle_timeout_h"), "override"},
		// The file's entry replaces the inline one as a whole.
		{"pete", "idle_timeout_h", lim(30*m, "defaults.idle_timeout_h"), "override"},
		{"pete", "max_runtime_h", lim(9*h, "user-overrides.yaml pete.max_runtime_h"), "override"},
		{"pete", "sigterm_grace_s", never("built-in default"), "override"},
	}
	for _, tt := range tests {
		got, err := model.Lookup(tt.user, tt.key)
		if err != nil {
			t.Fatalf("Lookup(%q, %q): %v", tt.user, tt.key, err)
		}
		if got != tt.want {
			t.Errorf("Lookup(%q, %q) = %+v, want %+v", tt.user, tt.key, got, tt.want)
		}
		if g := model.UserGroup(tt.user); g != tt.group {
			t.Errorf("UserGroup(%q) = %q, want %q", tt.user, g, tt.group)
		}
	}
}

// TestSanitizedMemberInEarlierGroup: DS01 tests the name and the sanitised
// name group by group, so an earlier group matching either form wins.
func TestSanitizedMemberInEarlierGroup(t *testing.T) {
	model := loadString(t, `
groups:
  first: {members: [k_lee]}
  second: {members: ["k.lee@hertie-school.lan"]}
`)
	if got := model.UserGroup("k.lee@hertie-school.lan"); got != "first" {
		t.Errorf("UserGroup = %q, want first", got)
	}
	if got := model.UserGroup("k_lee"); got != "first" {
		t.Errorf("UserGroup(k_lee) = %q, want first", got)
	}
}

func TestLookupRejectsKeyWithoutUnit(t *testing.T) {
	if _, err := loadDS01(t).Lookup("alice", "max_cpus"); err == nil {
		t.Error("Lookup(max_cpus) succeeded, want an error")
	}
}

func TestDefault(t *testing.T) {
	model := Default()
	if got := model.UserGroup("anyone"); got != "student" {
		t.Errorf("UserGroup = %q, want student", got)
	}
	if got := model.ContainerHold("anyone", true, "docker"); got != lim(30*m, "built-in defaults.container_hold_after_stop_h") {
		t.Errorf("ContainerHold(known) = %+v", got)
	}
	if got := model.ContainerHold("unknown", false, "docker"); got != lim(30*m, "built-in defaults.container_hold_after_stop_h") {
		t.Errorf("ContainerHold(unknown) = %+v", got)
	}
	if got := model.CreatedTimeout(); got.Duration != 30*m || got.Unlimited {
		t.Errorf("CreatedTimeout = %+v", got)
	}
	if got, _ := model.Lookup("anyone", "gpu_hold_after_stop_h"); got.Duration != 15*m {
		t.Errorf("gpu hold = %+v", got)
	}
	if got, ok := model.TypeLimit("devcontainer", "idle_timeout_h"); !ok || !got.Unlimited {
		t.Errorf("devcontainer idle = %+v, %v", got, ok)
	}
	// Default must agree with DS01's real file wherever the file has the value.
	real := loadDS01(t)
	for _, ctype := range []string{"devcontainer", "compose", "docker", "api", "unknown"} {
		for _, key := range []string{"idle_timeout_h", "max_runtime_h", "sigterm_grace_s"} {
			a, _ := model.TypeLimit(ctype, key)
			b, _ := real.TypeLimit(ctype, key)
			if a.Duration != b.Duration || a.Unlimited != b.Unlimited {
				t.Errorf("Default %s.%s = %v, file has %v", ctype, key, a, b)
			}
		}
	}
	for _, key := range []string{"idle_timeout_h", "max_runtime_h", "gpu_hold_after_stop_h", "container_hold_after_stop_h"} {
		a, _ := model.Lookup("nobody", key)
		b, _ := real.Lookup("nobody", key)
		if a.Duration != b.Duration || a.Unlimited != b.Unlimited {
			t.Errorf("Default %s = %v, file has %v", key, a, b)
		}
	}
	if diff := cmp.Diff(real.InfrastructureContainers(), model.InfrastructureContainers()); diff != "" {
		t.Errorf("infrastructure containers differ (-file +default):\n%s", diff)
	}
}

func TestInfrastructureContainers(t *testing.T) {
	model := loadDS01(t)
	want := []string{"ds01-prometheus", "ds01-grafana", "ds01-alertmanager", "ds01-dcgm-exporter", "ds01-node-exporter"}
	got := model.InfrastructureContainers()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("InfrastructureContainers (-want +got):\n%s", diff)
	}
	got[0] = "changed"
	if model.InfrastructureContainers()[0] != want[0] {
		t.Error("InfrastructureContainers returned the model's own slice")
	}
	if got := loadString(t, "defaults: {}\n").InfrastructureContainers(); got != nil {
		t.Errorf("without monitoring: %v, want nil", got)
	}
}

func TestLoadWithoutLimitsFile(t *testing.T) {
	dir := t.TempDir()
	overrides := writeFile(t, dir, "user-overrides.yaml", "amy: {container_hold_after_stop_h: 3}\n")
	model, err := Load(Files{OverridesFile: overrides})
	if err != nil {
		t.Fatal(err)
	}
	if got := model.ContainerHold("amy", true, ""); got != lim(3*h, "user-overrides.yaml amy.container_hold_after_stop_h") {
		t.Errorf("amy = %+v", got)
	}
	if got := model.ContainerHold("bea", true, ""); got != lim(30*m, "built-in defaults.container_hold_after_stop_h") {
		t.Errorf("bea = %+v", got)
	}
}

func TestMissingOptionalFiles(t *testing.T) {
	dir := t.TempDir()
	limits := writeFile(t, dir, "resource-limits.yaml", "defaults: {container_hold_after_stop_h: 2}\ngroups: {student: {}}\n")
	model, err := Load(Files{
		LimitsFile:     limits,
		GroupsDir:      filepath.Join(dir, "no-such-dir"),
		OverridesFile:  filepath.Join(dir, "no-such-overrides.yaml"),
		ExemptionsFile: filepath.Join(dir, "no-such-exemptions.yaml"),
	})
	if err != nil {
		t.Fatalf("Load with missing optional files: %v", err)
	}
	if got := model.ContainerHold("x", true, ""); got.Duration != 2*h {
		t.Errorf("hold = %+v", got)
	}
}

// BenchmarkContainerHold resolves a mix of users and types on DS01's real file.
func BenchmarkContainerHold(b *testing.B) {
	model := loadDS01(b)
	cases := []struct {
		owner string
		known bool
		ctype string
	}{
		{"alice", true, "atomic"},
		{"bob", true, "docker"},
		{"carol", true, "compose"},
		{"erin", true, "devcontainer"},
		{"frank", true, "docker"},
		{"h.baker@hertie-school.lan", true, "atomic"},
		{"j.doe@hertie-school.lan", true, "docker"},
		{"someone-new", true, "docker"},
		{"unknown", false, "api"},
		{"unknown", false, "atomic"},
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c := cases[i%len(cases)]
		_ = model.ContainerHold(c.owner, c.known, c.ctype)
	}
}
