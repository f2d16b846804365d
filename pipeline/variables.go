package pipeline

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// DeclaredVariables lists the names of the variable blocks of a pipeline
// file's text, so that a command handling several files can give each only
// the --var values it declares. It parses with the loader's guards (the
// nesting bound: a hostile file must not exhaust the stack), and reports
// false when the text does not parse: the loader then says why.
func DeclaredVariables(src []byte, filename string) ([]string, bool) {
	if len(src) > MaxPipelineFileSize || checkNesting(src, filename).HasErrors() {
		return nil, false
	}
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, false
	}
	content, _, diags := f.Body.PartialContent(&hcl.BodySchema{
		Blocks: []hcl.BlockHeaderSchema{{Type: "variable", LabelNames: []string{"name"}}},
	})
	if diags.HasErrors() {
		return nil, false
	}
	names := make([]string, 0, len(content.Blocks))
	for _, b := range content.Blocks {
		names = append(names, b.Labels[0])
	}
	return names, true
}
