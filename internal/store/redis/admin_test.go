package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/store"
	"greyd/internal/store/redis/redistest"
	"greyd/internal/store/storetest"
)

// suiteTimeout is the steps' deadline in the suite: it checks what is
// stored, and under -race on a busy 2-CPU machine a step of its
// concurrent case (three stepping goroutines beside listings and
// imports) can miss the default 250 ms. What admin work costs the steps
// is BenchmarkStepDuringAdmin's; the deadline itself is TestFrozen's.
const suiteTimeout = 2 * time.Second

// The shared store.Admin suite, each case under its own key prefix on
// one server.
func TestAdminSuite(t *testing.T) {
	srv := redistest.Start(t)
	var n atomic.Int32
	storetest.RunAdmin(t, func(t *testing.T) store.Store {
		s := open(t, srv, Options{KeyPrefix: fmt.Sprintf("admin%d:", n.Add(1)), Timeout: suiteTimeout})
		connected(t, s)
		return s
	})
}

// The suite on a Cluster of three masters: SCAN goes to the node of the
// site's slot, and admin.lua's keys are all in it.
func TestAdminCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	var n atomic.Int32
	storetest.RunAdmin(t, func(t *testing.T) store.Store {
		s, err := Open(Options{Addrs: c.Addrs(), KeyPrefix: fmt.Sprintf("admin%d:", n.Add(1)), Timeout: suiteTimeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		connected(t, s)
		return s
	})
	slot := c.Nodes[0].Must("CLUSTER", "KEYSLOT", "{greyd:}schema")
	for _, k := range []string{"{greyd:}n", "{greyd:}wl", "{greyd:}wlver"} {
		if got := c.Nodes[0].Must("CLUSTER", "KEYSLOT", k); got != slot {
			t.Errorf("slot of %s = %s, want %s (the prefix's)", k, got, slot)
		}
	}
}

// The layout in Redis: the runtime whitelist hash and its version, the
// count buckets; a listing is SCAN MATCH ... COUNT 1000 with GET and PTTL,
// never KEYS; a delete is UNLINK.
func TestAdminLayout(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Options{KeyPrefix: "mx:"})
	connected(t, s)
	ctx := context.Background()
	if _, err := s.AddWhitelist(ctx, store.WhitelistEntry{Kind: store.WhitelistClient, Value: "relay.example", Comment: "a, b", Added: 1700000000, Expires: 1900000000}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Must("HGETALL", "{mx:}wl"); got != "c:relay.example\n1700000000,1900000000,a, b" {
		t.Errorf("HGETALL {mx:}wl = %q", got)
	}
	v, _ := strconv.ParseInt(srv.Must("GET", "{mx:}wlver"), 10, 64)
	if now := time.Now().UnixMilli(); v < now-60_000 || v > now+60_000 {
		t.Errorf("first whitelist version %d, want Redis's clock in ms (%d) + 1", v, now)
	}

	now := time.Now().Unix()
	in := &store.StepInput{ClientKey: "192.0.2.1", TripletKey: "k", Now: now, FixedNow: true, Delay: 300, RetryWindow: 7200, MaxAge: 86400, AWLClients: 5}
	if _, err := s.Step(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Import(ctx, []store.Entry{{Kind: store.KindClient, Key: "192.0.2.2", Count: 1, Last: now}}, 300); err != nil {
		t.Fatal(err)
	}
	// The pending triplet expires in 7201 s, the client never.
	deadline, _ := strconv.ParseInt(srv.Must("PEXPIRETIME", "{mx:}t:k"), 10, 64)
	want := fmt.Sprintf("c:-\n1\nt:%d\n1", deadline/3600000)
	if got := sortedPairs(srv.Must("HGETALL", "{mx:}n")); got != want {
		t.Errorf("count buckets %q, want %q", got, want)
	}

	mon := srv.Monitor()
	n := 0
	if err := s.Scan(ctx, nil, func(store.Entry) bool { n++; return true }); err != nil || n != 2 {
		t.Errorf("Scan: %d entries, %v", n, err)
	}
	if d, err := s.Delete(ctx, store.KindTriplet, []string{"k"}); err != nil || d != 1 {
		t.Errorf("Delete = %d, %v", d, err)
	}
	lines := mon.Stop()
	var cmds []string
	for _, l := range lines {
		cmds = append(cmds, strings.SplitN(l, `"`, 3)[1])
		if strings.Contains(l, `"KEYS"`) || strings.Contains(l, `"DEL"`) {
			t.Errorf("a KEYS or DEL: %s", l)
		}
	}
	for _, want := range []string{`"SCAN" "0" "MATCH" "{mx:}t:*" "COUNT" "1000"`, `"SCAN" "0" "MATCH" "{mx:}c:*" "COUNT" "1000"`, `"PTTL" "{mx:}t:k"`, `"UNLINK" "{mx:}t:k"`} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("MONITOR shows no %s; commands: %q", want, cmds)
		}
	}
}

// sortedPairs sorts the field/value pairs of an HGETALL reply.
func sortedPairs(r string) string {
	l := strings.Split(r, "\n")
	var pairs []string
	for i := 0; i+1 < len(l); i += 2 {
		pairs = append(pairs, l[i]+"\n"+l[i+1])
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "\n")
}

// Two greyd hosts on one Redis: what one changes, the other sees, the
// runtime whitelist's version included (the engine's poll relies on it).
func TestAdminTwoHosts(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, Options{KeyPrefix: "site:"})
	b := open(t, srv, Options{KeyPrefix: "site:"})
	connected(t, a)
	connected(t, b)
	ctx := context.Background()
	vb, _ := b.WhitelistVersion(ctx)
	e := store.WhitelistEntry{Kind: store.WhitelistRecipient, Value: "postmaster@", Added: time.Now().Unix()}
	if _, err := a.AddWhitelist(ctx, e); err != nil {
		t.Fatal(err)
	}
	if v, _ := b.WhitelistVersion(ctx); v == vb {
		t.Error("B's version did not change when A added an entry")
	}
	if got, err := b.Whitelist(ctx); err != nil || len(got) != 1 || got[0] != e {
		t.Errorf("B's whitelist: %+v, %v", got, err)
	}
	vb, _ = b.WhitelistVersion(ctx)
	if found, err := b.RemoveWhitelist(ctx, e.Kind, e.Value); err != nil || !found {
		t.Fatalf("B removes A's entry: %v, %v", found, err)
	}
	if v, _ := a.WhitelistVersion(ctx); v <= vb {
		t.Errorf("A's version %d after B's remove, was %d", v, vb)
	}

	now := time.Now().Unix()
	if imp, _, err := a.Import(ctx, []store.Entry{{Kind: store.KindTriplet, Key: "t", First: now - 1000, Last: now - 500, Expires: now + 3600}}, 300); err != nil || imp != 1 {
		t.Fatalf("Import on A: %d, %v", imp, err)
	}
	if nt, _ := b.Counts(); nt != 1 {
		t.Errorf("B counts %d triplets after A's import, want 1", nt)
	}
	if r, err := b.Step(ctx, &store.StepInput{TripletKey: "t", Now: now, FixedNow: true, Delay: 300, RetryWindow: 7200, MaxAge: 86400}); err != nil || r.Outcome != store.Passed {
		t.Errorf("B steps on A's import: %+v, %v", r, err)
	}
	if d, err := b.Delete(ctx, store.KindTriplet, []string{"t"}); err != nil || d != 1 {
		t.Errorf("Delete on B = %d, %v", d, err)
	}
	if nt, _ := a.Counts(); nt != 0 {
		t.Errorf("A counts %d triplets after B's delete", nt)
	}
}

// A Redis that lost everything (restart without persistence, FLUSHALL)
// starts the whitelist version again from its clock: a host that read
// version n before never takes a new n for the one it has.
func TestWhitelistVersionAfterFlush(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Options{})
	connected(t, s)
	ctx := context.Background()
	e := store.WhitelistEntry{Kind: store.WhitelistClient, Value: "192.0.2.1", Added: 1}
	var seen []int64
	for range 3 {
		if _, err := s.AddWhitelist(ctx, e); err != nil {
			t.Fatal(err)
		}
		v, err := s.WhitelistVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, v)
	}
	srv.Must("FLUSHALL")
	if v, err := s.WhitelistVersion(ctx); err != nil || v != 0 {
		t.Errorf("version after FLUSHALL: %d, %v; want 0", v, err)
	}
	// Redis's clock past the versions seen: the new version starts from it.
	redistest.WaitFor(t, 5*time.Second, "Redis's clock past the last version", func() bool {
		ts := strings.Split(srv.Must("TIME"), "\n")
		sec, _ := strconv.ParseInt(ts[0], 10, 64)
		usec, _ := strconv.ParseInt(ts[1], 10, 64)
		return sec*1000+usec/1000 > seen[2]
	})
	if _, err := s.AddWhitelist(ctx, e); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.WhitelistVersion(ctx); slices.Contains(seen, v) || v < seen[2] {
		t.Errorf("version after FLUSHALL and an add: %d; before: %v", v, seen)
	}
}

// Counts reads the buckets: an entry counts until the end of the hour it
// expires in, a bucket of a past hour counts nothing and is dropped when
// a new bucket appears; a key removed behind greyd's back stays counted
// until its hour is over.
func TestCountsBuckets(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Options{KeyPrefix: "b:"})
	connected(t, s)
	ctx := context.Background()
	now := time.Now()
	cur := now.UnixMilli() / 3600000
	srv.Must("HSET", "{b:}n", "t:"+strconv.FormatInt(cur-1, 10), "40", "t:"+strconv.FormatInt(cur-30, 10), "7", "c:"+strconv.FormatInt(cur-2, 10), "3")
	if nt, nc := s.Counts(); nt != 0 || nc != 0 {
		t.Errorf("Counts() with past buckets only = %d, %d; want 0, 0", nt, nc)
	}
	// An entry expiring in a second: counted until its hour is over.
	if _, _, err := s.Import(ctx, []store.Entry{{Kind: store.KindTriplet, Key: "soon", First: 1, Last: 1, Expires: now.Unix() + 1}}, 300); err != nil {
		t.Fatal(err)
	}
	if got := srv.Must("HEXISTS", "{b:}n", "t:"+strconv.FormatInt(cur-1, 10)); got != "0" {
		t.Error("a new bucket did not drop the past ones")
	}
	n := -1
	redistest.WaitFor(t, 5*time.Second, "the entry expired", func() bool {
		n = 0
		s.Scan(ctx, nil, func(store.Entry) bool { n++; return true })
		return n == 0
	})
	if time.Now().Unix() < now.Unix()+1 {
		t.Errorf("the entry expired before its deadline %d", now.Unix()+1)
	}
	if nt, _ := s.Counts(); n != 0 || (nt != 1 && time.Now().UnixMilli()/3600000 == cur) {
		t.Errorf("after the deadline: Scan lists %d, Counts %d; want 0 and 1 until the hour is over", n, nt)
	}
	// DEL by hand: counted until its hour is over (documented).
	if _, _, err := s.Import(ctx, []store.Entry{{Kind: store.KindClient, Key: "x", Count: 1, Last: 1, Expires: now.Unix() + 7200}}, 300); err != nil {
		t.Fatal(err)
	}
	srv.Must("DEL", "{b:}c:x")
	if _, nc := s.Counts(); nc != 1 {
		t.Errorf("a key deleted by hand: Counts %d clients, want 1 (documented)", nc)
	}
}

// The key prefix is literal in SCAN's MATCH: glob characters in it match
// only themselves.
func TestAdminGlobPrefix(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	now := time.Now().Unix()
	prefixes := []string{`s*:`, `sx:`, `s?[a]\:`, `s?a\:`}
	stores := map[string]*Store{}
	for _, p := range prefixes {
		s := open(t, srv, Options{KeyPrefix: p})
		connected(t, s)
		stores[p] = s
		if _, _, err := s.Import(ctx, []store.Entry{{Kind: store.KindTriplet, Key: "key of " + p, First: now, Last: now, Expires: now + 60}}, 300); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range prefixes {
		var got []string
		if err := stores[p].Scan(ctx, nil, func(e store.Entry) bool { got = append(got, e.Key); return true }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != "key of "+p {
			t.Errorf("prefix %q lists %q", p, got)
		}
	}
}

// While Redis is down (breaker open) admin calls fail at once, and
// Counts answers the last numbers it had instead of a misleading 0.
func TestAdminWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Options{})
	connected(t, s)
	ctx := context.Background()
	now := time.Now().Unix()
	if _, _, err := s.Import(ctx, []store.Entry{{Kind: store.KindTriplet, Key: "t", First: now, Last: now, Expires: now + 60}}, 300); err != nil {
		t.Fatal(err)
	}
	if nt, _ := s.Counts(); nt != 1 {
		t.Fatalf("Counts() = %d", nt)
	}
	srv.Kill()
	for range DefaultBreakerThreshold {
		step(s, "x")
	}
	if s.down.Load() == nil {
		t.Fatal("breaker still closed")
	}
	start := time.Now()
	errs := []error{
		s.Scan(ctx, nil, func(store.Entry) bool { return true }),
		func() error { _, err := s.Delete(ctx, store.KindTriplet, []string{"t"}); return err }(),
		func() error {
			_, _, err := s.Import(ctx, []store.Entry{{Kind: store.KindTriplet, Key: "t"}}, 300)
			return err
		}(),
		func() error { _, err := s.Whitelist(ctx); return err }(),
		func() error {
			_, err := s.AddWhitelist(ctx, store.WhitelistEntry{Kind: store.WhitelistClient, Value: "x"})
			return err
		}(),
		func() error { _, err := s.RemoveWhitelist(ctx, store.WhitelistClient, "x"); return err }(),
		func() error { _, err := s.WhitelistVersion(ctx); return err }(),
	}
	nt, _ := s.Counts()
	took := time.Since(start)
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("admin call %d with Redis down: %v, want the outage's error", i, err)
		}
	}
	if nt != 1 || took > 50*time.Millisecond {
		t.Errorf("with Redis down: Counts() = %d after %v; want the last answer, 1, at once", nt, took)
	}
}
