package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// `stages --format json` is part of the command-line contract: a golden
// file shows every change to a kind's attributes, docs or contract
// (go test -run TestGoldenStages -update rewrites it).
func TestGoldenStages(t *testing.T) {
	code, out, errOut := cli(t, "stages", "--format", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pipelinetest.Golden(t, "stages.json", []byte(out))
}

func TestStagesOneKind(t *testing.T) {
	code, out, _ := cli(t, "stages", "remove")
	if code != ExitOK || !strings.HasPrefix(out, "remove\n======\n") || strings.Contains(out, "\ndiscover\n") {
		t.Fatalf("stages remove: exit %d\n%s", code, out)
	}
	for _, want := range []string{"Contract:", "needs facts", "writes removal, outcome, events", "acts on containers", "Example:"} {
		if !strings.Contains(out, want) {
			t.Errorf("stages remove lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = cli(t, "stages", "log", "--format", "json")
	var doc struct {
		Kind     string `json:"kind"`
		Contract struct {
			Terminal  bool `json:"terminal"`
			Finalizer bool `json:"finalizer"`
		} `json:"contract"`
	}
	if code != ExitOK || json.Unmarshal([]byte(out), &doc) != nil || doc.Kind != "log" || !doc.Contract.Terminal || !doc.Contract.Finalizer {
		t.Errorf("stages log --format json: exit %d %+v\n%s", code, doc, out)
	}

	code, _, errOut := cli(t, "stages", "remvoe")
	if code != ExitConfigError || !strings.Contains(errOut, `no stage kind "remvoe"`) {
		t.Errorf("unknown kind: exit %d %q", code, errOut)
	}
}

// validate refuses a stage order that cannot work, exit 78, with the
// diagnostic at the offending stage block; run refuses it before
// touching anything.
func TestValidateRefusesStageOrder(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "order.hcl", `pipeline "p" {
  gpu { backend = "none" }
  stage "discover" {}
  stage "remove" {}
  stage "decide" {}
}
`)
	for _, cmd := range [][]string{{"validate", file}, {"run", "--format", "json", file}} {
		code, _, errOut := cli(t, cmd...)
		if code != ExitConfigError || !strings.Contains(errOut, "order.hcl:4:3: Stage out of order") ||
			!strings.Contains(errOut, "decide must come before remove") {
			t.Errorf("%s: exit %d\n%s", cmd[0], code, errOut)
		}
	}
}
