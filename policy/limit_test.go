package policy

import (
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// valueNode parses `v: <text>` and returns the node of v.
func valueNode(t *testing.T, text string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("v: "+text+"\n"), &doc); err != nil {
		t.Fatalf("bad test YAML %q: %v", text, err)
	}
	return doc.Content[0].Content[1]
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		text      string
		key       string
		want      time.Duration
		unlimited bool
		wantErr   bool
	}{
		{text: "0.5", key: "x_h", want: 30 * time.Minute},
		{text: "0.25", key: "x_h", want: 15 * time.Minute},
		{text: "24", key: "x_h", want: 24 * time.Hour},
		{text: "30", key: "x_m", want: 30 * time.Minute},
		{text: "60", key: "x_s", want: time.Minute},
		{text: "1.5", key: "x_m", want: 90 * time.Second},
		{text: "0.7", key: "x_h", want: 42 * time.Minute},         // exact decimal, no float noise
		{text: "0.0001", key: "x_h", want: 0},                     // 0.36 s truncates to 0
		{text: "1.9999", key: "x_s", want: time.Second},           // toward zero
		{text: "-1.9999", key: "x_s", want: -time.Second},         // toward zero, negative
		{text: "1e3", key: "x_s", want: 1000 * time.Second},       // exponent
		{text: "0x10", key: "x_s", want: 16 * time.Second},        // YAML int spellings
		{text: "0", key: "x_h", want: 0},                          // 0 is "now", not unlimited
		{text: "-1", key: "x_h", want: -time.Hour},                // negative is not the sentinel
		{text: `"0.5"`, key: "x_h", want: 30 * time.Minute},       // quoted number, as DS01 read text
		{text: `" 2 "`, key: "x_h", want: 2 * time.Hour},          // trimmed
		{text: "null", key: "x_h", unlimited: true},               //
		{text: "~", key: "x_h", unlimited: true},                  //
		{text: "", key: "x_h", unlimited: true},                   // empty value is null
		{text: `""`, key: "x_h", unlimited: true},                 // empty string
		{text: "None", key: "x_h", unlimited: true},               //
		{text: "NEVER", key: "x_h", unlimited: true},              //
		{text: `" indefinite "`, key: "x_h", unlimited: true},     //
		{text: `"null"`, key: "x_h", unlimited: true},             //
		{text: `"24h"`, key: "x_h", wantErr: true},                // DS01: silently 0
		{text: "30m", key: "x_m", wantErr: true},                  //
		{text: "abc", key: "x_h", wantErr: true},                  //
		{text: "true", key: "x_h", wantErr: true},                 //
		{text: "{a: 1}", key: "x_h", wantErr: true},               //
		{text: "[1]", key: "x_h", wantErr: true},                  //
		{text: ".inf", key: "x_h", wantErr: true},                 // crashed DS01
		{text: "-.inf", key: "x_h", wantErr: true},                //
		{text: ".nan", key: "x_h", wantErr: true},                 //
		{text: `"inf"`, key: "x_h", wantErr: true},                //
		{text: "2026-01-01", key: "x_h", wantErr: true},           // a date
		{text: "9999999999", key: "x_h", wantErr: true},           // out of range
		{text: "99999999999999999999", key: "x_s", wantErr: true}, // beyond int64
		{text: "1e999", key: "x_s", wantErr: true},                //
		{text: "5", key: "max_cpus", wantErr: true},               // no unit suffix
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.text, func(t *testing.T) {
			got, err := ParseDuration(valueNode(t, tt.text), tt.key)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseDuration(%s) = %+v, want an error", tt.text, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDuration(%s): %v", tt.text, err)
			}
			want := Limit{Duration: tt.want, Unlimited: tt.unlimited}
			if got != want {
				t.Errorf("ParseDuration(%s) = %+v, want %+v", tt.text, got, want)
			}
		})
	}
}

func TestParseDurationNilNode(t *testing.T) {
	got, err := ParseDuration(nil, "x_h")
	if err != nil || !got.Unlimited {
		t.Errorf("ParseDuration(nil) = %+v, %v; want Unlimited", got, err)
	}
}

func TestLimitString(t *testing.T) {
	tests := []struct {
		l    Limit
		want string
	}{
		{Limit{Unlimited: true}, "never"},
		{Limit{Duration: 30 * time.Minute}, "30m"},
		{Limit{Duration: 90 * time.Minute}, "1h30m"},
		{Limit{Duration: time.Hour}, "1h"},
		{Limit{Duration: 24 * time.Hour}, "24h"},
		{Limit{Duration: -time.Hour}, "-1h"},
		{Limit{Duration: 0}, "0s"},
		{Limit{Duration: 45 * time.Second}, "45s"},
		{Limit{Duration: 61 * time.Minute}, "1h1m"},
		{Limit{Duration: time.Hour + time.Second}, "1h0m1s"},
	}
	for _, tt := range tests {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.l, got, tt.want)
		}
	}
}
