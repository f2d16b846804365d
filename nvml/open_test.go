package nvml

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOpenUnknownBackend(t *testing.T) {
	_, err := Open(Options{Backend: "cuda"})
	if err == nil || !strings.Contains(err.Error(), `unknown GPU backend "cuda"`) {
		t.Errorf("Open(cuda) = %v, want an unknown-backend error", err)
	}
}

func TestOpenSimNeedsFile(t *testing.T) {
	_, err := Open(Options{Backend: BackendSim})
	if err == nil || !strings.Contains(err.Error(), "sim_file") {
		t.Errorf("Open(sim, no file) = %v, want an error naming sim_file", err)
	}
}

func TestOpenNone(t *testing.T) {
	b, err := Open(Options{Backend: BackendNone, SimFile: "ignored.json"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != BackendNone || s.Backend != BackendNone || s.Available || s.Unavailable == "" {
		t.Errorf("none backend: Name %q, snapshot %+v", b.Name(), s)
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
}

// TestOpenAuto runs wherever the tests run: without a driver (or without
// cgo) auto falls back to "none" and says why; with one it is NVML.
func TestOpenAuto(t *testing.T) {
	for _, name := range []string{BackendAuto, ""} {
		b, err := Open(Options{Backend: name})
		if err != nil {
			t.Fatalf("Open(%q) = %v", name, err)
		}
		s, err := b.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case s.Available && b.Name() == BackendNVML && s.Backend == BackendNVML:
			t.Logf("auto found NVML, driver %s, %d GPUs", s.DriverVersion, len(s.Devices))
		case !s.Available && b.Name() == BackendNone && s.Backend == BackendNone &&
			strings.HasPrefix(s.Unavailable, "NVML: "):
			t.Logf("auto fell back to none: %s", s.Unavailable)
		default:
			t.Errorf("Open(%q): Name %q, snapshot %+v", name, b.Name(), s)
		}
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestOptionsWithEnv(t *testing.T) {
	pipeline := Options{Backend: BackendNVML}
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}
	if got := pipeline.WithEnv(env(nil)); !reflect.DeepEqual(got, pipeline) {
		t.Errorf("unset: got %+v, want %+v", got, pipeline)
	}
	if got := pipeline.WithEnv(env(map[string]string{SimFileEnv: ""})); !reflect.DeepEqual(got, pipeline) {
		t.Errorf("empty: got %+v, want %+v", got, pipeline)
	}
	want := Options{Backend: BackendSim, SimFile: "/tmp/gpus.json"}
	if got := pipeline.WithEnv(env(map[string]string{SimFileEnv: "/tmp/gpus.json"})); !reflect.DeepEqual(got, want) {
		t.Errorf("set: got %+v, want %+v", got, want)
	}
}

func TestSnapshotHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, opts := range []Options{
		{Backend: BackendNone},
		{Backend: BackendSim, SimFile: "testdata/sim/a100-mig.json"},
	} {
		b, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Snapshot(ctx); err == nil {
			t.Errorf("%s: Snapshot with a cancelled context succeeded", opts.Backend)
		}
	}
}

// A simulation file that is a FIFO or a device is refused at once, never
// read: validate must not hang on one.
func TestOpenSimRefusesNonRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "gpus.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero"} {
		done := make(chan error, 1)
		go func() {
			_, err := Open(Options{Backend: BackendSim, SimFile: path})
			done <- err
		}()
		select {
		case err := <-done:
			var se *SimFileError
			if !errors.As(err, &se) || se.Path != path || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("Open(%s) = %v, want a *SimFileError saying it is not a regular file", path, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Open(%s) blocked", path)
		}
	}
}
