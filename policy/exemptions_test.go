package policy

import (
	"path/filepath"
	"testing"
	"time"
)

func TestExemption(t *testing.T) {
	model := loadDS01(t)
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name, user, key, now string
		exempt               bool
		reason               string
	}{
		{"permanent", "alice", "idle_timeout_h", "2030-01-01T00:00:00Z", true,
			"Permanent exemption: continuous model training"},
		{"permanent, other key", "alice", "max_runtime_h", "2030-01-01T00:00:00Z", true,
			"Permanent exemption: continuous model training"},
		{"key not listed", "alice", "container_hold_after_stop_h", "2030-01-01T00:00:00Z", false, ""},
		{"exact username only", "Alice", "idle_timeout_h", "2030-01-01T00:00:00Z", false, ""},
		{"no one", "zed", "idle_timeout_h", "2030-01-01T00:00:00Z", false, ""},
		// bob: the first entry expired; the walk goes on to the renewed one.
		{"expired then renewed", "bob", "max_runtime_h", "2026-03-01T00:00:00Z", true,
			"Temporary exemption until 2026-06-30T23:59:59+02:00: renewed grant"},
		{"first still valid", "bob", "max_runtime_h", "2026-01-15T00:00:00Z", true,
			"Temporary exemption until 2026-01-31T23:59:59Z: expired grant"},
		{"offset honoured, before", "bob", "max_runtime_h", "2026-06-30T21:59:58Z", true,
			"Temporary exemption until 2026-06-30T23:59:59+02:00: renewed grant"},
		{"offset honoured, at expiry", "bob", "max_runtime_h", "2026-06-30T21:59:59Z", false, ""},
		// carol: unquoted YAML date 2026-03-15, valid through that whole UTC day.
		{"date, last second of the day", "carol", "idle_timeout_h", "2026-03-15T23:59:59Z", true,
			"Temporary exemption until 2026-03-15: teaching demo"},
		{"date, next day", "carol", "idle_timeout_h", "2026-03-16T00:00:00Z", false, ""},
		// dave: offset-less string means UTC; no reason given.
		{"naive string, before", "dave", "idle_timeout_h", "2026-04-01T11:59:59Z", true,
			"Temporary exemption until 2026-04-01T12:00:00: No reason provided"},
		{"naive string, after", "dave", "idle_timeout_h", "2026-04-01T12:00:00Z", false, ""},
		// now in another zone is the same instant.
		{"now with offset", "dave", "idle_timeout_h", "2026-04-01T13:59:59+02:00", true,
			"Temporary exemption until 2026-04-01T12:00:00: No reason provided"},
		// erin: unquoted YAML timestamp with offset; exempt_from a lone key.
		{"yaml timestamp, before", "erin", "max_runtime_h", "2026-05-01T05:59:59Z", true,
			"Temporary exemption until 2026-05-01T08:00:00+02:00: benchmark"},
		{"yaml timestamp, after", "erin", "max_runtime_h", "2026-05-01T06:00:00Z", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exempt, reason := model.Exemption(tt.user, tt.key, at(tt.now))
			if exempt != tt.exempt || reason != tt.reason {
				t.Errorf("Exemption(%q, %q, %s) = %v, %q; want %v, %q",
					tt.user, tt.key, tt.now, exempt, reason, tt.exempt, tt.reason)
			}
		})
	}
}

func TestParseExpiry(t *testing.T) {
	tests := []struct {
		text string
		want string // RFC3339 in UTC; "" = must not parse
	}{
		{"2026-06-30T23:59:59Z", "2026-06-30T23:59:59Z"},
		{"2026-06-30T23:59:59+02:00", "2026-06-30T21:59:59Z"},
		{"2026-06-30T23:59:59+0200", "2026-06-30T21:59:59Z"},
		{"2026-06-30T23:59:59.5Z", "2026-06-30T23:59:59Z"}, // fraction kept, printed without
		{"2026-06-30T23:59:59", "2026-06-30T23:59:59Z"},
		{"2026-06-30 23:59:59", "2026-06-30T23:59:59Z"},
		{"2026-06-30t23:59:59z", ""},
		{"2026-06-30T23:59", "2026-06-30T23:59:00Z"},
		{"2026-06-30", "2026-07-01T00:00:00Z"},
		{"2026-6-3", "2026-06-04T00:00:00Z"},
		{" 2026-06-30 ", "2026-07-01T00:00:00Z"},
		{"2026-02-30", ""},
		{"30.06.2026", ""},
		{"never", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, ok := parseExpiry(tt.text)
		if tt.want == "" {
			if ok {
				t.Errorf("parseExpiry(%q) = %v, want failure", tt.text, got)
			}
			continue
		}
		if !ok {
			t.Errorf("parseExpiry(%q) failed, want %s", tt.text, tt.want)
			continue
		}
		if s := got.UTC().Truncate(time.Second).Format(time.RFC3339); s != tt.want {
			t.Errorf("parseExpiry(%q) = %s, want %s", tt.text, s, tt.want)
		}
	}
}

func TestNoExemptions(t *testing.T) {
	for _, content := range []string{"", "# none yet\n", "exemptions:\n", "exemptions: []\n", "other: 1\n"} {
		dir := t.TempDir()
		model, err := Load(Files{ExemptionsFile: writeFile(t, dir, "lifecycle-exemptions.yaml", content)})
		if err != nil {
			t.Errorf("Load(%q): %v", content, err)
			continue
		}
		if exempt, _ := model.Exemption("alice", "idle_timeout_h", time.Now()); exempt {
			t.Errorf("Load(%q): alice exempt", content)
		}
	}
	model, err := Load(Files{ExemptionsFile: filepath.Join(t.TempDir(), "absent.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if exempt, _ := model.Exemption("alice", "idle_timeout_h", time.Now()); exempt {
		t.Error("missing file: alice exempt")
	}
}
