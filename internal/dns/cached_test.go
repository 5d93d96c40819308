package dns

import (
	"context"
	"slices"
	"testing"
	"time"

	"greyd/internal/dns/dnstest"
)

// LookupCached answers from the cache only: a miss asks nothing and is
// not observed, a hit is Lookup's hit, an expired entry is a miss.
func TestLookupCached(t *testing.T) {
	s := dnstest.Start(t)
	s.A("c.example", 300, "192.0.2.1")
	s.SOA("example", 3600, 10)
	c := newClock()
	var seen []Status
	r := newResolver(t, Config{Now: c.Now, Observe: func(_ string, _ Type, st Status, _ time.Duration, cached bool) {
		if !cached {
			st += 100 // tell a fresh answer from a cached one
		}
		seen = append(seen, st)
	}}, s)
	ctx := context.Background()
	for _, name := range []string{"c.example", "nx.example"} {
		if res, ok := r.LookupCached(ctx, name, TypeA); ok || res.Status != Error {
			t.Errorf("%s before any lookup: got %s, %v; want a miss", name, show(res), ok)
		}
	}
	if n := s.Total(); n != 0 || len(seen) != 0 {
		t.Fatalf("misses sent %d queries and were observed %v times, want none", n, seen)
	}
	want := lookup(t, r, "c.example", TypeA)
	lookup(t, r, "nx.example", TypeA)
	for _, tc := range []struct {
		name   string
		status Status
	}{{"c.example", Found}, {"C.EXAMPLE.", Found}, {"nx.example", NXDomain}} {
		res, ok := r.LookupCached(ctx, tc.name, TypeA)
		if !ok || !res.Cached || res.Status != tc.status || tc.status == Found && !same(res, want) {
			t.Errorf("%s: got %s, %v; want the cached %v", tc.name, show(res), ok, tc.status)
		}
	}
	if res, ok := r.LookupCached(ctx, "c.example", TypeAAAA); ok {
		t.Errorf("another type: got %s, want a miss", show(res))
	}
	c.Advance(300 * time.Second)
	if res, ok := r.LookupCached(ctx, "c.example", TypeA); ok {
		t.Errorf("expired: got %s, want a miss", show(res))
	}
	if n := s.Total(); n != 2 {
		t.Errorf("%d queries, want the 2 of the lookups", n)
	}
	if w := []Status{Found + 100, NXDomain + 100, Found, Found, NXDomain}; !slices.Equal(seen, w) {
		t.Errorf("observed %v, want %v", seen, w)
	}
}

// A hit allocates nothing, as Lookup's does.
func TestLookupCachedNoAllocs(t *testing.T) {
	s := dnstest.Start(t)
	s.A("2.0.0.127.zen.example", 3600, "127.0.0.2")
	r := newResolver(t, Config{}, s)
	ctx := WithLabel(context.Background(), "zen.example")
	lookup(t, r, "2.0.0.127.zen.example", TypeA)
	if a := testing.AllocsPerRun(100, func() { r.LookupCached(ctx, "2.0.0.127.zen.example", TypeA) }); a != 0 {
		t.Errorf("a hit allocates %v times, want 0", a)
	}
}
