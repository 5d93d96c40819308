// Package normalize turns request attributes into the parts of greylisting
// keys: the sender address with its per-message noise removed (BATV, SRS,
// +extensions, VERP numbers) and the client network. It reproduces
// Postgrey 1.37's key formats byte for byte, except where Postgrey has a
// bug or misses a common scheme (documented per function).
//
// All functions append to a caller-provided buffer so that building a key
// costs no allocation.
package normalize

import (
	"net/netip"
	"strconv"
)

// AppendSender appends the normalised, lower-cased form of sender to dst.
//
// As Postgrey: an address without '@' is kept as it is (the null sender
// stays empty); the local part loses a BATV "prvs=" tag, everything from
// the first '+', and every all-digit word becomes '#'
// ("bounce-123-456" -> "bounce-#-#"). Better than Postgrey: the BATV prefix
// and tag match in any case, and SRS0/SRS1 addresses are reduced to the
// original sender before the other rules apply, so a forwarded message
// keeps one key across retries.
func AppendSender(dst []byte, sender string) []byte {
	at := indexByte(sender, '@')
	if at < 0 {
		return appendLower(dst, sender)
	}
	user, domain := sender[:at], sender[at+1:]
	if u, d, ok := srs(user); ok {
		user, domain = u, d
	}
	user = batv(user)
	if p := indexByte(user, '+'); p >= 0 {
		user = user[:p]
	}
	dst = appendVERP(dst, user)
	dst = append(dst, '@')
	return appendLower(dst, domain)
}

// srs undoes Sender Rewriting Scheme addresses:
//
//	SRS0=HHH=TT=orig.domain=orig-local@forwarder
//	SRS1=HHH=first.forwarder==HHH=TT=orig.domain=orig-local@forwarder
//
// The separator after SRS0/SRS1 may be '=', '+' or '-'; the prefix matches
// in any case. It reports false when user is not a well-formed SRS address.
func srs(user string) (local, domain string, ok bool) {
	if len(user) < 5 || !hasPrefixFold(user, "srs") || (user[4] != '=' && user[4] != '+' && user[4] != '-') {
		return "", "", false
	}
	rest := user[5:]
	switch user[3] {
	case '0':
	case '1':
		// Skip "HHH=first.forwarder=" up to the SRS0 part, which starts
		// with its own separator ("==HHH", "=+HHH", "=-HHH").
		i := indexByte(rest, '=')
		if i < 0 {
			return "", "", false
		}
		rest = rest[i+1:]
		j := -1
		for k := 0; k+1 < len(rest); k++ {
			if rest[k] == '=' && (rest[k+1] == '=' || rest[k+1] == '+' || rest[k+1] == '-') {
				j = k
				break
			}
		}
		if j < 0 {
			return "", "", false
		}
		rest = rest[j+2:]
	default:
		return "", "", false
	}
	// rest = HHH=TT=domain=local (local may itself contain '=').
	for n := 0; n < 2; n++ {
		i := indexByte(rest, '=')
		if i < 0 {
			return "", "", false
		}
		rest = rest[i+1:]
	}
	i := indexByte(rest, '=')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[i+1:], rest[:i], true
}

// batv reduces a BATV "prvs=" local part to the plain one, as Postgrey's
// do_sender_substitutions: with exactly three '='-separated fields, the
// field that does not look like a tag (10 alphanumerics) is the user; when
// both or neither look like one, the last field is. Unlike Postgrey the
// prefix and tag may be upper case.
func batv(user string) string {
	if !hasPrefixFold(user, "prvs=") {
		return user
	}
	// Perl's split drops trailing empty fields.
	end := len(user)
	for end > 0 && user[end-1] == '=' {
		end--
	}
	s := user[:end]
	i := indexByte(s, '=')
	j := i + 1 + indexByte(s[i+1:], '=')
	if j <= i || indexByte(s[j+1:], '=') >= 0 {
		return user // not exactly three fields
	}
	a1, a2 := s[i+1:j], s[j+1:]
	t1, t2 := looksLikeTag(a1), looksLikeTag(a2)
	if t2 && !t1 {
		return a1
	}
	return a2
}

func looksLikeTag(s string) bool {
	if len(s) < 10 {
		return false
	}
	for i := 0; i < 10; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// appendVERP appends lower(user) with every maximal digit run that forms a
// word of its own (Perl's s/\b\d+\b/#/g in the C locale) replaced by '#'.
func appendVERP(dst []byte, user string) []byte {
	for i := 0; i < len(user); {
		c := user[i]
		if !isDigit(c) {
			dst = append(dst, lower(c))
			i++
			continue
		}
		j := i
		for j < len(user) && isDigit(user[j]) {
			j++
		}
		if (i == 0 || !isWord(user[i-1])) && (j == len(user) || !isWord(user[j])) {
			dst = append(dst, '#')
		} else {
			dst = append(dst, user[i:j]...)
		}
		i = j
	}
	return dst
}

// ParseAddr parses a client_address attribute. IPv4-mapped IPv6 addresses
// become IPv4 (Postgrey put all of them into one IPv6 /64) and zones are
// dropped.
func ParseAddr(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// AppendClientNet appends the client part of a triplet key in Postgrey's
// format: the network address for the given prefix ("198.51.100.0",
// IPv6 uncompressed and lower case: "2001:db8:1:2:0:0:0:0"), or with
// byHost the full address with its length ("198.51.100.60/32",
// "2001:db8:0:0:0:0:0:1/128").
func AppendClientNet(dst []byte, ip netip.Addr, byHost bool, v4Prefix, v6Prefix int) []byte {
	if byHost {
		dst = appendAddr(dst, ip, false)
		if ip.Is4() {
			return append(dst, "/32"...)
		}
		return append(dst, "/128"...)
	}
	bits := v6Prefix
	if ip.Is4() {
		bits = v4Prefix
	}
	if p, err := ip.Prefix(bits); err == nil {
		ip = p.Addr()
	}
	return appendAddr(dst, ip, false)
}

// AppendClientAddr appends the auto-whitelist key of a client: its exact
// address as Postgrey's NetAddr::IP addr() prints it, IPv6 upper case and
// uncompressed ("2001:DB8:0:0:0:0:0:1").
func AppendClientAddr(dst []byte, ip netip.Addr) []byte {
	return appendAddr(dst, ip, true)
}

func appendAddr(dst []byte, ip netip.Addr, upper bool) []byte {
	if ip.Is4() {
		return ip.AppendTo(dst)
	}
	b := ip.As16()
	for i := 0; i < 16; i += 2 {
		if i > 0 {
			dst = append(dst, ':')
		}
		n := len(dst)
		dst = strconv.AppendUint(dst, uint64(b[i])<<8|uint64(b[i+1]), 16)
		if upper {
			for k := n; k < len(dst); k++ {
				if 'a' <= dst[k] && dst[k] <= 'f' {
					dst[k] -= 'a' - 'A'
				}
			}
		}
	}
	return dst
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower(s[i]) != prefix[i] {
			return false
		}
	}
	return true
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, lower(s[i]))
	}
	return dst
}

// lower folds ASCII only, like Perl's lc under LC_ALL=C.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isWord(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
}
