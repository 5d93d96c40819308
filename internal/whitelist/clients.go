package whitelist

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Clients is a client whitelist: host names and domains, /regex/ entries
// (both matched against the verified client name) and IP networks (matched
// against the client address). It is immutable after loading and safe for
// concurrent readers; the zero value and a nil pointer match nothing.
type Clients struct {
	names   map[string]struct{} // lower case, no trailing dot
	regexes regexSet
	v4      v4Nets
	v6      v6Nets
}

// ParseClients reads one client whitelist file; file names it in Problems.
func ParseClients(file string, r io.Reader) (*Clients, []Problem) {
	c := &Clients{}
	return c, readEntries(file, r, c.add)
}

// LoadClients reads the client whitelist files in order and merges them.
// A missing file ending in ".local" is silently skipped.
func LoadClients(paths []string) (*Clients, []Problem) {
	c := &Clients{}
	probs := loadFiles(paths, func(file string, r io.Reader) []Problem {
		return readEntries(file, r, c.add)
	})
	return c, probs
}

// Len returns the number of distinct entries.
func (c *Clients) Len() int {
	if c == nil {
		return 0
	}
	return len(c.names) + len(c.regexes.list) + c.v4.n + c.v6.n
}

// MatchName reports whether clientName (Postfix's client_name: the verified
// host name, or "unknown") matches a name or /regex/ entry. A name entry
// matches itself and every name below it on a label boundary, ignoring case:
// "example.net" matches "a.b.example.net" but not "notexample.net".
func (c *Clients) MatchName(clientName string) bool {
	if c == nil || len(c.names) == 0 && len(c.regexes.list) == 0 {
		return false
	}
	var buf [256]byte
	low := lower(buf[:], clientName)
	if len(c.names) > 0 {
		b := trimDot(low)
		for len(b) > 0 {
			if _, ok := c.names[string(b)]; ok {
				return true
			}
			i := bytes.IndexByte(b, '.')
			if i < 0 {
				break
			}
			b = b[i+1:]
		}
	}
	return c.regexes.match(clientName, low)
}

// MatchAddr reports whether ip lies in an address or network entry.
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is treated as IPv4.
func (c *Clients) MatchAddr(ip netip.Addr) bool {
	if c == nil || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return c.v4.contains(ip)
	}
	return c.v6.contains(ip)
}

// add adds one entry, in Postgrey's order of rules; it returns "" or what
// is wrong with the entry.
func (c *Clients) add(entry string) string {
	switch {
	case hasSpace(entry):
		return fmt.Sprintf("%q: doesn't look like a hostname (contains whitespace; write one entry per line, and \\s for white space in a regex)", entry)
	case isRegexEntry(entry):
		re, msg := compileRegex(entry)
		if msg != "" {
			return msg
		}
		c.regexes.add(re)
		return ""
	case strings.Count(entry, ":") >= 2:
		return c.addIPv6(entry)
	case isIPv4Like(entry):
		p, msg := parseIPv4(entry)
		if msg != "" {
			return msg
		}
		c.v4.add(p)
		return ""
	}
	name := strings.TrimSuffix(lowerString(entry), ".")
	if msg := checkHostname(name); msg != "" {
		return fmt.Sprintf("%q: %s", entry, msg)
	}
	if c.names == nil {
		c.names = make(map[string]struct{})
	}
	c.names[name] = struct{}{}
	return ""
}

func (c *Clients) addIPv6(entry string) string {
	var p netip.Prefix
	var err error
	if strings.Contains(entry, "/") {
		p, err = netip.ParsePrefix(entry)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(entry); err == nil {
			if a.Zone() != "" {
				return fmt.Sprintf("%q: not an IPv6 address (remove the %%zone)", entry)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return fmt.Sprintf("%q: not an IPv6 address or network (%s)", entry, netipReason(err))
	}
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		// Clients are unmapped before matching, so store ::ffff:a.b.c.d/nn as IPv4.
		c.v4.add(netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96))
		return ""
	}
	c.v6.add(p)
	return ""
}

// isIPv4Like reports whether entry is made only of digits, dots and slashes
// and so can only have been meant as an IPv4 address or network.
func isIPv4Like(entry string) bool {
	digit := false
	for i := 0; i < len(entry); i++ {
		switch c := entry[i]; {
		case '0' <= c && c <= '9':
			digit = true
		case c == '.' || c == '/':
		default:
			return false
		}
	}
	return digit
}

// parseIPv4 parses "a.b.c.d", "a.b.c.d/nn", "a.b.c" (a /24) and "a.b" (a /16;
// Postgrey documented /16 but made it a /24). Host bits are masked off.
func parseIPv4(entry string) (netip.Prefix, string) {
	addr, bits, slash := strings.Cut(entry, "/")
	octets := strings.Count(addr, ".") + 1
	if octets < 2 || octets > 4 {
		return netip.Prefix{}, fmt.Sprintf("%q: not an IPv4 address (write a.b.c.d, a.b.c.d/nn, a.b.c or a.b)", entry)
	}
	if slash && octets < 4 {
		return netip.Prefix{}, fmt.Sprintf("%q: not an IPv4 network (write all four octets with a prefix length, e.g. %q)", entry, padIPv4(addr)+"/"+bits)
	}
	n := 8 * octets
	a, err := netip.ParseAddr(padIPv4(addr))
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("%q: not an IPv4 address (%s)", entry, netipReason(err))
	}
	if slash {
		n, err = strconv.Atoi(bits)
		if err != nil || n < 0 || n > 32 {
			return netip.Prefix{}, fmt.Sprintf("%q: not an IPv4 network (prefix length must be /0 to /32)", entry)
		}
	}
	p, _ := a.Prefix(n)
	return p, ""
}

// padIPv4 completes a partial dotted quad with zero octets.
func padIPv4(addr string) string {
	for strings.Count(addr, ".") < 3 {
		addr += ".0"
	}
	return addr
}

// netipReason keeps the reason of a net/netip parse error, without the
// `ParseAddr("...")` prefix that repeats the entry.
func netipReason(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "): "); ok {
		return after
	}
	return msg
}

// checkHostname rejects name entries that cannot match any client_name
// Postfix sends (a verified host name: letters, digits, '-', '_' and dots),
// saying what was probably meant. name is lower case without trailing dot.
func checkHostname(name string) string {
	switch {
	case name == "":
		return "doesn't look like a hostname (empty)"
	case strings.HasPrefix(name, "*."):
		return fmt.Sprintf("wildcards are not supported; write %q, which also matches every host under it", name[2:])
	case name[0] == '.':
		return fmt.Sprintf("leading dot; write %q, which also matches every host under it", strings.TrimLeft(name, "."))
	case name[0] == '[' && name[len(name)-1] == ']':
		return "write IP addresses without brackets"
	case strings.Contains(name, "..") || strings.HasSuffix(name, "."):
		return "doesn't look like a hostname (empty label)"
	}
	for i := 0; i < len(name); i++ {
		switch ch := name[i]; {
		case 'a' <= ch && ch <= 'z', '0' <= ch && ch <= '9', ch == '-', ch == '_', ch == '.', ch >= 0x80:
		case ch == '@':
			return "looks like a mail address; this file lists client host names and IP addresses (recipients go in the recipient whitelist)"
		case ch == '*' || ch == '?':
			return "wildcards are not supported; a name matches every host under it, and /regex/ matches patterns"
		case ch == '/':
			return "doesn't look like a hostname (contains \"/\"; write a regex as /regex/ and a network as a.b.c.d/nn)"
		default:
			return fmt.Sprintf("doesn't look like a hostname (contains %q)", ch)
		}
	}
	return ""
}

// v4Nets holds IPv4 networks as one set per prefix length, keyed by the
// masked address: a lookup costs one probe per distinct prefix length.
type v4Nets struct {
	lens  []int // prefix lengths in use, longest first
	byLen [33]map[uint32]struct{}
	n     int
}

func mask4(bits int) uint32 {
	return ^uint32(0) << (32 - bits) // a shift by 32 yields 0
}

func (s *v4Nets) add(p netip.Prefix) {
	bits := p.Bits()
	key := binary.BigEndian.Uint32(p.Addr().AsSlice()) & mask4(bits)
	m := s.byLen[bits]
	if m == nil {
		m = make(map[uint32]struct{})
		s.byLen[bits] = m
		s.lens = insertLen(s.lens, bits)
	}
	if _, dup := m[key]; !dup {
		m[key] = struct{}{}
		s.n++
	}
}

func (s *v4Nets) contains(ip netip.Addr) bool {
	a4 := ip.As4()
	key := binary.BigEndian.Uint32(a4[:])
	for _, bits := range s.lens {
		if _, ok := s.byLen[bits][key&mask4(bits)]; ok {
			return true
		}
	}
	return false
}

// v6Nets is v4Nets for IPv6.
type v6Nets struct {
	lens  []int
	byLen [129]map[v6Key]struct{}
	n     int
}

type v6Key struct{ hi, lo uint64 }

func toV6Key(ip netip.Addr) v6Key {
	a := ip.As16()
	return v6Key{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
}

func (k v6Key) masked(bits int) v6Key {
	switch {
	case bits <= 0:
		return v6Key{}
	case bits <= 64:
		return v6Key{k.hi & (^uint64(0) << (64 - bits)), 0}
	default:
		return v6Key{k.hi, k.lo & (^uint64(0) << (128 - bits))}
	}
}

func (s *v6Nets) add(p netip.Prefix) {
	bits := p.Bits()
	key := toV6Key(p.Addr()).masked(bits)
	m := s.byLen[bits]
	if m == nil {
		m = make(map[v6Key]struct{})
		s.byLen[bits] = m
		s.lens = insertLen(s.lens, bits)
	}
	if _, dup := m[key]; !dup {
		m[key] = struct{}{}
		s.n++
	}
}

func (s *v6Nets) contains(ip netip.Addr) bool {
	key := toV6Key(ip)
	for _, bits := range s.lens {
		if _, ok := s.byLen[bits][key.masked(bits)]; ok {
			return true
		}
	}
	return false
}

// insertLen adds bits to lens, kept in decreasing order.
func insertLen(lens []int, bits int) []int {
	i := 0
	for i < len(lens) && lens[i] > bits {
		i++
	}
	lens = append(lens, 0)
	copy(lens[i+1:], lens[i:])
	lens[i] = bits
	return lens
}
