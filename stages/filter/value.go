package filter

import (
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/stages/internal/recordview"
)

// objectType is the type of c: one attribute per key of the report's
// container object.
var objectType = buildType()

func buildType() cty.Type {
	attrs := make(map[string]cty.Type)
	for _, f := range recordview.Fields() {
		attrs[f.Key] = ctyType(f.Kind)
	}
	return cty.Object(attrs)
}

func ctyType(k recordview.Kind) cty.Type {
	switch k {
	case recordview.Bool:
		return cty.Bool
	case recordview.Number:
		return cty.Number
	case recordview.List:
		return cty.List(cty.String)
	case recordview.Map:
		return cty.Map(cty.String)
	}
	return cty.String
}

// Value returns the record as the object c.
func Value(rec *pipeline.Record) cty.Value {
	o := recordview.Of(rec)
	attrs := make(map[string]cty.Value)
	for _, f := range recordview.Fields() {
		attrs[f.Key] = ctyValue(f.Kind, f.Value(o))
	}
	return cty.ObjectVal(attrs)
}

// str makes a cty string of user-controlled text: invalid UTF-8 (names and
// labels are anyone's bytes) becomes U+FFFD, so string functions behave.
func str(s string) cty.Value {
	return cty.StringVal(strings.ToValidUTF8(s, "\uFFFD"))
}

func ctyValue(k recordview.Kind, v any) cty.Value {
	if v == nil {
		return cty.NullVal(ctyType(k))
	}
	switch x := v.(type) {
	case string:
		return str(x)
	case bool:
		return cty.BoolVal(x)
	case int64:
		return cty.NumberIntVal(x)
	case []string:
		if len(x) == 0 {
			return cty.ListValEmpty(cty.String)
		}
		vals := make([]cty.Value, len(x))
		for i, s := range x {
			vals[i] = str(s)
		}
		return cty.ListVal(vals)
	case map[string]string:
		if len(x) == 0 {
			return cty.MapValEmpty(cty.String)
		}
		vals := make(map[string]cty.Value, len(x))
		for key, s := range x {
			vals[strings.ToValidUTF8(key, "\uFFFD")] = str(s)
		}
		return cty.MapVal(vals)
	}
	return cty.NullVal(ctyType(k))
}
