package pipeline

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxNesting bounds how deeply a pipeline file may nest brackets, braces,
// parentheses, strings and template sequences, how many conditional
// operators it may hold and how many unary operators may follow each other.
//
// The HCL parser is recursive descent: every level of nesting (and every
// "?" of a conditional chain, every "-" or "!" of a run of unary
// operators) is a few kilobytes of Go stack, and a file of 100,000 "["
// (100 KB, well inside MaxPipelineFileSize) overflows the 1 GB stack limit.
// A stack overflow is not a panic: the process dies with a goroutine dump,
// so no recover can turn it into a configuration error. The file is
// therefore checked with HCL's own lexer (a state machine, no recursion)
// before it is parsed. Real pipelines nest fewer than ten levels.
const MaxNesting = 256

// checkNesting refuses source that would make the parser recurse deeper
// than MaxNesting allows. Lexical errors are left to the parser.
func checkNesting(src []byte, filename string) hcl.Diagnostics {
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	depth, conditionals, unary := 0, 0, 0
	tooDeep := func(tok hclsyntax.Token, what string) hcl.Diagnostics {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Nested too deeply",
			Detail:   fmt.Sprintf("The file has %s; a pipeline file may have at most %d.", what, MaxNesting),
			Subject:  tok.Range.Ptr(),
		}}
	}
	for _, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			depth++
			if depth > MaxNesting {
				return tooDeep(tok, fmt.Sprintf("more than %d levels of nested brackets, strings or templates", MaxNesting))
			}
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			if depth > 0 {
				depth--
			}
		case hclsyntax.TokenQuestion:
			conditionals++
			if conditionals > MaxNesting {
				return tooDeep(tok, fmt.Sprintf("more than %d conditional operators", MaxNesting))
			}
		}
		if tok.Type == hclsyntax.TokenMinus || tok.Type == hclsyntax.TokenBang {
			unary++
			if unary > MaxNesting {
				return tooDeep(tok, fmt.Sprintf("more than %d operators in a row", MaxNesting))
			}
		} else {
			unary = 0
		}
	}
	return nil
}
