package dnstest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const testZone = `
# the bench's kind of zone
example            SOA 60
*.example     3600 TXT "v=spf1 ip4:198.18.0.0/15 " "-all"
mail.example       A 192.0.2.10
mail.example       AAAA 2001:db8::10
10.2.0.192.in-addr.arpa 600 PTR mail.example
www.example        CNAME mail.example
example            MX 10 mail.example
plain.example      TXT v=spf1 -all
dnsbl.test         SOA 60
*.19.198.dnsbl.test A 127.0.0.2
2.0.0.127.dnsbl.test A 127.0.0.2
quiet.test         DROP
bad.test           SERVFAIL
`

func TestLoadZone(t *testing.T) {
	s := Start(t)
	if err := s.LoadZone(strings.NewReader(testZone), "test.zone"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"mail.example", mdns.TypeA, mdns.RcodeSuccess, []string{"mail.example. 300 IN A 192.0.2.10"}},
		{"mail.example", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"mail.example. 300 IN AAAA 2001:db8::10"}},
		{"10.2.0.192.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"10.2.0.192.in-addr.arpa. 600 IN PTR mail.example."}},
		{"www.example", mdns.TypeA, mdns.RcodeSuccess, []string{"www.example. 300 IN CNAME mail.example.", "mail.example. 300 IN A 192.0.2.10"}},
		{"example", mdns.TypeMX, mdns.RcodeSuccess, []string{"example. 300 IN MX 10 mail.example."}},
		{"plain.example", mdns.TypeTXT, mdns.RcodeSuccess, []string{`plain.example. 300 IN TXT "v=spf1 -all"`}},
		// The wildcard answers for names that have no records...
		{"s42.example", mdns.TypeTXT, mdns.RcodeSuccess, []string{`s42.example. 3600 IN TXT "v=spf1 ip4:198.18.0.0/15 " "-all"`}},
		{"a.b.example", mdns.TypeTXT, mdns.RcodeSuccess, []string{`a.b.example. 3600 IN TXT "v=spf1 ip4:198.18.0.0/15 " "-all"`}},
		// ...but not for those that have some (NODATA), nor for other types.
		{"mail.example", mdns.TypeTXT, mdns.RcodeSuccess, nil},
		{"s42.example", mdns.TypeA, mdns.RcodeSuccess, nil},
		{"1.0.19.198.dnsbl.test", mdns.TypeA, mdns.RcodeSuccess, []string{"1.0.19.198.dnsbl.test. 300 IN A 127.0.0.2"}},
		{"2.0.0.127.dnsbl.test", mdns.TypeA, mdns.RcodeSuccess, []string{"2.0.0.127.dnsbl.test. 300 IN A 127.0.0.2"}},
		{"1.0.18.198.dnsbl.test", mdns.TypeA, mdns.RcodeNameError, nil},
		{"x.bad.test", mdns.TypeA, mdns.RcodeServerFailure, nil},
	}
	for i, tc := range tests {
		for _, n := range []string{"udp", "tcp"} {
			resp := exchange(t, s, n, query(tc.name, tc.qtype, 0))
			if got := answers(resp); resp.Rcode != tc.rcode || strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("%d %s: %s %s: got rcode %d, %q; want %d, %q", i, n, tc.name, mdns.TypeToString[tc.qtype], resp.Rcode, got, tc.rcode, tc.want)
			}
		}
	}
	c := &mdns.Client{Timeout: 100 * time.Millisecond}
	if resp, _, err := c.Exchange(query("quiet.test", mdns.TypeA, 0), s.Addr); err == nil {
		t.Errorf("quiet.test DROP: got %v, want a timeout", resp)
	}
}

func TestLoadZoneErrors(t *testing.T) {
	tests := []struct{ zone, want string }{
		{"a.example A 192.0.2.1\nb.example A 2001:db8::1", "z:2: b.example A: \"2001:db8::1\" is not an IPv4 address"},
		{"a.example AAAA 192.0.2.1", "z:1: a.example AAAA: \"192.0.2.1\" is not an IPv6 address"},
		{"a.example 60 MX mail.example", "z:1: a.example MX: want 2 data field(s)"},
		{"a.example MX x mail.example", "z:1: a.example MX: preference \"x\""},
		{"a.example TXT", "z:1: a.example TXT: no data"},
		{`a.example TXT "open`, "z:1: a.example TXT: bad quoted string"},
		{"a.example SRV 1 2 3 x", "z:1: a.example: unknown type \"SRV\""},
		{"a.example DROP now", "z:1: a.example DROP: unexpected \"now\""},
		{"a..example A 192.0.2.1", "z:1: bad name \"a..example\""},
		{"a.example PTR", "z:1: a.example PTR: want 1 data field(s)"},
		{"a.example SOA soon", "z:1: a.example SOA: negative TTL \"soon\""},
	}
	for i, tc := range tests {
		s := Start(t)
		err := s.LoadZone(strings.NewReader(tc.zone), "z")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%d: %q: got %v, want %q...", i, tc.zone, err, tc.want)
		}
		// Nothing of a bad file is loaded, not even its good lines.
		if resp := exchange(t, s, "udp", query("a.example", mdns.TypeA, 0)); resp.Rcode != mdns.RcodeNameError {
			t.Errorf("%d: a.example after a failed load: %v, want NXDOMAIN", i, resp)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestListenAndLog(t *testing.T) {
	// A fixed address, as the standalone server gets one: take a free one
	// first, then listen on it again.
	s0, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := s0.Addr
	s0.Close()
	s, err := Listen(addr)
	if err != nil {
		t.Fatalf("Listen(%s) again: %v", addr, err)
	}
	defer s.Close()
	if s.Addr != addr {
		t.Errorf("Addr = %s, want %s", s.Addr, addr)
	}
	var log syncBuffer
	s.LogQueries(&log)
	s.A("a.example", 60, "192.0.2.1")
	s.Set("gone.example", Drop)
	exchange(t, s, "udp", query("A.example", mdns.TypeA, 0))
	exchange(t, s, "tcp", query("nx.example", mdns.TypeTXT, 0))
	c := &mdns.Client{Timeout: 100 * time.Millisecond}
	c.Exchange(query("gone.example", mdns.TypeA, 0), s.Addr)
	want := "dnstest: udp A a.example: Success, 1 answer(s)\n" +
		"dnstest: tcp TXT nx.example: NameError, 0 answer(s)\n" +
		"dnstest: udp A gone.example: dropped\n"
	deadline := time.Now().Add(5 * time.Second)
	for log.String() != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := log.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
	if _, err := Listen("127.0.0.1"); err == nil {
		t.Error("Listen without a port: no error")
	}
	if _, err := Listen(addr); err == nil {
		t.Errorf("Listen(%s) while in use: no error", addr)
	}
}

func TestListenZone(t *testing.T) {
	if _, err := ListenZone("127.0.0.1:0", strings.NewReader("a.example A 192.0.2.1\nb.example A nope\n"), "bad.zone"); err == nil || !strings.Contains(err.Error(), "bad.zone:2:") {
		t.Fatalf("bad zone: err %v, want bad.zone:2", err)
	}
	s, err := ListenZone("127.0.0.1:0", strings.NewReader(testZone), "test.zone")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The very first query is answered from the whole zone.
	resp := exchange(t, s, "udp", query("s1.example", mdns.TypeTXT, 0))
	if got := answers(resp); resp.Rcode != mdns.RcodeSuccess || len(got) != 1 {
		t.Errorf("first query: rcode %d, %q; want the wildcard's TXT", resp.Rcode, got)
	}
}
