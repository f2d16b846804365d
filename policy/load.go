package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// Files names the DS01 configuration files. LimitsFile must exist when it is
// set; when it is empty the model starts from Default. The others are
// optional: "" means none, and a missing file is not an error, but an existing
// file that does not parse is.
type Files struct {
	LimitsFile     string // resource-limits.yaml
	GroupsDir      string // directory with <group>.members files; "" = none
	OverridesFile  string // user-overrides.yaml; "" = none
	ExemptionsFile string // lifecycle-exemptions.yaml; "" = none
}

// Load reads and validates every file up front, so that a bad file is reported
// (as a *FileError) before anything is touched. It checks no owner: see
// LoadTrusted.
func Load(f Files) (*Model, error) {
	return LoadTrusted(f, safefile.Trust{})
}

// LoadTrusted is Load with a trust rule: with trust.Enforce, a file (or a
// folder or link on its path) that an untrusted user could have written is
// refused with a *safefile.InsecureError, and so is a missing optional file
// in a folder such a user could add it to. Every file is read through the
// one hardened reader (regular files only, without blocking, at most
// MaxFileSize bytes).
func LoadTrusted(f Files, trust safefile.Trust) (*Model, error) {
	if err := checkGroupsDir(f.GroupsDir, trust); err != nil {
		return nil, err
	}
	m := Default()
	if f.LimitsFile != "" {
		var err error
		if m, err = loadLimits(f.LimitsFile, f.GroupsDir, trust); err != nil {
			return nil, err
		}
	}
	if f.OverridesFile != "" {
		file, err := loadOverrides(f.OverridesFile, trust)
		if err != nil {
			return nil, err
		}
		// The file wins over the inline user_overrides section per user; the
		// whole entry is replaced, not merged key by key (as in DS01).
		if len(file) > 0 && m.overrides == nil {
			m.overrides = make(map[string]layer, len(file))
		}
		for user, l := range file {
			m.overrides[user] = l
		}
	}
	if f.ExemptionsFile != "" {
		ex, err := loadExemptions(f.ExemptionsFile, trust)
		if err != nil {
			return nil, err
		}
		m.exemptions = ex
	}
	if err := loadLifecycle(m, f, trust); err != nil {
		return nil, err
	}
	return m, nil
}

// checkGroupsDir checks the groups folder and every members file in it,
// also those no group reads now: a folder or file users can write is a
// mistake to report now, not when a group is added.
func checkGroupsDir(dir string, trust safefile.Trust) error {
	if dir == "" || !trust.Enforce {
		return nil
	}
	if _, err := safefile.Check(dir, trust); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // not a folder: the members files say what that means
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".members") {
			continue
		}
		if _, err := safefile.Check(filepath.Join(dir, e.Name()), trust); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// loadLimits reads resource-limits.yaml, and the members files of its groups
// from groupsDir. Sections other than those below are not lifecycle settings
// and are not read.
func loadLimits(path, groupsDir string, trust safefile.Trust) (*Model, error) {
	top, f, err := readYAML(path, false, trust)
	if err != nil {
		return nil, err
	}
	m := &Model{defaultGroup: "student"}
	sections, err := f.pairs(top, "top level")
	if err != nil {
		return nil, err
	}
	for _, s := range sections {
		switch s.key {
		case "defaults":
			m.defaults, err = f.layer(s.value, "defaults.")
		case "default_group":
			var name string
			var ok bool
			if name, ok, err = f.scalarText(s.value, s.key); ok && name != "" {
				m.defaultGroup = name
			}
		case "groups":
			m.groups, err = f.groups(s.value, groupsDir, trust)
		case "user_overrides":
			m.overrides, err = f.layers(s.value, "user_overrides", "user_overrides.%s.")
		case "policies":
			m.policies, err = f.layer(s.value, "policies.")
		case "container_types":
			m.types, err = f.layers(s.value, "container_types", "container_types.%s.")
		case "monitoring":
			m.infra, err = f.monitoring(s.value)
		}
		if err != nil {
			return nil, err
		}
	}
	m.index()
	return m, nil
}

// layer reads the duration keys of one mapping; other keys (max_cpus, memory,
// aggregate, policies, ...) are skipped. prefix starts each key's Source and
// error messages, e.g. "groups.researcher.".
func (f *yamlFile) layer(n *yaml.Node, prefix string) (layer, error) {
	keys, err := f.pairs(n, strings.TrimSuffix(prefix, "."))
	if err != nil {
		return nil, err
	}
	return f.durations(keys, prefix)
}

// durations parses the duration keys among keys, by their unit suffix.
func (f *yamlFile) durations(keys []pair, prefix string) (layer, error) {
	l := make(layer)
	for _, p := range keys {
		if !isDurationKey(p.key) {
			continue
		}
		v, err := ParseDuration(p.value, p.key)
		if err != nil {
			return nil, f.errorf(p.value, "%s%s: %v", prefix, p.key, err)
		}
		v.Source = prefix + p.key
		l[p.key] = v
	}
	return l, nil
}

// layers reads a mapping of name -> layer (user_overrides, container_types).
// prefixFormat gets the name, e.g. "container_types.%s.".
func (f *yamlFile) layers(n *yaml.Node, what, prefixFormat string) (map[string]layer, error) {
	entries, err := f.pairs(n, what)
	if err != nil {
		return nil, err
	}
	out := make(map[string]layer, len(entries))
	for _, e := range entries {
		if out[e.key], err = f.layer(e.value, fmt.Sprintf(prefixFormat, e.key)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// groups reads the groups section in file order, with each group's members:
// the inline members list plus groupsDir/<group>.members.
func (f *yamlFile) groups(n *yaml.Node, groupsDir string, trust safefile.Trust) ([]group, error) {
	entries, err := f.pairs(n, "groups")
	if err != nil {
		return nil, err
	}
	out := make([]group, 0, len(entries))
	for _, e := range entries {
		g := group{name: e.key}
		prefix := "groups." + e.key + "."
		keys, err := f.pairs(e.value, "groups."+e.key)
		if err != nil {
			return nil, err
		}
		if g.limits, err = f.durations(keys, prefix); err != nil {
			return nil, err
		}
		for _, p := range keys {
			if p.key != "members" {
				continue
			}
			inline, err := f.stringList(p.value, prefix+"members", false)
			if err != nil {
				return nil, err
			}
			g.members = append(g.members, inline...)
		}
		if groupsDir != "" {
			if err := f.addMemberFile(&g, e.keyNode, groupsDir, trust); err != nil {
				return nil, err
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// addMemberFile adds the members listed in groupsDir/<group>.members: one name
// a line, "#" starts a comment, blank lines are skipped. A missing file means
// no members. A file that exists but cannot be read is an error, where DS01
// read it as empty: that silently moved every member to the default group,
// with its shorter holds, so the run stops instead.
func (f *yamlFile) addMemberFile(g *group, at *yaml.Node, dir string, trust safefile.Trust) error {
	if g.name == "" || g.name == "." || g.name == ".." || strings.ContainsAny(g.name, `/\`+"\x00") {
		return f.errorf(at, "groups: group name %q cannot name a members file in %s", g.name, dir)
	}
	path := filepath.Join(dir, g.name+".members")
	data, err := readFile(path, trust)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var ie *safefile.InsecureError
	if errors.As(err, &ie) {
		return err
	}
	if err != nil {
		return (&yamlFile{path: path}).readError(err)
	}
	for line := range strings.Lines(string(data)) {
		line, _, _ = strings.Cut(line, "#")
		if name := strings.TrimSpace(line); name != "" {
			g.members = append(g.members, name)
		}
	}
	return nil
}

// monitoring reads monitoring.infrastructure_containers.
func (f *yamlFile) monitoring(n *yaml.Node) ([]string, error) {
	keys, err := f.pairs(n, "monitoring")
	if err != nil {
		return nil, err
	}
	for _, p := range keys {
		if p.key == "infrastructure_containers" {
			return f.stringList(p.value, "monitoring.infrastructure_containers", false)
		}
	}
	return nil, nil
}

// loadOverrides reads user-overrides.yaml: a mapping of user -> limits.
func loadOverrides(path string, trust safefile.Trust) (map[string]layer, error) {
	top, f, err := readYAML(path, true, trust)
	if err != nil || top == nil {
		return nil, err
	}
	return f.layers(top, "top level", filepath.Base(path)+" %s.")
}
