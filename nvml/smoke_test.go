package nvml

import (
	"context"
	"errors"
	"os"
	"testing"
)

// notRun says, as loudly as a test can without failing, that a test needing
// a GPU did not run: a skip with the reason on a developer's machine, a log
// line under CI (CI=true), where a GPU-less runner must pass.
func notRun(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Logf("DID NOT RUN (no GPU here): %s", why)
		return
	}
	t.Skipf("DID NOT RUN (no GPU here): %s", why)
}

// TestRealNVMLSmoke reads the real driver, read-only, wherever one is found:
// devices, MIG slices, compute processes, and each process mapped through
// /proc to its container. Elsewhere it says that it did not run.
func TestRealNVMLSmoke(t *testing.T) {
	b, err := Open(Options{Backend: BackendNVML})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	}()
	s, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Available {
		notRun(t, s.Unavailable)
		return
	}
	if len(s.Devices) == 0 {
		notRun(t, "NVML loads but lists no GPU")
		return
	}
	t.Logf("driver %s, %d GPUs, queries %+v", s.DriverVersion, len(s.Devices), s.Queries)
	for _, w := range s.Warnings {
		t.Logf("warning: %s", w)
	}
	seen := make(map[string]bool)
	check := func(uuid string) {
		t.Helper()
		if uuid == "" || seen[uuid] {
			t.Errorf("UUID %q is empty or repeated", uuid)
		}
		seen[uuid] = true
	}
	var procfs ProcFS
	mapProcs := func(indent string, procs []Process) {
		for _, p := range procs {
			id, err := procfs.Identify(p.PID)
			switch {
			case errors.Is(err, ErrNoProcess):
				t.Logf("%spid %d %d MiB: not in this /proc (exited, or the test runs in another PID namespace)", indent, p.PID, p.UsedMemoryMiB)
			case err != nil:
				t.Logf("%spid %d %d MiB: cannot be identified: %v", indent, p.PID, p.UsedMemoryMiB, err)
			default:
				t.Logf("%spid %d %d MiB: container %q runtime %q namespaced %v supervisor %q cgroups %q",
					indent, p.PID, p.UsedMemoryMiB, id.ContainerID, id.Runtime, id.Namespaced, id.Supervisor, id.Cgroups)
			}
		}
	}
	for _, d := range s.Devices {
		t.Logf("GPU %d %s %q %d MiB, %d processes, %d MIG slices", d.Index, d.UUID, d.Name, d.MemoryMiB, len(d.Processes), len(d.MIG))
		if d.ProcessError != "" {
			t.Logf("  processes not read: %s", d.ProcessError)
		}
		check(d.UUID)
		mapProcs("  ", d.Processes)
		for _, m := range d.MIG {
			t.Logf("  MIG %d %s %q, %d processes", m.Index, m.UUID, m.Profile, len(m.Processes))
			check(m.UUID)
			mapProcs("    ", m.Processes)
		}
	}
	if s.Queries.ProcessQueries > len(seen) {
		t.Errorf("%d process queries for %d devices and slices", s.Queries.ProcessQueries, len(seen))
	}
}
