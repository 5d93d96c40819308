package signals

import (
	"context"
	"testing"

	"greyd/internal/dns"
	"greyd/internal/dns/dnstest"
	"greyd/internal/identity"
)

// warmEvaluator returns an Evaluator and a Config of the example
// (rdns, HELO, SPF with an include, two DNSBLs, a DNSWL, the shipped
// dynamic_names) with every answer for in cached.
func warmEvaluator(b *testing.B, in Input, withSPF bool) (*Evaluator, *Config) {
	s := dnstest.Start(b)
	s.SOA("example", 3600, 3600)
	s.A(dns.ReverseName(in.Addr, "zen.example"), 3600, "127.0.0.2")
	s.TXT("example.com", 3600, "v=spf1 include:_spf.example.net ip4:198.51.100.0/24 -all")
	s.TXT("_spf.example.net", 3600, "v=spf1 ip4:203.0.113.0/24 ip4:192.0.2.0/24 -all")
	names, probs := LoadDynamicNames([]string{shippedDynamicNames})
	if len(probs) > 0 {
		b.Fatal(probs)
	}
	spec := Spec{
		RDNSMissing: w(3), RDNSDynamic: w(2), HELOInvalid: w(1),
		DNSBLs:       []DNSBLSpec{{Zone: "zen.example", Weight: 3}, {Zone: "bl2.example", Weight: 2}},
		DNSWLs:       []DNSWLSpec{{Zone: "wl.example", Weight: -3}},
		DynamicNames: names,
		Identity:     identity.New(identity.Defaults()),
	}
	if withSPF {
		spec.SPFFail, spec.SPFSoftfail, spec.SPFPass = w(2), w(1), w(0)
	}
	c := mustConfig(b, spec)
	e := &Evaluator{Resolver: newResolver(b, s, dns.Config{})}
	evaluate(b, e, c, in)
	q := s.Total()
	if sc := evaluate(b, e, c, in); s.Total() != q {
		b.Fatalf("not warm: %s", show(sc))
	}
	return e, c
}

// BenchmarkEvaluateWarm is a request of a client seen within the TTL:
// every answer from the cache, no goroutine, no timer.
func BenchmarkEvaluateWarm(b *testing.B) {
	verified := Input{Addr: client, Name: "mail.example.com", HELO: "mail.example.com", Sender: "a@example.com"}
	for _, bc := range []struct {
		name string
		in   Input
		spf  bool
	}{
		{"verified", verified, true},
		{"verified-no-spf", verified, false},
		{"dynamic", Input{Addr: client, Name: "c-192-0-2-1.hsd1.ca.comcast.net", HELO: "localhost", Sender: "a@example.com"}, true},
		{"unknown", Input{Addr: client, Name: "unknown", HELO: "mail.example.com", Sender: "a@example.com"}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, c := warmEvaluator(b, bc.in, bc.spf)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				e.Evaluate(ctx, c, bc.in)
			}
		})
	}
}

// BenchmarkEvaluateWarmParallel is the same from every CPU at once.
func BenchmarkEvaluateWarmParallel(b *testing.B) {
	in := Input{Addr: client, Name: "mail.example.com", HELO: "mail.example.com", Sender: "a@example.com"}
	e, c := warmEvaluator(b, in, true)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Evaluate(ctx, c, in)
		}
	})
}

// BenchmarkEvaluateLocal is a configuration without DNS signals.
func BenchmarkEvaluateLocal(b *testing.B) {
	names, _ := LoadDynamicNames([]string{shippedDynamicNames})
	c := mustConfig(b, Spec{RDNSMissing: w(3), RDNSDynamic: w(2), HELOInvalid: w(1), DynamicNames: names})
	e := &Evaluator{}
	in := Input{Addr: client, Name: "mail.example.com", HELO: "mail.example.com", Sender: "a@example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(ctx, c, in)
	}
}

// BenchmarkDynamicNames is the shipped file on a name that matches no
// rule, the common case: every regex runs.
func BenchmarkDynamicNames(b *testing.B) {
	names, _ := LoadDynamicNames([]string{shippedDynamicNames})
	for _, name := range []string{"mail-ej1-f41.google.com", "c-73-22-11-5.hsd1.ca.comcast.net"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				names.MatchName(name)
			}
		})
	}
}
