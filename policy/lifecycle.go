package policy

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agext/levenshtein"
	"go.yaml.in/yaml/v3"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// Lifecycle keys: the idle detection thresholds of policies (reference
// 4.3, 4.6), the high-demand keys, and the duration keys the idle and
// max-runtime checks read.
const (
	KeyIdleTimeout  = "idle_timeout_h"
	KeyMaxRuntime   = "max_runtime_h"
	KeySigtermGrace = "sigterm_grace_s"
	KeyGracePeriod  = "grace_period_m"
	KeyKeepAliveMax = "keepalive_max_duration_h"

	KeyGPUIdleThreshold     = "gpu_idle_threshold"
	KeyCPUIdleThreshold     = "cpu_idle_threshold"
	KeyNetworkIdleThreshold = "network_idle_threshold"
	KeyIdleWindow           = "idle_detection_window"
	KeyHighDemandThreshold  = "high_demand_threshold"
	KeyHighDemandReduction  = "high_demand_idle_reduction"
)

// DS01's hard defaults for the lifecycle keys a file leaves unset.
const (
	DefaultGPUIdleThreshold     = 5.0
	DefaultCPUIdleThreshold     = 2.0
	DefaultNetworkIdleThreshold = 1048576.0
	DefaultIdleWindow           = 3
	DefaultHighDemandThreshold  = 0.8
	DefaultHighDemandReduction  = 0.5
	defaultSigtermGrace         = 60 * time.Second
	defaultGracePeriod          = 30 * time.Minute
	defaultKeepAliveMax         = 24 * time.Hour
)

// nativeTypes are DS01's own container types: their idle timeout and max
// runtime come from the owner's limits (defaults, group, override). Every
// other type uses container_types.<type>, or container_types.unknown.
var nativeTypes = []string{"orchestration", "atomic"}

// threshold describes one non-duration policies key: its range and
// whether it may be set per group or per user.
type threshold struct {
	min, max float64
	minOpen  bool // min itself is not allowed
	integer  bool
	perGroup bool
	unit     string
}

var thresholds = map[string]threshold{
	KeyGPUIdleThreshold:     {min: 0, max: 100, perGroup: true, unit: "percent"},
	KeyCPUIdleThreshold:     {min: 0, max: 100 * 1024, perGroup: true, unit: "percent of one CPU"},
	KeyNetworkIdleThreshold: {min: 0, max: 1 << 53, perGroup: true, unit: "bytes"},
	KeyIdleWindow:           {min: 1, max: 1000, integer: true, perGroup: true, unit: "runs"},
	KeyHighDemandThreshold:  {min: 0, max: 1, minOpen: true, unit: "fraction of GPU units allocated"},
	KeyHighDemandReduction:  {min: 0, max: 1, minOpen: true, unit: "factor"},
}

// Setting is one resolved non-duration value with where it came from.
type Setting struct {
	Value  float64
	Source string // e.g. "groups.researcher.policies.cpu_idle_threshold"
}

// IdlePolicy is the idle detection policy of one owner (reference 4.6).
type IdlePolicy struct {
	GPUThreshold     Setting // percent: below it (strictly) the GPU is idle
	CPUThreshold     Setting // percent of one CPU: above it (strictly) the container is active
	NetworkThreshold Setting // bytes received since the previous run: above it, active
	Window           Setting // consecutive idle runs before the idle clock may act
}

// HighDemand is the high-demand mode's configuration. Off is set when
// high_demand_threshold is null: the mode is never entered.
type HighDemand struct {
	Threshold Setting
	Reduction Setting
	Off       bool
}

// lifecycleKeys holds the non-duration lifecycle settings of the files.
type lifecycleKeys struct {
	global    map[string]*Setting            // policies.<key>; nil Value pointer never stored
	nulls     map[string]bool                // policies.<key>: null
	groups    map[string]map[string]*Setting // group -> groups.<g>.policies
	overrides map[string]map[string]*Setting // user -> <override>.policies (inline or file)
}

// IdlePolicy resolves the idle thresholds for user as DS01 does: the global
// policies over DS01's hard defaults; then, if the user has an override
// entry with a policies map, its keys (and no group's); otherwise the
// policies of the first group listing the user, or of the default group.
func (m *Model) IdlePolicy(user string) IdlePolicy {
	get := func(key string, def float64) Setting {
		s := Setting{Value: def, Source: "built-in default"}
		lk := m.life
		if lk == nil {
			return s
		}
		if g := lk.global[key]; g != nil {
			s = *g
		}
		if layer := lk.userPolicies(m, user); layer != nil {
			if v := layer[key]; v != nil {
				s = *v
			}
		}
		return s
	}
	return IdlePolicy{
		GPUThreshold:     get(KeyGPUIdleThreshold, DefaultGPUIdleThreshold),
		CPUThreshold:     get(KeyCPUIdleThreshold, DefaultCPUIdleThreshold),
		NetworkThreshold: get(KeyNetworkIdleThreshold, DefaultNetworkIdleThreshold),
		Window:           get(KeyIdleWindow, DefaultIdleWindow),
	}
}

// userPolicies returns the policies layer that applies to user above the
// global one, or nil.
func (lk *lifecycleKeys) userPolicies(m *Model, user string) map[string]*Setting {
	san := Sanitize(user)
	if p, ok := lk.overrides[user]; ok {
		return p
	}
	if san != user {
		if p, ok := lk.overrides[san]; ok {
			return p
		}
	}
	name := m.UserGroup(user)
	if name == GroupOverride {
		// An override entry without policies does not stop the group
		// lookup (reference 4.6): find the group the user would be in.
		name = m.groupWithoutOverride(user)
	}
	return lk.groups[name]
}

// groupWithoutOverride is the group resolution of reference 4.5 steps 2-3.
func (m *Model) groupWithoutOverride(user string) string {
	san := Sanitize(user)
	idx, found := m.memberOf[user]
	if san != user {
		if j, ok := m.memberOf[san]; ok && (!found || j < idx) {
			idx, found = j, true
		}
	}
	if found {
		return m.groups[idx].name
	}
	return m.defaultGroup
}

// HighDemand returns the high-demand configuration of policies.
func (m *Model) HighDemand() HighDemand {
	hd := HighDemand{
		Threshold: Setting{Value: DefaultHighDemandThreshold, Source: "built-in default"},
		Reduction: Setting{Value: DefaultHighDemandReduction, Source: "built-in default"},
	}
	if m.life == nil {
		return hd
	}
	if s := m.life.global[KeyHighDemandThreshold]; s != nil {
		hd.Threshold = *s
	}
	if s := m.life.global[KeyHighDemandReduction]; s != nil {
		hd.Reduction = *s
	}
	hd.Off = m.life.nulls[KeyHighDemandThreshold]
	return hd
}

// IdleTimeout is how long a container of type ctype owned by user may be
// idle. DS01's own types (orchestration, atomic) take the owner's
// idle_timeout_h; every other type takes container_types.<ctype>, else
// container_types.unknown, else the owner's value. null anywhere means no
// idle limit (DS01 read a type's null as 0.5 h: B-5).
func (m *Model) IdleTimeout(user, ctype string) Limit {
	return zeroIsNoLimit(m.typedLimit(user, ctype, KeyIdleTimeout))
}

// MaxRuntime is the wall-time limit of a running container, resolved as
// IdleTimeout (DS01 parsed the api type's "24h" text as 0, no limit: B-4).
func (m *Model) MaxRuntime(user, ctype string) Limit {
	return zeroIsNoLimit(m.typedLimit(user, ctype, KeyMaxRuntime))
}

// zeroIsNoLimit keeps DS01's meaning of 0 for the idle timeout and the
// maximum runtime: its lifecycle scripts map -1 to 0 and read 0 as "no
// timeout / no limit" (reference 3.5), so a DS01 configuration that writes
// 0 must not start stopping every container of that group. Other negative
// values still mean "act at the next run", as in DS01. The container holds
// keep their own rule (0 = at the next run; reference B-14).
func zeroIsNoLimit(l Limit) Limit {
	if !l.Unlimited && (l.Duration == 0 || l.Duration == -time.Hour) {
		l.Unlimited = true
		l.Duration = 0
		l.Source += " (0 or -1: no limit, as in DS01)"
	}
	return l
}

func (m *Model) typedLimit(user, ctype, key string) Limit {
	if !slices.Contains(nativeTypes, ctype) {
		if l, ok := m.types[ctype][key]; ok {
			return l
		}
		if l, ok := m.types[typeUnknown][key]; ok {
			return l
		}
	}
	return m.lookup(user, key)
}

// SigtermGrace is the docker stop grace of a type: container_types.<ctype>,
// then container_types.unknown for types without an entry, then
// policies.sigterm_grace_s, then 60 s. DS01's own types (orchestration,
// atomic) never take unknown's grace: DS01 stopped them with the
// policies value (reference 3.4, 11 #36: docker stop -t 60), and unknown
// is the external types' fallback. null means the default 60 s: a stop
// always has a grace.
func (m *Model) SigtermGrace(ctype string) Limit {
	candidates := []Limit{}
	if l, ok := m.types[ctype][KeySigtermGrace]; ok {
		candidates = append(candidates, l)
	} else if _, has := m.types[ctype]; !has && !slices.Contains(nativeTypes, ctype) {
		if l, ok := m.types[typeUnknown][KeySigtermGrace]; ok {
			candidates = append(candidates, l)
		}
	}
	if l, ok := m.policies[KeySigtermGrace]; ok {
		candidates = append(candidates, l)
	}
	for _, l := range candidates {
		if !l.Unlimited {
			if l.Duration < 0 {
				l.Duration = 0
			}
			return l
		}
	}
	return Limit{Duration: defaultSigtermGrace, Source: sourceBuiltin}
}

// GracePeriod is policies.grace_period_m: no idle checks this long after a
// container starts. Missing: 30 min; null: no grace.
func (m *Model) GracePeriod() Limit {
	if l, ok := m.policies[KeyGracePeriod]; ok {
		return l
	}
	return Limit{Duration: defaultGracePeriod, Source: sourceBuiltin}
}

// KeepAliveMax is policies.keepalive_max_duration_h: a keep-alive file
// modified within this long prevents an idle stop. Missing: 24 h (DS01's
// hard-coded value); null: a keep-alive file of any age counts.
func (m *Model) KeepAliveMax() Limit {
	if l, ok := m.policies[KeyKeepAliveMax]; ok {
		return l
	}
	return Limit{Duration: defaultKeepAliveMax, Source: sourceBuiltin}
}

// loadLifecycle reads the non-duration lifecycle keys: policies, each
// group's policies, and the policies of user overrides (inline and in
// user-overrides.yaml). An unknown key or a value out of range is a
// *FileError at its line: a typo must not silently fall back to a
// default that stops containers sooner.
func loadLifecycle(m *Model, f Files, trust safefile.Trust) error {
	lk := &lifecycleKeys{
		global:    map[string]*Setting{},
		nulls:     map[string]bool{},
		groups:    map[string]map[string]*Setting{},
		overrides: map[string]map[string]*Setting{},
	}
	if f.LimitsFile != "" {
		top, yf, err := readYAML(f.LimitsFile, false, trust)
		if err != nil {
			return err
		}
		sections, err := yf.pairs(top, "top level")
		if err != nil {
			return err
		}
		for _, s := range sections {
			switch s.key {
			case "policies":
				if err := yf.policies(s.value, "policies", false, lk.global, lk.nulls); err != nil {
					return err
				}
			case "groups":
				if err := yf.nestedPolicies(s.value, "groups", "groups.%s", lk.groups); err != nil {
					return err
				}
			case "user_overrides":
				if err := yf.nestedPolicies(s.value, "user_overrides", "user_overrides.%s", lk.overrides); err != nil {
					return err
				}
			}
		}
	}
	if f.OverridesFile != "" {
		top, yf, err := readYAML(f.OverridesFile, true, trust)
		if err != nil {
			return err
		}
		if top != nil {
			file := map[string]map[string]*Setting{}
			if err := yf.nestedPolicies(top, "top level", "%s", file); err != nil {
				return err
			}
			// The file replaces an inline entry as a whole (as Load does for
			// the duration keys), policies included.
			entries, _ := yf.pairs(top, "top level")
			for _, e := range entries {
				delete(lk.overrides, e.key)
			}
			for user, p := range file {
				lk.overrides[user] = p
			}
		}
	}
	m.life = lk
	return nil
}

// nestedPolicies reads the policies map of every entry of a mapping
// (groups, user overrides): name -> {..., policies: {...}}.
func (f *yamlFile) nestedPolicies(n *yaml.Node, what, prefixFormat string, into map[string]map[string]*Setting) error {
	entries, err := f.pairs(n, what)
	if err != nil {
		return err
	}
	for _, e := range entries {
		keys, err := f.pairs(e.value, fmt.Sprintf(prefixFormat, e.key))
		if err != nil {
			return err
		}
		for _, p := range keys {
			if p.key != "policies" {
				continue
			}
			layer := map[string]*Setting{}
			if err := f.policies(p.value, fmt.Sprintf(prefixFormat, e.key)+".policies", true, layer, nil); err != nil {
				return err
			}
			into[e.key] = layer
		}
	}
	return nil
}

// policies reads one policies mapping. Duration keys (by their unit
// suffix) are read by the limits loader and skipped here; every other key
// must be a known threshold within its range.
func (f *yamlFile) policies(n *yaml.Node, what string, perGroup bool, into map[string]*Setting, nulls map[string]bool) error {
	keys, err := f.pairs(n, what)
	if err != nil {
		return err
	}
	for _, p := range keys {
		if isDurationKey(p.key) {
			continue
		}
		th, known := thresholds[p.key]
		switch {
		case known && perGroup && !th.perGroup:
			return f.errorf(p.keyNode, "%s: %q is a global setting: set it under the top-level policies", what, p.key)
		case !known && thresholdLike(p.key):
			return f.errorf(p.keyNode, "%s: unknown key %q%s", what, p.key, suggestKey(p.key, perGroup))
		case !known:
			// DS01's files carry settings no job reads (auto_stop_idle,
			// checkpoint_warning, ...): they stay ignored, as DS01 does.
			continue
		}
		v := deref(p.value)
		if isNull(v) {
			if nulls != nil {
				nulls[p.key] = true
			}
			continue
		}
		val, err := f.number(v, what+"."+p.key, th)
		if err != nil {
			return err
		}
		into[p.key] = &Setting{Value: val, Source: what + "." + p.key}
	}
	return nil
}

// number reads a threshold value and checks its range.
func (f *yamlFile) number(n *yaml.Node, what string, th threshold) (float64, error) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		return 0, f.errorf(n, "%s: want a number (%s), got %s", what, th.unit, describe(n))
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, f.errorf(n, "%s: want a number (%s), got %s", what, th.unit, describe(n))
	}
	low := v < th.min || (th.minOpen && v == th.min)
	if low || v > th.max || (th.integer && v != math.Trunc(v)) {
		kind := "a number"
		if th.integer {
			kind = "a whole number"
		}
		lowSide := "from " + trimFloat(th.min)
		if th.minOpen {
			lowSide = "above " + trimFloat(th.min)
		}
		return 0, f.errorf(n, "%s: %s is out of range: want %s %s to %s (%s)", what, n.Value, kind, lowSide, trimFloat(th.max), th.unit)
	}
	return v, nil
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// thresholdLike reports whether an unknown policies key is meant as one of
// the thresholds: a near miss of a known key, or a threshold's word.
func thresholdLike(key string) bool {
	for k := range thresholds {
		if levenshtein.Distance(key, k, nil) < 4 {
			return true
		}
	}
	for _, w := range []string{"threshold", "window", "reduction"} {
		if strings.Contains(key, w) {
			return true
		}
	}
	return false
}

// suggestKey offers the closest known key for a typo.
func suggestKey(key string, perGroup bool) string {
	best, bestD := "", 4
	for k, th := range thresholds {
		if perGroup && !th.perGroup {
			continue
		}
		if d := levenshtein.Distance(key, k, nil); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		known := make([]string, 0, len(thresholds))
		for k, th := range thresholds {
			if !perGroup || th.perGroup {
				known = append(known, k)
			}
		}
		slices.Sort(known)
		return " (known: " + strings.Join(known, ", ") + ", and duration keys ending in _h, _m or _s)"
	}
	return fmt.Sprintf("; did you mean %q?", best)
}
