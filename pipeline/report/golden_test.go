package report

import (
	"bytes"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// The JSON report and the table are part of the command-line contract:
// golden files show every change to them (go test -update rewrites them).
func TestGoldenReport(t *testing.T) {
	env, res := testResult()
	doc := Build(env, res, nil)
	var js, table bytes.Buffer
	if err := doc.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	pipelinetest.Golden(t, "report.json", js.Bytes())
	if err := doc.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	pipelinetest.Golden(t, "table.txt", table.Bytes())
}
