// Command gen writes the generated reference in docs/ (make docs).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ds01/ds01-pipe/internal/docgen"
	"github.com/ds01/ds01-pipe/pipeline"
	_ "github.com/ds01/ds01-pipe/stages/all" // every stage kind of the binary
)

func main() {
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	path := filepath.Join(*root, docgen.StagesFile)
	if err := os.WriteFile(path, docgen.Stages(pipeline.DefaultRegistry), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
