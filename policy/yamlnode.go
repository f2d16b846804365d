package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Helpers to walk yaml.Node trees while keeping line numbers for errors. The
// model is read from nodes rather than decoded into structs so that every bad
// value can be reported at its own line.

// yamlFile is one parsed file: the context for its errors, and the budget
// for expanding its merge keys.
type yamlFile struct {
	path      string
	mergeWork int // keys visited through merge keys so far
}

// errorf returns a FileError located at n (or at the file, when n is nil).
func (f *yamlFile) errorf(n *yaml.Node, format string, args ...any) *FileError {
	e := &FileError{Path: f.path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// readYAML reads and parses path and returns its top-level mapping, or nil for
// an empty file (no document, only comments, or a null document). With
// optional set, a file that does not exist is also nil.
func readYAML(path string, optional bool) (*yaml.Node, error) {
	f := &yamlFile{path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, f.readError(err)
	}
	docs, err := parseDocuments(data)
	if err != nil {
		return nil, f.syntaxError(err)
	}
	if len(docs) == 0 || len(docs[0].Content) == 0 {
		return nil, nil
	}
	if len(docs) > 1 {
		// PyYAML's safe_load refuses a second document too; ignoring it would
		// hide limits an admin meant to set.
		return nil, f.errorf(docs[1], "more than one YAML document; put everything in one")
	}
	root := docs[0]
	top := deref(root.Content[0])
	if isNull(top) {
		return nil, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, f.errorf(top, "top level must be a mapping, got %s", describe(top))
	}
	return top, nil
}

// parseDocuments parses data into its YAML documents (at most two: a second
// one is already an error). A panic inside the YAML library becomes an error:
// a malformed policy file must never crash the run.
func parseDocuments(data []byte) (docs []*yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal parser error: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for len(docs) < 2 {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		docs = append(docs, &doc)
	}
	return docs, nil
}

// readError reports a file that exists but cannot be read.
func (f *yamlFile) readError(err error) *FileError {
	cause := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		cause = pe.Err // the path is already in FileError.Path
	}
	return &FileError{Path: f.path, Msg: "cannot read: " + cause.Error(), Err: err}
}

// yamlLine matches the position prefix of the YAML library's syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// syntaxError turns a YAML parse error into a FileError with its line.
func (f *yamlFile) syntaxError(err error) *FileError {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FileError{Path: f.path, Line: line, Msg: "invalid YAML: " + m[2], Err: err}
	}
	return &FileError{Path: f.path, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: "), Err: err}
}

// maxAliasHops bounds alias chains; YAML cannot build a cycle of aliases alone,
// but a bound keeps a hand-built node tree from looping forever.
const maxAliasHops = 64

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxAliasHops; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent or a YAML null.
func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's type for error messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean " + quoteValue(n)
		case "!!int", "!!float":
			return "a number " + quoteValue(n)
		case "!!timestamp":
			return "a date " + quoteValue(n)
		case "!!str":
			return "a string " + quoteValue(n)
		}
		return "a value tagged " + n.ShortTag()
	}
	return "an unexpected YAML node"
}

// pair is one key of a mapping, with the nodes kept for error positions.
type pair struct {
	key     string
	keyNode *yaml.Node
	value   *yaml.Node
}

// Merge keys can refer to mappings that merge others in turn, and a list of
// aliases can name the same mapping many times, so a small file can describe
// an exponential number of keys ("billion laughs"). Expansion is bounded in
// depth and in the total keys visited through merges per file.
const (
	maxMergeDepth = 16
	maxMergeWork  = 100_000
)

// pairs lists the keys of mapping n in file order. A null n has no keys.
// Merge keys (<<: *anchor, as PyYAML reads them in DS01) are expanded: keys
// written in the mapping win over merged ones, and earlier merges win over
// later ones. A key written twice is an error: PyYAML silently kept the last
// one, which hides typos in limits.
func (f *yamlFile) pairs(n *yaml.Node, what string) ([]pair, error) {
	return f.pairsDepth(n, what, 0)
}

func (f *yamlFile) pairsDepth(n *yaml.Node, what string, depth int) ([]pair, error) {
	n = deref(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, f.errorf(n, "%s: want a mapping, got %s", what, describe(n))
	}
	if depth > 0 {
		f.mergeWork += 1 + len(n.Content)/2
	}
	if depth > maxMergeDepth || f.mergeWork > maxMergeWork {
		return nil, f.errorf(n, "%s: merge keys nested too deeply or expanding too far", what)
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	var out, merged []pair
	mergeAt := -1 // merged keys go where the first merge key stands
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			return nil, f.errorf(n.Content[i], "%s: keys must be plain values, got %s", what, describe(k))
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			m, err := f.mergeSources(v, what, depth)
			if err != nil {
				return nil, err
			}
			f.mergeWork += len(m) // copying merged keys counts too
			if mergeAt < 0 {
				mergeAt = len(out)
			}
			merged = append(merged, m...)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			return nil, f.errorf(k, "%s: key %q is repeated (first at line %d)", what, k.Value, first.Line)
		}
		seen[k.Value] = k
		out = append(out, pair{key: k.Value, keyNode: k, value: v})
	}
	if len(merged) == 0 {
		return out, nil
	}
	var keep []pair
	for _, p := range merged {
		if seen[p.key] != nil {
			continue // written in the mapping itself, or by an earlier merge
		}
		seen[p.key] = p.keyNode
		keep = append(keep, p)
	}
	return slices.Insert(out, mergeAt, keep...), nil
}

// mergeSources returns the pairs a merge key's value contributes: one mapping,
// or a list of mappings.
func (f *yamlFile) mergeSources(v *yaml.Node, what string, depth int) ([]pair, error) {
	v = deref(v)
	if v != nil && v.Kind == yaml.SequenceNode {
		var all []pair
		for _, item := range v.Content {
			item = deref(item)
			if item == nil || item.Kind != yaml.MappingNode {
				return nil, f.errorf(v, "%s: merge key wants mappings, got %s", what, describe(item))
			}
			p, err := f.pairsDepth(item, what, depth+1)
			if err != nil {
				return nil, err
			}
			all = append(all, p...)
		}
		return all, nil
	}
	if v == nil || v.Kind != yaml.MappingNode {
		return nil, f.errorf(v, "%s: merge key wants a mapping, got %s", what, describe(v))
	}
	return f.pairsDepth(v, what, depth+1)
}

// scalarText returns a scalar's text, "" and false for null, and an error for
// a list or mapping.
func (f *yamlFile) scalarText(n *yaml.Node, what string) (string, bool, error) {
	n = deref(n)
	if isNull(n) {
		return "", false, nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", false, f.errorf(n, "%s: want a single value, got %s", what, describe(n))
	}
	return n.Value, true, nil
}

// stringList reads a list of scalars (null entries skipped). With single set,
// a lone scalar counts as a one-item list.
func (f *yamlFile) stringList(n *yaml.Node, what string, single bool) ([]string, error) {
	n = deref(n)
	if isNull(n) {
		return nil, nil
	}
	if single && n.Kind == yaml.ScalarNode {
		return []string{n.Value}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, f.errorf(n, "%s: want a list, got %s", what, describe(n))
	}
	out := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		s, ok, err := f.scalarText(item, what)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, nil
}
