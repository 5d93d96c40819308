package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"greyd/internal/dns/dnstest"
)

// clock is the injected clock of the cache tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newResolver returns a resolver asking servers, closed at the end of t.
func newResolver(t *testing.T, c Config, servers ...*dnstest.Server) *Resolver {
	t.Helper()
	for _, s := range servers {
		c.Servers = append(c.Servers, s.Addr)
	}
	r, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	t.Cleanup(r.Close)
	return r
}

func lookup(t *testing.T, r *Resolver, name string, typ Type) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.Lookup(ctx, name, typ)
}

// waitFor polls cond until it holds, failing t after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *Resolver) waiters(name string, typ Type) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.flights[key{name, typ}]; f != nil {
		return f.waiters
	}
	return -1
}

func (r *Resolver) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.flights)
}

func addrs(ss ...string) []netip.Addr {
	var as []netip.Addr
	for _, s := range ss {
		as = append(as, netip.MustParseAddr(s))
	}
	return as
}

// same compares the parts of two results a test sets.
func same(got, want Result) bool {
	return got.Status == want.Status && got.TTL == want.TTL &&
		slices.Equal(got.Addrs, want.Addrs) && slices.Equal(got.Names, want.Names) &&
		slices.Equal(got.Texts, want.Texts) && slices.Equal(got.MX, want.MX)
}

func show(r Result) string {
	return fmt.Sprintf("{%v ttl=%v addrs=%v names=%q texts=%q mx=%v cached=%v err=%v}",
		r.Status, r.TTL, r.Addrs, r.Names, r.Texts, r.MX, r.Cached, r.Err)
}

func TestLookup(t *testing.T) {
	s := dnstest.Start(t)
	s.A("a.example", 300, "192.0.2.1", "192.0.2.2")
	s.AAAA("a.example", 200, "2001:db8::1")
	s.PTR("1.2.0.192.in-addr.arpa", 3600, "mail.example.com")
	s.TXT("txt.example", 100, "v=spf1 ", "ip4:192.0.2.0/24 -all")
	s.TXT("txt.example", 50, "second")
	s.MX("example", 600, 20, "mx2.example")
	s.MX("example", 700, 10, "mx1.example")
	s.SOA("example", 3600, 42)
	s.A("UPPER.example", 60, "192.0.2.9")
	r := newResolver(t, Config{}, s)

	tests := []struct {
		name string
		typ  Type
		want Result
	}{
		{"a.example", TypeA, Result{Status: Found, TTL: 300 * time.Second, Addrs: addrs("192.0.2.1", "192.0.2.2")}},
		{"a.example.", TypeAAAA, Result{Status: Found, TTL: 200 * time.Second, Addrs: addrs("2001:db8::1")}},
		{"1.2.0.192.in-addr.arpa", TypePTR, Result{Status: Found, TTL: time.Hour, Names: []string{"mail.example.com"}}},
		{"TXT.Example", TypeTXT, Result{Status: Found, TTL: 50 * time.Second, Texts: []string{"v=spf1 ip4:192.0.2.0/24 -all", "second"}}},
		{"example", TypeMX, Result{Status: Found, TTL: 600 * time.Second, MX: []MX{{"mx2.example", 20}, {"mx1.example", 10}}}},
		{"upper.example", TypeA, Result{Status: Found, TTL: time.Minute, Addrs: addrs("192.0.2.9")}},
		{"missing.example", TypeA, Result{Status: NXDomain, TTL: 42 * time.Second}},
		{"a.example", TypeTXT, Result{Status: NoData, TTL: 42 * time.Second}},
		{"missing.nosoa", TypeA, Result{Status: NXDomain}},
	}
	for i, tc := range tests {
		got := lookup(t, r, tc.name, tc.typ)
		if !same(got, tc.want) || got.Cached {
			t.Errorf("%d: Lookup(%q, %v) = %s, want %s", i, tc.name, tc.typ, show(got), show(tc.want))
		}
		if (got.Err != nil) != (got.Status.Temporary()) {
			t.Errorf("%d: Lookup(%q, %v): status %v with Err %v", i, tc.name, tc.typ, got.Status, got.Err)
		}
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		behave dnstest.Behaviour
		want   Status
	}{
		{dnstest.NXDomain, NXDomain},
		{dnstest.ServFail, ServFail},
		{dnstest.Refused, Refused},
		{dnstest.Drop, Timeout},
	}
	for i, tc := range tests {
		s := dnstest.Start(t)
		s.A("x.example", 300, "192.0.2.1")
		s.Set("example", tc.behave)
		r := newResolver(t, Config{Timeout: 500 * time.Millisecond}, s)
		got := lookup(t, r, "x.example", TypeA)
		if got.Status != tc.want || len(got.Addrs) != 0 {
			t.Errorf("%d: behaviour %v: got %s, want status %v", i, tc.behave, show(got), tc.want)
		}
		if tc.want != NXDomain && got.Err == nil {
			t.Errorf("%d: behaviour %v: status %v without Err", i, tc.behave, got.Status)
		}
	}
}

// A server that never answers costs the caller its context's time, not
// the resolver's timeouts.
func TestTimeoutBoundedByContext(t *testing.T) {
	s := dnstest.Start(t)
	s.Set("", dnstest.Drop)
	r := newResolver(t, Config{Timeout: 20 * time.Second, LookupTimeout: 30 * time.Second}, s)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	got := r.Lookup(ctx, "x.example", TypeA)
	took := time.Since(start)
	if got.Status != Timeout || !errors.Is(got.Err, context.DeadlineExceeded) {
		t.Errorf("got %s, want a timeout wrapping context.DeadlineExceeded", show(got))
	}
	if took < 100*time.Millisecond || took > 10*time.Second {
		t.Errorf("Lookup took %v, want the context's 100ms", took)
	}
	if got.Took < 100*time.Millisecond {
		t.Errorf("Result.Took = %v, want at least the context's 100ms", got.Took)
	}
	waitFor(t, "the query at the server", func() bool { return s.Queries("x.example") >= 1 })
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	s := dnstest.Start(t)
	s.A("tc.example", 300, "192.0.2.7")
	s.Set("tc.example", dnstest.Truncate)
	// Larger than the 1232 bytes advertised: the server truncates it.
	var big []string
	for i := range 12 {
		big = append(big, strings.Repeat(string(rune('a'+i)), 250))
	}
	s.TXT("big.example", 300, big...)
	r := newResolver(t, Config{}, s)

	got := lookup(t, r, "tc.example", TypeA)
	if want := (Result{Status: Found, TTL: 300 * time.Second, Addrs: addrs("192.0.2.7")}); !same(got, want) {
		t.Errorf("truncated A: got %s, want %s", show(got), show(want))
	}
	if n := s.Queries("tc.example"); n != 2 {
		t.Errorf("truncated A: %d queries, want 2 (UDP, then TCP)", n)
	}
	got = lookup(t, r, "big.example", TypeTXT)
	if want := (Result{Status: Found, TTL: 300 * time.Second, Texts: []string{strings.Join(big, "")}}); !same(got, want) {
		t.Errorf("big TXT: got %s, want 3000 bytes", show(got))
	}
	if n := s.Queries("big.example"); n != 2 {
		t.Errorf("big TXT: %d queries, want 2 (UDP, then TCP)", n)
	}
}

// Answers with another ID or to another question are ignored, not taken
// as the answer: the spoofed ones say NXDOMAIN.
func TestSpoofedAnswersIgnored(t *testing.T) {
	s := dnstest.Start(t)
	s.A("spoofed.example", 300, "192.0.2.8")
	s.Set("spoofed.example", dnstest.Spoof)
	r := newResolver(t, Config{}, s)
	got := lookup(t, r, "spoofed.example", TypeA)
	if want := (Result{Status: Found, TTL: 300 * time.Second, Addrs: addrs("192.0.2.8")}); !same(got, want) {
		t.Errorf("got %s, want %s", show(got), show(want))
	}
	if n := s.Queries("spoofed.example"); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
}

func TestCNAME(t *testing.T) {
	s := dnstest.Start(t)
	s.CNAME("www.example", 300, "web.example")
	s.CNAME("web.example", 100, "host.example")
	s.A("host.example", 200, "192.0.2.3")
	s.CNAME("dangling.example", 300, "nowhere.example")
	s.CNAME("loop1.example", 300, "loop2.example")
	s.CNAME("loop2.example", 300, "loop1.example")
	s.SOA("example", 3600, 30)
	r := newResolver(t, Config{}, s)

	tests := []struct {
		name string
		want Result
	}{
		{"www.example", Result{Status: Found, TTL: 100 * time.Second, Addrs: addrs("192.0.2.3")}},
		{"dangling.example", Result{Status: NXDomain, TTL: 30 * time.Second}},
		{"loop1.example", Result{Status: Error}},
	}
	for i, tc := range tests {
		got := lookup(t, r, tc.name, TypeA)
		if !same(got, tc.want) {
			t.Errorf("%d: %s: got %s, want %s", i, tc.name, show(got), show(tc.want))
		}
	}
}

// Each answer is cached for its clamped TTL, negative ones for
// NegativeTTL: just before that a lookup makes no query, just after it
// asks again.
func TestCacheTTL(t *testing.T) {
	s := dnstest.Start(t)
	s.A("short.example", 5, "192.0.2.1")
	s.A("medium.example", 300, "192.0.2.2")
	s.A("long.example", 7200, "192.0.2.3")
	s.SOA("example", 3600, 10)
	tests := []struct {
		name   string
		typ    Type
		status Status
		cached time.Duration
	}{
		{"short.example", TypeA, Found, time.Minute},
		{"medium.example", TypeA, Found, 300 * time.Second},
		{"long.example", TypeA, Found, time.Hour},
		{"nx.example", TypeA, NXDomain, 5 * time.Minute},
		{"medium.example", TypeMX, NoData, 5 * time.Minute},
	}
	for i, tc := range tests {
		c := newClock()
		r := newResolver(t, Config{Now: c.Now}, s)
		before := s.Queries(tc.name)
		got := lookup(t, r, tc.name, tc.typ)
		if got.Status != tc.status || got.Cached {
			t.Fatalf("%d: %s %v: got %s, want a fresh %v", i, tc.name, tc.typ, show(got), tc.status)
		}
		c.Advance(tc.cached - time.Second)
		got2 := lookup(t, r, tc.name, tc.typ)
		if !got2.Cached || !same(got2, got) || s.Queries(tc.name) != before+1 {
			t.Errorf("%d: %s %v after %v: got %s with %d queries, want the cached answer and 1 query",
				i, tc.name, tc.typ, tc.cached-time.Second, show(got2), s.Queries(tc.name)-before)
		}
		c.Advance(time.Second)
		got3 := lookup(t, r, tc.name, tc.typ)
		if got3.Cached || got3.Status != tc.status || s.Queries(tc.name) != before+2 {
			t.Errorf("%d: %s %v after %v: got %s with %d queries, want a fresh answer and 2 queries",
				i, tc.name, tc.typ, tc.cached, show(got3), s.Queries(tc.name)-before)
		}
	}
}

func TestFailuresNotCached(t *testing.T) {
	s := dnstest.Start(t)
	s.Set("servfail.example", dnstest.ServFail)
	s.Set("refused.example", dnstest.Refused)
	s.Set("drop.example", dnstest.Drop)
	r := newResolver(t, Config{Timeout: 500 * time.Millisecond, Attempts: 1}, s)
	for _, name := range []string{"servfail.example", "refused.example", "drop.example"} {
		for i := 1; i <= 2; i++ {
			got := lookup(t, r, name, TypeA)
			if got.Cached || got.Status == Found || got.Status.NotFound() {
				t.Errorf("%s lookup %d: got %s, want a failure not from the cache", name, i, show(got))
			}
			waitFor(t, fmt.Sprintf("%s: query %d at the server", name, i), func() bool { return s.Queries(name) == i })
		}
	}
	if n := r.Len(); n != 0 {
		t.Errorf("%d entries cached, want none", n)
	}
}

// Concurrent callers asking the same question share one query.
func TestInFlightShared(t *testing.T) {
	s := dnstest.Start(t)
	s.A("shared.example", 300, "192.0.2.4")
	release := s.Hold("shared.example")
	defer release()
	r := newResolver(t, Config{}, s)
	const n = 20
	results := make(chan Result, n)
	for range n {
		go func() { results <- lookup(t, r, "shared.example", TypeA) }()
	}
	waitFor(t, fmt.Sprintf("%d callers waiting", n), func() bool { return r.waiters("shared.example", TypeA) == n })
	release()
	for range n {
		got := <-results
		if got.Status != Found || !slices.Equal(got.Addrs, addrs("192.0.2.4")) || got.Cached {
			t.Errorf("got %s, want the shared fresh answer", show(got))
		}
	}
	if q := s.Queries("shared.example"); q != 1 {
		t.Errorf("%d callers made %d queries, want 1", n, q)
	}
}

// A lookup whose caller gave up finishes in the background and fills the
// cache: the retry makes no query.
func TestBackgroundFillsCache(t *testing.T) {
	s := dnstest.Start(t)
	s.A("slow.example", 300, "192.0.2.5")
	release := s.Hold("slow.example")
	defer release()
	r := newResolver(t, Config{}, s)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if got := r.Lookup(ctx, "slow.example", TypeA); got.Status != Timeout {
		t.Fatalf("first lookup: got %s, want a timeout", show(got))
	}
	release()
	waitFor(t, "the background lookup", func() bool { return r.inFlight() == 0 })
	got := lookup(t, r, "slow.example", TypeA)
	if !got.Cached || got.Status != Found || !slices.Equal(got.Addrs, addrs("192.0.2.5")) {
		t.Errorf("retry: got %s, want the cached answer", show(got))
	}
	if q := s.Queries("slow.example"); q != 1 {
		t.Errorf("%d queries, want 1", q)
	}
}

// Past MaxBackground, a lookup nobody waits for is cancelled: its answer
// is not cached, the retry asks again.
func TestBackgroundBounded(t *testing.T) {
	s := dnstest.Start(t)
	s.A("a.slow.example", 300, "192.0.2.5")
	s.A("b.slow.example", 300, "192.0.2.6")
	release := s.Hold("slow.example")
	defer release()
	r := newResolver(t, Config{MaxBackground: 1}, s)

	for _, name := range []string{"a.slow.example", "b.slow.example"} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if got := r.Lookup(ctx, name, TypeA); got.Status != Timeout {
			t.Fatalf("%s: got %s, want a timeout", name, show(got))
		}
		cancel()
	}
	waitFor(t, "the second lookup cancelled", func() bool { return r.inFlight() == 1 })
	release()
	waitFor(t, "the background lookup", func() bool { return r.inFlight() == 0 })
	if got := lookup(t, r, "a.slow.example", TypeA); !got.Cached {
		t.Errorf("a.slow.example: got %s, want the cached answer of the background lookup", show(got))
	}
	if got := lookup(t, r, "b.slow.example", TypeA); got.Cached || got.Status != Found || s.Queries("b.slow.example") != 2 {
		t.Errorf("b.slow.example: got %s after %d queries, want a fresh answer from a second query",
			show(got), s.Queries("b.slow.example"))
	}
}

func TestCacheBound(t *testing.T) {
	s := dnstest.Start(t)
	for i := range 10 {
		s.A(fmt.Sprintf("h%d.example", i), 300, "192.0.2.1")
	}
	r := newResolver(t, Config{MaxEntries: 3}, s)
	for i := range 10 {
		if got := lookup(t, r, fmt.Sprintf("h%d.example", i), TypeA); got.Status != Found {
			t.Fatalf("h%d: got %s", i, show(got))
		}
		if n := r.Len(); n > 3 {
			t.Fatalf("after %d lookups: %d entries, want at most 3", i+1, n)
		}
	}
	if n := r.Len(); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
}

// A full cache drops its expired entries before live ones.
func TestCacheEvictsExpiredFirst(t *testing.T) {
	s := dnstest.Start(t)
	c := newClock()
	r := newResolver(t, Config{MaxEntries: 20, Now: c.Now}, s)
	for i := range 10 {
		s.A(fmt.Sprintf("old%d.example", i), 60, "192.0.2.1")
		s.A(fmt.Sprintf("live%d.example", i), 3600, "192.0.2.2")
		s.A(fmt.Sprintf("new%d.example", i), 3600, "192.0.2.3")
	}
	for _, kind := range []string{"old", "live"} {
		for i := range 10 {
			lookup(t, r, fmt.Sprintf("%s%d.example", kind, i), TypeA)
		}
	}
	c.Advance(2 * time.Minute)
	for i := range 10 {
		lookup(t, r, fmt.Sprintf("new%d.example", i), TypeA)
	}
	for _, kind := range []string{"live", "new"} {
		for i := range 10 {
			name := fmt.Sprintf("%s%d.example", kind, i)
			if got := lookup(t, r, name, TypeA); !got.Cached {
				t.Errorf("%s: got %s, want it cached (the old entries had expired)", name, show(got))
			}
		}
	}
}

func TestFailover(t *testing.T) {
	closed := dnstest.Start(t)
	closed.Close() // nothing listens there any more: ICMP port unreachable
	tests := []struct {
		name   string
		behave dnstest.Behaviour
		server *dnstest.Server
	}{
		{"drop", dnstest.Drop, nil},
		{"servfail", dnstest.ServFail, nil},
		{"refused", dnstest.Refused, nil},
		{"closed", dnstest.Answer, closed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first := tc.server
			if first == nil {
				first = dnstest.Start(t)
				first.Set("", tc.behave)
			}
			second := dnstest.Start(t)
			second.A("x.example", 300, "192.0.2.1")
			second.A("y.example", 300, "192.0.2.2")
			r := newResolver(t, Config{Timeout: 500 * time.Millisecond}, first, second)
			got := lookup(t, r, "x.example", TypeA)
			if got.Status != Found || !slices.Equal(got.Addrs, addrs("192.0.2.1")) {
				t.Fatalf("got %s, want the second server's answer", show(got))
			}
			if tc.server == nil {
				waitFor(t, "the query at the first server", func() bool { return first.Queries("x.example") == 1 })
			}
			// The server that answered is asked first from now on.
			got = lookup(t, r, "y.example", TypeA)
			if got.Status != Found || second.Queries("y.example") != 1 {
				t.Errorf("y: got %s, want the second server's answer", show(got))
			}
			if tc.server == nil && first.Queries("y.example") != 0 {
				t.Errorf("y: first server asked again after it failed")
			}
		})
	}
}

func TestInvalidName(t *testing.T) {
	s := dnstest.Start(t)
	r := newResolver(t, Config{}, s)
	for _, name := range []string{"", ".", "a..example", strings.Repeat("x", 64) + ".example", strings.Repeat("abcdefghi.", 26)} {
		got := lookup(t, r, name, TypeA)
		if got.Status != Error || !errors.Is(got.Err, ErrInvalidName) {
			t.Errorf("%q: got %s, want ErrInvalidName", name, show(got))
		}
	}
	if n := s.Total(); n != 0 {
		t.Errorf("%d queries sent for invalid names, want none", n)
	}
}

func TestObserve(t *testing.T) {
	s := dnstest.Start(t)
	s.A("o.example", 300, "192.0.2.1")
	type obs struct {
		label  string
		typ    Type
		status Status
		cached bool
	}
	var mu sync.Mutex
	var seen []obs
	r := newResolver(t, Config{Observe: func(label string, typ Type, st Status, took time.Duration, cached bool) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, obs{label, typ, st, cached})
	}}, s)
	ctx := WithLabel(context.Background(), "zone.example")
	r.Lookup(ctx, "o.example", TypeA)
	r.Lookup(ctx, "o.example", TypeA)
	r.Lookup(context.Background(), "nx.example", TypeTXT)
	want := []obs{
		{"zone.example", TypeA, Found, false},
		{"zone.example", TypeA, Found, true},
		{"", TypeTXT, NXDomain, false},
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, want) {
		t.Errorf("observed %+v, want %+v", seen, want)
	}
}

func TestClose(t *testing.T) {
	s := dnstest.Start(t)
	s.A("x.example", 300, "192.0.2.1")
	release := s.Hold("x.example")
	defer release()
	r := newResolver(t, Config{}, s)
	done := make(chan Result)
	go func() { done <- lookup(t, r, "x.example", TypeA) }()
	waitFor(t, "the query at the server", func() bool { return s.Queries("x.example") == 1 })
	r.Close()
	if got := <-done; got.Status == Found {
		t.Errorf("lookup in flight at Close: got %s, want a failure", show(got))
	}
	if got := lookup(t, r, "y.example", TypeA); got.Status != Error {
		t.Errorf("lookup after Close: got %s, want an error", show(got))
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		s                   Status
		str                 string
		notFound, temporary bool
	}{
		{Error, "error", false, true},
		{Found, "found", false, false},
		{NXDomain, "nxdomain", true, false},
		{NoData, "nodata", true, false},
		{ServFail, "servfail", false, true},
		{Refused, "refused", false, true},
		{Timeout, "timeout", false, true},
	}
	for _, tc := range tests {
		if tc.s.String() != tc.str || tc.s.NotFound() != tc.notFound || tc.s.Temporary() != tc.temporary {
			t.Errorf("%d: %q notFound=%v temporary=%v, want %q %v %v",
				tc.s, tc.s.String(), tc.s.NotFound(), tc.s.Temporary(), tc.str, tc.notFound, tc.temporary)
		}
	}
}

// The servers of New: given ones normalised, else resolv.conf's.
func TestNewServers(t *testing.T) {
	r, err := New(Config{Servers: []string{"192.0.2.53", "[2001:db8::53]:5353"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Servers(), []string{"192.0.2.53:53", "[2001:db8::53]:5353"}; !slices.Equal(got, want) {
		t.Errorf("Servers() = %q, want %q", got, want)
	}
	if _, err := New(Config{Servers: []string{"dns.example:53"}}); err == nil {
		t.Errorf("New accepted a server given by name")
	}
	path := writeFile(t, "nameserver 198.51.100.1\n")
	r, err = New(Config{ResolvConf: path})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Servers(), []string{"198.51.100.1:53"}; !slices.Equal(got, want) {
		t.Errorf("Servers() from %s = %q, want %q", path, got, want)
	}
}
