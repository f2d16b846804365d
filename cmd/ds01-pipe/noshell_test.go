package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ds01-pipe runs as root and handles text that container owners control
// (names, labels, environment): it must never start a shell or any other
// program, so no such text can ever reach one. The one process it starts
// is itself, as a run's witness, with arguments from the run's own
// configuration. This test reads every non-test Go file of the module and
// fails on any way to start a process outside the allow-list below.

// processAllowed are the folders whose code may start processes: test
// harnesses and tools that never run on a server.
var processAllowed = []string{
	"internal/dockertest/", // builds the probe image, starts a private dockerd (tests only)
	"internal/bench/",      // benchmarks (never shipped)
	"deploy/",              // packaging tools and their tests
	"pipeline/witness.go",  // a run's witness: this program's own executable, never a shell
}

// processCalls are the functions that start a process.
var processCalls = map[string]bool{
	"exec.Command":         true,
	"exec.CommandContext":  true,
	"os.StartProcess":      true,
	"syscall.Exec":         true,
	"syscall.ForkExec":     true,
	"syscall.StartProcess": true,
	"unix.Exec":            true,
}

func TestNoShellOrProcessOutsideTheAllowList(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if name := d.Name(); rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		for _, dir := range processAllowed {
			if strings.HasPrefix(rel, dir) {
				return nil
			}
		}
		checked++
		for _, problem := range startsProcesses(t, path) {
			t.Errorf("%s: %s", rel, problem)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Errorf("only %d files checked: the walk missed the module", checked)
	}
}

// startsProcesses lists the ways file could start a process or a shell:
// importing os/exec, calling a process-starting function, or naming a shell.
func startsProcesses(t *testing.T, file string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	var out []string
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "os/exec" {
			out = append(out, fset.Position(imp.Pos()).String()+": imports os/exec")
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && processCalls[id.Name+"."+n.Sel.Name] {
				out = append(out, fset.Position(n.Pos()).String()+": uses "+id.Name+"."+n.Sel.Name)
			}
		case *ast.BasicLit:
			if n.Kind == token.STRING {
				s, _ := strconv.Unquote(n.Value)
				for _, shell := range []string{"/bin/sh", "/bin/bash", "/usr/bin/env", "sh -c", "bash -c"} {
					if strings.Contains(s, shell) {
						out = append(out, fset.Position(n.Pos()).String()+": names a shell ("+shell+")")
					}
				}
			}
		}
		return true
	})
	return out
}
