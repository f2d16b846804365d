package pipeline

import (
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// functions are the HCL functions a pipeline may call.
func functions() map[string]function.Function {
	return map[string]function.Function{
		// env("NAME") is the value of an environment variable, "" if unset.
		"env": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "name", Type: cty.String}},
			Type:   function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				return cty.StringVal(os.Getenv(args[0].AsString())), nil
			},
		}),
		// duration("90m") checks a duration where it is written and returns
		// it in canonical form ("1h30m0s"), so a typo in a variable fails at
		// the line that uses it.
		"duration": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "text", Type: cty.String}},
			Type:   function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				d, err := ParseDuration(args[0].AsString())
				if err != nil {
					return cty.NilVal, function.NewArgError(0, err)
				}
				return cty.StringVal(d.String()), nil
			},
		}),
	}
}

func functionContext() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: functions()}
}

func evalContext(vars map[string]cty.Value) *hcl.EvalContext {
	ctx := functionContext()
	ctx.Variables = map[string]cty.Value{"var": cty.ObjectVal(vars)}
	if len(vars) == 0 {
		ctx.Variables["var"] = cty.EmptyObjectVal
	}
	return ctx
}
