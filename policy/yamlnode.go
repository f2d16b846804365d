package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// Helpers to walk yaml.Node trees while keeping line numbers for errors. The
// model is read from nodes rather than decoded into structs so that every bad
// value can be reported at its own line.

// yamlFile is one parsed file: the context for its errors, and the budget
// for expanding its aliases and merge keys.
type yamlFile struct {
	path   string
	work   int // keys and list items visited so far, through aliases or not
	budget int // most work allowed; set by the first read (setBudget)
}

// errorf returns a FileError located at n (or at the file, when n is nil).
func (f *yamlFile) errorf(n *yaml.Node, format string, args ...any) *FileError {
	e := &FileError{Path: f.path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// MaxFileSize bounds each policy file (YAML and members files): DS01's are
// a few kilobytes, so anything larger is a wrong path, not a policy.
const MaxFileSize = 1 << 20

// readFile reads one policy file through the one hardened reader: a
// regular file only, opened without blocking, at most MaxFileSize bytes,
// and with trust.Enforce only if no untrusted user could have written it
// or anything on its path.
func readFile(path string, trust safefile.Trust) ([]byte, error) {
	return safefile.Read(context.Background(), path, safefile.Options{MaxSize: MaxFileSize, Trust: trust})
}

// readYAML reads and parses path and returns its top-level mapping, or nil for
// an empty file (no document, only comments, or a null document), with the
// file's context for errors. With optional set, a file that does not exist
// is also nil. With trust.Enforce, a file an untrusted user could have
// written is refused (a *safefile.InsecureError).
func readYAML(path string, optional bool, trust safefile.Trust) (*yaml.Node, *yamlFile, error) {
	f := &yamlFile{path: path}
	data, err := readFile(path, trust)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return nil, f, nil
		}
		var ie *safefile.InsecureError
		if errors.As(err, &ie) {
			return nil, f, err // names the path and the fix already
		}
		return nil, f, f.readError(err)
	}
	docs, err := parseDocuments(data)
	if err != nil {
		return nil, f, f.syntaxError(err)
	}
	if len(docs) == 0 || len(docs[0].Content) == 0 {
		return nil, f, nil
	}
	if len(docs) > 1 {
		// PyYAML's safe_load refuses a second document too; ignoring it would
		// hide limits an admin meant to set.
		return nil, f, f.errorf(docs[1], "more than one YAML document; put everything in one")
	}
	f.setBudget(docs[0])
	root := docs[0]
	top := deref(root.Content[0])
	if isNull(top) {
		return nil, f, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, f, f.errorf(top, "top level must be a mapping, got %s", describe(top))
	}
	return top, f, nil
}

// countNodes counts the nodes of a tree as written: an alias counts once,
// not as the tree it names.
func countNodes(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	c := 1
	if n.Kind == yaml.AliasNode {
		return c
	}
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
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
	// The path is already in FileError.Path.
	return &FileError{Path: f.path, Msg: "cannot read: " + safefile.Brief(err), Err: err}
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

// Merge keys can refer to mappings that merge others in turn, and aliases
// can name the same mapping or list many times, so a small file can describe
// an exponential number of keys ("billion laughs"), or a quadratic one with
// plain aliases (one mapping of thousands of keys named by thousands of
// groups). Expansion is bounded in depth and in the total work per file:
// every key and list item the model reads counts, through an alias or not.
const (
	maxMergeDepth   = 16
	minExpandBudget = 10_000
)

// spend counts n keys or items read at node at, and fails once the file's
// budget is spent.
func (f *yamlFile) spend(n int, at *yaml.Node, what string) error {
	f.work += n
	budget := max(f.budget, minExpandBudget)
	if f.work > budget {
		return f.errorf(at, "%s: merge keys nested too deeply or expanding too far (aliases and merge keys expand to more than %d keys and list items, about twice what the file writes out); write the values out, or name large mappings fewer times", what, budget)
	}
	return nil
}

// pairs lists the keys of mapping n in file order. A null n has no keys.
// Merge keys (<<: *anchor, as PyYAML reads them in DS01) are expanded: keys
// written in the mapping win over merged ones, and earlier merges win over
// later ones. A key written twice is an error: PyYAML silently kept the last
// one, which hides typos in limits.
func (f *yamlFile) pairs(n *yaml.Node, what string) ([]pair, error) {
	f.setBudget(n)
	return f.pairsDepth(n, what, 0)
}

// setBudget sizes the file's expansion budget from the first node read
// (the top level): walking the model visits each written key and item
// about once, and only aliases and merge keys make it visit more. Twice
// what is written, plus room for ordinary merges, is plenty for a real file
// and stops an alias fan-out (one large mapping named by thousands of
// keys) after a few megabytes instead of gigabytes.
func (f *yamlFile) setBudget(n *yaml.Node) {
	if f.budget == 0 {
		f.budget = minExpandBudget + 2*countNodes(n)
	}
}

func (f *yamlFile) pairsDepth(n *yaml.Node, what string, depth int) ([]pair, error) {
	n = deref(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, f.errorf(n, "%s: want a mapping, got %s", what, describe(n))
	}
	if depth > maxMergeDepth {
		return nil, f.errorf(n, "%s: merge keys nested too deeply or expanding too far", what)
	}
	if err := f.spend(1+len(n.Content)/2, n, what); err != nil {
		return nil, err
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
			if err := f.spend(len(m), n, what); err != nil { // copying merged keys counts too
				return nil, err
			}
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
	if err := f.spend(len(n.Content), n, what); err != nil {
		return nil, err
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
