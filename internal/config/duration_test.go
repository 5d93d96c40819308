package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string // substring; "" = no error
	}{
		{"5m", 5 * time.Minute, ""},
		{"300s", 300 * time.Second, ""},
		{"0s", 0, ""},
		{"48h", 48 * time.Hour, ""},
		{"2d", 48 * time.Hour, ""},
		{"35d", 35 * 24 * time.Hour, ""},
		{"5w", 35 * 24 * time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"2d12h", 60 * time.Hour, ""},
		{"1w1d1h1m1s", 8*24*time.Hour + time.Hour + time.Minute + time.Second, ""},
		{"", 0, "empty duration"},
		{"300", 0, `"300": missing unit`},
		{"0", 0, `"0": missing unit`},
		{"-5m", 0, "negative"},
		{"35x", 0, `unknown unit "x"`},
		{"5 m", 0, `unknown unit " m"`},
		{"1.5h", 0, "fractions are not supported"},
		{"5M", 0, `unknown unit "M"`},
		{"1h30", 0, `missing unit after "30"`},
		{"h", 0, `expected a whole number at "h"`},
		{"+5m", 0, "expected a whole number"},
		{"5ms", 5 * time.Millisecond, ""},
		{"300ms", 300 * time.Millisecond, ""},
		{"1s500ms", 1500 * time.Millisecond, ""},
		{"1m1ms", time.Minute + time.Millisecond, ""},
		{"5mss", 0, `expected a whole number at "s"`},
		{"5us", 0, `unknown unit "us"`},
		{"5msm", 0, `expected a whole number at "m"`},
		{"99999999999999999999s", 0, "too large"},
		{"106752d", 0, "too large"},
		{"106751d106751d", 0, "too large"},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseDuration(%q): unexpected error %v", tc.in, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseDuration(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
		case got != tc.want:
			t.Errorf("ParseDuration(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if _, err := ParseDuration("42"); !errors.Is(err, errNoUnit) {
		t.Errorf("bare number error %v is not errNoUnit", err)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{time.Second, "1s"},
		{5 * time.Minute, "5m"},
		{330 * time.Second, "5m30s"},
		{48 * time.Hour, "2d"},
		{35 * 24 * time.Hour, "35d"},
		{25*time.Hour + 1500*time.Millisecond, "1d1h1s500ms"},
		{250 * time.Millisecond, "250ms"},
		{time.Minute + time.Millisecond, "1m1ms"},
	}
	for _, tc := range tests {
		got := FormatDuration(tc.in)
		if got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := ParseDuration(got)
		if err != nil || back != tc.in.Truncate(time.Millisecond) {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", tc.in, back, err)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"5m", "2d12h", "300", "-1s", "35x", "1w1d1h1m1s", "250ms", "1s500ms", "5mss"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, but FormatDuration gives %q → %v, %v", s, d, FormatDuration(d), back, err)
		}
	})
}
