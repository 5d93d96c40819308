package config

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Day and Week are the two units ParseDuration knows beyond time's.
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// errNoUnit marks a duration that is a bare number ("300"). HCL turns
// `delay = 300` into the string "300" without complaint, so the caller
// uses this to suggest the unit the setting used in Postgrey.
var errNoUnit = errors.New("missing unit")

var durationUnits = map[byte]time.Duration{
	's': time.Second,
	'm': time.Minute,
	'h': time.Hour,
	'd': Day,
	'w': Week,
}

// ParseDuration parses a duration made of whole numbers followed by one of
// the units ms, s, m, h, d (24h) and w (7d), possibly combined: "5m",
// "35d", "1h30m", "2d12h", "300ms", "1s500ms". Unlike time.ParseDuration it
// accepts days and weeks and rejects fractions, negative values and bare
// numbers.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New(`empty duration; write a number with a unit, like "5m"`)
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("%q: negative durations are not allowed", s)
	}
	if isDigits(s) {
		return 0, fmt.Errorf("%q: %w (ms, s, m, h, d or w)", s, errNoUnit)
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q: expected a whole number at %q; write durations like \"1h30m\"", s, rest)
		}
		if i == len(rest) {
			return 0, fmt.Errorf("%q: %w after %q (ms, s, m, h, d or w)", s, errNoUnit, rest)
		}
		unit, ok := durationUnits[rest[i]]
		unitLen := 1
		if strings.HasPrefix(rest[i:], "ms") {
			unit, unitLen = time.Millisecond, 2
		}
		if rest[i] == '.' || rest[i] == ',' {
			return 0, fmt.Errorf("%q: fractions are not supported; combine units instead, like \"1h30m\"", s)
		}
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit %q; use ms, s, m, h, d or w", s, unitAt(rest[i:]))
		}
		var n int64
		for _, c := range rest[:i] {
			d := int64(c - '0')
			if n > (math.MaxInt64-d)/10 {
				return 0, fmt.Errorf("%q: too large", s)
			}
			n = n*10 + d
		}
		if n > math.MaxInt64/int64(unit) {
			return 0, fmt.Errorf("%q: too large", s)
		}
		part := time.Duration(n) * unit
		if total > math.MaxInt64-part {
			return 0, fmt.Errorf("%q: too large", s)
		}
		total += part
		rest = rest[i+unitLen:]
	}
	return total, nil
}

// unitAt returns the unit-like word at the start of s, for error messages.
func unitAt(s string) string {
	end := strings.IndexFunc(s, func(r rune) bool { return r >= '0' && r <= '9' })
	if end < 0 {
		return s
	}
	return s[:end]
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatDuration is the inverse of ParseDuration: whole days, hours,
// minutes, seconds and milliseconds, largest first ("35d", "5m30s",
// "250ms", "0s"). Weeks are not used because "35d" reads better than "5w"
// in a greylisting config. Sub-millisecond remainders are dropped.
func FormatDuration(d time.Duration) string {
	if d < time.Millisecond {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{Day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	return b.String()
}
