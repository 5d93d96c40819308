package store

import (
	"errors"
	"fmt"
	"strconv"
)

// Stored values are Postgrey's text, "<a>,<b>" in decimal: "first,last"
// for triplets and "count,last" for clients. Every backend reads them
// with ParseValue or its translation: store/redis's scripts run in Lua,
// whose numbers are doubles, so a number is valid only where a double
// holds it exactly. A value that is not valid reads as no entry
// everywhere, and the next write replaces it.

// MaxValue is the largest magnitude of a stored number: 2^53-1, the
// largest integer below which every integer is a double. Unix times and
// counts stay far below it, and sums of two of them cannot overflow an
// int64 in Go.
const MaxValue = 1<<53 - 1

// maxDigits is the most decimal digits a stored number may have, leading
// zeros included: no int64 needs more, and Lua's reading of a longer
// string would be a different number again.
const maxDigits = 19

// AppendValue appends the encoding of a and b to dst.
func AppendValue(dst []byte, a, b int64) []byte {
	dst = strconv.AppendInt(dst, a, 10)
	dst = append(dst, ',')
	return strconv.AppendInt(dst, b, 10)
}

// ParseValue parses a stored value: two numbers separated by a comma,
// each an optional '-' and 1 to 19 decimal digits of magnitude at most
// MaxValue (no '+', no spaces). It reports ok == false for anything else;
// it never allocates and never panics. step.lua and admin.lua carry its
// translation (their num function): change them together.
func ParseValue(s string) (a, b int64, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] != ',' {
			continue
		}
		if a, ok = parseNumber(s[:i]); !ok {
			return 0, 0, false
		}
		if b, ok = parseNumber(s[i+1:]); !ok {
			return 0, 0, false
		}
		return a, b, true
	}
	return 0, 0, false
}

// ValidNumber reports whether v can be stored: ParseValue reads it back.
func ValidNumber(v int64) bool { return v >= -MaxValue && v <= MaxValue }

// ErrRange is returned by Admin.Import for an entry with a number that
// cannot be stored (ValidNumber).
var ErrRange = errors.New("number out of range")

// CheckEntry reports an entry whose numbers cannot be stored: the
// backends refuse it (Admin.Import), rather than store what reads back as
// another number, or as no entry.
func CheckEntry(e Entry) error {
	if a, b := e.Stored(); !ValidNumber(a) || !ValidNumber(b) {
		return fmt.Errorf("%w: %d,%d (at most %d either way)", ErrRange, a, b, int64(MaxValue))
	}
	return nil
}

func parseNumber(s string) (int64, bool) {
	neg := false
	if s != "" && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if s == "" || len(s) > maxDigits { // 19 digits cannot overflow a uint64
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
	if n > MaxValue {
		return 0, false
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}
