package pipeline_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// worker pool, a Docker call or a timer left running by a stage.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
