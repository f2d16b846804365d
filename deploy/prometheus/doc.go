// Package prometheus holds no code. Its folder ships the Prometheus alert
// rules for a fleet of ds01-pipe nodes (ds01-pipe.rules.yml, docs/fleet.md)
// and their promtool unit tests (ds01-pipe.rules.test.yml), which the test
// here runs with `promtool check rules` and `promtool test rules`.
package prometheus
