package docgen_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/internal/docgen"
	"github.com/ds01/ds01-pipe/pipeline"
	_ "github.com/ds01/ds01-pipe/stages/all"
)

var update = flag.Bool("update", false, "rewrite the generated docs")

// TestStagesDocCurrent fails when docs/stages.md is not what `make docs`
// writes from the stage specs now: the reference drifted from the code.
func TestStagesDocCurrent(t *testing.T) {
	path := filepath.Join("..", "..", docgen.StagesFile)
	want := docgen.Stages(pipeline.DefaultRegistry)
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make docs)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run make docs (or go test ./internal/docgen -update) and commit it", docgen.StagesFile)
	}
}

// Every kind and every attribute of every kind is in the reference.
func TestStagesDocComplete(t *testing.T) {
	doc := string(docgen.Stages(pipeline.DefaultRegistry))
	for _, s := range pipeline.DefaultRegistry.Specs() {
		if !strings.Contains(doc, "\n## "+s.Kind+"\n") {
			t.Errorf("kind %s missing", s.Kind)
		}
		for _, a := range s.Attributes() {
			if !strings.Contains(doc, "| `"+a.Name+"` |") {
				t.Errorf("%s: attribute %s missing", s.Kind, a.Name)
			}
		}
	}
}

// A table cell never breaks the table.
func TestStagesDocCells(t *testing.T) {
	reg := pipeline.NewRegistry()
	reg.MustRegister(pipeline.Spec{Kind: "k", Summary: "s", New: func() pipeline.Stage { return &pipeStage{} }})
	doc := string(docgen.Stages(reg))
	if !strings.Contains(doc, "| `a` | string | `\"\"` | one \\| two three |") {
		t.Errorf("cell not escaped:\n%s", doc)
	}
}

type pipeStage struct {
	A string `hcl:"a,optional" doc:"one | two\nthree"`
}

func (*pipeStage) Process(context.Context, *pipeline.Env, *pipeline.Batch) error { return nil }
