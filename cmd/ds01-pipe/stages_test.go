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
