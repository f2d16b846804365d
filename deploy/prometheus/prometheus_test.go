package prometheus

import (
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const (
	rulesFile = "ds01-pipe.rules.yml"
	testsFile = "ds01-pipe.rules.test.yml"
)

// promtool is Debian's prometheus package's rule checker. Without it the
// test skips, except under CI=true (.ci/run installs it), where its
// absence is a failure.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("promtool not found, and CI=true: .ci/run installs it (apt-get install prometheus)")
	}
	t.Skip("promtool not found: install the prometheus package to run this test (.ci/run does); skipping")
	return ""
}

func TestRulesCheck(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestRulesUnitTests(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", testsFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

var (
	alertName = regexp.MustCompile(`(?m)^\s*- alert: (\S+)\s*$`)
	testedFor = regexp.MustCompile(`(?m)^\s*alertname: (\S+)\s*$`)
	// metricName is a ds01-pipe metric named in an expression.
	metricName = regexp.MustCompile(`ds01_pipe_[a-z_]+`)
)

// Every alert has a unit test that makes it fire, and the rules name only
// metrics the log stage writes (stages/log/metrics.go): a renamed metric
// must not leave an alert that can never fire.
func TestRulesCoverage(t *testing.T) {
	rules := read(t, rulesFile)
	tests := read(t, testsFile)
	tested := map[string]bool{}
	for _, m := range testedFor.FindAllStringSubmatch(tests, -1) {
		tested[m[1]] = true
	}
	alerts := alertName.FindAllStringSubmatch(rules, -1)
	if len(alerts) == 0 {
		t.Fatal("no alerts found")
	}
	for _, m := range alerts {
		if !tested[m[1]] {
			t.Errorf("alert %s has no promtool test in %s", m[1], testsFile)
		}
	}

	src := read(t, "../../stages/log/metrics.go")
	written := map[string]bool{}
	for _, name := range metricName.FindAllString(src, -1) {
		written[name] = true
	}
	var unknown []string
	for _, name := range metricName.FindAllString(rules, -1) {
		if !written[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("%s names metrics the log stage does not write: %v", rulesFile, unknown)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
