package postgrey

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Key formats Postgrey wrote (reference section 3):
//
//	1.37 subnet   198.51.100.0/sender/rcpt       2001:db8:1:2:0:0:0:0/sender/rcpt
//	1.37 by host  198.51.100.7/32/sender/rcpt    2001:db8:0:0:0:0:0:1/128/sender/rcpt
//	1.36          198.51.100.0/24/sender/rcpt    (NetAddr::IP printed with its length)
//	≤1.35         198.51.100.0/sender/rcpt, value "first,last,hostoctet";
//	              a full IPv4 address for dial-up pools; IPv6 as the raw
//	              client_address ("2001:db8::1/sender/rcpt")
//
// The prefix of a 1.37 or ≤1.35 subnet key is not stored: it is
// Postgrey's --ipv4cidr/--ipv6cidr (24 and 64 unless changed).

// Source describes how the Postgrey that wrote a database was run.
type Source struct {
	IPv4Prefix, IPv6Prefix int   // --ipv4cidr, --ipv6cidr
	Delay                  int64 // --delay, seconds: what "passed" meant
}

// DefaultSource is Postgrey's default options.
var DefaultSource = Source{IPv4Prefix: 24, IPv6Prefix: 64, Delay: 300}

// Triplet is a decoded triplet key.
type Triplet struct {
	// Client is the client network; a full-length prefix (/32, /128)
	// for a key of one host.
	Client    netip.Prefix
	Sender    string // as stored: normalised and lower-cased by Postgrey
	Recipient string
	// Mapped is set for IPv4-mapped clients that Postgrey keyed by the
	// IPv6 /64 they share, 0:0:0:0:0:0:0:0: the IPv4 address is lost.
	Mapped bool
}

// ErrPrivacy marks a key that Postgrey's --privacy turned into the
// unsalted SHA-1 of the real key.
var ErrPrivacy = errors.New("key is a SHA-1 hash (Postgrey ran with --privacy)")

// IsPrivacyKey reports whether key looks like a --privacy key: 40 lower
// case hex digits. No address or triplet key can.
func IsPrivacyKey(key string) bool {
	if len(key) != 40 {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ParseTripletKey decodes a postgrey.db key.
func ParseTripletKey(key string, src Source) (Triplet, error) {
	if IsPrivacyKey(key) {
		return Triplet{}, ErrPrivacy
	}
	slash := strings.IndexByte(key, '/')
	if slash < 0 {
		return Triplet{}, fmt.Errorf("no '/' in triplet key %q", key)
	}
	addr, err := netip.ParseAddr(key[:slash])
	if err != nil || addr.Zone() != "" {
		return Triplet{}, fmt.Errorf("client part of %q is not an IP address", key)
	}
	rest := key[slash+1:]
	full := addr.BitLen()

	// An explicit length: "/32", "/128" (1.37 by host) or "/24" (1.36).
	bits := -1
	if n, after, ok := lengthField(rest); ok && n <= full {
		if p, err := addr.Prefix(n); err == nil && p.Addr() == addr {
			bits, rest = n, after
		}
	}
	if bits < 0 {
		bits = src.IPv6Prefix
		if addr.Is4() {
			bits = src.IPv4Prefix
		}
		// A key whose address has host bits set under that prefix is
		// one host: the ≤1.35 dial-up pool exception, or ≤1.35's raw
		// IPv6 client address.
		if p, err := addr.Prefix(bits); err != nil || p.Addr() != addr || (addr.Is6() && !uncompressed(key[:slash])) {
			bits = full
		}
	}
	sender, rcpt, ok := splitAddresses(rest)
	if !ok {
		return Triplet{}, fmt.Errorf("no recipient in triplet key %q", key)
	}
	t := Triplet{Sender: sender, Recipient: rcpt}
	if addr.Is4In6() && bits >= 96 {
		// Postgrey kept the mapped IPv4 address (by host, or a prefix
		// of 96 or more): it is the IPv4 client greyd sees.
		t.Client = netip.PrefixFrom(addr.Unmap(), bits-96)
		return t, nil
	}
	if addr == netip.IPv6Unspecified() && bits <= 80 {
		// 0:0:0:0:0:0:0:0 is the /64 every ::ffff: client shared; no
		// real client has a network of all zeros.
		t.Mapped = true
	}
	t.Client = netip.PrefixFrom(addr, bits)
	return t, nil
}

// lengthField reads a "NN/" field at the start of s.
func lengthField(s string) (n int, rest string, ok bool) {
	i := strings.IndexByte(s, '/')
	if i < 1 || i > 3 {
		return 0, "", false
	}
	for _, c := range []byte(s[:i]) {
		if c < '0' || c > '9' {
			return 0, "", false
		}
	}
	n, _ = strconv.Atoi(s[:i])
	return n, s[i+1:], true
}

// uncompressed reports whether an IPv6 address is written as NetAddr::IP
// prints it: eight groups, no "::".
func uncompressed(s string) bool {
	return strings.Count(s, ":") == 7 && !strings.Contains(s, "::")
}

// splitAddresses splits "sender/recipient". Either may contain '/' in its
// local part, but a domain cannot: the separator is the first '/' after
// the sender's '@'; a sender without '@' (the null sender, "") ends at the
// first '/'.
func splitAddresses(s string) (sender, rcpt string, ok bool) {
	if at := strings.IndexByte(s, '@'); at >= 0 {
		if i := strings.IndexByte(s[at:], '/'); i >= 0 {
			return s[:at+i], s[at+i+1:], true
		}
	}
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// ParseClientKey decodes a postgrey_clients.db key: one client address,
// IPv6 upper case and uncompressed in 1.37 ("2001:DB8:0:0:0:0:0:1"); a
// mapped address is the IPv4 client greyd sees.
func ParseClientKey(key string) (netip.Addr, error) {
	if IsPrivacyKey(key) {
		return netip.Addr{}, ErrPrivacy
	}
	a, err := netip.ParseAddr(key)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("auto-whitelist key %q is not an IP address", key)
	}
	return a.Unmap(), nil
}

// ParseValue decodes "a,b" (first,last or count,last), and the ≤1.35
// triplet value "first,last,hostoctet" whose third field is ignored.
func ParseValue(v string) (a, b int64, err error) {
	f := strings.Split(v, ",")
	if len(f) < 2 || len(f) > 3 {
		return 0, 0, fmt.Errorf("value %q is not \"N,N\"", v)
	}
	a, err1 := strconv.ParseInt(f[0], 10, 64)
	b, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || a < 0 || b < 0 {
		return 0, 0, fmt.Errorf("value %q is not \"N,N\"", v)
	}
	return a, b, nil
}
