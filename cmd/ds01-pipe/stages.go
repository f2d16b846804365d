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
		Use:   "stages",
		Short: "List every stage kind with its attributes and an example",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			specs := pipeline.DefaultRegistry.Specs()
			switch format {
			case "json":
				type stageDoc struct {
					Kind       string             `json:"kind"`
					Summary    string             `json:"summary"`
					Attributes []pipeline.AttrDoc `json:"attributes"`
					Sample     string             `json:"sample"`
				}
				docs := make([]stageDoc, 0, len(specs))
				for _, s := range specs {
					docs = append(docs, stageDoc{Kind: s.Kind, Summary: s.Summary, Attributes: s.Attributes(), Sample: s.Sample})
				}
				enc := json.NewEncoder(io.Out)
				enc.SetIndent("", "  ")
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
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
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
	if s.Sample != "" {
		fmt.Fprintln(io.Out, "\n  Example:")
		for _, line := range strings.Split(strings.TrimRight(s.Sample, "\n"), "\n") {
			fmt.Fprintln(io.Out, "    "+line)
		}
	}
}
