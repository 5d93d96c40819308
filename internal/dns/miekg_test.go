package dns

import (
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// startMiekg serves h on 127.0.0.1 over UDP and TCP with miekg/dns, an
// implementation independent of this package and of dnstest.
func startMiekg(t *testing.T, h mdns.HandlerFunc) string {
	t.Helper()
	// A free UDP port may be taken for TCP by another test: try others,
	// as dnstest does.
	var pc net.PacketConn
	var l net.Listener
	var err error
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for UDP and TCP: %v", err)
	}
	var started sync.WaitGroup
	started.Add(2)
	for _, s := range []*mdns.Server{
		{PacketConn: pc, Handler: h, NotifyStartedFunc: started.Done},
		{Listener: l, Handler: h, NotifyStartedFunc: started.Done},
	} {
		go s.ActivateAndServe()
		t.Cleanup(func() { s.Shutdown() })
	}
	started.Wait()
	return pc.LocalAddr().String()
}

func rr(t *testing.T, s string) mdns.RR {
	t.Helper()
	r, err := mdns.NewRR(s)
	if err != nil {
		t.Fatalf("NewRR(%q): %v", s, err)
	}
	return r
}

// The client against another implementation of the server side: answers
// of each type, negative answers, CNAMEs, truncation by miekg's own rules.
func TestAgainstMiekgServer(t *testing.T) {
	var mu sync.Mutex
	var ednsSizes []uint16
	var tcp []string // names asked over TCP
	var bigTXT []string
	for i := range 10 {
		bigTXT = append(bigTXT, `"`+strings.Repeat(string(rune('a'+i)), 200)+`"`)
	}
	soa := "example. 300 IN SOA ns.example. h.example. 1 3600 600 86400 45"
	zone := map[string][]string{
		"a.example. A":                {"a.example. 300 IN A 192.0.2.1", "a.example. 100 IN A 192.0.2.2"},
		"a.example. AAAA":             {"a.example. 300 IN AAAA 2001:db8::1"},
		"t.example. TXT":              {`t.example. 300 IN TXT "v=spf1 " "a -all"`, `t.example. 300 IN TXT "other"`},
		"example. MX":                 {"example. 300 IN MX 10 mx.example."},
		"1.2.0.192.in-addr.arpa. PTR": {"1.2.0.192.in-addr.arpa. 300 IN PTR Host.Example."},
		"c.example. A":                {"c.example. 60 IN CNAME a.example.", "a.example. 300 IN A 192.0.2.1"},
		"big.example. TXT":            {"big.example. 300 IN TXT " + strings.Join(bigTXT, " ")},
	}
	addr := startMiekg(t, func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		q := req.Question[0]
		mu.Lock()
		if opt := req.IsEdns0(); opt != nil {
			ednsSizes = append(ednsSizes, opt.UDPSize())
		} else {
			ednsSizes = append(ednsSizes, 0)
		}
		mu.Unlock()
		for _, s := range zone[q.Name+" "+mdns.TypeToString[q.Qtype]] {
			m.Answer = append(m.Answer, rr(t, s))
		}
		exists := false
		for k := range zone {
			exists = exists || strings.HasPrefix(k, q.Name+" ")
		}
		switch {
		case q.Name == "servfail.example.":
			m.Rcode = mdns.RcodeServerFailure
		case len(m.Answer) > 0:
		case exists:
			m.Ns = append(m.Ns, rr(t, soa))
		default:
			m.Rcode = mdns.RcodeNameError
			m.Ns = append(m.Ns, rr(t, soa))
		}
		if opt := req.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); !udp {
			mu.Lock()
			tcp = append(tcp, q.Name)
			mu.Unlock()
		} else {
			size := mdns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	r, err := New(Config{Servers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)

	tests := []struct {
		name string
		typ  Type
		want Result
	}{
		{"a.example", TypeA, Result{Status: Found, TTL: 100 * time.Second, Addrs: addrs("192.0.2.1", "192.0.2.2")}},
		{"a.example", TypeAAAA, Result{Status: Found, TTL: 300 * time.Second, Addrs: addrs("2001:db8::1")}},
		{"t.example", TypeTXT, Result{Status: Found, TTL: 300 * time.Second, Texts: []string{"v=spf1 a -all", "other"}}},
		{"example", TypeMX, Result{Status: Found, TTL: 300 * time.Second, MX: []MX{{"mx.example", 10}}}},
		{"1.2.0.192.in-addr.arpa", TypePTR, Result{Status: Found, TTL: 300 * time.Second, Names: []string{"Host.Example"}}},
		{"c.example", TypeA, Result{Status: Found, TTL: 60 * time.Second, Addrs: addrs("192.0.2.1")}},
		{"a.example", TypeMX, Result{Status: NoData, TTL: 45 * time.Second}},
		{"nx.example", TypeA, Result{Status: NXDomain, TTL: 45 * time.Second}},
		{"servfail.example", TypeA, Result{Status: ServFail}},
		{"big.example", TypeTXT, Result{Status: Found, TTL: 300 * time.Second, Texts: []string{strings.ReplaceAll(strings.Join(bigTXT, ""), `"`, "")}}},
	}
	for i, tc := range tests {
		if got := lookup(t, r, tc.name, tc.typ); !same(got, tc.want) {
			t.Errorf("%d: %s %v: got %s, want %s", i, tc.name, tc.typ, show(got), show(tc.want))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(tcp, []string{"big.example."}) {
		t.Errorf("asked over TCP: %q, want only big.example. (truncated over UDP)", tcp)
	}
	for _, s := range ednsSizes {
		if s != ednsSize {
			t.Errorf("EDNS0 UDP sizes of the queries %v, want %d in each", ednsSizes, ednsSize)
			break
		}
	}
}
