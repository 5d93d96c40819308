package signals

import (
	"net/netip"
	"strings"
)

// Why a HELO is invalid: a fixed vocabulary, shown as the signal's answer.
const (
	heloEmpty         = "empty"
	heloOtherLiteral  = "address literal of another host"
	heloBadLiteral    = "malformed address literal"
	heloBareAddress   = "address without brackets"
	heloSingleLabel   = "single label"
	heloNumericTLD    = "numeric top-level label"
	heloNotAHostname  = "not a host name"
	heloValid         = "valid"
	heloClientLiteral = "address literal of the client"
)

// heloCheck says whether helo is invalid for a client at addr, and why:
// it must be a fully qualified host name (at least two labels of letters,
// digits and inner hyphens, 1 to 63 characters each, 253 in all, one
// trailing dot allowed, a top-level label not all digits) or an address
// literal of the client itself ([192.0.2.1], [IPv6:2001:db8::1], RFC
// 5321 4.1.3). Case is ignored.
func heloCheck(helo string, addr netip.Addr) (invalid bool, why string) {
	if helo == "" {
		return true, heloEmpty
	}
	if helo[0] == '[' {
		if len(helo) < 2 || helo[len(helo)-1] != ']' {
			return true, heloBadLiteral
		}
		lit := helo[1 : len(helo)-1]
		want4 := true
		if len(lit) >= 5 && strings.EqualFold(lit[:5], "IPv6:") {
			lit, want4 = lit[5:], false
		}
		ip, err := netip.ParseAddr(lit)
		if err != nil || ip.Zone() != "" || ip.Is4() != want4 {
			return true, heloBadLiteral
		}
		if ip.Unmap() != addr.Unmap() {
			return true, heloOtherLiteral
		}
		return false, heloClientLiteral
	}
	name := strings.TrimSuffix(helo, ".")
	if name == "" || len(name) > 253 {
		return true, heloNotAHostname
	}
	labels, start, digits := 0, 0, true
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if n := i - start; n == 0 || n > 63 || name[start] == '-' || name[i-1] == '-' {
				return true, heloNotAHostname
			}
			labels++
			if i < len(name) {
				start, digits = i+1, true
			}
			continue
		}
		switch c := name[i]; {
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-':
			digits = false
		default:
			return true, heloNotAHostname
		}
	}
	switch {
	case digits && labels == 4:
		if _, err := netip.ParseAddr(name); err == nil {
			return true, heloBareAddress
		}
		return true, heloNumericTLD
	case digits:
		return true, heloNumericTLD
	case labels < 2:
		return true, heloSingleLabel
	}
	return false, heloValid
}
