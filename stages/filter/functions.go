package filter

import (
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/ds01/ds01-pipe/pipeline"
)

// functions are the HCL functions a when expression may call, besides the
// pipeline's own (env, duration). They are pure: no file, network or clock
// access, so a filter gives the same answer in plan, run and explain. Those
// that build large values from small arguments (format with a width,
// range) are left out: a filter answers yes or no.
func functions() map[string]function.Function {
	return map[string]function.Function{
		// collections
		"length":   stdlib.LengthFunc,
		"contains": stdlib.ContainsFunc,
		"keys":     stdlib.KeysFunc,
		"values":   stdlib.ValuesFunc,
		"lookup":   stdlib.LookupFunc,
		"concat":   stdlib.ConcatFunc,
		"distinct": stdlib.DistinctFunc,
		"coalesce": stdlib.CoalesceFunc,
		// strings
		"lower":       stdlib.LowerFunc,
		"upper":       stdlib.UpperFunc,
		"trimspace":   stdlib.TrimSpaceFunc,
		"trimprefix":  stdlib.TrimPrefixFunc,
		"trimsuffix":  stdlib.TrimSuffixFunc,
		"replace":     stdlib.ReplaceFunc,
		"split":       stdlib.SplitFunc,
		"join":        stdlib.JoinFunc,
		"substr":      stdlib.SubstrFunc,
		"strlen":      stdlib.StrlenFunc,
		"regex":       stdlib.RegexFunc,
		"regexall":    stdlib.RegexAllFunc,
		"startswith":  stringTest(strings.HasPrefix),
		"endswith":    stringTest(strings.HasSuffix),
		"strcontains": stringTest(strings.Contains),
		"matches":     matchesFunc,
		// numbers
		"min":   stdlib.MinFunc,
		"max":   stdlib.MaxFunc,
		"abs":   stdlib.AbsoluteFunc,
		"floor": stdlib.FloorFunc,
		"ceil":  stdlib.CeilFunc,
		// conversions and errors
		"tostring": stdlib.MakeToFunc(cty.String),
		"tonumber": stdlib.MakeToFunc(cty.Number),
		"tobool":   stdlib.MakeToFunc(cty.Bool),
		"try":      tryfunc.TryFunc,
		"can":      tryfunc.CanFunc,
		"seconds":  secondsFunc,
	}
}

// stringTest makes a (string, string) -> bool function, as Terraform's
// startswith, endswith and strcontains.
func stringTest(test func(s, sub string) bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "substr", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(test(args[0].AsString(), args[1].AsString())), nil
		},
	})
}

// matchesFunc is matches(str, pattern): whether the RE2 pattern matches
// anywhere in str. regex() fails when nothing matches, which in a filter
// would drop the record with an error rather than answer false.
var matchesFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "pattern", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		re, err := regexp.Compile(args[1].AsString())
		if err != nil {
			return cty.NilVal, function.NewArgErrorf(1, "invalid regular expression: %s", err)
		}
		return cty.BoolVal(re.MatchString(args[0].AsString())), nil
	},
})

// secondsFunc is seconds("24h"): a Go duration as a number of seconds, to
// compare with age_s and limit_s.
var secondsFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "duration", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		d, err := pipeline.ParseDuration(args[0].AsString())
		if err != nil {
			return cty.NilVal, function.NewArgError(0, err)
		}
		return cty.NumberFloatVal(d.Seconds()), nil
	},
})
