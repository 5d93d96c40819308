package store

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestParseValue(t *testing.T) {
	tests := []struct {
		in   string
		a, b int64
		ok   bool
	}{
		{"1763812500,1763812800", 1763812500, 1763812800, true},
		{"0,0", 0, 0, true},
		{"5,-1", 5, -1, true},
		{"-0,-0", 0, 0, true},
		{"007,08", 7, 8, true},
		{"9007199254740991,-9007199254740991", MaxValue, -MaxValue, true},
		{"0000000001763812800,1", 1763812800, 1, true}, // 19 digits
		{"", 0, 0, false},
		{",", 0, 0, false},
		{"1,", 0, 0, false},
		{",1", 0, 0, false},
		{"1", 0, 0, false},
		{"1,2,3", 0, 0, false},
		{"+1,2", 0, 0, false},
		{"-,2", 0, 0, false},
		{"--1,2", 0, 0, false},
		{"1 ,2", 0, 0, false},
		{" 1,2", 0, 0, false},
		{"1,2\n", 0, 0, false},
		{"1e3,2", 0, 0, false},
		{"0x10,2", 0, 0, false},
		{"1.0,2", 0, 0, false},
		// Past what a double holds exactly: Lua would round them.
		{"9007199254740992,0", 0, 0, false},
		{"0,-9007199254740992", 0, 0, false},
		{"9007199254740993,0", 0, 0, false},
		{"9223372036854775807,-9223372036854775808", 0, 0, false},
		{"9223372036854775808,0", 0, 0, false},
		// More than 19 digits, whatever their value.
		{"00000000001763812800,1", 0, 0, false},
		{"1,-00000000000000000001", 0, 0, false},
		{"99999999999999999999,0", 0, 0, false},
		{"1763812500", 0, 0, false}, // Postgrey < 1.0 stored "last" only
	}
	for _, tc := range tests {
		a, b, ok := ParseValue(tc.in)
		if a != tc.a || b != tc.b || ok != tc.ok {
			t.Errorf("ParseValue(%q) = %d, %d, %v; want %d, %d, %v", tc.in, a, b, ok, tc.a, tc.b, tc.ok)
		}
	}
}

func TestAppendValue(t *testing.T) {
	for _, p := range [][2]int64{{0, 0}, {1763812500, 1763812800}, {-MaxValue, MaxValue}, {-1, 1}} {
		s := string(AppendValue(nil, p[0], p[1]))
		if want := strconv.FormatInt(p[0], 10) + "," + strconv.FormatInt(p[1], 10); s != want {
			t.Errorf("AppendValue(%d, %d) = %q; want %q", p[0], p[1], s, want)
		}
		if a, b, ok := ParseValue(s); !ok || a != p[0] || b != p[1] {
			t.Errorf("ParseValue(%q) = %d, %d, %v; want %d, %d, true", s, a, b, ok, p[0], p[1])
		}
	}
}

func TestValidNumber(t *testing.T) {
	for v, want := range map[int64]bool{
		0: true, MaxValue: true, -MaxValue: true, 1763812800: true,
		MaxValue + 1: false, -MaxValue - 1: false, math.MaxInt64: false, math.MinInt64: false,
	} {
		if got := ValidNumber(v); got != want {
			t.Errorf("ValidNumber(%d) = %v, want %v", v, got, want)
		}
		if _, _, ok := ParseValue(string(AppendValue(nil, v, 0))); ok != want {
			t.Errorf("ParseValue of %d: ok %v, ValidNumber says %v", v, ok, want)
		}
	}
}

func TestParseValueAllocs(t *testing.T) {
	for _, in := range []string{"1763812500,1763812800", "garbage", "1,99999999999999999999"} {
		if n := testing.AllocsPerRun(100, func() { ParseValue(in) }); n != 0 {
			t.Errorf("ParseValue(%q): %v allocs; want 0", in, n)
		}
	}
}

// FuzzParseValue: a stored value is whatever the file holds; parsing it
// must never panic, and what it accepts must mean what strconv says,
// within the bounds.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{"1763812500,1763812800", "0,0", "-1,-0", "", ",", "1,2,3", "\xff,1", "99999999999999999999,1", "9007199254740992,1", "0000000000000000001,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b, ok := ParseValue(s)
		sa, sb, found := strings.Cut(s, ",")
		wa, errA := strconv.ParseInt(sa, 10, 64)
		wb, errB := strconv.ParseInt(sb, 10, 64)
		want := found && errA == nil && errB == nil && ValidNumber(wa) && ValidNumber(wb) &&
			len(strings.TrimPrefix(sa, "-")) <= 19 && len(strings.TrimPrefix(sb, "-")) <= 19 &&
			!strings.HasPrefix(sa, "+") && !strings.HasPrefix(sb, "+")
		if ok != want || ok && (wa != a || wb != b) {
			t.Fatalf("ParseValue(%q) = %d, %d, %v; strconv: %d (%v), %d (%v)", s, a, b, ok, wa, errA, wb, errB)
		}
		if !ok {
			return
		}
		if a2, b2, ok2 := ParseValue(string(AppendValue(nil, a, b))); !ok2 || a2 != a || b2 != b {
			t.Fatalf("round trip of %d, %d gave %d, %d, %v", a, b, a2, b2, ok2)
		}
	})
}
