package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ds01/ds01-pipe/pipeline"
)

func newStagesCmd(io IOStreams) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "stages [KIND]",
		Short: "List every stage kind (or one) with its attributes, contract and an example",
		Long: `stages lists every stage kind compiled in, or the one named: its summary, its
attributes with their types and defaults, its contract (what it needs from the
stages before it, what it reads and writes on the record, whether it acts on
containers, ends the pipeline or runs after a failure) and an example block.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			specs := pipeline.DefaultRegistry.Specs()
			if len(args) == 1 {
				spec, ok := pipeline.DefaultRegistry.Lookup(args[0])
				if !ok {
					return usageError("there is no stage kind %q; known kinds: %s", args[0], strings.Join(pipeline.DefaultRegistry.Kinds(), ", "))
				}
				specs = []pipeline.Spec{spec}
			}
			switch format {
			case "json":
				docs := make([]stageDoc, 0, len(specs))
				for _, s := range specs {
					docs = append(docs, newStageDoc(s))
				}
				enc := json.NewEncoder(io.Out)
				enc.SetIndent("", "  ")
				if len(args) == 1 {
					return enc.Encode(docs[0])
				}
				return enc.Encode(docs)
			case "text", "":
				for i, s := range specs {
					if i > 0 {
						fmt.Fprintln(io.Out)
					}
					writeStageText(io, s)
				}
				return nil
			}
			return usageError("--format must be text or json, not %q", format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "`FORMAT` of the list: text or json")
	return cmd
}

// stageDoc is one stage kind in `stages --format json`.
type stageDoc struct {
	Kind       string             `json:"kind"`
	Summary    string             `json:"summary"`
	Attributes []pipeline.AttrDoc `json:"attributes"`
	Contract   contractDoc        `json:"contract"`
	Sample     string             `json:"sample"`
}

// contractDoc is a kind's pipeline.Contract, as the loader checks it.
type contractDoc struct {
	Needs     []pipeline.Field `json:"needs"`
	Reads     []pipeline.Field `json:"reads"`
	Writes    []pipeline.Field `json:"writes"`
	Amends    []pipeline.Field `json:"amends"`
	Acts      bool             `json:"acts"`
	Terminal  bool             `json:"terminal"`
	Finalizer bool             `json:"finalizer"`
}

func newStageDoc(s pipeline.Spec) stageDoc {
	c := s.Contract
	orEmpty := func(fs []pipeline.Field) []pipeline.Field {
		if fs == nil {
			return []pipeline.Field{}
		}
		return fs
	}
	return stageDoc{
		Kind: s.Kind, Summary: s.Summary, Attributes: s.Attributes(), Sample: s.Sample,
		Contract: contractDoc{
			Needs: orEmpty(c.Needs), Reads: orEmpty(c.Reads), Writes: orEmpty(c.Writes), Amends: orEmpty(c.Amends),
			Acts: c.Acts, Terminal: c.Terminal, Finalizer: c.Finalizer,
		},
	}
}

func writeStageText(io IOStreams, s pipeline.Spec) {
	fmt.Fprintf(io.Out, "%s\n%s\n  %s\n", s.Kind, strings.Repeat("=", len(s.Kind)), s.Summary)
	if attrs := s.Attributes(); len(attrs) > 0 {
		fmt.Fprintln(io.Out, "\n  Attributes:")
		for _, a := range attrs {
			def := ""
			if a.Default != "" {
				def = " (default " + a.Default + ")"
			}
			fmt.Fprintf(io.Out, "    %-22s %-14s %s%s\n", a.Name, a.Type, a.Doc, def)
		}
	}
	if lines := contractLines(s.Contract); len(lines) > 0 {
		fmt.Fprintln(io.Out, "\n  Contract:")
		for _, l := range lines {
			fmt.Fprintln(io.Out, "    "+l)
		}
	}
	if s.Sample != "" {
		fmt.Fprintln(io.Out, "\n  Example:")
		for _, line := range strings.Split(strings.TrimRight(s.Sample, "\n"), "\n") {
			fmt.Fprintln(io.Out, "    "+line)
		}
	}
}

// contractLines renders a contract for the text listing, a term a line.
func contractLines(c pipeline.Contract) []string {
	return c.Terms(func(f pipeline.Field) string { return string(f) })
}
