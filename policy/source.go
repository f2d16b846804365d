package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// Where values come from, for `ds01-pipe explain`: a Limit's Source names a
// key path ("groups.researcher.container_hold_after_stop_h"); these
// functions find the file, line and column where that value, a group
// membership or an exemption entry is written. They read the files again
// (a Model keeps values, not positions), so they answer for the files as
// they are now; explain calls them right after loading the same files.

// Position is where a value is written.
type Position struct {
	File         string
	Line, Column int // 0 when only the file is known
}

func (p Position) String() string {
	switch {
	case p.Line > 0 && p.Column > 0:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
	case p.Line > 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return p.File
}

// maxSourceFile bounds what these functions read: policy files are pages
// of YAML.
const maxSourceFile = 4 << 20

// readNode reads a YAML file's top-level mapping, or nil.
func readNode(path string) *yaml.Node {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxSourceFile {
		return nil
	}
	data, err := readFile(path, safefile.Trust{}) // never blocks on a FIFO swapped in since Stat
	if err != nil {
		return nil
	}
	docs, err := parseDocuments(data)
	if err != nil || len(docs) == 0 || len(docs[0].Content) == 0 {
		return nil
	}
	top := deref(docs[0].Content[0])
	if top == nil || top.Kind != yaml.MappingNode {
		return nil
	}
	return top
}

// child returns the value of key in mapping n, following merge keys
// (written keys win over merged ones, as Load reads them).
func child(n *yaml.Node, key string, depth int) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode || depth > maxMergeDepth {
		return nil
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if k == nil || k.Kind != yaml.ScalarNode {
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			merges = append(merges, n.Content[i+1])
			continue
		}
		if k.Value == key {
			return n.Content[i+1]
		}
	}
	for _, m := range merges {
		m = deref(m)
		if m != nil && m.Kind == yaml.SequenceNode {
			for _, item := range m.Content {
				if v := child(item, key, depth+1); v != nil {
					return v
				}
			}
			continue
		}
		if v := child(m, key, depth+1); v != nil {
			return v
		}
	}
	return nil
}

func at(path string, n *yaml.Node) Position {
	return Position{File: path, Line: n.Line, Column: n.Column}
}

// Locate returns where the value a Limit's Source names is written in
// files. Built-in values and sources that name no file (a stage's own
// attribute) have none.
func Locate(files Files, source string) (Position, bool) {
	if files.OverridesFile != "" {
		if rest, ok := strings.CutPrefix(source, filepath.Base(files.OverridesFile)+" "); ok {
			i := strings.LastIndexByte(rest, '.')
			if i <= 0 {
				return Position{}, false
			}
			return locatePath(files.OverridesFile, rest[:i], rest[i+1:])
		}
	}
	section, rest, ok := strings.Cut(source, ".")
	if !ok || files.LimitsFile == "" {
		return Position{}, false
	}
	switch section {
	case "defaults", "policies":
		return locatePath(files.LimitsFile, section, rest)
	case "groups", "user_overrides", "container_types":
		i := strings.LastIndexByte(rest, '.')
		if i <= 0 {
			return Position{}, false
		}
		return locatePath(files.LimitsFile, section, rest[:i], rest[i+1:])
	}
	return Position{}, false
}

func locatePath(path string, keys ...string) (Position, bool) {
	n := readNode(path)
	for _, k := range keys {
		if n = child(n, k, 0); n == nil {
			return Position{}, false
		}
	}
	return at(path, deref(n)), true
}

// MemberPosition returns where user (or Sanitize(user)) is listed as a
// member of group: the group's inline members list in the limits file,
// else its groups_dir/<group>.members file.
func MemberPosition(files Files, group, user string) (Position, bool) {
	names := []string{user, Sanitize(user)}
	if list := deref(child(child(child(readNode(files.LimitsFile), "groups", 0), group, 0), "members", 0)); list != nil && list.Kind == yaml.SequenceNode {
		for _, item := range list.Content {
			if item = deref(item); item != nil && item.Kind == yaml.ScalarNode && slices.Contains(names, item.Value) {
				return at(files.LimitsFile, item), true
			}
		}
	}
	if files.GroupsDir == "" || strings.ContainsAny(group, `/\`+"\x00") || group == "." || group == ".." {
		return Position{}, false
	}
	path := filepath.Join(files.GroupsDir, group+".members")
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxSourceFile {
		return Position{}, false
	}
	data, err := readFile(path, safefile.Trust{}) // never blocks on a FIFO swapped in since Stat
	if err != nil {
		return Position{}, false
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		text, _, _ := strings.Cut(line, "#")
		if slices.Contains(names, strings.TrimSpace(text)) {
			return Position{File: path, Line: n}, true
		}
	}
	return Position{}, false
}

// ExemptionPosition returns the entry of the exemptions file that exempts
// user from key at now: the one Model.Exemption finds (file order, exact
// username, not expired).
func ExemptionPosition(files Files, user, key string, now time.Time) (Position, bool) {
	list := deref(child(readNode(files.ExemptionsFile), "exemptions", 0))
	if list == nil || list.Kind != yaml.SequenceNode {
		return Position{}, false
	}
	for _, item := range list.Content {
		item = deref(item)
		name := deref(child(item, "username", 0))
		if name == nil || name.Kind != yaml.ScalarNode || name.Value != user {
			continue
		}
		from := deref(child(item, "exempt_from", 0))
		if from == nil {
			continue
		}
		var keys []string
		switch from.Kind {
		case yaml.ScalarNode:
			keys = []string{from.Value}
		case yaml.SequenceNode:
			for _, k := range from.Content {
				if k = deref(k); k != nil && k.Kind == yaml.ScalarNode {
					keys = append(keys, k.Value)
				}
			}
		}
		if !slices.Contains(keys, key) {
			continue
		}
		if exp := deref(child(item, "expires_on", 0)); exp != nil && !isNull(exp) {
			if t, ok := parseExpiry(exp.Value); ok && !now.Before(t) {
				continue // expired: Exemption passes over it too
			}
		}
		return at(files.ExemptionsFile, item), true
	}
	return Position{}, false
}

// OverridePosition returns where the user override entry for user (or
// Sanitize(user)) starts: user-overrides.yaml, whose entries win, else the
// inline user_overrides section of the limits file.
func OverridePosition(files Files, user string) (Position, bool) {
	for _, name := range []string{user, Sanitize(user)} {
		if files.OverridesFile != "" {
			if n := keyNode(readNode(files.OverridesFile), name); n != nil {
				return at(files.OverridesFile, n), true
			}
		}
		if n := keyNode(child(readNode(files.LimitsFile), "user_overrides", 0), name); n != nil {
			return at(files.LimitsFile, n), true
		}
	}
	return Position{}, false
}

// keyNode returns the key node of key in mapping n (where an entry starts).
func keyNode(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); k != nil && k.Kind == yaml.ScalarNode && k.Value == key {
			return k
		}
	}
	return nil
}
