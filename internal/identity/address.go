package identity

import "net/netip"

// carriesAddress reports whether s, the labels left of the public suffix,
// carries the client's own address (rule 5). Access networks and hosting
// providers name a customer host after its address; mail providers number
// their hosts, and those numbers are not the client's address. Comparing
// with the actual address is what tells the two apart: "a9-92" is an
// Amazon SES host, not three octets of 54.240.9.92.
//
// host (the labels left of the organisation domain) is searched for a
// keyword when only two octets are found.
func carriesAddress(addr netip.Addr, s, host string) bool {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		return v4InName(addr.As4(), s, host)
	case addr.Is6():
		return v6InName(addr.As16(), s)
	}
	return false
}

// v4InName looks for, in s:
//   - three octets in a row as numbers (any separators, zero padding
//     allowed), in address order or reversed: "c-73-15-220-11",
//     "11.220.15.73", "red-83-45-67";
//   - the 8 hex digits of the address: "p5b0a1234" for 91.10.18.52;
//   - the address as one 32-bit decimal number;
//   - two adjacent octets in a row (either order) when host also has a
//     dynamic or address keyword: "host-113-9.static.example.net".
func v4InName(a [4]byte, s, host string) bool {
	if hexIn(s, a[:]) {
		return true
	}
	dec := uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
	p2, p1 := -1, -1 // the two previous numbers, -1 when not octet-sized
	pair := false
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		run := s[i:j]
		i = j
		v := -1
		switch {
		case len(run) <= 3:
			if n := atoi(run); n <= 255 {
				v = int(n)
			}
		case len(run) <= 10:
			if atoi(run) == dec {
				return true
			}
		}
		if v >= 0 {
			if p2 >= 0 && p1 >= 0 && triple(a, p2, p1, v) {
				return true
			}
			if p1 >= 0 && adjacent(a, p1, v) {
				pair = true
			}
		}
		p2, p1 = p1, v
	}
	return pair && hasKeyword(host, true)
}

// triple reports whether x, y, z are three consecutive octets of a, in
// order or reversed.
func triple(a [4]byte, x, y, z int) bool {
	o := [4]int{int(a[0]), int(a[1]), int(a[2]), int(a[3])}
	return x == o[0] && y == o[1] && z == o[2] ||
		x == o[1] && y == o[2] && z == o[3] ||
		x == o[3] && y == o[2] && z == o[1] ||
		x == o[2] && y == o[1] && z == o[0]
}

// adjacent reports whether x, y are two consecutive octets of a, in order
// or reversed.
func adjacent(a [4]byte, x, y int) bool {
	for k := 0; k < 3; k++ {
		p, q := int(a[k]), int(a[k+1])
		if x == p && y == q || x == q && y == p {
			return true
		}
	}
	return false
}

// v6InName looks for the interface identifier (the last 64 bits) in s:
// its 16 hex digits in one run ("p200300e1a7123400b1c2d3e4f5a6b7c8"), or
// three of its four groups in a row as '.'/'-' separated hex fields with
// or without leading zeros, in order or reversed
// ("2a02-8108-1234-5678-b1c2-d3e4-f5a6-b7c8"). A window of zero groups
// does not count: "0-0-0" says nothing about a host.
func v6InName(b [16]byte, s string) bool {
	if hexIn(s, b[8:]) {
		return true
	}
	var g [4]int
	for k := range g {
		g[k] = int(b[8+2*k])<<8 | int(b[9+2*k])
	}
	p2, p1 := -1, -1
	for i := 0; i <= len(s); {
		j := i
		for j < len(s) && s[j] != '.' && s[j] != '-' {
			j++
		}
		v := hexField(s[i:j])
		i = j + 1
		if v >= 0 && p1 >= 0 && p2 >= 0 && p2|p1|v != 0 &&
			(p2 == g[0] && p1 == g[1] && v == g[2] ||
				p2 == g[1] && p1 == g[2] && v == g[3] ||
				p2 == g[3] && p1 == g[2] && v == g[1] ||
				p2 == g[2] && p1 == g[1] && v == g[0]) {
			return true
		}
		p2, p1 = p1, v
	}
	return false
}

// hexIn reports whether s contains the lower-case hex digits of b
// (at most 8 bytes).
func hexIn(s string, b []byte) bool {
	const digits = "0123456789abcdef"
	var h [16]byte
	n := 2 * len(b)
	for k, c := range b {
		h[2*k], h[2*k+1] = digits[c>>4], digits[c&15]
	}
	for i := 0; i+n <= len(s); i++ {
		if s[i] == h[0] && s[i:i+n] == string(h[:n]) {
			return true
		}
	}
	return false
}

// hexField returns the value of a field of 1 to 4 hex digits, or -1.
func hexField(f string) int {
	if len(f) == 0 || len(f) > 4 {
		return -1
	}
	v := 0
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | int(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | int(c-'a'+10)
		default:
			return -1
		}
	}
	return v
}

// atoi parses a run of at most 19 decimal digits.
func atoi(s string) uint64 {
	var n uint64
	for i := 0; i < len(s); i++ {
		n = n*10 + uint64(s[i]-'0')
	}
	return n
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return 'a' <= c && c <= 'z' }
func isHex(c byte) bool    { return isDigit(c) || 'a' <= c && c <= 'f' }
