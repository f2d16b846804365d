package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile writes content to dir/name, creating parent directories.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadString loads content as resource-limits.yaml.
func loadString(t *testing.T, content string) *Model {
	t.Helper()
	path := writeFile(t, t.TempDir(), "resource-limits.yaml", content)
	model, err := Load(Files{LimitsFile: path})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return model
}

// markedLine returns the 1-based line of content that carries the "# ERROR"
// marker, the way the pipeline's diagnostic tests mark failing lines.
func markedLine(t *testing.T, content string) int {
	t.Helper()
	for i, line := range strings.Split(content, "\n") {
		if strings.Contains(line, "# ERROR") {
			return i + 1
		}
	}
	t.Fatal("test file has no # ERROR marker")
	return 0
}

// TestLoadFileErrors checks that each bad file gives a FileError naming that
// file and the line of the bad value.
func TestLoadFileErrors(t *testing.T) {
	const goodLimits = "defaults:\n  container_hold_after_stop_h: 0.5\ngroups:\n  student: {}\n  researcher: {}\n"
	tests := []struct {
		name    string
		files   map[string]string // name -> content; resource-limits.yaml defaults to goodLimits
		dirs    []string          // directories to create (to make a read fail)
		badFile string
		line    int // 0: take it from the "# ERROR" marker in badFile
		msg     string
	}{
		{
			name:    "syntax error",
			files:   map[string]string{"resource-limits.yaml": "defaults:\n  a: 1\n  b: @x  # ERROR\n"},
			badFile: "resource-limits.yaml", msg: "invalid YAML: found character that cannot start any token",
		},
		{
			name:    "tab indentation",
			files:   map[string]string{"user-overrides.yaml": "alice:\n\tidle_timeout_h: 1  # ERROR\n"},
			badFile: "user-overrides.yaml", msg: "invalid YAML",
		},
		{
			name:    "unterminated string",
			files:   map[string]string{"lifecycle-exemptions.yaml": "exemptions:\n  - username: \"alice\n"},
			badFile: "lifecycle-exemptions.yaml", line: 2, msg: "invalid YAML",
		},
		{
			name: "duration abc",
			files: map[string]string{"resource-limits.yaml": `defaults:
  max_cpus: 32
  container_hold_after_stop_h: "abc"  # ERROR
`},
			badFile: "resource-limits.yaml", msg: `defaults.container_hold_after_stop_h: cannot use "abc"`,
		},
		{
			name: "duration with a unit",
			files: map[string]string{"resource-limits.yaml": `policies:
  created_container_timeout_m: 30m  # ERROR
`},
			badFile: "resource-limits.yaml", msg: "policies.created_container_timeout_m",
		},
		{
			name: "duration that is a mapping",
			files: map[string]string{"resource-limits.yaml": `groups:
  researcher:
    max_runtime_h:
      hours: 48  # ERROR
`},
			badFile: "resource-limits.yaml", msg: "groups.researcher.max_runtime_h: want a number or null, got a mapping",
		},
		{
			name: "duration in a container type",
			files: map[string]string{"resource-limits.yaml": `container_types:
  docker: {idle_timeout_h: true}  # ERROR
`},
			badFile: "resource-limits.yaml", msg: "container_types.docker.idle_timeout_h",
		},
		{
			name: "duration in inline user_overrides",
			files: map[string]string{"resource-limits.yaml": `user_overrides:
  alice:
    idle_timeout_h: [1]  # ERROR
`},
			badFile: "resource-limits.yaml", msg: "user_overrides.alice.idle_timeout_h",
		},
		{
			name: "duration in user-overrides.yaml",
			files: map[string]string{"user-overrides.yaml": `alice:
  container_hold_after_stop_h: 1
bob:
  container_hold_after_stop_h: forever  # ERROR
`},
			badFile: "user-overrides.yaml", msg: "bob.container_hold_after_stop_h",
		},
		{
			name:    "top-level list",
			files:   map[string]string{"resource-limits.yaml": "# limits\n- defaults  # ERROR\n- groups\n"},
			badFile: "resource-limits.yaml", msg: "top level must be a mapping, got a list",
		},
		{
			name:    "two documents",
			files:   map[string]string{"resource-limits.yaml": "defaults: {}\n---  # ERROR\ngroups: {}\n"},
			badFile: "resource-limits.yaml", msg: "more than one YAML document",
		},
		{
			name:    "top-level scalar in overrides",
			files:   map[string]string{"user-overrides.yaml": "just text  # ERROR\n"},
			badFile: "user-overrides.yaml", msg: "top level must be a mapping",
		},
		{
			name:    "section of the wrong type",
			files:   map[string]string{"resource-limits.yaml": "defaults: [1, 2]  # ERROR\n"},
			badFile: "resource-limits.yaml", msg: "defaults: want a mapping, got a list",
		},
		{
			name:    "override entry that is not a mapping",
			files:   map[string]string{"user-overrides.yaml": "alice: 5  # ERROR\n"},
			badFile: "user-overrides.yaml", msg: "want a mapping",
		},
		{
			name:    "repeated key",
			files:   map[string]string{"resource-limits.yaml": "defaults:\n  idle_timeout_h: 1\n  idle_timeout_h: 2  # ERROR\n"},
			badFile: "resource-limits.yaml", msg: `key "idle_timeout_h" is repeated (first at line 2)`,
		},
		{
			name:    "inline members not a list",
			files:   map[string]string{"resource-limits.yaml": "groups:\n  student:\n    members: alice  # ERROR\n"},
			badFile: "resource-limits.yaml", msg: "groups.student.members: want a list",
		},
		{
			name:    "unreadable members file",
			dirs:    []string{"groups/researcher.members"},
			badFile: "groups/researcher.members", msg: "cannot read",
		},
		{
			name: "bad expires_on",
			files: map[string]string{"lifecycle-exemptions.yaml": `exemptions:
  - username: alice
    exempt_from: [idle_timeout_h]
    expires_on: "end of June"  # ERROR
`},
			badFile: "lifecycle-exemptions.yaml", msg: `exemptions[0].expires_on: cannot read a string "end of June" as a date`,
		},
		{
			name: "expires_on that is a number",
			files: map[string]string{"lifecycle-exemptions.yaml": `exemptions:
  - username: alice
    exempt_from: [idle_timeout_h]
    expires_on: 20260630  # ERROR
`},
			badFile: "lifecycle-exemptions.yaml", msg: "exemptions[0].expires_on",
		},
		{
			name: "exemption without username",
			files: map[string]string{"lifecycle-exemptions.yaml": `exemptions:
  - username: alice
    exempt_from: [idle_timeout_h]
  - exempt_from: [idle_timeout_h]  # ERROR
`},
			badFile: "lifecycle-exemptions.yaml", msg: "exemptions[1]: no username",
		},
		{
			name:    "exemptions not a list",
			files:   map[string]string{"lifecycle-exemptions.yaml": "exemptions:\n  alice: [idle_timeout_h]  # ERROR\n"},
			badFile: "lifecycle-exemptions.yaml", msg: "exemptions: want a list",
		},
		{
			name:    "group name that is a path",
			files:   map[string]string{"resource-limits.yaml": "groups:\n  ../etc: {}  # ERROR\n"},
			badFile: "resource-limits.yaml", msg: `group name "../etc" cannot name a members file`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"resource-limits.yaml": goodLimits}
			for name, content := range tt.files {
				files[name] = content
			}
			for name, content := range files {
				writeFile(t, dir, name, content)
			}
			for _, d := range tt.dirs {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(Files{
				LimitsFile:     filepath.Join(dir, "resource-limits.yaml"),
				GroupsDir:      filepath.Join(dir, "groups"),
				OverridesFile:  filepath.Join(dir, "user-overrides.yaml"),
				ExemptionsFile: filepath.Join(dir, "lifecycle-exemptions.yaml"),
			})
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Load error = %v (%T), want a *FileError", err, err)
			}
			if want := filepath.Join(dir, tt.badFile); fe.Path != want {
				t.Errorf("Path = %q, want %q", fe.Path, want)
			}
			line := tt.line
			if line == 0 && tt.files[tt.badFile] != "" {
				line = markedLine(t, tt.files[tt.badFile])
			}
			if fe.Line != line {
				t.Errorf("Line = %d, want %d (error: %v)", fe.Line, line, fe)
			}
			if !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("Msg = %q, want it to contain %q", fe.Msg, tt.msg)
			}
		})
	}
}

func TestLoadMissingLimitsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resource-limits.yaml")
	_, err := Load(Files{LimitsFile: path})
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != path {
		t.Fatalf("Load error = %v, want a FileError for %s", err, path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = false for %v", err)
	}
}

func TestLoadEmptyFiles(t *testing.T) {
	for _, content := range []string{"", "\n\n", "# only a comment\n# and another\n", "---\n", "~\n", "null\n"} {
		dir := t.TempDir()
		model, err := Load(Files{
			LimitsFile:     writeFile(t, dir, "resource-limits.yaml", content),
			OverridesFile:  writeFile(t, dir, "user-overrides.yaml", content),
			ExemptionsFile: writeFile(t, dir, "lifecycle-exemptions.yaml", content),
		})
		if err != nil {
			t.Errorf("Load(%q): %v", content, err)
			continue
		}
		if got := model.ContainerHold("alice", true, ""); got != lim(30*m, "built-in default") {
			t.Errorf("Load(%q): hold = %+v, want the 30m built-in", content, got)
		}
		if model.UserGroup("alice") != "student" {
			t.Errorf("Load(%q): group = %q", content, model.UserGroup("alice"))
		}
	}
}

// TestLoadNullSections: null where a mapping belongs is an empty mapping.
func TestLoadNullSections(t *testing.T) {
	model := loadString(t, `
defaults:
default_group:
groups:
  student:
  researcher:
    members:
user_overrides:
  alice:
policies:
container_types:
  docker:
monitoring:
`)
	if got := model.UserGroup("alice"); got != "override" {
		t.Errorf("alice group = %q, want override", got)
	}
	if got := model.UserGroup("bob"); got != "student" {
		t.Errorf("bob group = %q, want student", got)
	}
	if got := model.ContainerHold("bob", true, ""); got != lim(30*m, "built-in default") {
		t.Errorf("hold = %+v", got)
	}
}

// TestLoadIgnoresOtherKeys: non-duration keys and unread sections may hold
// anything, including values that would not parse as durations.
func TestLoadIgnoresOtherKeys(t *testing.T) {
	model := loadString(t, `
defaults:
  memory: 32g
  max_cpus: 32
  allow_full_gpu: true
  container_hold_after_stop_h: 1
groups:
  student:
    aggregate: {cpu_quota: "9600%"}
    policies: {cpu_idle_threshold: 2.0}
bare_metal_access:
  default_grant_duration_h: "a day"
gpu_allocation: [whatever]
`)
	if got := model.ContainerHold("x", true, ""); got.Duration != h {
		t.Errorf("hold = %+v", got)
	}
}

func TestMergeKeys(t *testing.T) {
	model := loadString(t, `
x-base: &base
  idle_timeout_h: 1
  max_runtime_h: 10
x-more: &more
  max_runtime_h: 11
  gpu_hold_after_stop_h: 2
x-hold: &hold 3
groups:
  lab:
    <<: [*base, *more]
    max_runtime_h: 20
    members: [ann]
defaults:
  container_hold_after_stop_h: *hold
`)
	tests := []struct {
		key  string
		want time.Duration
	}{
		{"idle_timeout_h", h},                  // from the merge
		{"max_runtime_h", 20 * h},              // written in the mapping: wins over both merges
		{"gpu_hold_after_stop_h", 2 * h},       // from the second merge source
		{"container_hold_after_stop_h", 3 * h}, // alias
	}
	for _, tt := range tests {
		got, err := model.Lookup("ann", tt.key)
		if err != nil || got.Duration != tt.want {
			t.Errorf("Lookup(ann, %s) = %+v, %v; want %v", tt.key, got, err, tt.want)
		}
	}
}

// TestMergeBomb: merge keys that would expand to 9^12 keys are refused quickly.
func TestMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("l0: &l0 {a_h: 1}\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "l%d: &l%d {<<: [", i, i)
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]}\n")
	}
	b.WriteString("defaults: {<<: *l12}\n")
	path := writeFile(t, t.TempDir(), "resource-limits.yaml", b.String())
	start := time.Now()
	_, err := Load(Files{LimitsFile: path})
	var fe *FileError
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "expanding too far") {
		t.Fatalf("Load error = %v, want a FileError about merge keys", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Load took %v", d)
	}
}

func TestFileErrorString(t *testing.T) {
	tests := []struct {
		e    FileError
		want string
	}{
		{FileError{Path: "a.yaml", Line: 3, Column: 5, Msg: "bad"}, "a.yaml:3:5: bad"},
		{FileError{Path: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{FileError{Path: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
		{FileError{Path: "a.yaml", Column: 5, Msg: "bad"}, "a.yaml: bad"},
		{FileError{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
}
