package buntdb

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestDecodePair(t *testing.T) {
	tests := []struct {
		in   string
		a, b int64
		ok   bool
	}{
		{"1763812500,1763812800", 1763812500, 1763812800, true},
		{"0,0", 0, 0, true},
		{"5,-1", 5, -1, true},
		{"9223372036854775807,-9223372036854775808", math.MaxInt64, math.MinInt64, true},
		{"007,08", 7, 8, true},
		{"", 0, 0, false},
		{",", 0, 0, false},
		{"1,", 0, 0, false},
		{",1", 0, 0, false},
		{"1", 0, 0, false},
		{"1,2,3", 0, 0, false},
		{"+1,2", 0, 0, false},
		{"-,2", 0, 0, false},
		{"1 ,2", 0, 0, false},
		{"1,2\n", 0, 0, false},
		{"9223372036854775808,0", 0, 0, false},
		{"0,-9223372036854775809", 0, 0, false},
		{"99999999999999999999,0", 0, 0, false},
		{"1763812500", 0, 0, false}, // Postgrey < 1.0 stored "last" only
	}
	for _, tc := range tests {
		a, b, ok := decodePair(tc.in)
		if a != tc.a || b != tc.b || ok != tc.ok {
			t.Errorf("decodePair(%q) = %d, %d, %v; want %d, %d, %v", tc.in, a, b, ok, tc.a, tc.b, tc.ok)
		}
	}
}

func TestAppendPair(t *testing.T) {
	for _, p := range [][2]int64{{0, 0}, {1763812500, 1763812800}, {math.MinInt64, math.MaxInt64}, {-1, 1}} {
		s := string(appendPair(nil, p[0], p[1]))
		if want := strconv.FormatInt(p[0], 10) + "," + strconv.FormatInt(p[1], 10); s != want {
			t.Errorf("appendPair(%d, %d) = %q; want %q", p[0], p[1], s, want)
		}
		if a, b, ok := decodePair(s); !ok || a != p[0] || b != p[1] {
			t.Errorf("decodePair(%q) = %d, %d, %v; want %d, %d, true", s, a, b, ok, p[0], p[1])
		}
	}
}

func TestDecodePairAllocs(t *testing.T) {
	for _, in := range []string{"1763812500,1763812800", "garbage", "1,99999999999999999999"} {
		if n := testing.AllocsPerRun(100, func() { decodePair(in) }); n != 0 {
			t.Errorf("decodePair(%q): %v allocs; want 0", in, n)
		}
	}
}

// FuzzDecodeValue: a stored value is whatever the file holds; decoding it
// must never panic, and what it accepts must mean what strconv says.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range []string{"1763812500,1763812800", "0,0", "-1,-0", "", ",", "1,2,3", "\xff,1", "99999999999999999999,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b, ok := decodePair(s)
		if !ok {
			return
		}
		sa, sb, _ := strings.Cut(s, ",")
		wa, errA := strconv.ParseInt(sa, 10, 64)
		wb, errB := strconv.ParseInt(sb, 10, 64)
		if errA != nil || errB != nil || wa != a || wb != b {
			t.Fatalf("decodePair(%q) = %d, %d; strconv: %d (%v), %d (%v)", s, a, b, wa, errA, wb, errB)
		}
		if a2, b2, ok2 := decodePair(string(appendPair(nil, a, b))); !ok2 || a2 != a || b2 != b {
			t.Fatalf("round trip of %d, %d gave %d, %d, %v", a, b, a2, b2, ok2)
		}
	})
}
