package logstage

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// withHost returns DS01 event lines as this node writes them: the events
// writer adds the node's host name as the last key of details.
func withHost(t *testing.T, lines []string) []string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimSuffix(l, "}}") + `,"host":` + strconv.Quote(host) + "}}"
	}
	return out
}
