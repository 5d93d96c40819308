package dnstest

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// DefaultTTL is the TTL of a zone file line that gives none.
const DefaultTTL = 300

// LoadZone adds the records and behaviours of a zone file read from r;
// name is the file's name for the error messages. One entry a line:
//
//	NAME [TTL] TYPE DATA
//
// with TYPE one of A, AAAA, PTR, CNAME (DATA: one address or name), MX
// (preference and host), TXT (DATA: double-quoted strings, or the rest
// of the line as one string), SOA (DATA: the negative TTL; NAME becomes
// a zone), or one of the behaviours NXDOMAIN, SERVFAIL, REFUSED, DROP,
// TRUNCATE (no DATA, no TTL: Set). NAME may start with "*." (RFC 4592
// wildcard). Empty lines and lines starting with '#' are skipped.
// Nothing is added if any line is bad.
func (s *Server) LoadZone(r io.Reader, name string) error {
	var adds []func()
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		add, err := s.zoneLine(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
		adds = append(adds, add)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, add := range adds {
		add()
	}
	return nil
}

var behaviours = map[string]Behaviour{
	"NXDOMAIN": NXDomain,
	"SERVFAIL": ServFail,
	"REFUSED":  Refused,
	"DROP":     Drop,
	"TRUNCATE": Truncate,
}

// zoneLine parses one zone file line into the call that adds it.
func (s *Server) zoneLine(line string) (func(), error) {
	owner, rest := cut(line)
	if err := checkName(owner); err != nil {
		return nil, err
	}
	word, rest := cut(rest)
	if b, ok := behaviours[strings.ToUpper(word)]; ok {
		if rest != "" {
			return nil, fmt.Errorf("%s %s: unexpected %q (a behaviour takes no data)", owner, word, rest)
		}
		return func() { s.Set(owner, b) }, nil
	}
	ttl := uint32(DefaultTTL)
	if v, err := strconv.ParseUint(word, 10, 31); err == nil {
		ttl = uint32(v)
		word, rest = cut(rest)
	}
	typ := strings.ToUpper(word)
	if typ == "TXT" {
		strs, err := txtStrings(rest)
		if err != nil {
			return nil, fmt.Errorf("%s TXT: %w", owner, err)
		}
		return func() { s.TXT(owner, ttl, strs...) }, nil
	}
	if !strings.Contains(" A AAAA PTR CNAME MX SOA ", " "+typ+" ") {
		return nil, fmt.Errorf("%s: unknown type %q (want A, AAAA, PTR, CNAME, MX, TXT, SOA, NXDOMAIN, SERVFAIL, REFUSED, DROP or TRUNCATE)", owner, word)
	}
	data := strings.Fields(rest)
	want := 1
	if typ == "MX" {
		want = 2
	}
	if len(data) != want {
		return nil, fmt.Errorf("%s %s: want %d data field(s), got %q", owner, word, want, rest)
	}
	switch typ {
	case "A", "AAAA":
		ip, err := netip.ParseAddr(data[0])
		if err != nil || ip.Is4() != (typ == "A") {
			return nil, fmt.Errorf("%s %s: %q is not an IPv%s address", owner, typ, data[0], map[bool]string{true: "4", false: "6"}[typ == "A"])
		}
		if typ == "A" {
			return func() { s.A(owner, ttl, data[0]) }, nil
		}
		return func() { s.AAAA(owner, ttl, data[0]) }, nil
	case "PTR", "CNAME":
		if err := checkName(data[0]); err != nil {
			return nil, err
		}
		if typ == "PTR" {
			return func() { s.PTR(owner, ttl, data[0]) }, nil
		}
		return func() { s.CNAME(owner, ttl, data[0]) }, nil
	case "MX":
		pref, err := strconv.ParseUint(data[0], 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%s MX: preference %q: want 0..65535", owner, data[0])
		}
		if err := checkName(data[1]); err != nil {
			return nil, err
		}
		return func() { s.MX(owner, ttl, uint16(pref), data[1]) }, nil
	}
	neg, err := strconv.ParseUint(data[0], 10, 31) // SOA
	if err != nil {
		return nil, fmt.Errorf("%s SOA: negative TTL %q: want a number of seconds", owner, data[0])
	}
	return func() { s.SOA(owner, ttl, uint32(neg)) }, nil
}

// cut splits off the first whitespace-separated word of s.
func cut(s string) (word, rest string) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func checkName(name string) error {
	c := canonical(name)
	for _, label := range strings.Split(c, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("bad name %q", name)
		}
	}
	if _, err := dnsmessage.NewName(c + "."); err != nil {
		return fmt.Errorf("bad name %q: %w", name, err)
	}
	return nil
}

// txtStrings parses TXT data: Go-syntax double-quoted strings, or else
// the whole of s as one string.
func txtStrings(s string) ([]string, error) {
	if !strings.HasPrefix(s, `"`) {
		if s == "" {
			return nil, fmt.Errorf("no data")
		}
		return []string{s}, nil
	}
	var strs []string
	for s != "" {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return nil, fmt.Errorf("bad quoted string in %q: %w", s, err)
		}
		v, _ := strconv.Unquote(q)
		if len(v) > 255 {
			return nil, fmt.Errorf("string %q: longer than 255 bytes", q)
		}
		strs = append(strs, v)
		s = strings.TrimSpace(s[len(q):])
	}
	return strs, nil
}
