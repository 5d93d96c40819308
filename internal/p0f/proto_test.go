package p0f

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func TestAppendQuery(t *testing.T) {
	ne := binary.NativeEndian
	tests := []struct {
		addr string
		typ  byte
		want []byte // the 16 address bytes
	}{
		{"192.0.2.1", 4, []byte{192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"::ffff:192.0.2.1", 4, []byte{192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"2001:db8::1", 6, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
	}
	for _, tc := range tests {
		q, err := AppendQuery(nil, netip.MustParseAddr(tc.addr))
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		if len(q) != QuerySize || ne.Uint32(q) != QueryMagic || q[4] != tc.typ || !bytes.Equal(q[5:], tc.want) {
			t.Errorf("%s: query % x", tc.addr, q)
		}
		back, err := ParseQuery(q)
		if err != nil || back != netip.MustParseAddr(tc.addr).Unmap() {
			t.Errorf("%s: ParseQuery = %v, %v", tc.addr, back, err)
		}
	}
	if _, err := AppendQuery(nil, netip.Addr{}); err == nil {
		t.Error("a query without an address was made")
	}
}

func TestParseAnswer(t *testing.T) {
	ok := Answer{Status: StatusOK, FirstSeen: 1, LastSeen: 2, TotalConn: 3, UptimeMin: 4, UpModDays: 5,
		LastNAT: 6, LastChange: 7, Distance: -1, BadSW: 1, OSMatchQ: 2,
		OSName: "Windows", OSFlavor: "7 or 8", HTTPName: "h", HTTPFlavor: "f", LinkType: "Ethernet or modem", Language: "English"}
	good := AppendAnswer(nil, ok)
	if len(good) != AnswerSize {
		t.Fatalf("AppendAnswer wrote %d bytes", len(good))
	}
	// p0f's layout: distance at 36, the strings from 40, language last.
	if int16(binary.NativeEndian.Uint16(good[36:])) != -1 || good[40] != 'W' || good[40+5*32] != 'E' {
		t.Fatalf("layout: % x", good)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
		want Answer
		err  error
	}{
		{"ok", good, ok, nil},
		{"no match", AppendAnswer(nil, Answer{Status: StatusNoMatch}), Answer{Status: StatusNoMatch}, nil},
		{"no match ignores the rest", edit(func(b []byte) []byte { b[4] = 0x20; b[40+31] = 'x'; return b }), Answer{Status: StatusNoMatch}, nil},
		{"bad query", AppendAnswer(nil, Answer{Status: StatusBadQuery}), Answer{Status: StatusBadQuery}, ErrBadQuery},
		{"short", good[:231], Answer{}, ErrGarbage},
		{"long", append(append([]byte(nil), good...), 0), Answer{}, ErrGarbage},
		{"empty", nil, Answer{}, ErrGarbage},
		{"query magic", edit(func(b []byte) []byte { binary.NativeEndian.PutUint32(b, QueryMagic); return b }), Answer{}, ErrGarbage},
		{"byte-swapped magic", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b, binary.LittleEndian.Uint32(b)); return b }), Answer{}, ErrGarbage},
		{"unknown status", edit(func(b []byte) []byte { b[4] = 0x11; return b }), Answer{}, ErrGarbage},
		{"os_name without NUL", edit(func(b []byte) []byte { copy(b[40:72], bytes.Repeat([]byte{'a'}, 32)); return b }), Answer{}, ErrGarbage},
		{"language without NUL", edit(func(b []byte) []byte { copy(b[200:], bytes.Repeat([]byte{'a'}, 32)); return b }), Answer{}, ErrGarbage},
		{"control character", edit(func(b []byte) []byte { b[41] = '\n'; return b }), Answer{}, ErrGarbage},
		{"invalid UTF-8", edit(func(b []byte) []byte { b[41] = 0xff; return b }), Answer{}, ErrGarbage},
	}
	for _, tc := range tests {
		got, err := ParseAnswer(tc.in)
		if !errors.Is(err, tc.err) || (err == nil || tc.err == ErrBadQuery) && got != tc.want {
			t.Errorf("%s: ParseAnswer = %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func FuzzParseAnswer(f *testing.F) {
	f.Add(AppendAnswer(nil, Answer{Status: StatusOK, OSName: "Linux", OSFlavor: "3.11 and newer", Distance: 0}))
	f.Add(AppendAnswer(nil, Answer{Status: StatusNoMatch}))
	f.Add(AppendAnswer(nil, Answer{Status: StatusBadQuery}))
	f.Add([]byte("P0F\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAnswer(b)
		if err != nil {
			if a != (Answer{}) && !errors.Is(err, ErrBadQuery) {
				t.Fatalf("an error with an answer: %+v, %v", a, err)
			}
			return
		}
		if len(b) != AnswerSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		// What was accepted writes back to what parses the same.
		again, err := ParseAnswer(AppendAnswer(nil, a))
		if err != nil || again != a {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, a)
		}
		for _, s := range []string{a.OSName, a.OSFlavor, a.HTTPName, a.HTTPFlavor, a.LinkType, a.Language} {
			if len(s) > 31 || bytes.ContainsFunc([]byte(s), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("accepted string %q", s)
			}
		}
	})
}
