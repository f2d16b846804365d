package policy

import (
	"fmt"
	"slices"
	"time"
)

// GroupOverride is what UserGroup returns for a user with a user override.
const GroupOverride = "override"

const (
	keyContainerHold  = "container_hold_after_stop_h"
	keyCreatedTimeout = "created_container_timeout_m"
	// typeUnknown is the container_types entry for types with no entry of their own.
	typeUnknown = "unknown"
	// sourceBuiltin marks a value that no configuration file set.
	sourceBuiltin = "built-in default"
	// fallbackHold is DS01's hard-coded container hold (0.5 h) when no file sets one.
	fallbackHold = 30 * time.Minute
	// fallbackCreated is DS01's hard-coded created-never-started timeout (30 min).
	fallbackCreated = 30 * time.Minute
)

// Model is the DS01 limits model: defaults, groups and their members, user
// overrides, container types, policies and exemptions, with every duration
// already parsed. A Model is immutable once built, so it is safe for
// concurrent use.
type Model struct {
	defaults      layer
	defaultGroup  string
	groups        []group        // in YAML order: the first group listing a user wins
	memberOf      map[string]int // user -> index of the first group listing them
	defaultLimits layer          // the default group's entry; nil if it has none
	overrides     map[string]layer
	types         map[string]layer
	policies      layer
	infra         []string
	exemptions    []exemption
	life          *lifecycleKeys // non-duration lifecycle keys (lifecycle.go); nil: DS01's defaults
}

// layer holds the duration keys of one section (defaults, a group, an override,
// a container type, policies).
type layer map[string]Limit

// group is one entry under groups:, with its members from the inline list and
// the <group>.members file.
type group struct {
	name    string
	limits  layer
	members []string
}

// index builds the lookup tables for groups, once they are all loaded, so that
// resolving a user costs a few map lookups instead of a walk over every group.
func (m *Model) index() {
	m.memberOf = make(map[string]int)
	m.defaultLimits = nil
	for i, g := range m.groups {
		for _, u := range g.members {
			if _, ok := m.memberOf[u]; !ok {
				m.memberOf[u] = i
			}
		}
		if g.name == m.defaultGroup && m.defaultLimits == nil {
			m.defaultLimits = g.limits
		}
	}
}

// Default returns the model of DS01's built-in defaults (reference 4.2), for a
// pipeline without a policy block: the lifecycle keys of defaults, default
// group student (which has no entry, so defaults apply to everyone), the
// duration keys of policies (created timeout 30m), container_types and
// monitoring.infrastructure_containers. Sources read "built-in <key path>".
func Default() *Model {
	src := func(path string, d time.Duration) Limit {
		return Limit{Duration: d, Source: "built-in " + path}
	}
	never := func(path string) Limit {
		return Limit{Unlimited: true, Source: "built-in " + path}
	}
	const h, m, s = time.Hour, time.Minute, time.Second
	return &Model{
		defaults: layer{
			"max_runtime_h":               src("defaults.max_runtime_h", 24*h),
			"idle_timeout_h":              src("defaults.idle_timeout_h", 30*m),
			"gpu_hold_after_stop_h":       src("defaults.gpu_hold_after_stop_h", 15*m),
			"container_hold_after_stop_h": src("defaults.container_hold_after_stop_h", 30*m),
		},
		defaultGroup: "student",
		policies: layer{
			"grace_period_m":               src("policies.grace_period_m", 30*m),
			"keepalive_max_duration_h":     src("policies.keepalive_max_duration_h", 24*h),
			"sigterm_grace_s":              src("policies.sigterm_grace_s", 60*s),
			"gpu_hold_after_manual_stop_m": src("policies.gpu_hold_after_manual_stop_m", 15*m),
			"created_container_timeout_m":  src("policies.created_container_timeout_m", 30*m),
		},
		types: map[string]layer{
			"devcontainer": {
				"idle_timeout_h":  never("container_types.devcontainer.idle_timeout_h"),
				"max_runtime_h":   src("container_types.devcontainer.max_runtime_h", 168*h),
				"sigterm_grace_s": src("container_types.devcontainer.sigterm_grace_s", 30*s),
			},
			"compose": {
				"idle_timeout_h":  src("container_types.compose.idle_timeout_h", 30*m),
				"max_runtime_h":   src("container_types.compose.max_runtime_h", 72*h),
				"sigterm_grace_s": src("container_types.compose.sigterm_grace_s", 45*s),
			},
			"docker": {
				"idle_timeout_h":  src("container_types.docker.idle_timeout_h", 30*m),
				"max_runtime_h":   src("container_types.docker.max_runtime_h", 48*h),
				"sigterm_grace_s": src("container_types.docker.sigterm_grace_s", 60*s),
			},
			"api": {
				"idle_timeout_h":  never("container_types.api.idle_timeout_h"),
				"max_runtime_h":   src("container_types.api.max_runtime_h", 24*h),
				"sigterm_grace_s": src("container_types.api.sigterm_grace_s", 30*s),
			},
			"unknown": {
				"idle_timeout_h":  src("container_types.unknown.idle_timeout_h", 15*m),
				"max_runtime_h":   src("container_types.unknown.max_runtime_h", 24*h),
				"sigterm_grace_s": src("container_types.unknown.sigterm_grace_s", 30*s),
			},
		},
		infra: []string{"ds01-prometheus", "ds01-grafana", "ds01-alertmanager", "ds01-dcgm-exporter", "ds01-node-exporter"},
	}
}

// CreatedTimeout is policies.created_container_timeout_m: how long a
// created-never-started container may exist. Missing gives 30m ("built-in
// default"); null or a no-limit word gives Unlimited (DS01 removed such
// containers at the next run instead).
func (m *Model) CreatedTimeout() Limit {
	if l, ok := m.policies[keyCreatedTimeout]; ok {
		return l
	}
	return Limit{Duration: fallbackCreated, Source: sourceBuiltin}
}

// ContainerHold is how long an exited container is kept before removal.
//
// For a known owner it is the owner's container_hold_after_stop_h, resolved as
// Lookup does. For an unknown owner (known false) it is the strictest
// applicable value: container_types.<ctype>, else container_types.unknown,
// else defaults, each only if it has the key (null there means no limit), else
// 30m built in.
func (m *Model) ContainerHold(owner string, known bool, ctype string) Limit {
	if known {
		return m.lookup(owner, keyContainerHold)
	}
	if ctype != "" {
		if l, ok := m.types[ctype][keyContainerHold]; ok {
			return l
		}
	}
	if l, ok := m.types[typeUnknown][keyContainerHold]; ok {
		return l
	}
	if l, ok := m.defaults[keyContainerHold]; ok {
		return l
	}
	return builtin(keyContainerHold)
}

// UserGroup returns the group resolution picks for user: GroupOverride
// ("override") for a user with an override entry, else the first group in
// file order that lists the user (or Sanitize(user)), else the default group,
// whether or not it has an entry under groups.
func (m *Model) UserGroup(user string) string {
	name, _ := m.userLayer(user)
	return name
}

// Lookup returns a duration key for user, resolved as DS01 does (reference
// 4.5): an override entry (user, then Sanitize(user)) over defaults, with no
// group layer; else the first group listing the user over defaults; else the
// default group over defaults. A key missing from a layer falls through to the
// one below; a key set to null is Unlimited. A key set nowhere gives
// container_hold_after_stop_h 30m and every other key Unlimited (DS01 read a
// missing key as null), both with Source "built-in default". The key's suffix
// gives its unit; a key without _h, _m or _s is an error.
func (m *Model) Lookup(user, key string) (Limit, error) {
	if !isDurationKey(key) {
		return Limit{}, fmt.Errorf("policy: lookup %q: key has no unit suffix (_h, _m or _s)", key)
	}
	return m.lookup(user, key), nil
}

func (m *Model) lookup(user, key string) Limit {
	_, l := m.userLayer(user)
	if v, ok := l[key]; ok {
		return v
	}
	if v, ok := m.defaults[key]; ok {
		return v
	}
	return builtin(key)
}

// userLayer returns the name and the limits of the layer that applies to user
// above defaults; the layer is nil when the default group has no entry.
func (m *Model) userLayer(user string) (string, layer) {
	san := Sanitize(user)
	if l, ok := m.overrides[user]; ok {
		return GroupOverride, l
	}
	if san != user {
		if l, ok := m.overrides[san]; ok {
			return GroupOverride, l
		}
	}
	// DS01 walks the groups in order and tests the name and the sanitised
	// name in each, so the earlier group wins whichever form matched.
	idx, found := m.memberOf[user]
	if san != user {
		if j, ok := m.memberOf[san]; ok && (!found || j < idx) {
			idx, found = j, true
		}
	}
	if found {
		return m.groups[idx].name, m.groups[idx].limits
	}
	return m.defaultGroup, m.defaultLimits
}

// builtin is the value of a key no layer sets.
func builtin(key string) Limit {
	if key == keyContainerHold {
		return Limit{Duration: fallbackHold, Source: sourceBuiltin}
	}
	return Limit{Unlimited: true, Source: sourceBuiltin}
}

// TypeLimit returns container_types.<ctype>.<key>; ok is false when the type
// has no entry or the entry lacks the key.
func (m *Model) TypeLimit(ctype, key string) (l Limit, ok bool) {
	l, ok = m.types[ctype][key]
	return l, ok
}

// PolicyLimit returns the duration key policies.<key> (grace_period_m,
// sigterm_grace_s, ...); ok is false when it is not set.
func (m *Model) PolicyLimit(key string) (l Limit, ok bool) {
	l, ok = m.policies[key]
	return l, ok
}

// InfrastructureContainers returns monitoring.infrastructure_containers, or
// nil if the file has none. The slice is the caller's to keep.
func (m *Model) InfrastructureContainers() []string {
	return slices.Clone(m.infra)
}
