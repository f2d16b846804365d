package nvml

import (
	"os"
	"path/filepath"
	"testing"
)

// docs/lifecycle.md walks an admin through an idle cycle with
// testdata/gpu/one-idle-gpu.json and a container labelled with its UUID: the
// file must stay valid and keep that one idle GPU.
func TestDocsSimFileOneIdleGPU(t *testing.T) {
	path := filepath.Join("..", "testdata", "gpu", "one-idle-gpu.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSim(path, data)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Available || len(s.Devices) != 1 {
		t.Fatalf("want one available device, got %+v", s)
	}
	d := s.Devices[0]
	if d.UUID != "GPU-8c1f0a3e-5b7d-4c2a-9e61-0f3b2d4c5a01" || len(d.Processes) != 0 {
		t.Errorf("device %+v: want the UUID docs/lifecycle.md names, with no process", d)
	}
}
