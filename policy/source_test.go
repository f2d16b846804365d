package policy

import (
	"path/filepath"
	"testing"
	"time"
)

func fixtureFiles(t *testing.T) Files {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "cleanup"))
	if err != nil {
		t.Fatal(err)
	}
	return Files{
		LimitsFile:     filepath.Join(dir, "resource-limits.yaml"),
		GroupsDir:      filepath.Join(dir, "groups"),
		OverridesFile:  filepath.Join(dir, "user-overrides.yaml"),
		ExemptionsFile: filepath.Join(dir, "lifecycle-exemptions.yaml"),
	}
}

// TestLocateEverySource locates the Source of every limit the fixture's
// model gives, so a new kind of Source without a position shows up here.
func TestLocateEverySource(t *testing.T) {
	files := fixtureFiles(t)
	m, err := Load(files)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		limit Limit
		file  string
		line  int
	}{
		{m.ContainerHold("rita", true, "docker"), "resource-limits.yaml", 122},
		{m.ContainerHold("alice", true, "docker"), "resource-limits.yaml", 76},
		{m.ContainerHold("zero", true, "docker"), "user-overrides.yaml", 8},
		{m.ContainerHold("", false, "compose"), "resource-limits.yaml", 265},
	}
	for _, tt := range tests {
		pos, ok := Locate(files, tt.limit.Source)
		if !ok || filepath.Base(pos.File) != tt.file || pos.Line != tt.line {
			t.Errorf("Locate(%q) = %v, %v; want %s:%d", tt.limit.Source, pos, ok, tt.file, tt.line)
		}
	}
	if pos, ok := Locate(files, "built-in default"); ok {
		t.Errorf("a built-in value has no position, got %v", pos)
	}
}

func TestMemberAndExemptionPositions(t *testing.T) {
	files := fixtureFiles(t)
	if pos, ok := MemberPosition(files, "researcher", "rita"); !ok || filepath.Base(pos.File) != "researcher.members" || pos.Line != 2 {
		t.Errorf("rita's membership at %v, %v", pos, ok)
	}
	if _, ok := MemberPosition(files, "faculty", "rita"); ok {
		t.Error("rita is no faculty member")
	}
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	if pos, ok := ExemptionPosition(files, "keeper", "container_hold_after_stop_h", now); !ok || pos.Line != 10 {
		t.Errorf("keeper's exemption at %v, %v; want line 10", pos, ok)
	}
	if _, ok := ExemptionPosition(files, "keeper", "container_hold_after_stop_h", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)); ok {
		t.Error("an expired exemption has no position: it does not apply")
	}
	if _, ok := ExemptionPosition(files, "alice", "container_hold_after_stop_h", now); ok {
		t.Error("alice is exempt from idle and runtime only")
	}
}
