package nvml

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSimA100MIG(t *testing.T) {
	b, err := Open(Options{Backend: BackendSim, SimFile: "testdata/sim/a100-mig.json"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != BackendSim {
		t.Errorf("Name() = %q, want %q", b.Name(), BackendSim)
	}
	got, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := &Snapshot{
		Backend:       BackendSim,
		Available:     true,
		DriverVersion: "550.54.15",
		Devices: []Device{
			{
				Index: 0, UUID: "GPU-8c1f0a3e-5b7d-4c2a-9e61-0f3b2d4c5a01",
				Name: "NVIDIA A100-SXM4-80GB", MemoryMiB: 81920,
				Processes: []Process{{PID: 4242, UsedMemoryMiB: 1024}, {PID: 4250, UsedMemoryMiB: 30720}},
			},
			{
				Index: 1, UUID: "GPU-2d7e9b14-83c6-4f0a-b5d2-6a1c8e3f9b02",
				Name: "NVIDIA A100-SXM4-80GB", MemoryMiB: 81920,
				MIG: []MIGDevice{
					{Index: 0, UUID: "MIG-3e1a5c7b-9d2f-5e4a-8b6c-1f0d2e3a4b51", Profile: "3g.40gb",
						Processes: []Process{{PID: 4343, UsedMemoryMiB: 512}}},
					{Index: 1, UUID: "MIG-7b4d2a9e-1c3f-5a6b-9d8e-2f1a0b3c4d52", Profile: "3g.40gb"},
				},
			},
		},
		Queries: QueryStats{DeviceQueries: 4, ProcessQueries: 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
	}

	// Each snapshot is the caller's own copy.
	got.Devices[1].MIG[0].Processes[0].PID = 1
	again, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("editing one snapshot changed the next (-want +got):\n%s", diff)
	}
}

func TestParseSimInitError(t *testing.T) {
	b, err := Open(Options{Backend: BackendSim, SimFile: "testdata/sim/none-loaded.json"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := &Snapshot{Backend: BackendSim, Unavailable: "NVML: ERROR_LIBRARY_NOT_FOUND"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
	}
}

// A driver that does not load on a host with GPUs: init_error and devices
// together are accepted, the devices ignored with a warning.
func TestParseSimInitErrorWithDevices(t *testing.T) {
	b, err := Open(Options{Backend: BackendSim, SimFile: "testdata/sim/init-error-with-devices.json"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := &Snapshot{
		Backend:     BackendSim,
		Unavailable: "NVML: ERROR_DRIVER_NOT_LOADED",
		Warnings:    []string{"simulation file: init_error ERROR_DRIVER_NOT_LOADED is set, so its 1 device(s) are ignored"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
	}
}

// TestParseSimBad pins the message and the line of every file under
// testdata/sim/bad; a file added there without a row fails the test.
func TestParseSimBad(t *testing.T) {
	tests := map[string]struct {
		line int
		msg  string
	}{
		"syntax.json":              {5, "invalid JSON: invalid character '\"' after object key:value pair"},
		"unknown-field.json":       {4, `devices[0]: unknown field "memory_mb" (known: index, memory_mib, mig, name, processes, utilization_gpu, uuid)`},
		"top-level-mig.json":       {5, `unknown field "mig" (known: devices, driver_version, init_error); MIG slices belong in the "mig" list of their parent device`},
		"mig-devices-key.json":     {3, `unknown field "mig_devices"`},
		"mig-without-parent.json":  {3, `devices[0]: UUID "MIG-3e1a5c7b-9d2f-5e4a-8b6c-1f0d2e3a4b51" is a MIG slice's: list it in the "mig" list of its parent device`},
		"duplicate-uuid.json":      {4, `devices[1]: duplicate UUID "GPU-8c1f0a3e-5b7d-4c2a-9e61-0f3b2d4c5a01" (first at devices[0].uuid, line 3)`},
		"duplicate-mig-uuid.json":  {6, `devices[1].mig[0]: duplicate UUID "MIG-3E1A5C7B-9D2F-5E4A-8B6C-1F0D2E3A4B51" (first at devices[0].mig[0].uuid, line 4)`},
		"duplicate-index.json":     {4, "devices[1]: duplicate device index 0 (first at devices[0].index, line 3)"},
		"duplicate-mig-index.json": {6, "devices[0].mig[1]: duplicate MIG index on this device 1"},
		"missing-index.json":       {3, `devices[0]: missing "index"`},
		"empty-uuid.json":          {3, `devices[0]: empty or missing "uuid"`},
		"gpu-prefix.json":          {3, `UUID "8c1f0a3e-5b7d-4c2a-9e61-0f3b2d4c5a01" must start with "GPU-"`},
		"mig-prefix.json":          {4, `devices[0].mig[0]: UUID "3e1a5c7b-9d2f-5e4a-8b6c-1f0d2e3a4b51" must start with "MIG-"`},
		"negative-pid.json":        {4, "devices[0].processes[0].pid: pid -4242 is not a process ID (must be > 0)"},
		"zero-pid.json":            {5, "devices[0].mig[0].processes[0].pid: pid 0 is not a process ID"},
		"duplicate-pid.json":       {6, "devices[0].processes[1].pid: pid 4242 listed twice on the same device (first at devices[0].processes[0].pid, line 5)"},
		"duplicate-pid-mig.json":   {8, "devices[0].mig[1].processes[0].pid: pid 4343 listed twice on the same device"},
		"wrong-type.json":          {4, "devices[0].memory_mib: want a whole number >= 0, got a JSON string"},
		"init-error-name.json":     {3, `init_error "library not found" is not an NVML error name`},
		"repeated-key.json":        {4, `devices[0]: key "uuid" given twice`},
		"not-an-object.json":       {1, "the top level: want an object, got a list"},
		"trailing-data.json":       {2, "unexpected data after the top-level object"},
	}
	files, err := filepath.Glob("testdata/sim/bad/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			tt, ok := tests[name]
			if !ok {
				t.Fatalf("no expectation for %s: add a row to the table", path)
			}
			delete(tests, name)
			_, err := Open(Options{Backend: BackendSim, SimFile: path})
			var se *SimFileError
			if !errors.As(err, &se) {
				t.Fatalf("Open(%s) = %v, want a *SimFileError", path, err)
			}
			if !strings.Contains(se.Msg, tt.msg) {
				t.Errorf("message %q\ndoes not contain %q", se.Msg, tt.msg)
			}
			if se.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", se.Line, tt.line, se)
			}
			if se.Path != path || se.Column < 1 {
				t.Errorf("place = %s:%d:%d, want %s:%d:<col>", se.Path, se.Line, se.Column, path, tt.line)
			}
			if want := path + ":"; !strings.HasPrefix(se.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", se.Error(), want)
			}
		})
	}
	for name := range tests {
		t.Errorf("table row %s has no file under testdata/sim/bad", name)
	}
}

func TestSimFileErrorFormat(t *testing.T) {
	_, err := ParseSim("gpus.json", []byte("{\n  \"devices\": [\n    {\"index\": 0, \"uuid\": \"\"}]}"))
	want := `gpus.json:3:26: devices[0]: empty or missing "uuid"`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestParseSimAccepts(t *testing.T) {
	tests := map[string]string{
		"empty object":        `{}`,
		"no GPUs":             `{"driver_version": "550.54.15", "devices": [], "init_error": null}`,
		"nulls for lists":     `{"devices": [{"index": 0, "uuid": "GPU-a", "processes": null, "mig": null}]}`,
		"processes and slice": `{"devices": [{"index": 0, "uuid": "GPU-a", "processes": [{"pid": 1}], "mig": [{"index": 0, "uuid": "MIG-b", "processes": [{"pid": 2}]}]}]}`,
		"same pid on 2 GPUs":  `{"devices": [{"index": 0, "uuid": "GPU-a", "processes": [{"pid": 7}]}, {"index": 1, "uuid": "GPU-b", "processes": [{"pid": 7}]}]}`,
		"unsorted indices":    `{"devices": [{"index": 3, "uuid": "GPU-a"}, {"index": 1, "uuid": "GPU-b"}]}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseSim("x.json", []byte(in)); err != nil {
				t.Errorf("ParseSim(%s) = %v, want success", in, err)
			}
		})
	}
}

func TestParseSimSortsByIndex(t *testing.T) {
	s, err := ParseSim("x.json", []byte(`{"devices": [
		{"index": 3, "uuid": "GPU-a", "mig": [{"index": 5, "uuid": "MIG-c"}, {"index": 2, "uuid": "MIG-d"}]},
		{"index": 1, "uuid": "GPU-b"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Devices[0].Index != 1 || s.Devices[1].Index != 3 || s.Devices[1].MIG[0].Index != 2 {
		t.Errorf("not sorted by index: %+v", s.Devices)
	}
}

func TestOpenSimFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.json")
	_, err := Open(Options{Backend: BackendSim, SimFile: path})
	var se *SimFileError
	if !errors.As(err, &se) || se.Path != path {
		t.Fatalf("err = %v, want a *SimFileError for %s", err, path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want it to wrap fs.ErrNotExist", err)
	}
}

func TestOpenSimFileTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.json")
	if err := os.WriteFile(path, make([]byte, maxSimFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Backend: BackendSim, SimFile: path})
	var se *SimFileError
	if !errors.As(err, &se) || !strings.Contains(se.Msg, "larger than") {
		t.Fatalf("err = %v, want a *SimFileError about the size", err)
	}
}

// TestSimShapeMatchesTypes keeps the walk's schema and the Go types in step:
// a field added to one and not the other would be rejected or ignored.
func TestSimShapeMatchesTypes(t *testing.T) {
	root := simShape()
	device := root.fields["devices"].elem
	mig := device.fields["mig"].elem
	process := device.fields["processes"].elem
	for _, tt := range []struct {
		typ   any
		shape *shape
	}{
		{simFile{}, root}, {simDevice{}, device}, {simMIG{}, mig}, {simProcess{}, process},
	} {
		typ := reflect.TypeOf(tt.typ)
		var tags []string
		for i := range typ.NumField() {
			tags = append(tags, typ.Field(i).Tag.Get("json"))
		}
		slices.Sort(tags)
		keys := slices.Sorted(maps.Keys(tt.shape.fields))
		if diff := cmp.Diff(tags, keys); diff != "" {
			t.Errorf("%s: JSON tags and shape differ (-tags +shape):\n%s", typ.Name(), diff)
		}
	}
	if mig.fields["processes"].elem != process {
		t.Error("MIG slices and devices should share the process shape")
	}
}

// FuzzParseSim checks that no input panics ParseSim, that every rejection is
// a placed *SimFileError, and that what it accepts keeps the rules.
func FuzzParseSim(f *testing.F) {
	for _, pattern := range []string{"testdata/sim/*.json", "testdata/sim/bad/*.json"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSim("fuzz.json", data)
		if err != nil {
			var se *SimFileError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *SimFileError", err, err)
			}
			if se.Line < 1 || se.Column < 1 {
				t.Fatalf("error %q has no place", se)
			}
			return
		}
		seen := make(map[string]bool)
		for _, d := range s.Devices {
			if !strings.HasPrefix(d.UUID, "GPU-") || seen[strings.ToLower(d.UUID)] {
				t.Fatalf("accepted bad or repeated GPU UUID %q", d.UUID)
			}
			seen[strings.ToLower(d.UUID)] = true
			for _, m := range d.MIG {
				if !strings.HasPrefix(m.UUID, "MIG-") || seen[strings.ToLower(m.UUID)] {
					t.Fatalf("accepted bad or repeated MIG UUID %q", m.UUID)
				}
				seen[strings.ToLower(m.UUID)] = true
				for _, p := range m.Processes {
					if p.PID <= 0 {
						t.Fatalf("accepted pid %d", p.PID)
					}
				}
			}
			for _, p := range d.Processes {
				if p.PID <= 0 {
					t.Fatalf("accepted pid %d", p.PID)
				}
			}
		}
	})
}
