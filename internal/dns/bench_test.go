package dns

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"greyd/internal/dns/dnstest"
)

// benchResolver returns a resolver with name cached.
func benchResolver(b *testing.B, name string) *Resolver {
	s := dnstest.Start(b)
	s.A(name, 3600, "127.0.0.2")
	r, err := New(Config{Servers: []string{s.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	if res := r.Lookup(context.Background(), name, TypeA); res.Status != Found {
		b.Fatalf("warming the cache: %v %v", res.Status, res.Err)
	}
	return r
}

// BenchmarkLookupCached is the cost of a cache hit, the path of every
// request of a client seen within the TTL.
func BenchmarkLookupCached(b *testing.B) {
	const name = "2.0.0.127.zen.example"
	r := benchResolver(b, name)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Lookup(ctx, name, TypeA); !res.Cached {
			b.Fatal("not cached")
		}
	}
}

// BenchmarkLookupCachedParallel is the same under contention.
func BenchmarkLookupCachedParallel(b *testing.B) {
	const name = "2.0.0.127.zen.example"
	r := benchResolver(b, name)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := r.Lookup(ctx, name, TypeA); !res.Cached {
				b.Error("not cached")
				return
			}
		}
	})
}

// BenchmarkLookupCachedObserved adds a labelled context and an Observe
// hook, as greyd's metrics use them.
func BenchmarkLookupCachedObserved(b *testing.B) {
	const name = "2.0.0.127.zen.example"
	r := benchResolver(b, name)
	n := 0
	r.cfg.Observe = func(string, Type, Status, time.Duration, bool) { n++ }
	ctx := WithLabel(context.Background(), "zen.example")
	b.ReportAllocs()
	for b.Loop() {
		r.Lookup(ctx, name, TypeA)
	}
	if n == 0 {
		b.Fatal("Observe not called")
	}
}

func BenchmarkReverseName(b *testing.B) {
	for _, a := range []string{"192.0.2.1", "2001:db8::1"} {
		addr := netip.MustParseAddr(a)
		b.Run(a, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ReverseName(addr, "zen.spamhaus.org")
			}
		})
	}
}

// A cache hit allocates nothing, labels and Observe included.
func TestCacheHitNoAllocs(t *testing.T) {
	s := dnstest.Start(t)
	s.A("2.0.0.127.zen.example", 3600, "127.0.0.2")
	n := 0
	r := newResolver(t, Config{Observe: func(string, Type, Status, time.Duration, bool) { n++ }}, s)
	ctx := WithLabel(context.Background(), "zen.example")
	if res := r.Lookup(ctx, "2.0.0.127.zen.example", TypeA); res.Status != Found {
		t.Fatalf("warming the cache: %s", show(res))
	}
	if a := testing.AllocsPerRun(100, func() { r.Lookup(ctx, "2.0.0.127.zen.example", TypeA) }); a != 0 {
		t.Errorf("a cache hit allocates %v times, want 0", a)
	}
	if n < 101 { // AllocsPerRun runs it once more to warm up
		t.Errorf("Observe called %d times, want at least 101", n)
	}
}
