// Package recordview presents a record the way the JSON report does: one
// object whose keys are the report's container keys (pipeline/report), plus
// the container's labels. The filter stage evaluates expressions against it
// and the report stage writes it, so both always speak the JSON report's
// names, including keys added to the report later.
package recordview

import (
	"reflect"
	"sort"
	"strings"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/report"
)

// Kind is the type of a field's values.
type Kind int

// Field kinds. Values are nil (null), string, bool, int64, []string or
// map[string]string, by kind.
const (
	String Kind = iota
	Bool
	Number
	List // list of strings
	Map  // map of strings
)

// LabelsKey is the key of the container's labels, which the JSON report
// does not carry.
const LabelsKey = "labels"

// Field is one key of the object.
type Field struct {
	Key  string
	Kind Kind
	// Nullable says the value may be null (the report writes null).
	Nullable bool
	index    int // into report.Container; -1 for labels
}

// Object is one record as the report sees it.
type Object struct {
	Container report.Container
	Labels    map[string]string
}

// Of returns the object of a record.
func Of(rec *pipeline.Record) *Object {
	return &Object{Container: report.ContainerOf(rec), Labels: rec.Container.Labels}
}

var fields, byKey = buildFields()

// buildFields reads the keys from report.Container's json tags, in order,
// so the view follows the report without a second list to keep in step.
// Fields of types the view cannot show are left out.
func buildFields() ([]Field, map[string]Field) {
	t := reflect.TypeOf(report.Container{})
	var out []Field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		kind, nullable, ok := kindOf(f.Type)
		if !ok {
			continue
		}
		out = append(out, Field{Key: name, Kind: kind, Nullable: nullable, index: i})
	}
	if _, dup := findField(out, LabelsKey); !dup {
		out = append(out, Field{Key: LabelsKey, Kind: Map, index: -1})
	}
	m := make(map[string]Field, len(out))
	for _, f := range out {
		m[f.Key] = f
	}
	return out, m
}

func findField(fs []Field, key string) (Field, bool) {
	for _, f := range fs {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

func kindOf(t reflect.Type) (kind Kind, nullable, ok bool) {
	if t.Kind() == reflect.Pointer {
		k, _, ok := kindOf(t.Elem())
		return k, true, ok && k != List && k != Map
	}
	switch t.Kind() {
	case reflect.String:
		return String, false, true
	case reflect.Bool:
		return Bool, false, true
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return Number, false, true
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return List, false, true
		}
	case reflect.Map:
		if t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String {
			return Map, false, true
		}
	}
	return 0, false, false
}

// Fields returns every key, in the JSON report's order, labels last.
func Fields() []Field { return append([]Field(nil), fields...) }

// Keys returns every key, in order.
func Keys() []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.Key
	}
	return out
}

// Lookup returns the field of a key.
func Lookup(key string) (Field, bool) {
	f, ok := byKey[key]
	return f, ok
}

// Value returns the field's value in o: nil for null, else a string, bool,
// int64, []string (never nil) or map[string]string (never nil).
func (f Field) Value(o *Object) any {
	if f.index < 0 {
		return copyMap(o.Labels)
	}
	v := reflect.ValueOf(o.Container).Field(f.index)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	switch f.Kind {
	case String:
		return v.String()
	case Bool:
		return v.Bool()
	case Number:
		if v.CanInt() {
			return v.Int()
		}
		return int64(v.Uint())
	case List:
		out := make([]string, v.Len())
		for i := range out {
			out[i] = v.Index(i).String()
		}
		return out
	case Map:
		m := make(map[string]string, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			m[iter.Key().String()] = iter.Value().String()
		}
		return m
	}
	return nil
}

func copyMap(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// SortedKeys returns a map's keys in order, for stable output.
func SortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// contractFields maps keys to the part of the record their stage writes
// (pipeline.Contract), so that a stage reading some keys declares reads of
// just those parts. Keys not listed (warnings, keys added later) map to
// nothing: they are read as whatever earlier stages left.
var contractFields = map[string]pipeline.Field{
	"id": pipeline.FieldFacts, "name": pipeline.FieldFacts, "state": pipeline.FieldFacts, "image": pipeline.FieldFacts,
	"created": pipeline.FieldFacts, "started_at": pipeline.FieldFacts, "finished_at": pipeline.FieldFacts, LabelsKey: pipeline.FieldFacts,
	"owner": pipeline.FieldOwner, "owner_source": pipeline.FieldOwner,
	"type":   pipeline.FieldType,
	"exempt": pipeline.FieldExemption, "exempt_reason": pipeline.FieldExemption,
	"gpus": pipeline.FieldGPUClaims, "gpu_all": pipeline.FieldGPUClaims,
	"verdict": pipeline.FieldVerdict, "reason": pipeline.FieldVerdict, "rule": pipeline.FieldVerdict, "clock": pipeline.FieldVerdict,
	"age_s": pipeline.FieldVerdict, "limit_s": pipeline.FieldVerdict, "left_s": pipeline.FieldVerdict, "detail": pipeline.FieldVerdict,
	"outcome": pipeline.FieldOutcome, "error": pipeline.FieldOutcome,
}

// Reads returns the contract fields behind keys, without facts (which a
// stage needs rather than reads) and without duplicates, in pipeline order.
func Reads(keys []string) []pipeline.Field {
	want := map[pipeline.Field]bool{}
	for _, k := range keys {
		if f, ok := contractFields[k]; ok && f != pipeline.FieldFacts {
			want[f] = true
		}
	}
	var out []pipeline.Field
	for _, f := range pipeline.Fields {
		if want[f] {
			out = append(out, f)
		}
	}
	return out
}
