package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/store"
)

// The behaviour suite of store.Admin: listing, deleting and importing
// entries, counting them and the runtime whitelist, the same for every
// backend. Admin works on the backend's clock (an entry's deadline is a
// wall-clock time), so these cases step at the real time, FixedNow, not
// at T0.

// RunAdmin runs the store.Admin cases against the stores open returns;
// each must implement store.Admin.
func RunAdmin(t *testing.T, open Opener) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, open Opener)
	}{
		{"scan lists every live entry once", adminScan},
		{"scan leaves out expired entries", adminScanExpired},
		{"delete by kind and keys", adminDelete},
		{"import merges by store.Merge", adminImportMerge},
		{"import refuses numbers that cannot be stored", adminImportRange},
		{"import and delete in several batches", adminImportMany},
		{"step sees imported entries as its own", adminImportStep},
		{"counts follow steps, deletes and imports", adminCounts},
		{"runtime whitelist", adminWhitelist},
		{"runtime whitelist entries expire", adminWhitelistExpiry},
		{"counts agree with scan after concurrent work", adminConcurrent},
		{"traps are listed, imported and deleted", adminTraps},
		{"tarpit marks are listed, imported and deleted", adminTarpits},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, open) })
	}
}

// adminOf opens a store and returns it as both interfaces; the store is
// closed at the end of the test.
func adminOf(t *testing.T, open Opener) (store.Store, store.Admin) {
	t.Helper()
	st := open(t)
	t.Cleanup(func() { st.Close() })
	a, ok := st.(store.Admin)
	if !ok {
		t.Fatalf("%T does not implement store.Admin", st)
	}
	return st, a
}

// at is a step at Unix time now (FixedNow) with the suite's rules.
func at(now int64, client, triplet string) *store.StepInput {
	return &store.StepInput{
		ClientKey: client, TripletKey: triplet, Now: now, FixedNow: true,
		Delay: Delay, RetryWindow: RetryWindow, MaxAge: MaxAge, AWLClients: AWLClients,
	}
}

func mustStep(t *testing.T, st store.Store, in *store.StepInput) store.StepResult {
	t.Helper()
	r, err := st.Step(context.Background(), in)
	if err != nil {
		t.Fatalf("step %+v: %v", in, err)
	}
	return r
}

// scanAll lists the entries of kinds, sorted by kind and key, and fails
// the test if one is listed twice.
func scanAll(t *testing.T, a store.Admin, kinds ...store.Kind) []store.Entry {
	t.Helper()
	var out []store.Entry
	if err := a.Scan(context.Background(), kinds, func(e store.Entry) bool {
		out = append(out, e)
		return true
	}); err != nil {
		t.Fatalf("Scan(%v): %v", kinds, err)
	}
	slices.SortFunc(out, compareEntries)
	for i := 1; i < len(out); i++ {
		if out[i].Kind == out[i-1].Kind && out[i].Key == out[i-1].Key {
			t.Errorf("Scan(%v) listed %s %q twice", kinds, out[i].Kind, out[i].Key)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing t after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func compareEntries(a, b store.Entry) int {
	return cmp.Or(strings.Compare(string(a.Kind), string(b.Kind)), strings.Compare(a.Key, b.Key))
}

func checkCounts(t *testing.T, a store.Admin, triplets, clients int) {
	t.Helper()
	if nt, nc := a.Counts(); nt != triplets || nc != clients {
		t.Errorf("Counts() = %d triplets, %d clients; want %d, %d", nt, nc, triplets, clients)
	}
}

// sameEntry compares entries, the deadline within a second: a backend
// rounds a deadline it keeps more finely up to the second.
func sameEntry(got, want store.Entry) bool {
	g, w := got, want
	g.Expires, w.Expires = 0, 0
	if g != w || (got.Expires == 0) != (want.Expires == 0) {
		return false
	}
	return got.Expires >= want.Expires-1 && got.Expires <= want.Expires+1
}

func adminScan(t *testing.T, open Opener) {
	st, a := adminOf(t, open)
	ctx := context.Background()
	if got := scanAll(t, a); len(got) != 0 {
		t.Fatalf("Scan of an empty store: %+v", got)
	}
	now := time.Now().Unix()
	start := now
	// 300 triplets of 20 clients, seen 1000 s ago; 50 of them passed
	// 400 s later, which counts each client once (within the hour).
	for i := range 300 {
		mustStep(t, st, at(now-1000, fmt.Sprintf("192.0.2.%d", i%20), fmt.Sprintf("net%d/s%d/r", i%7, i)))
	}
	for i := range 50 {
		mustStep(t, st, at(now-600, fmt.Sprintf("192.0.2.%d", i%20), fmt.Sprintf("net%d/s%d/r", i%7, i)))
	}
	end := time.Now().Unix()
	checkCounts(t, a, 300, 20)

	all := scanAll(t, a)
	if len(all) != 320 {
		t.Fatalf("Scan(all): %d entries, want 300 triplets and 20 clients", len(all))
	}
	// Each entry with its value and the deadline the rules gave it.
	within := func(e store.Entry, ttl int64) bool { return e.Expires >= start+ttl && e.Expires <= end+ttl+1 }
	for _, e := range all {
		var i, n int
		switch e.Kind {
		case store.KindClient:
			if _, err := fmt.Sscanf(e.Key, "192.0.2.%d", &i); err != nil || e.Count != 1 || e.Last != now-600 || !within(e, MaxAge+1) {
				t.Errorf("client entry %+v: want count 1, last %d, expiring max_age+1 from now", e, now-600)
			}
		case store.KindTriplet:
			if _, err := fmt.Sscanf(e.Key, "net%d/s%d/r", &n, &i); err != nil {
				t.Errorf("unexpected entry %+v", e)
				continue
			}
			switch {
			case i < 50 && (e.First != now-1000 || e.Last != now-600 || !within(e, MaxAge+1)):
				t.Errorf("passed triplet %+v: want %d,%d expiring max_age+1 from now", e, now-1000, now-600)
			case i >= 50 && (e.First != now-1000 || e.Last != now-1000 || !within(e, RetryWindow+1)):
				t.Errorf("pending triplet %+v: want %d,%d expiring retry_window+1 from now", e, now-1000, now-1000)
			}
		default:
			t.Errorf("entry of kind %q: %+v", e.Kind, e)
		}
	}
	if got := scanAll(t, a, store.KindTriplet); len(got) != 300 || got[0].Kind != store.KindTriplet || got[299].Kind != store.KindTriplet {
		t.Errorf("Scan(triplet): %d entries, want the 300 triplets", len(got))
	}
	if got := scanAll(t, a, store.KindClient); len(got) != 20 || got[0].Kind != store.KindClient || got[19].Kind != store.KindClient {
		t.Errorf("Scan(client): %d entries, want the 20 clients", len(got))
	}
	if got := scanAll(t, a, store.KindClient, store.KindTriplet); !slices.EqualFunc(got, all, sameEntry) {
		t.Errorf("Scan(client, triplet) differs from Scan(nil): %d entries, want %d", len(got), len(all))
	}
	n := 0
	if err := a.Scan(ctx, nil, func(store.Entry) bool { n++; return n < 7 }); err != nil || n != 7 {
		t.Errorf("Scan went on after fn returned false: %d calls, %v", n, err)
	}
	if err := a.Scan(ctx, []store.Kind{"bogus"}, func(store.Entry) bool { return true }); err == nil {
		t.Error("Scan of an unknown kind succeeded")
	}
	// Runtime whitelist entries are not entries.
	if _, err := a.AddWhitelist(ctx, store.WhitelistEntry{Kind: store.WhitelistClient, Value: "relay.example", Added: now}); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, a); len(got) != 320 {
		t.Errorf("with a runtime whitelist entry, Scan lists %d entries, want 320", len(got))
	}
	checkCounts(t, a, 300, 20)
}

func adminScanExpired(t *testing.T, open Opener) {
	_, a := adminOf(t, open)
	now := time.Now().Unix()
	in := []store.Entry{
		{Kind: store.KindTriplet, Key: "short", First: now, Last: now, Expires: now + 2},
		{Kind: store.KindClient, Key: "192.0.2.1", Count: 1, Last: now, Expires: now + 2},
		{Kind: store.KindTriplet, Key: "long", First: now, Last: now, Expires: now + 3600},
	}
	if imp, mer, err := a.Import(context.Background(), in, Delay); err != nil || imp != 3 || mer != 0 {
		t.Fatalf("Import = %d, %d, %v; want 3, 0", imp, mer, err)
	}
	if got := scanAll(t, a); len(got) != 3 {
		t.Fatalf("before the deadline: %+v, want 3 entries", got)
	}
	// Polled: the deadline is a wall-clock second.
	var got []store.Entry
	waitFor(t, "the deadline of two entries", func() bool {
		got = scanAll(t, a)
		return len(got) <= 1
	})
	if time.Now().Unix() < now+2 {
		t.Errorf("entries left Scan before their deadline %d: %+v", now+2, got)
	}
	if len(got) != 1 || got[0].Key != "long" {
		t.Errorf("after the deadline of two: Scan = %+v, want only %q", got, "long")
	}
	// Counts may still include them (not yet removed), never fewer.
	if nt, nc := a.Counts(); nt < 1 || nt > 2 || nc > 1 {
		t.Errorf("Counts() = %d, %d; want 1 or 2 triplets, at most 1 client", nt, nc)
	}
}

func adminDelete(t *testing.T, open Opener) {
	st, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	for i := 1; i <= 5; i++ {
		mustStep(t, st, at(now-400, "192.0.2.9", fmt.Sprintf("d%d", i)))
	}
	mustStep(t, st, at(now-50, "192.0.2.9", "d5")) // passes: the client gets an entry
	checkCounts(t, a, 5, 1)

	tests := []struct {
		kind store.Kind
		keys []string
		want int
	}{
		{store.KindTriplet, []string{"d1", "d2", "missing", "d3"}, 3},
		{store.KindTriplet, []string{"d1"}, 0},        // gone already
		{store.KindClient, []string{"d4"}, 0},         // a triplet's key is not a client's
		{store.KindTriplet, []string{"192.0.2.9"}, 0}, // nor the other way round
		{store.KindClient, []string{"192.0.2.9"}, 1},
		{store.KindTriplet, nil, 0},
	}
	for i, tc := range tests {
		if n, err := a.Delete(ctx, tc.kind, tc.keys); err != nil || n != tc.want {
			t.Errorf("%d: Delete(%s, %q) = %d, %v; want %d", i, tc.kind, tc.keys, n, err, tc.want)
		}
	}
	if _, err := a.Delete(ctx, "bogus", []string{"d4"}); err == nil {
		t.Error("Delete of an unknown kind succeeded")
	}
	checkCounts(t, a, 2, 0)
	got := scanAll(t, a)
	if len(got) != 2 || got[0].Key != "d4" || got[1].Key != "d5" {
		t.Errorf("after delete, Scan = %+v; want d4 and d5", got)
	}
	// Forgotten for Step too: greylisting starts over, the client counts
	// from nothing.
	r := mustStep(t, st, at(now, "192.0.2.9", "d1"))
	if r.Outcome != store.Greylisted || !r.New() || r.Before.TripletFound || r.Before.ClientFound {
		t.Errorf("step on a deleted triplet and client: %+v", r)
	}
	if r := mustStep(t, st, at(now, "", "d4")); r.Outcome != store.FirstPass || r.First != now-400 || !r.Before.TripletFound {
		t.Errorf("step on a kept triplet: %+v", r)
	}
}

func adminImportMerge(t *testing.T, open Opener) {
	_, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	trip := func(key string, first, last, exp int64) store.Entry {
		return store.Entry{Kind: store.KindTriplet, Key: key, First: now + first, Last: now + last, Expires: exp}
	}
	cl := func(key string, count, last, exp int64) store.Entry {
		return store.Entry{Kind: store.KindClient, Key: key, Count: count, Last: now + last, Expires: exp}
	}
	h := func(n int64) int64 { return now + n*3600 }
	tests := []struct {
		name     string
		old, new store.Entry
	}{
		{"passed new wins over pending old", trip("t1", -100, -100, h(1)), trip("t1", -1000, -500, h(2))},
		{"passed old wins over pending new", trip("t2", -1000, -500, h(2)), trip("t2", -2000, -1990, h(1))},
		{"two pending: earliest first, latest last", trip("t3", -200, -150, h(2)), trip("t3", -250, -240, h(1))},
		{"two pending spanning the delay pass", trip("t4", -600, -590, h(1)), trip("t4", -310, -290, h(2))},
		{"two passed: earliest first, latest last", trip("t5", -5000, -4000, h(3)), trip("t5", -4500, -100, h(4))},
		{"stored without deadline wins", trip("t6", -5000, -4000, 0), trip("t6", -4500, -100, h(4))},
		{"imported without deadline wins", trip("t7", -5000, -4000, h(2)), trip("t7", -4500, -100, 0)},
		{"clients: higher count, latest last", cl("c1", 3, -100, h(1)), cl("c1", 5, -200, h(2))},
		{"clients: stored count higher", cl("c2", 7, -300, h(3)), cl("c2", 2, -100, h(1))},
	}
	var olds, news []store.Entry
	for _, tc := range tests {
		olds, news = append(olds, tc.old), append(news, tc.new)
	}
	if imp, mer, err := a.Import(ctx, olds, Delay); err != nil || imp != len(olds) || mer != 0 {
		t.Fatalf("Import into an empty store = %d imported, %d merged, %v; want %d, 0", imp, mer, err, len(olds))
	}
	// What cannot be imported: past its deadline (a free key, a stored
	// key) counts as neither.
	news = append(news,
		trip("expired", -100, -100, now-1),
		trip("t3", -9000, -1000, now-1),
		trip("fresh", -10, -10, h(1)),
	)
	if imp, mer, err := a.Import(ctx, news, Delay); err != nil || imp != 1 || mer != len(tests) {
		t.Fatalf("Import = %d imported, %d merged, %v; want 1, %d", imp, mer, err, len(tests))
	}
	got := map[string]store.Entry{}
	for _, e := range scanAll(t, a) {
		got[string(e.Kind)+" "+e.Key] = e
	}
	for i, tc := range tests {
		want := store.Merge(tc.old, tc.new, Delay)
		if g := got[string(want.Kind)+" "+want.Key]; !sameEntry(g, want) {
			t.Errorf("%d %s: stored %+v, want store.Merge's %+v", i, tc.name, g, want)
		}
	}
	if _, ok := got["triplet expired"]; ok {
		t.Error("an entry past its deadline was imported")
	}
	if g := got["triplet fresh"]; !sameEntry(g, trip("fresh", -10, -10, h(1))) {
		t.Errorf("fresh: %+v", g)
	}
	checkCounts(t, a, 8, 2)

	// Two entries of one key in one import: the second merges with the
	// first.
	dup := []store.Entry{trip("dup", -100, -100, h(1)), trip("dup", -200, -180, h(2))}
	if imp, mer, err := a.Import(ctx, dup, Delay); err != nil || imp != 1 || mer != 1 {
		t.Errorf("Import of one key twice = %d, %d, %v; want 1 imported, 1 merged", imp, mer, err)
	}
	if g := scanAll(t, a, store.KindTriplet); !slices.ContainsFunc(g, func(e store.Entry) bool { return sameEntry(e, store.Merge(dup[0], dup[1], Delay)) }) {
		t.Errorf("one key imported twice: want %+v among %+v", store.Merge(dup[0], dup[1], Delay), g)
	}
	if _, _, err := a.Import(ctx, []store.Entry{{Kind: "bogus", Key: "x", Expires: h(1)}}, Delay); err == nil {
		t.Error("Import of an unknown kind succeeded")
	}
	if imp, mer, err := a.Import(ctx, nil, Delay); err != nil || imp != 0 || mer != 0 {
		t.Errorf("Import(nil) = %d, %d, %v", imp, mer, err)
	}
	checkCounts(t, a, 9, 2)
}

// adminImportMany: imports and deletes larger than any backend's batch.
// adminImportRange: a number past store.MaxValue would come back as
// another number (Lua rounds it) or as no entry (ParseValue refuses it):
// the whole import is refused before anything is written.
func adminImportRange(t *testing.T, open Opener) {
	_, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	good := store.Entry{Kind: store.KindTriplet, Key: "good", First: now, Last: now, Expires: now + 3600}
	for _, bad := range []store.Entry{
		{Kind: store.KindTriplet, Key: "big", First: store.MaxValue + 1, Last: now + 2},
		{Kind: store.KindTriplet, Key: "small", First: now, Last: -store.MaxValue - 1},
		{Kind: store.KindClient, Key: "192.0.2.1", Count: math.MaxInt64, Last: now},
	} {
		imp, mer, err := a.Import(ctx, []store.Entry{good, bad}, Delay)
		if !errors.Is(err, store.ErrRange) || imp != 0 || mer != 0 {
			t.Errorf("Import of %+v = %d, %d, %v; want 0, 0 and store.ErrRange", bad, imp, mer, err)
		}
	}
	if got := scanAll(t, a); len(got) != 0 {
		t.Errorf("after refused imports, the store holds %+v", got)
	}
	edge := []store.Entry{
		{Kind: store.KindTriplet, Key: "max", First: -store.MaxValue, Last: store.MaxValue},
		{Kind: store.KindClient, Key: "192.0.2.1", Count: store.MaxValue, Last: -store.MaxValue},
	}
	if imp, mer, err := a.Import(ctx, edge, Delay); err != nil || imp != 2 || mer != 0 {
		t.Fatalf("Import of numbers at the limits = %d, %d, %v; want 2, 0", imp, mer, err)
	}
	if got := scanAll(t, a); !slices.EqualFunc(got, []store.Entry{edge[1], edge[0]}, sameEntry) {
		t.Errorf("numbers at the limits: Scan = %+v, want %+v exactly", got, edge)
	}
}

func adminImportMany(t *testing.T, open Opener) {
	_, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	const n = 2500
	var in []store.Entry
	var keys []string
	for i := range n {
		k := fmt.Sprintf("198.51.%d.0/s%d@example.org/r@example.net", i%250, i)
		keys = append(keys, k)
		in = append(in, store.Entry{Kind: store.KindTriplet, Key: k, First: now - int64(i), Last: now, Expires: now + 3600 + int64(i)})
	}
	in = append(in, store.Entry{Kind: store.KindClient, Key: "2001:db8::1", Count: 3, Last: now, Expires: now + 3600})
	if imp, mer, err := a.Import(ctx, in, Delay); err != nil || imp != n+1 || mer != 0 {
		t.Fatalf("Import = %d, %d, %v; want %d, 0", imp, mer, err, n+1)
	}
	checkCounts(t, a, n, 1)
	got := scanAll(t, a)
	want := slices.Clone(in)
	slices.SortFunc(want, compareEntries)
	if len(got) != len(want) {
		t.Fatalf("Scan after import: %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if !sameEntry(got[i], want[i]) {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
			break
		}
	}
	if imp, mer, err := a.Import(ctx, in, Delay); err != nil || imp != 0 || mer != n+1 {
		t.Errorf("importing again = %d, %d, %v; want 0, %d", imp, mer, err, n+1)
	}
	checkCounts(t, a, n, 1)
	if d, err := a.Delete(ctx, store.KindTriplet, keys[:n-10]); err != nil || d != n-10 {
		t.Errorf("Delete = %d, %v; want %d", d, err, n-10)
	}
	checkCounts(t, a, 10, 1)
	if got := scanAll(t, a, store.KindTriplet); len(got) != 10 {
		t.Errorf("after delete: %d triplets, want 10", len(got))
	}
}

// adminImportStep: what Scan lists of one store, imported into another,
// makes Step decide there exactly as in the original (greyd export |
// greyd import, between backends too).
func adminImportStep(t *testing.T, open Opener) {
	src, sa := adminOf(t, open)
	dst, da := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	base := now - 4*3600
	awl := func(in *store.StepInput) *store.StepInput { in.AWLClients = 2; return in }
	for _, in := range []*store.StepInput{
		// Passed, with its client counted once.
		awl(at(base, "192.0.2.1", "passed")), awl(at(base+400, "192.0.2.1", "passed")),
		// Pending since 100 s.
		awl(at(now-100, "192.0.2.2", "pending")),
		// A client with two passes an hour apart: auto-whitelisted.
		awl(at(base, "192.0.2.3", "a1")), awl(at(base+300, "192.0.2.3", "a1")),
		awl(at(base+3600, "192.0.2.3", "a2")), awl(at(base+3900, "192.0.2.3", "a2")),
		// A passed subnet key, for a second-key lookup.
		awl(at(base, "", "subnet")), awl(at(base+300, "", "subnet")),
	} {
		mustStep(t, src, in)
	}
	exported := scanAll(t, sa)
	if imp, mer, err := da.Import(ctx, exported, Delay); err != nil || imp != len(exported) || mer != 0 {
		t.Fatalf("Import of %d exported entries = %d, %d, %v", len(exported), imp, mer, err)
	}
	imported := scanAll(t, da)
	if len(imported) != len(exported) {
		t.Fatalf("imported store lists %d entries, the original %d", len(imported), len(exported))
	}
	for i := range imported {
		if !sameEntry(imported[i], exported[i]) {
			t.Errorf("imported %+v, exported %+v", imported[i], exported[i])
		}
	}
	probes := []struct {
		in   *store.StepInput
		want store.Outcome
	}{
		{awl(at(now, "192.0.2.1", "passed")), store.Passed},
		{awl(at(now+200, "192.0.2.2", "pending")), store.FirstPass}, // waited its original 300 s
		{awl(at(now, "192.0.2.3", "never-seen")), store.AutoWhitelisted},
		{awl(&store.StepInput{TripletKey: "org", AltKey: "subnet", Now: now, FixedNow: true, Delay: Delay, RetryWindow: RetryWindow, MaxAge: MaxAge}), store.Passed},
		{awl(at(now, "192.0.2.4", "unknown")), store.Greylisted},
	}
	for i, p := range probes {
		for _, dry := range []bool{true, false} {
			in := *p.in
			in.DryRun = dry
			rs, rd := mustStep(t, src, &in), mustStep(t, dst, &in)
			if rs != rd {
				t.Errorf("probe %d (dry %v): imported store %+v, original %+v", i, dry, rd, rs)
			}
			if rd.Outcome != p.want {
				t.Errorf("probe %d (dry %v): outcome %v, want %v", i, dry, rd.Outcome, p.want)
			}
		}
	}
	if r := mustStep(t, dst, awl(at(now+201, "192.0.2.2", "pending"))); r.Outcome != store.Passed || r.First != now-100 {
		t.Errorf("after the first pass on the imported store: %+v", r)
	}
	st, sc := sa.Counts()
	checkCounts(t, da, st, sc)
}

func adminCounts(t *testing.T, open Opener) {
	st, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	checkCounts(t, a, 0, 0)
	for i := range 10 {
		mustStep(t, st, at(now-7200, "192.0.2.1", fmt.Sprintf("t%d", i)))
	}
	checkCounts(t, a, 10, 0)
	dry := at(now, "192.0.2.1", "dry")
	dry.DryRun = true
	mustStep(t, st, dry)
	checkCounts(t, a, 10, 0)
	// Rewrites with new deadlines move entries, never add them: the
	// first pass (pending to passed, and a new client entry), a refresh
	// of a passed triplet, a stale unfinished entry starting over.
	mustStep(t, st, at(now-6800, "192.0.2.1", "t0"))
	mustStep(t, st, at(now-6700, "192.0.2.1", "t1")) // client counted once
	mustStep(t, st, at(now-100, "192.0.2.1", "t0"))
	mustStep(t, st, at(now-7200+RetryWindow+10, "", "t9"))
	checkCounts(t, a, 10, 1)
	// A pass through a second key writes the chosen key.
	alt := at(now, "", "org")
	alt.AltKey = "t0"
	if r := mustStep(t, st, alt); !r.ViaAlt {
		t.Fatalf("second-key step: %+v", r)
	}
	checkCounts(t, a, 11, 1)
	if n, err := a.Delete(ctx, store.KindTriplet, []string{"t2", "t3", "t4", "nope"}); err != nil || n != 3 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	checkCounts(t, a, 8, 1)
	in := []store.Entry{
		{Kind: store.KindTriplet, Key: "i1", First: now, Last: now, Expires: now + 600},
		{Kind: store.KindTriplet, Key: "i2", First: now, Last: now}, // no deadline
		{Kind: store.KindClient, Key: "192.0.2.7", Count: 1, Last: now, Expires: now + 86400},
		{Kind: store.KindTriplet, Key: "t5", First: now - 7200, Last: now, Expires: now + 30*86400}, // merged, a later deadline
		{Kind: store.KindTriplet, Key: "t6", First: now - 7200, Last: now},                          // merged, no deadline
		{Kind: store.KindClient, Key: "192.0.2.1", Count: 9, Last: now, Expires: now + 60},          // merged, an earlier deadline
		{Kind: store.KindTriplet, Key: "gone", First: now, Last: now, Expires: now - 10},            // skipped
	}
	if imp, mer, err := a.Import(ctx, in, Delay); err != nil || imp != 3 || mer != 3 {
		t.Fatalf("Import = %d, %d, %v; want 3, 3", imp, mer, err)
	}
	checkCounts(t, a, 10, 2)
	// Entries without a deadline are counted, and deleted from the count.
	if n, err := a.Delete(ctx, store.KindTriplet, []string{"i2", "t6"}); err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	checkCounts(t, a, 8, 2)
	all := scanAll(t, a)
	var nt, nc int
	for _, e := range all {
		if e.Kind == store.KindTriplet {
			nt++
		} else {
			nc++
		}
	}
	checkCounts(t, a, nt, nc)
}

func adminWhitelist(t *testing.T, open Opener) {
	_, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	version := func() int64 {
		t.Helper()
		v, err := a.WhitelistVersion(ctx)
		if err != nil {
			t.Fatalf("WhitelistVersion: %v", err)
		}
		return v
	}
	// changed checks that the version went up since *v, and keeps the
	// new one.
	changed := func(v *int64, what string) {
		t.Helper()
		if nv := version(); nv <= *v {
			t.Errorf("%s: version %d, was %d; want it higher", what, nv, *v)
		} else {
			*v = nv
		}
	}
	check := func(want ...store.WhitelistEntry) {
		t.Helper()
		got, err := a.Whitelist(ctx)
		if err != nil {
			t.Fatalf("Whitelist: %v", err)
		}
		order := func(x, y store.WhitelistEntry) int {
			return cmp.Or(strings.Compare(string(x.Kind), string(y.Kind)), strings.Compare(x.Value, y.Value))
		}
		slices.SortFunc(got, order)
		slices.SortFunc(want, order)
		if !slices.Equal(got, want) {
			t.Errorf("Whitelist() =\n  %+v\nwant\n  %+v", got, want)
		}
	}
	v := version()
	check()
	relay := store.WhitelistEntry{Kind: store.WhitelistClient, Value: "relay.partner.example", Comment: "ticket 42, by ops: \"ok\"", Added: now}
	regex := store.WhitelistEntry{Kind: store.WhitelistClient, Value: `/^mx\d+\.example\.com$/`, Added: now - 5}
	pm := store.WhitelistEntry{Kind: store.WhitelistRecipient, Value: "postmaster@", Comment: "ünïcode", Added: now, Expires: now + 3600}
	old := store.WhitelistEntry{Kind: store.WhitelistRecipient, Value: "old@example.org", Added: now - 10, Expires: now - 1}
	sameValue := store.WhitelistEntry{Kind: store.WhitelistRecipient, Value: "relay.partner.example", Added: now}
	for _, e := range []store.WhitelistEntry{relay, regex, pm, old, sameValue} {
		if replaced, err := a.AddWhitelist(ctx, e); err != nil || replaced {
			t.Fatalf("AddWhitelist(%+v) = %v, %v; want a new entry", e, replaced, err)
		}
		changed(&v, "add "+e.Value)
	}
	check(relay, regex, pm, sameValue)

	// Replacing: a new comment and deadline.
	relay2 := relay
	relay2.Comment, relay2.Expires = "ticket 43", now+86400
	if replaced, err := a.AddWhitelist(ctx, relay2); err != nil || !replaced {
		t.Errorf("adding %q again: replaced %v, %v; want true", relay2.Value, replaced, err)
	}
	changed(&v, "replace")
	// An expired entry is no entry: adding it anew replaces nothing.
	old2 := old
	old2.Expires = 0
	if replaced, err := a.AddWhitelist(ctx, old2); err != nil || replaced {
		t.Errorf("adding over an expired entry: replaced %v, %v; want false", replaced, err)
	}
	changed(&v, "add over an expired entry")
	check(relay2, regex, pm, sameValue, old2)

	for _, bad := range []store.WhitelistEntry{
		{Kind: store.WhitelistClient, Value: "a\nb", Added: now},
		{Kind: store.WhitelistClient, Value: "a\rb", Added: now},
		{Kind: store.WhitelistClient, Value: "", Added: now},
		{Kind: "bogus", Value: "x", Added: now},
	} {
		if _, err := a.AddWhitelist(ctx, bad); err == nil {
			t.Errorf("AddWhitelist(%+v) succeeded", bad)
		}
	}
	if nv := version(); nv != v {
		t.Errorf("refused adds changed the version: %d, was %d", nv, v)
	}

	if found, err := a.RemoveWhitelist(ctx, store.WhitelistRecipient, "postmaster@"); err != nil || !found {
		t.Errorf("RemoveWhitelist = %v, %v; want true", found, err)
	}
	changed(&v, "remove")
	if found, err := a.RemoveWhitelist(ctx, store.WhitelistRecipient, "postmaster@"); err != nil || found {
		t.Errorf("RemoveWhitelist again = %v, %v; want false", found, err)
	}
	if found, err := a.RemoveWhitelist(ctx, store.WhitelistClient, "old@example.org"); err != nil || found {
		t.Errorf("RemoveWhitelist of the other list's entry = %v, %v; want false", found, err)
	}
	if _, err := a.RemoveWhitelist(ctx, "bogus", "x"); err == nil {
		t.Error("RemoveWhitelist of an unknown list succeeded")
	}
	check(relay2, regex, sameValue, old2)

	// Not entries: neither listed nor counted.
	if got := scanAll(t, a); len(got) != 0 {
		t.Errorf("Scan lists runtime whitelist entries: %+v", got)
	}
	checkCounts(t, a, 0, 0)
}

func adminWhitelistExpiry(t *testing.T, open Opener) {
	_, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	short := store.WhitelistEntry{Kind: store.WhitelistRecipient, Value: "abuse@", Added: now, Expires: now + 2}
	keep := store.WhitelistEntry{Kind: store.WhitelistClient, Value: "192.0.2.0/24", Added: now, Expires: now + 3600}
	for _, e := range []store.WhitelistEntry{short, keep} {
		if _, err := a.AddWhitelist(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := a.Whitelist(ctx); err != nil || len(got) != 2 {
		t.Fatalf("before the deadline: %+v, %v", got, err)
	}
	waitFor(t, "the deadline of the short entry", func() bool {
		got, err := a.Whitelist(ctx)
		return err != nil || len(got) < 2
	})
	if time.Now().Unix() < now+2 {
		t.Errorf("a whitelist entry left before its deadline %d", now+2)
	}
	for i := range 2 { // the second read after the first dropped it
		if got, err := a.Whitelist(ctx); err != nil || len(got) != 1 || got[0] != keep {
			t.Errorf("read %d after the deadline: %+v, %v; want only %+v", i, got, err, keep)
		}
	}
	if found, err := a.RemoveWhitelist(ctx, short.Kind, short.Value); err != nil || found {
		t.Errorf("removing an expired entry: %v, %v; want false", found, err)
	}
}

// adminConcurrent: steps on several goroutines while listings, imports
// and deletes run; afterwards the counts agree with a listing (nothing
// expires meanwhile).
func adminConcurrent(t *testing.T, open Opener) {
	st, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	var stop atomic.Bool
	var steps atomic.Int64
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				// New triplets, retries, first passes and client counts.
				when := now - 400 + int64(i/300%3)*200
				in := at(when, fmt.Sprintf("192.0.2.%d", i%30), fmt.Sprintf("n%d/s%d/r", w, i%300))
				if _, err := st.Step(ctx, in); err != nil {
					t.Error(err)
					return
				}
				steps.Add(1)
			}
		})
	}
	// At least 15 rounds, and until the steps went three times through
	// each worker's triplets (new, early retry, first pass).
	rounds := 0
	for round := 0; round < 15 || steps.Load() < 3*900; round++ {
		if t.Failed() {
			break
		}
		var keys []string
		var entries []store.Entry
		if err := a.Scan(ctx, nil, func(e store.Entry) bool {
			if e.Kind == store.KindTriplet && len(keys) < 20 {
				keys = append(keys, e.Key)
			}
			entries = append(entries, e)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if round%2 == 0 {
			// Some deadlines moved: a merge moves entries between
			// deadlines while steps do too.
			for i := range entries {
				if entries[i].Expires != 0 && i%3 == 0 {
					entries[i].Expires += 7200
				}
			}
		}
		if _, _, err := a.Import(ctx, entries, Delay); err != nil {
			t.Fatal(err)
		}
		if round%4 == 3 {
			// Not too many: triplets must live long enough to pass.
			if _, err := a.Delete(ctx, store.KindTriplet, keys); err != nil {
				t.Fatal(err)
			}
		}
		a.Counts()
		rounds = round + 1
	}
	stop.Store(true)
	wg.Wait()
	var nt, nc int
	for _, e := range scanAll(t, a) {
		if e.Kind == store.KindTriplet {
			nt++
		} else {
			nc++
		}
	}
	t.Logf("after %d steps and %d rounds of listing, import and delete: %d triplets, %d clients", steps.Load(), rounds, nt, nc)
	checkCounts(t, a, nt, nc)
}
