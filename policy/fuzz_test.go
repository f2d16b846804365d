package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzLoad feeds arbitrary bytes to Load as resource-limits.yaml, and also as
// user-overrides.yaml and lifecycle-exemptions.yaml beside a good limits file.
// Load must never panic, must fail only with a *FileError, and a model it
// returns must answer every query without panicking. Seeds are in
// testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "ds01", "resource-limits.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		limits := filepath.Join(dir, "resource-limits.yaml")
		other := filepath.Join(dir, "other.yaml")
		if err := os.WriteFile(limits, data, 0o644); err != nil {
			t.Fatal(err)
		}
		exercise(t, Files{LimitsFile: limits})

		if err := os.WriteFile(limits, good, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(other, data, 0o644); err != nil {
			t.Fatal(err)
		}
		exercise(t, Files{LimitsFile: limits, OverridesFile: other})
		exercise(t, Files{LimitsFile: limits, ExemptionsFile: other})
	})
}

// exercise loads files and, if that works, asks the model everything.
func exercise(t *testing.T, files Files) {
	t.Helper()
	model, err := Load(files)
	if err != nil {
		var fe *FileError
		if !errors.As(err, &fe) {
			t.Fatalf("Load error is not a *FileError: %T %v", err, err)
		}
		_ = fe.Error()
		return
	}
	users := []string{"alice", "unknown", "h.baker@hertie-school.lan", "", "student"}
	for _, u := range users {
		_ = model.UserGroup(u)
		_ = model.ContainerHold(u, true, "docker")
		for _, key := range []string{"idle_timeout_h", "max_runtime_h", "gpu_hold_after_stop_h"} {
			if _, err := model.Lookup(u, key); err != nil {
				t.Fatalf("Lookup(%q, %q): %v", u, key, err)
			}
			_, _ = model.Exemption(u, key, time.Now())
		}
	}
	for _, ctype := range []string{"docker", "unknown", "atomic", ""} {
		_ = model.ContainerHold("unknown", false, ctype).String()
		_, _ = model.TypeLimit(ctype, "idle_timeout_h")
	}
	_ = model.CreatedTimeout().String()
	_ = model.InfrastructureContainers()
}
