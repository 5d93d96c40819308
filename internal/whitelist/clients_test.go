package whitelist

import (
	"net/netip"
	"strings"
	"testing"
)

// mustClients parses text as a client file and fails on any Problem.
func mustClients(t *testing.T, text string) *Clients {
	t.Helper()
	c, probs := ParseClients("test", strings.NewReader(text))
	if len(probs) > 0 {
		t.Fatalf("ParseClients(%q): unexpected problems %v", text, probs)
	}
	return c
}

func TestClientsMatchName(t *testing.T) {
	tests := []struct {
		entries string
		name    string
		want    bool
	}{
		// Name entries: the name itself and every name below it.
		{"example.net", "example.net", true},
		{"example.net", "mx.example.net", true},
		{"example.net", "a.b.example.net", true},
		{"example.net", "notexample.net", false},
		{"example.net", "example.net.evil.com", false},
		{"example.net", "net", false},
		{"example.net", "", false},
		{"mx.example.net", "example.net", false},
		// Case and trailing dots are ignored, on both sides.
		{"Example.NET", "MX.example.net", true},
		{"example.net", "Mx.Example.Net", true},
		{"example.net.", "mx.example.net", true},
		{"example.net", "mx.example.net.", true},
		// "unknown" is not special.
		{"unknown", "unknown", true},
		{"example.net", "unknown", false},
		// Single-label entries.
		{"localhost", "localhost", true},
		// Regexes: case-insensitive, unanchored unless anchored.
		{`/^mail\d+\.telekom\.de$/`, "mail12.telekom.de", true},
		{`/^mail\d+\.telekom\.de$/`, "MAIL12.Telekom.DE", true},
		{`/^mail\d+\.telekom\.de$/`, "xmail12.telekom.de", false},
		{`/^MAIL\d+/`, "mail7.example.com", true},
		{`/pool/`, "a.pool.example.com", true},
		{`/^(?:smtp\w*|postfix)[0-9]+-g[0-9]+\.free\.fr$/`, "smtp12-g21.free.fr", true},
		{`/^.*?.server.arvato-systems.de$/`, "x1.server.arvato-systems.de", true},
		// Comments and blank lines.
		{"# example.net\n\n   \n", "example.net", false},
		{"example.net # trailing comment", "mx.example.net", true},
		{"  example.net\t\r\n", "example.net", true},
		// Name entries never match addresses written as names, and IP
		// entries never match names.
		{"192.0.2.1", "192.0.2.1", false},
		{"192.0.2", "192.0.2.1", false},
		// Several entries, several files' worth.
		{"a.example\nb.example\n/^c\\./", "x.b.example", true},
		{"a.example\nb.example\n/^c\\./", "c.example", true},
		{"a.example\nb.example\n/^c\\./", "d.example", false},
	}
	for i, tc := range tests {
		c := mustClients(t, tc.entries)
		if got := c.MatchName(tc.name); got != tc.want {
			t.Errorf("%d: entries %q, MatchName(%q) = %v, want %v", i, tc.entries, tc.name, got, tc.want)
		}
	}
}

func TestClientsMatchAddr(t *testing.T) {
	tests := []struct {
		entries string
		addr    string
		want    bool
	}{
		// IPv4 host.
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		// IPv4 CIDR; host bits are masked off.
		{"205.201.128.0/20", "205.201.143.255", true},
		{"205.201.128.0/20", "205.201.144.0", false},
		{"192.0.2.77/24", "192.0.2.200", true},
		{"192.0.2.77/24", "192.0.3.1", false},
		{"0.0.0.0/0", "198.51.100.7", true},
		{"198.51.100.7/32", "198.51.100.7", true},
		// Three octets: a /24.
		{"195.235.39", "195.235.39.200", true},
		{"195.235.39", "195.235.40.1", false},
		// Two octets: a real /16 (Postgrey made it a /24).
		{"172.16", "172.16.5.5", true},
		{"172.16", "172.16.0.5", true},
		{"172.16", "172.17.0.1", false},
		// IPv6 host and networks.
		{"2001:db8::1", "2001:db8::1", true},
		{"2001:db8::1", "2001:db8::2", false},
		{"2a01:4180:4051:0800::/64", "2a01:4180:4051:800:dead:beef::1", true},
		{"2a01:4180:4051:0800::/64", "2a01:4180:4051:801::1", false},
		{"2001:DB8::/32", "2001:db8:ffff::1", true},
		{"2001:db8::/127", "2001:db8::1", true},
		{"2001:db8::/127", "2001:db8::2", false},
		{"::/0", "2001:db8::2", true},
		// IPv4-mapped clients are IPv4.
		{"192.0.2.0/24", "::ffff:192.0.2.9", true},
		{"192.0.2.9", "::ffff:192.0.2.9", true},
		{"192.0.2.0/24", "::ffff:192.0.3.9", false},
		// IPv4-mapped entries are IPv4 too.
		{"::ffff:192.0.2.9", "192.0.2.9", true},
		{"::ffff:192.0.2.0/120", "192.0.2.200", true},
		{"::ffff:192.0.2.0/120", "192.0.3.1", false},
		// No cross-family matches.
		{"0.0.0.0/0", "2001:db8::1", false},
		{"::/0", "192.0.2.1", false},
		{"::/0", "::ffff:192.0.2.1", false},
		// Names never match addresses.
		{"example.net", "192.0.2.1", false},
		{"/.*/", "192.0.2.1", false},
		// Several prefix lengths.
		{"10.0.0.0/8\n10.1.0.0/16\n10.1.2.3", "10.200.0.1", true},
		{"10.1.0.0/16\n10.1.2.3\n2001:db8::/48", "10.2.0.1", false},
		{"10.1.0.0/16\n10.1.2.3\n2001:db8::/48", "2001:db8:0:ffff::1", true},
	}
	for i, tc := range tests {
		c := mustClients(t, tc.entries)
		ip := netip.MustParseAddr(tc.addr)
		if got := c.MatchAddr(ip); got != tc.want {
			t.Errorf("%d: entries %q, MatchAddr(%s) = %v, want %v", i, tc.entries, tc.addr, got, tc.want)
		}
	}
}

func TestClientsZoneAndInvalidAddr(t *testing.T) {
	c := mustClients(t, "fe80::/10\n192.0.2.1")
	tests := []struct {
		addr netip.Addr
		want bool
	}{
		{netip.Addr{}, false},
		{netip.MustParseAddr("fe80::1%eth0"), true},
		{netip.MustParseAddr("192.0.2.1"), true},
	}
	for i, tc := range tests {
		if got := c.MatchAddr(tc.addr); got != tc.want {
			t.Errorf("%d: MatchAddr(%v) = %v, want %v", i, tc.addr, got, tc.want)
		}
	}
}

func TestClientsNil(t *testing.T) {
	var c *Clients
	if c.MatchName("example.net") || c.MatchAddr(netip.MustParseAddr("192.0.2.1")) || c.Len() != 0 {
		t.Errorf("nil *Clients matches or has entries")
	}
	var z Clients
	if z.MatchName("example.net") || z.MatchAddr(netip.MustParseAddr("192.0.2.1")) || z.Len() != 0 {
		t.Errorf("zero Clients matches or has entries")
	}
}

func TestClientsLen(t *testing.T) {
	tests := []struct {
		entries string
		want    int
	}{
		{"", 0},
		{"# only a comment\n\n", 0},
		{"example.net\n/x/\n192.0.2.1\n192.0.2.0/24\n2001:db8::/32", 5},
		// Duplicates count once.
		{"example.net\nEXAMPLE.NET.\n/x/\n/x/\n192.0.2.1\n192.0.2.1/32\n::ffff:192.0.2.1", 3},
		{"192.0.2\n192.0.2.0/24\n192.0.2.99/24", 1},
	}
	for i, tc := range tests {
		c := mustClients(t, tc.entries)
		if got := c.Len(); got != tc.want {
			t.Errorf("%d: entries %q: Len() = %d, want %d", i, tc.entries, got, tc.want)
		}
	}
}

func TestClientsProblems(t *testing.T) {
	tests := []struct {
		entry string
		want  string // substring of the message; "" for no problem
	}{
		{"foo bar", `"foo bar": doesn't look like a hostname (contains whitespace`},
		{"/a b/", `"/a b/": doesn't look like a hostname (contains whitespace`},
		{"/a(b/", `"/a(b/": bad regex: missing closing )`},
		{"/^(?!x)y/", `Perl-only syntax`},
		{"/a\\Z/", `bad regex: invalid escape sequence`},
		{"//", `"//": empty regex`},
		{"300.1.2.3", `"300.1.2.3": not an IPv4 address`},
		{"1.2.3.4/33", `"1.2.3.4/33": not an IPv4 network (prefix length must be /0 to /32)`},
		{"1.2.3.4/", `not an IPv4 network`},
		{"1.2.3.4.5", `"1.2.3.4.5": not an IPv4 address`},
		{"10", `"10": not an IPv4 address`},
		{"010.1.2.3", `not an IPv4 address`},
		{"192.168.1/24", `write all four octets with a prefix length, e.g. "192.168.1.0/24"`},
		{"2001:db8::/129", `"2001:db8::/129": not an IPv6 address or network`},
		{"2001:db8:::1", `not an IPv6 address or network`},
		{"fe80::1%eth0", `remove the %zone`},
		{"user@example.com", `looks like a mail address`},
		{"*.example.com", `wildcards are not supported; write "example.com"`},
		{"mx*.example.com", `wildcards are not supported`},
		{".example.com", `leading dot; write "example.com"`},
		{"[192.0.2.1]", `without brackets`},
		{"/^foo", `contains "/"`},
		{"a..example.com", `empty label`},
		{".", `empty`},
		{"host:25", `contains ':'`},
		{"a,b.example", `contains ','`},
		// Accepted.
		{"mail-1_x.example.com", ""},
		{"xn--bcher-kva.example", ""},
		{"195.235.39", ""},
		{"0.0.0.0/0", ""},
		{"::ffff:1.2.3.4", ""},
	}
	for i, tc := range tests {
		_, probs := ParseClients("f", strings.NewReader(tc.entry))
		switch {
		case tc.want == "" && len(probs) > 0:
			t.Errorf("%d: entry %q: unexpected problems %v", i, tc.entry, probs)
		case tc.want == "":
		case len(probs) != 1:
			t.Errorf("%d: entry %q: got problems %v, want one containing %q", i, tc.entry, probs, tc.want)
		case !strings.Contains(probs[0].Msg, tc.want) || probs[0].Line != 1 || probs[0].File != "f":
			t.Errorf("%d: entry %q: got problem %q, want f:1: ...%s...", i, tc.entry, probs[0].Error(), tc.want)
		}
	}
}

// A bad line is reported with its number and skipped; the rest is used.
func TestClientsProblemLines(t *testing.T) {
	text := "# header\n" + // 1
		"good.example\n" + // 2
		"\n" + // 3
		"bad entry\n" + // 4
		"/a(b/ # broken\n" + // 5
		"192.0.2.0/24\n" + // 6
		"300.1.2.3\n" + // 7
		"2001:db8::zz\n" + // 8
		"2001:db8::/32" // 9, no final newline
	c, probs := ParseClients("wl", strings.NewReader(text))
	wantLines := []int{4, 5, 7, 8}
	if len(probs) != len(wantLines) {
		t.Fatalf("got problems %v, want lines %v", probs, wantLines)
	}
	for i, p := range probs {
		if p.File != "wl" || p.Line != wantLines[i] {
			t.Errorf("problem %d = %q, want at wl:%d", i, p.Error(), wantLines[i])
		}
	}
	if !c.MatchName("x.good.example") || !c.MatchAddr(netip.MustParseAddr("192.0.2.3")) || !c.MatchAddr(netip.MustParseAddr("2001:db8::3")) {
		t.Errorf("good entries around bad lines were not used")
	}
	if c.Len() != 3 {
		t.Errorf("Len() = %d, want 3", c.Len())
	}
}

func TestProblemError(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{"a/b", 3, "bad"}, "a/b:3: bad"},
		{Problem{"a/b", 0, "cannot open: x"}, "a/b: cannot open: x"},
	}
	for i, tc := range tests {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("%d: %#v.Error() = %q, want %q", i, tc.p, got, tc.want)
		}
	}
}
