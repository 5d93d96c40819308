package dnstest

import (
	"net"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// The fake server checked with an independent client, miekg/dns.

func query(name string, qtype uint16, edns uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	return m
}

func exchange(t *testing.T, s *Server, net string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: net, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", net, m.Question[0].Name, mdns.TypeToString[m.Question[0].Qtype], err)
	}
	return resp
}

func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

func TestAnswers(t *testing.T) {
	s := Start(t)
	s.A("a.example", 300, "192.0.2.1", "192.0.2.2")
	s.AAAA("a.example", 200, "2001:db8::1")
	s.TXT("t.example", 100, "v=spf1 ", "-all")
	s.MX("example", 600, 10, "mx.example")
	s.PTR("1.2.0.192.in-addr.arpa", 60, "host.example")
	s.CNAME("www.example", 30, "a.example")
	s.SOA("example", 3600, 45)

	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
		soa   bool
	}{
		{"a.example", mdns.TypeA, mdns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1", "a.example. 300 IN A 192.0.2.2"}, false},
		{"A.Example", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"A.Example. 200 IN AAAA 2001:db8::1"}, false},
		{"t.example", mdns.TypeTXT, mdns.RcodeSuccess, []string{`t.example. 100 IN TXT "v=spf1 " "-all"`}, false},
		{"example", mdns.TypeMX, mdns.RcodeSuccess, []string{"example. 600 IN MX 10 mx.example."}, false},
		{"1.2.0.192.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"1.2.0.192.in-addr.arpa. 60 IN PTR host.example."}, false},
		{"www.example", mdns.TypeA, mdns.RcodeSuccess, []string{
			"www.example. 30 IN CNAME a.example.", "a.example. 300 IN A 192.0.2.1", "a.example. 300 IN A 192.0.2.2"}, false},
		{"a.example", mdns.TypeMX, mdns.RcodeSuccess, nil, true},
		{"nx.example", mdns.TypeA, mdns.RcodeNameError, nil, true},
		{"nx.elsewhere", mdns.TypeA, mdns.RcodeNameError, nil, false},
	}
	for i, tc := range tests {
		for _, n := range []string{"udp", "tcp"} {
			m := query(tc.name, tc.qtype, 1232)
			resp := exchange(t, s, n, m)
			got := answers(resp)
			if resp.Rcode != tc.rcode || strings.Join(got, "|") != strings.Join(tc.want, "|") ||
				!resp.Response || !resp.RecursionAvailable || resp.Id != m.Id {
				t.Errorf("%d %s: %s %s: got\n%v\nwant rcode %d, answers %q", i, n, tc.name, mdns.TypeToString[tc.qtype], resp, tc.rcode, tc.want)
			}
			if soa := len(resp.Ns) == 1 && resp.Ns[0].(*mdns.SOA).Minttl == 45; soa != tc.soa {
				t.Errorf("%d %s: %s: authority %v, want the SOA: %v", i, n, tc.name, resp.Ns, tc.soa)
			}
			if opt := resp.IsEdns0(); opt == nil || opt.UDPSize() != 1232 {
				t.Errorf("%d %s: %s: OPT %v, want one with 1232", i, n, tc.name, opt)
			}
		}
	}
	if n := s.Queries("a.example"); n != 6 {
		t.Errorf("Queries(a.example) = %d, want 6", n)
	}
	if n := s.Total(); n != 2*len(tests) {
		t.Errorf("Total() = %d, want %d", n, 2*len(tests))
	}
}

func TestBehaviours(t *testing.T) {
	s := Start(t)
	s.A("x.zone.example", 300, "192.0.2.1")
	s.A("other.example", 300, "192.0.2.2")
	for _, tc := range []struct {
		b     Behaviour
		rcode int
	}{
		{NXDomain, mdns.RcodeNameError},
		{ServFail, mdns.RcodeServerFailure},
		{Refused, mdns.RcodeRefused},
	} {
		s.Set("zone.example", tc.b)
		resp := exchange(t, s, "udp", query("x.zone.example", mdns.TypeA, 0))
		if resp.Rcode != tc.rcode || len(resp.Answer) != 0 {
			t.Errorf("behaviour %d: got\n%v\nwant rcode %d and no answer", tc.b, resp, tc.rcode)
		}
		if resp := exchange(t, s, "udp", query("other.example", mdns.TypeA, 0)); len(resp.Answer) != 1 {
			t.Errorf("behaviour %d leaks to another name: %v", tc.b, resp)
		}
	}
	s.Set("zone.example", Answer)
	if resp := exchange(t, s, "udp", query("x.zone.example", mdns.TypeA, 0)); len(resp.Answer) != 1 {
		t.Errorf("after Set(Answer): %v, want the record", resp)
	}

	s.Set("", Drop)
	c := &mdns.Client{Timeout: 100 * time.Millisecond}
	if resp, _, err := c.Exchange(query("other.example", mdns.TypeA, 0), s.Addr); err == nil {
		t.Errorf("Drop for everything: got %v, want a timeout", resp)
	}
	s.Set("", Answer)

	s.Delay("other.example", 200*time.Millisecond)
	start := time.Now()
	exchange(t, s, "udp", query("other.example", mdns.TypeA, 0))
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("Delay 200ms: answered in %v", took)
	}
	s.Delay("other.example", 0)

	s.Remove("other.example")
	if resp := exchange(t, s, "udp", query("other.example", mdns.TypeA, 0)); resp.Rcode != mdns.RcodeNameError {
		t.Errorf("after Remove: %v, want NXDOMAIN", resp)
	}
}

func TestTruncation(t *testing.T) {
	s := Start(t)
	s.A("tc.example", 300, "192.0.2.1")
	s.Set("tc.example", Truncate)
	var big []string
	for range 3 {
		big = append(big, strings.Repeat("x", 250))
	}
	s.TXT("big.example", 300, big...)

	resp := exchange(t, s, "udp", query("tc.example", mdns.TypeA, 1232))
	if !resp.Truncated || len(resp.Answer) != 0 {
		t.Errorf("Truncate over UDP: %v, want TC and no answer", resp)
	}
	resp = exchange(t, s, "tcp", query("tc.example", mdns.TypeA, 1232))
	if resp.Truncated || len(resp.Answer) != 1 {
		t.Errorf("Truncate over TCP: %v, want the answer", resp)
	}
	// 750 bytes of TXT: over 512 without EDNS0, within 1232 with it.
	resp = exchange(t, s, "udp", query("big.example", mdns.TypeTXT, 0))
	if !resp.Truncated || len(resp.Answer) != 0 {
		t.Errorf("big answer without EDNS0: %v, want TC", resp)
	}
	resp = exchange(t, s, "udp", query("big.example", mdns.TypeTXT, 1232))
	if resp.Truncated || len(resp.Answer) != 1 {
		t.Errorf("big answer with EDNS0: %v, want the answer", resp)
	}
}

// Spoof sends two wrong answers before the right one.
func TestSpoof(t *testing.T) {
	s := Start(t)
	s.A("x.example", 300, "192.0.2.1")
	s.Set("x.example", Spoof)
	c, err := net.Dial("udp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := query("x.example", mdns.TypeA, 0)
	b, _ := q.Pack()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var got []*mdns.Msg
	buf := make([]byte, 2048)
	for range 3 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		m := new(mdns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if got[0].Id == q.Id || got[0].Rcode != mdns.RcodeNameError {
		t.Errorf("first: %v, want another ID", got[0])
	}
	if got[1].Id != q.Id || got[1].Question[0].Name == q.Question[0].Name {
		t.Errorf("second: %v, want the ID and another question", got[1])
	}
	if got[2].Id != q.Id || len(got[2].Answer) != 1 {
		t.Errorf("third: %v, want the answer", got[2])
	}
}

func TestHold(t *testing.T) {
	s := Start(t)
	s.A("held.example", 300, "192.0.2.1")
	release := s.Hold("held.example")
	done := make(chan *mdns.Msg, 1)
	go func() {
		c := &mdns.Client{Timeout: 10 * time.Second}
		resp, _, _ := c.Exchange(query("held.example", mdns.TypeA, 0), s.Addr)
		done <- resp
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.Queries("held.example") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("query never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case resp := <-done:
		t.Fatalf("answered while held: %v", resp)
	default:
	}
	release()
	if resp := <-done; resp == nil || len(resp.Answer) != 1 {
		t.Errorf("after release: %v, want the answer", resp)
	}
}

// Close ends held answers and open TCP connections without waiting.
func TestClose(t *testing.T) {
	s := Start(t)
	s.Hold("")
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := query("x.example", mdns.TypeA, 0).Pack()
	c.Write(append([]byte{byte(len(b) >> 8), byte(len(b))}, b...))
	deadline := time.Now().Add(10 * time.Second)
	for s.Total() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("query never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	s.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 10)); err == nil {
		t.Errorf("read %d bytes from a closed server", n)
	}
}
