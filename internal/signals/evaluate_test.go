package signals

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"greyd/internal/dns"
	"greyd/internal/dns/dnstest"
	"greyd/internal/identity"
	"greyd/internal/whitelist"
)

var (
	client  = netip.MustParseAddr("192.0.2.1")
	other   = netip.MustParseAddr("198.51.100.7")
	client6 = netip.MustParseAddr("2001:db8::1")
)

// newResolver returns a resolver asking s, closed at the end of t.
func newResolver(t testing.TB, s *dnstest.Server, c dns.Config) *dns.Resolver {
	t.Helper()
	c.Servers = []string{s.Addr}
	r, err := dns.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func mustConfig(t testing.TB, s Spec) *Config {
	t.Helper()
	c, err := NewConfig(s)
	if err != nil {
		t.Fatalf("NewConfig(%+v): %v", s, err)
	}
	return c
}

func evaluate(t testing.TB, e *Evaluator, c *Config, in Input) Score {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.Evaluate(ctx, c, in)
}

// sig is the part of a Signal a table sets.
type sig struct {
	name    string
	weight  int
	result  string
	unknown bool
}

func (s sig) String() string {
	u := ""
	if s.unknown {
		u = "?"
	}
	return fmt.Sprintf("%s:%d%s(%s)", s.name, s.weight, u, s.result)
}

func sigs(sc Score) []sig {
	var out []sig
	for _, s := range sc.Signals {
		out = append(out, sig{s.Name, s.Weight, s.Result, s.Unknown})
	}
	return out
}

func show(sc Score) string {
	var b strings.Builder
	fmt.Fprintf(&b, "total %d:", sc.Total)
	for _, s := range sc.Signals {
		fmt.Fprintf(&b, " %s:%d", s.Name, s.Weight)
		if s.Unknown {
			b.WriteByte('?')
		}
		fmt.Fprintf(&b, "(%s %q cached=%v)", s.Result, s.Answer, s.Cached)
	}
	return b.String()
}

const (
	bl = "bl.example"
	wl = "wl.example"
)

var (
	bl3  = []DNSBLSpec{{Zone: bl, Weight: 3}}
	wl3  = []DNSWLSpec{{Zone: wl, Weight: -3}}
	spfs = Spec{SPFFail: w(2), SPFSoftfail: w(1), SPFPass: w(-1)}
)

func TestEvaluate(t *testing.T) {
	dynNames, probs := whitelist.ParseClients("dynamic_names", strings.NewReader("/^zz[0-9]/\n"))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	withSPF := func(s Spec) Spec {
		s.SPFFail, s.SPFSoftfail, s.SPFPass = spfs.SPFFail, spfs.SPFSoftfail, spfs.SPFPass
		return s
	}
	tests := []struct {
		what  string
		spec  Spec
		zone  func(s *dnstest.Server)
		in    Input
		total int
		want  []sig
	}{
		// DNSBL
		{"dnsbl listed", Spec{DNSBLs: bl3},
			func(s *dnstest.Server) { s.A("1.2.0.192."+bl, 300, "127.0.0.2") },
			Input{Addr: client}, 3, []sig{{"dnsbl." + bl, 3, Listed, false}}},
		{"dnsbl not listed", Spec{DNSBLs: bl3},
			func(s *dnstest.Server) { s.SOA(bl, 300, 60) },
			Input{Addr: client}, 0, []sig{{"dnsbl." + bl, 0, NotListed, false}}},
		{"dnsbl answer outside listed", Spec{DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 3, Listed: []string{"127.0.0.4-127.0.0.7"}}}},
			func(s *dnstest.Server) { s.A("1.2.0.192."+bl, 300, "127.0.0.2") },
			Input{Addr: client}, 0, []sig{{"dnsbl." + bl, 0, NotListed, false}}},
		{"dnsbl one of two answers listed", Spec{DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 3, Listed: []string{"127.0.0.4"}}}},
			func(s *dnstest.Server) { s.A("1.2.0.192."+bl, 300, "127.0.0.2", "127.0.0.4") },
			Input{Addr: client}, 3, []sig{{"dnsbl." + bl, 3, Listed, false}}},
		{"dnsbl refusal code counts at worst", Spec{DNSBLs: bl3},
			func(s *dnstest.Server) { s.A("1.2.0.192."+bl, 300, "127.255.255.254") },
			Input{Addr: client}, 3, []sig{{"dnsbl." + bl, 3, Refused, true}}},
		{"dnsbl refusal wins over a listing", Spec{DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 3, Listed: []string{"127.0.0.0/8"}}}},
			func(s *dnstest.Server) { s.A("1.2.0.192."+bl, 300, "127.0.0.2", "127.255.255.252") },
			Input{Addr: client}, 3, []sig{{"dnsbl." + bl, 3, Refused, true}}},
		{"dnsbl servfail counts at worst", Spec{DNSBLs: bl3},
			func(s *dnstest.Server) { s.Set(bl, dnstest.ServFail) },
			Input{Addr: client}, 3, []sig{{"dnsbl." + bl, 3, Failed, true}}},
		{"dnsbl of weight 0 is asked and weighs nothing", Spec{DNSBLs: []DNSBLSpec{{Zone: bl}}},
			func(s *dnstest.Server) { s.A("1.2.0.192."+bl, 300, "127.0.0.2") },
			Input{Addr: client}, 0, []sig{{"dnsbl." + bl, 0, Listed, false}}},
		{"dnsbl IPv6 client under its nibble name", Spec{DNSBLs: bl3},
			func(s *dnstest.Server) {
				s.A("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."+bl, 300, "127.0.0.3")
			},
			Input{Addr: client6}, 3, []sig{{"dnsbl." + bl, 3, Listed, false}}},
		{"dnsbl IPv4-mapped client as IPv4", Spec{DNSBLs: bl3},
			func(s *dnstest.Server) { s.A("1.2.0.192."+bl, 300, "127.0.0.2") },
			Input{Addr: netip.MustParseAddr("::ffff:192.0.2.1")}, 3, []sig{{"dnsbl." + bl, 3, Listed, false}}},
		{"dnsbl without a client address", Spec{DNSBLs: bl3}, nil,
			Input{}, 3, []sig{{"dnsbl." + bl, 3, Failed, true}}},

		// DNSWL
		{"dnswl listed", Spec{DNSWLs: wl3},
			func(s *dnstest.Server) { s.A("1.2.0.192."+wl, 300, "127.0.10.2") },
			Input{Addr: client}, -3, []sig{{"dnswl." + wl, -3, Listed, false}}},
		{"dnswl below min_trust", Spec{DNSWLs: wl3},
			func(s *dnstest.Server) { s.A("1.2.0.192."+wl, 300, "127.0.10.0") },
			Input{Addr: client}, 0, []sig{{"dnswl." + wl, 0, NotListed, false}}},
		{"dnswl min_trust 0", Spec{DNSWLs: []DNSWLSpec{{Zone: wl, Weight: -3, MinTrust: w(0)}}},
			func(s *dnstest.Server) { s.A("1.2.0.192."+wl, 300, "127.0.10.0") },
			Input{Addr: client}, -3, []sig{{"dnswl." + wl, -3, Listed, false}}},
		{"dnswl min_trust 3", Spec{DNSWLs: []DNSWLSpec{{Zone: wl, Weight: -3, MinTrust: w(3)}}},
			func(s *dnstest.Server) { s.A("1.2.0.192."+wl, 300, "127.0.10.2") },
			Input{Addr: client}, 0, []sig{{"dnswl." + wl, 0, NotListed, false}}},
		{"dnswl answer outside 127.0/16", Spec{DNSWLs: wl3},
			func(s *dnstest.Server) { s.A("1.2.0.192."+wl, 300, "192.0.2.99") },
			Input{Addr: client}, 0, []sig{{"dnswl." + wl, 0, NotListed, false}}},
		{"dnswl refusal code counts at worst: nothing", Spec{DNSWLs: wl3},
			func(s *dnstest.Server) { s.A("1.2.0.192."+wl, 300, "127.0.10.255") },
			Input{Addr: client}, 0, []sig{{"dnswl." + wl, 0, Refused, true}}},
		{"dnswl servfail counts at worst: nothing", Spec{DNSWLs: wl3},
			func(s *dnstest.Server) { s.Set(wl, dnstest.ServFail) },
			Input{Addr: client}, 0, []sig{{"dnswl." + wl, 0, Failed, true}}},
		{"dnsbl and dnswl of one zone", Spec{DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 2, Listed: []string{"127.0.0.2"}}},
			DNSWLs: []DNSWLSpec{{Zone: bl, Weight: -2}}},
			func(s *dnstest.Server) { s.A("1.2.0.192."+bl, 300, "127.0.0.1") },
			Input{Addr: client}, -2, []sig{{"dnsbl." + bl, 0, NotListed, false}, {"dnswl." + bl, -2, Listed, false}}},

		// Reverse DNS and HELO
		{"rdns missing", Spec{RDNSMissing: w(3), RDNSDynamic: w(2)}, nil,
			Input{Addr: client, Name: "unknown"}, 3, []sig{{RDNSMissing, 3, Yes, false}, {RDNSDynamic, 0, No, false}}},
		{"rdns missing, empty", Spec{RDNSMissing: w(3)}, nil,
			Input{Addr: client}, 3, []sig{{RDNSMissing, 3, Yes, false}}},
		{"rdns present", Spec{RDNSMissing: w(3), RDNSDynamic: w(2)}, nil,
			Input{Addr: client, Name: "mail.example.com"}, 0, []sig{{RDNSMissing, 0, No, false}, {RDNSDynamic, 0, No, false}}},
		{"rdns dynamic: address in name", Spec{RDNSDynamic: w(2)}, nil,
			Input{Addr: client, Name: "c-192-0-2-1.hsd1.example.net"}, 2, []sig{{RDNSDynamic, 2, Yes, false}}},
		{"rdns dynamic: keyword", Spec{RDNSDynamic: w(2)}, nil,
			Input{Addr: client, Name: "cust42.adsl.example.net"}, 2, []sig{{RDNSDynamic, 2, Yes, false}}},
		{"rdns dynamic: dynamic_domains", Spec{RDNSDynamic: w(2), Identity: identity.New(identity.Config{DynamicDomains: []string{"isp.example"}})}, nil,
			Input{Addr: client, Name: "a.isp.example"}, 2, []sig{{RDNSDynamic, 2, Yes, false}}},
		{"rdns dynamic: dynamic_names", Spec{RDNSDynamic: w(2), DynamicNames: dynNames}, nil,
			Input{Addr: client, Name: "zz1.example.com"}, 2, []sig{{RDNSDynamic, 2, Yes, false}}},
		{"rdns not dynamic", Spec{RDNSDynamic: w(2), DynamicNames: dynNames}, nil,
			Input{Addr: client, Name: "mail-ej1-f41.google.com"}, 0, []sig{{RDNSDynamic, 0, No, false}}},
		{"helo invalid", Spec{HELOInvalid: w(1)}, nil,
			Input{Addr: client, HELO: "localhost"}, 1, []sig{{HELOInvalid, 1, Yes, false}}},
		{"helo literal of the client", Spec{HELOInvalid: w(1)}, nil,
			Input{Addr: client, HELO: "[192.0.2.1]"}, 0, []sig{{HELOInvalid, 0, No, false}}},
		{"negative weight", Spec{RDNSMissing: w(-1)}, nil,
			Input{Addr: client, Name: "unknown"}, -1, []sig{{RDNSMissing, -1, Yes, false}}},

		// SPF
		{"spf pass", withSPF(Spec{}),
			func(s *dnstest.Server) { s.TXT("example.com", 300, "v=spf1 ip4:192.0.2.0/24 -all") },
			Input{Addr: client, Sender: "a@example.com"}, -1, []sig{{"spf_pass", -1, "pass", false}}},
		{"spf fail", withSPF(Spec{}),
			func(s *dnstest.Server) { s.TXT("example.com", 300, "v=spf1 ip4:192.0.2.0/24 -all") },
			Input{Addr: other, Sender: "a@example.com"}, 2, []sig{{"spf_fail", 2, "fail", false}}},
		{"spf softfail", withSPF(Spec{}),
			func(s *dnstest.Server) { s.TXT("example.com", 300, "v=spf1 ip4:192.0.2.0/24 ~all") },
			Input{Addr: other, Sender: "a@example.com"}, 1, []sig{{"spf_softfail", 1, "softfail", false}}},
		{"spf neutral", withSPF(Spec{}),
			func(s *dnstest.Server) { s.TXT("example.com", 300, "v=spf1 ip4:192.0.2.0/24 ?all") },
			Input{Addr: other, Sender: "a@example.com"}, 0, []sig{{"spf_neutral", 0, "neutral", false}}},
		{"spf none", withSPF(Spec{}), nil,
			Input{Addr: other, Sender: "a@example.com"}, 0, []sig{{"spf_none", 0, "none", false}}},
		{"spf fail without a weight for it", Spec{SPFPass: w(-1)},
			func(s *dnstest.Server) { s.TXT("example.com", 300, "v=spf1 -all") },
			Input{Addr: client, Sender: "a@example.com"}, 0, []sig{{"spf_fail", 0, "fail", false}}},
		{"spf include, a, mx", withSPF(Spec{}),
			func(s *dnstest.Server) {
				s.TXT("example.com", 300, "v=spf1 include:_spf.example.net mx -all")
				s.TXT("_spf.example.net", 300, "v=spf1 a:out.example.net -all")
				s.A("out.example.net", 300, "192.0.2.9")
				s.MX("example.com", 300, 10, "mx.example.com")
				s.A("mx.example.com", 300, "192.0.2.1")
			},
			Input{Addr: client, Sender: "a@example.com"}, -1, []sig{{"spf_pass", -1, "pass", false}}},
		{"spf temperror counts at worst", withSPF(Spec{}),
			func(s *dnstest.Server) { s.Set("example.com", dnstest.ServFail) },
			Input{Addr: client, Sender: "a@example.com"}, 2, []sig{{"spf_temperror", 2, "temperror", true}}},
		{"spf temperror with a negative weight only", Spec{SPFPass: w(-1)},
			func(s *dnstest.Server) { s.Set("example.com", dnstest.ServFail) },
			Input{Addr: client, Sender: "a@example.com"}, 0, []sig{{"spf_temperror", 0, "temperror", true}}},
		{"spf permerror counts at worst", withSPF(Spec{}),
			func(s *dnstest.Server) {
				s.TXT("example.com", 300, "v=spf1 -all")
				s.TXT("example.com", 300, "v=spf1 +all")
			},
			Input{Addr: client, Sender: "a@example.com"}, 2, []sig{{"spf_permerror", 2, "permerror", true}}},
		{"spf null sender: the HELO name", withSPF(Spec{}),
			func(s *dnstest.Server) {
				s.TXT("mail.example.org", 300, "v=spf1 a -all")
				s.A("mail.example.org", 300, "192.0.2.1")
			},
			Input{Addr: client, HELO: "mail.example.org"}, -1, []sig{{"spf_pass", -1, "pass", false}}},
		{"spf null sender <>: the HELO name", withSPF(Spec{}),
			func(s *dnstest.Server) { s.TXT("mail.example.org", 300, "v=spf1 a -all") },
			Input{Addr: client, HELO: "mail.example.org", Sender: "<>"}, 2, []sig{{"spf_fail", 2, "fail", false}}},
		{"spf null sender, HELO a literal: none without lookup", withSPF(Spec{}), nil,
			Input{Addr: client, HELO: "[192.0.2.1]"}, 0, []sig{{"spf_none", 0, "none", false}}},
		{"spf sender domain single label: none", withSPF(Spec{}), nil,
			Input{Addr: client, Sender: "a@localhost"}, 0, []sig{{"spf_none", 0, "none", false}}},
		{"spf macro of the sender", withSPF(Spec{}),
			func(s *dnstest.Server) {
				s.TXT("example.com", 300, "v=spf1 exists:%{l}.u.example.com -all")
				s.A("bob.u.example.com", 300, "127.0.0.2")
			},
			Input{Addr: other, Sender: "bob@example.com"}, -1, []sig{{"spf_pass", -1, "pass", false}}},

		// Everything at once, in configuration order.
		{"all", Spec{RDNSMissing: w(3), RDNSDynamic: w(2), HELOInvalid: w(1), SPFFail: w(2), SPFSoftfail: w(1),
			DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 3}, {Zone: "bl2.example", Weight: 2}}, DNSWLs: wl3},
			func(s *dnstest.Server) {
				s.A("1.2.0.192."+bl, 300, "127.0.0.2")
				s.Set("bl2.example", dnstest.ServFail)
				s.TXT("example.com", 300, "v=spf1 ~all")
			},
			Input{Addr: client, Name: "unknown", HELO: "[192.0.2.1]", Sender: "a@example.com"}, 9,
			[]sig{{RDNSMissing, 3, Yes, false}, {RDNSDynamic, 0, No, false}, {HELOInvalid, 0, No, false},
				{"spf_softfail", 1, "softfail", false}, {"dnsbl." + bl, 3, Listed, false},
				{"dnsbl.bl2.example", 2, Failed, true}, {"dnswl." + wl, 0, NotListed, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.what, func(t *testing.T) {
			s := dnstest.Start(t)
			if tc.zone != nil {
				tc.zone(s)
			}
			e := &Evaluator{Resolver: newResolver(t, s, dns.Config{})}
			sc := evaluate(t, e, mustConfig(t, tc.spec), tc.in)
			if sc.Total != tc.total || !slices.Equal(sigs(sc), tc.want) {
				t.Errorf("%+v:\ngot  %s\nwant total %d: %v", tc.in, show(sc), tc.total, tc.want)
			}
			for _, g := range sc.Signals {
				if g.Answer == "" {
					t.Errorf("%s: no answer", g.Name)
				}
			}
		})
	}
}

// The null sender is checked as postmaster@helo at the HELO name, and
// no signal without a weight asks anything.
func TestEvaluateQueries(t *testing.T) {
	s := dnstest.Start(t)
	s.TXT("mail.example.org", 300, "v=spf1 ip4:192.0.2.1 -all")
	s.TXT("example.com", 300, "v=spf1 -all")
	s.A("1.2.0.192."+bl, 300, "127.0.0.2")
	e := &Evaluator{Resolver: newResolver(t, s, dns.Config{})}
	in := Input{Addr: client, Name: "unknown", HELO: "mail.example.org", Sender: "a@example.com"}

	local := mustConfig(t, Spec{RDNSMissing: w(3), RDNSDynamic: w(2), HELOInvalid: w(1)})
	if sc := evaluate(t, e, local, in); sc.Total != 3 || s.Total() != 0 {
		t.Errorf("local signals: %s with %d queries, want total 3 and none", show(sc), s.Total())
	}
	lists := mustConfig(t, Spec{DNSBLs: bl3})
	if sc := evaluate(t, e, lists, in); sc.Total != 3 || s.Total() != 1 || s.Queries("1.2.0.192."+bl) != 1 {
		t.Errorf("no spf_* weight: %s with %d queries, want total 3 and only the DNSBL's", show(sc), s.Total())
	}
	null := in
	null.Sender = ""
	if sc := evaluate(t, e, mustConfig(t, spfs), null); sc.Total != -1 || s.Queries("mail.example.org") != 1 || s.Queries("example.com") != 0 {
		t.Errorf("null sender: %s, %d queries for the HELO name and %d for the sender's, want -1, 1, 0",
			show(sc), s.Queries("mail.example.org"), s.Queries("example.com"))
	}
	var none *Config
	if sc := evaluate(t, e, none, in); sc.Total != 0 || sc.Signals != nil {
		t.Errorf("nil config: %s, want an empty score", show(sc))
	}
}

// Within the TTL a second evaluation asks nothing: every answer, SPF's
// included, comes from the cache.
func TestEvaluateCached(t *testing.T) {
	s := dnstest.Start(t)
	s.SOA("example", 300, 300)
	s.A("1.2.0.192."+bl, 300, "127.0.0.2")
	s.A("1.2.0.192."+wl, 300, "127.0.10.2")
	s.TXT("example.com", 300, "v=spf1 include:_spf.example.net mx a:mail.example.com -all")
	s.TXT("_spf.example.net", 300, "v=spf1 ip4:203.0.113.0/24 -all")
	s.MX("example.com", 300, 10, "mx.example.com")
	s.A("mx.example.com", 300, "203.0.113.25")
	s.A("mail.example.com", 300, "192.0.2.1")
	s.AAAA("mail.example.com", 300, "2001:db8::25")
	c := mustConfig(t, Spec{SPFFail: w(2), SPFPass: w(-1),
		DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 3}, {Zone: "nx.example", Weight: 1}}, DNSWLs: wl3})
	e := &Evaluator{Resolver: newResolver(t, s, dns.Config{})}
	in := Input{Addr: client, Name: "mail.example.com", HELO: "mail.example.com", Sender: "a@example.com"}
	first := evaluate(t, e, c, in)
	if first.Total != -1 {
		t.Fatalf("first: %s, want total -1 (spf pass, listed in both)", show(first))
	}
	for _, g := range first.Signals {
		if g.Cached {
			t.Errorf("first: %s cached", g.Name)
		}
	}
	queries := s.Total()
	second := evaluate(t, e, c, in)
	if s.Total() != queries || !slices.Equal(sigs(second), sigs(first)) {
		t.Errorf("second: %s with %d new queries, want %s with none", show(second), s.Total()-queries, show(first))
	}
	for _, g := range second.Signals {
		if !g.Cached {
			t.Errorf("second: %s not cached", g.Name)
		}
	}
}

// A list that never answers costs the budget, no more, and counts at
// worst; lists and SPF share one budget rather than each having one.
func TestEvaluateBudget(t *testing.T) {
	s := dnstest.Start(t)
	s.Set(bl, dnstest.Drop)
	s.Set("bl2.example", dnstest.Drop)
	s.Set(wl, dnstest.Drop)
	s.Set("example.com", dnstest.Drop)
	s.A("1.2.0.192.fast.example", 300, "127.0.0.2")
	const budget = 400 * time.Millisecond
	c := mustConfig(t, Spec{SPFFail: w(2), Budget: budget,
		DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 3}, {Zone: "bl2.example", Weight: 1}, {Zone: "fast.example", Weight: 1}},
		DNSWLs: wl3})
	e := &Evaluator{Resolver: newResolver(t, s, dns.Config{})}
	start := time.Now()
	sc := evaluate(t, e, c, Input{Addr: client, Sender: "a@example.com"})
	took := time.Since(start)
	want := []sig{{"spf_temperror", 2, TimedOut, true}, {"dnsbl." + bl, 3, TimedOut, true},
		{"dnsbl.bl2.example", 1, TimedOut, true}, {"dnsbl.fast.example", 1, Listed, false}, {"dnswl." + wl, 0, TimedOut, true}}
	if sc.Total != 7 || !slices.Equal(sigs(sc), want) {
		t.Errorf("got %s\nwant total 7: %v", show(sc), want)
	}
	// Generous above: the machine running the tests is shared.
	if took < budget || took > budget+600*time.Millisecond {
		t.Errorf("took %v with a budget of %v", took, budget)
	}
	for _, g := range sc.Signals {
		if g.Unknown && (g.Took < budget/2 || g.Took > took) {
			t.Errorf("%s: took %v, want about the budget", g.Name, g.Took)
		}
	}
}

// A lookup still running when the budget ends goes on in the background
// and fills the cache for the retry.
func TestEvaluateBackgroundFillsCache(t *testing.T) {
	s := dnstest.Start(t)
	s.A("1.2.0.192."+bl, 300, "127.0.0.2")
	release := s.Hold(bl)
	defer release()
	c := mustConfig(t, Spec{DNSBLs: bl3, Budget: 100 * time.Millisecond})
	r := newResolver(t, s, dns.Config{})
	e := &Evaluator{Resolver: r}
	in := Input{Addr: client}
	if sc := evaluate(t, e, c, in); sc.Total != 3 || !sc.Signals[0].Unknown {
		t.Fatalf("held: %s, want the DNSBL unknown at 3", show(sc))
	}
	release()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := r.LookupCached(context.Background(), "1.2.0.192."+bl, dns.TypeA); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held answer never reached the cache")
		}
		time.Sleep(5 * time.Millisecond)
	}
	queries := s.Total()
	if sc := evaluate(t, e, c, in); sc.Total != 3 || sc.Signals[0].Result != Listed || !sc.Signals[0].Cached || s.Total() != queries {
		t.Errorf("retry: %s with %d new queries, want listed from the cache", show(sc), s.Total()-queries)
	}
}

// The caller's context bounds an evaluation too.
func TestEvaluateCancelled(t *testing.T) {
	s := dnstest.Start(t)
	s.Set(bl, dnstest.Drop)
	c := mustConfig(t, Spec{DNSBLs: bl3, SPFFail: w(2), Budget: 5 * time.Second})
	e := &Evaluator{Resolver: newResolver(t, s, dns.Config{})}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	sc := e.Evaluate(ctx, c, Input{Addr: client, Sender: "a@example.com"})
	if took := time.Since(start); took > 2*time.Second || sc.Total != 5 {
		t.Errorf("cancelled: %s after %v, want total 5 at once", show(sc), took)
	}
}

// Without a resolver the DNS signals are unknown, never an answer.
func TestEvaluateNoResolver(t *testing.T) {
	c := mustConfig(t, Spec{DNSBLs: bl3, DNSWLs: wl3, SPFFail: w(2)})
	sc := evaluate(t, &Evaluator{}, c, Input{Addr: client, Sender: "a@example.com"})
	want := []sig{{"spf_temperror", 2, "temperror", true}, {"dnsbl." + bl, 3, Failed, true}, {"dnswl." + wl, 0, Failed, true}}
	if sc.Total != 5 || !slices.Equal(sigs(sc), want) {
		t.Errorf("got %s, want total 5: %v", show(sc), want)
	}
}

// The metrics hook sees every lookup under its zone or "spf": labels
// from the configuration only.
func TestEvaluateLabels(t *testing.T) {
	s := dnstest.Start(t)
	s.TXT("example.com", 300, "v=spf1 a:mail.example.com -all")
	var mu sync.Mutex
	labels := map[string]int{}
	r := newResolver(t, s, dns.Config{Observe: func(label string, _ dns.Type, _ dns.Status, _ time.Duration, _ bool) {
		mu.Lock()
		defer mu.Unlock()
		labels[label]++
	}})
	c := mustConfig(t, Spec{DNSBLs: bl3, DNSWLs: wl3, SPFFail: w(2)})
	e := &Evaluator{Resolver: r}
	for range 2 { // fresh, then cached
		evaluate(t, e, c, Input{Addr: client, Sender: "a@example.com"})
	}
	mu.Lock()
	want := map[string]int{bl: 2, wl: 2, "spf": 6} // TXT, A, AAAA, twice
	if fmt.Sprint(labels) != fmt.Sprint(want) {
		t.Errorf("observed labels %v, want %v", labels, want)
	}

	// A zone holding an access key is asked whole and labelled without it.
	clear(labels)
	mu.Unlock()
	const dqs = "aaaabbbbcccc1234dddd5678ee.zen.dq.spamhaus.net"
	c = mustConfig(t, Spec{DNSBLs: []DNSBLSpec{{Zone: dqs, Weight: 3}}})
	s.A(dns.ReverseName(client, dqs), 300, "127.0.0.2")
	for range 2 {
		sc := evaluate(t, e, c, Input{Addr: client})
		if len(sc.Signals) != 1 || sc.Signals[0].Name != "dnsbl.KEY.zen.dq.spamhaus.net" || sc.Signals[0].Weight != 3 {
			t.Errorf("DQS zone: %+v, want dnsbl.KEY.zen.dq.spamhaus.net listed, weight 3", sc.Signals)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(labels) != fmt.Sprint(map[string]int{"KEY.zen.dq.spamhaus.net": 2}) {
		t.Errorf("DQS zone: observed labels %v, want KEY.zen.dq.spamhaus.net twice", labels)
	}
}

// Evaluations share a Config and an Evaluator (run with -race).
func TestEvaluateConcurrent(t *testing.T) {
	s := dnstest.Start(t)
	s.A("1.2.0.192."+bl, 300, "127.0.0.2")
	s.TXT("example.com", 300, "v=spf1 ip4:192.0.2.0/24 -all")
	c := mustConfig(t, Spec{RDNSMissing: w(3), DNSBLs: bl3, DNSWLs: wl3, SPFFail: w(2), SPFPass: w(-1)})
	e := &Evaluator{Resolver: newResolver(t, s, dns.Config{})}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 16 {
		wg.Go(func() {
			in := Input{Addr: client, Name: "unknown", Sender: "a@example.com"}
			want := 5
			if i%2 == 1 {
				in.Addr, want = other, 5 // not listed, spf fail
			}
			for range 20 {
				if sc := evaluate(t, e, c, in); sc.Total != want {
					errs <- fmt.Sprintf("%v: %s, want total %d", in.Addr, show(sc), want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestScoreFormat(t *testing.T) {
	tests := []struct {
		signals []Signal
		want    string
	}{
		{nil, ""},
		{[]Signal{{Name: RDNSMissing, Weight: 0}}, ""},
		{[]Signal{{Name: RDNSMissing, Weight: 3}, {Name: HELOInvalid}, {Name: "dnsbl.zen.spamhaus.org", Weight: 3, Unknown: true}},
			"rdns_missing:3,dnsbl.zen.spamhaus.org:3?"},
		{[]Signal{{Name: "spf_pass", Weight: -1}, {Name: "dnswl.list.dnswl.org", Weight: -3}}, "spf_pass:-1,dnswl.list.dnswl.org:-3"},
	}
	for _, tc := range tests {
		sc := Score{Signals: tc.signals}
		if got := sc.Format(); got != tc.want {
			t.Errorf("Format(%+v) = %q, want %q", tc.signals, got, tc.want)
		}
	}
	sc := Score{Signals: []Signal{{Unknown: true}, {}, {Unknown: true}}}
	if n := sc.Unknown(); n != 2 {
		t.Errorf("Unknown() = %d, want 2", n)
	}
}

// A warm evaluation runs on the caller's goroutine without a timer: it
// allocates the signals and the lists' query names, nothing else.
func TestEvaluateWarmCheap(t *testing.T) {
	s := dnstest.Start(t)
	c := mustConfig(t, Spec{RDNSMissing: w(3), HELOInvalid: w(1),
		DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 3}, {Zone: "bl2.example", Weight: 2}}, DNSWLs: wl3})
	e := &Evaluator{Resolver: newResolver(t, s, dns.Config{})}
	in := Input{Addr: client, Name: "mail.example.com", HELO: "mail.example.com"}
	evaluate(t, e, c, in)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if sc := e.Evaluate(ctx, c, in); !sc.Signals[2].Cached {
			t.Fatalf("not warm: %s", show(sc))
		}
	})
	if allocs > 4 {
		t.Errorf("a warm evaluation allocates %v times, want at most 4 (signals, 3 query names)", allocs)
	}
}
