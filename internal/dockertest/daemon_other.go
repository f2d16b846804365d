//go:build !linux

package dockertest

import "testing"

// PrivateDaemon needs Linux (network namespaces, dockerd); elsewhere it
// fails the test.
func PrivateDaemon(t testing.TB) *Engine {
	t.Helper()
	t.Fatalf("dockertest: PrivateDaemon needs Linux")
	return nil
}
