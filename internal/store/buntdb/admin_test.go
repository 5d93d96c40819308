package buntdb

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/store"
)

// scanAll returns every entry of kinds, sorted by kind and key.
func scanAll(t *testing.T, d *DB, kinds ...store.Kind) []store.Entry {
	t.Helper()
	var out []store.Entry
	if err := d.Scan(context.Background(), kinds, func(e store.Entry) bool { out = append(out, e); return true }); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	slices.SortFunc(out, func(a, b store.Entry) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

func checkCounts(t *testing.T, d *DB, triplets, clients int) {
	t.Helper()
	if nt, nc := d.Counts(); nt != triplets || nc != clients {
		t.Errorf("Counts() = %d, %d; want %d, %d", nt, nc, triplets, clients)
	}
}

func TestMerge(t *testing.T) {
	const delay = 300
	trip := func(a, b, exp int64) store.Entry {
		return store.Entry{Kind: store.KindTriplet, Key: "k", First: a, Last: b, Expires: exp}
	}
	cl := func(a, b, exp int64) store.Entry {
		return store.Entry{Kind: store.KindClient, Key: "k", Count: a, Last: b, Expires: exp}
	}
	tests := []struct {
		name          string
		old, new, out store.Entry
	}{
		{"passed new wins over pending old", trip(1000, 1000, 5000), trip(100, 500, 9000), trip(100, 500, 9000)},
		{"passed old wins over pending new", trip(100, 500, 9000), trip(50, 60, 2000), trip(100, 500, 9000)},
		{"two pending: earliest first, latest last", trip(200, 250, 3000), trip(100, 120, 2000), trip(100, 250, 3000)},
		{"two pending spanning the delay pass", trip(0, 10, 3000), trip(290, 310, 2000), trip(0, 310, 3000)},
		{"two passed: earliest first, latest last", trip(0, 400, 3000), trip(100, 900, 4000), trip(0, 900, 4000)},
		{"no expiry wins", trip(0, 400, 0), trip(100, 900, 4000), trip(0, 900, 0)},
		{"clients: higher count, latest last", cl(3, 500, 100), cl(5, 400, 200), cl(5, 500, 200)},
	}
	for i, tc := range tests {
		if got := store.Merge(tc.old, tc.new, delay); got != tc.out {
			t.Errorf("%d %s: Merge(%+v, %+v) = %+v, want %+v", i, tc.name, tc.old, tc.new, got, tc.out)
		}
	}
}

func TestScanCountsDelete(t *testing.T) {
	backends(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		noSweep(t, d)
		for i := 0; i < 300; i++ {
			if err := d.PutTriplet(ctx, fmt.Sprintf("net%d/s/r", i%3), Triplet{First: int64(i), Last: int64(i)}, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := d.PutTriplet(ctx, fmt.Sprintf("198.51.100.0/s%d/r", i), Triplet{First: 10, Last: 20}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 20; i++ {
			if err := d.PutClient(ctx, fmt.Sprintf("192.0.2.%d", i), Client{Count: 1, Last: 5}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		// An expired entry is counted (not swept yet) but never listed.
		if err := d.PutTriplet(ctx, "gone/s/r", Triplet{First: 1, Last: 1}, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if _, err := d.AddWhitelist(ctx, store.WhitelistEntry{Kind: store.WhitelistClient, Value: "relay.example", Added: 1}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the entry put with a TTL of 1 ms reads as expired", func() bool {
			_, found, _ := d.Triplet(ctx, "gone/s/r")
			return !found
		})
		checkCounts(t, d, 304, 20)

		all := scanAll(t, d)
		if len(all) != 323 {
			t.Fatalf("Scan(all): %d entries, want 323", len(all))
		}
		if got := scanAll(t, d, store.KindClient); len(got) != 20 || got[0] != (store.Entry{Kind: store.KindClient, Key: "192.0.2.0", Count: 1, Last: 5, Expires: got[0].Expires}) {
			t.Errorf("Scan(client): %d entries, first %+v", len(got), got[0])
		}
		trips := scanAll(t, d, store.KindTriplet)
		if len(trips) != 303 {
			t.Errorf("Scan(triplet): %d entries, want 303", len(trips))
		}
		for _, e := range trips {
			if dl := time.Unix(e.Expires, 0); time.Until(dl) < 59*time.Minute || time.Until(dl) > time.Hour+time.Second {
				t.Errorf("%q expires %v, want in an hour", e.Key, dl)
			}
		}
		n := 0
		d.Scan(ctx, nil, func(store.Entry) bool { n++; return n < 7 })
		if n != 7 {
			t.Errorf("Scan went on after fn returned false: %d calls", n)
		}

		keys := []string{"net0/s/r", "net1/s/r", "missing", "gone/s/r"}
		if got, err := d.Delete(ctx, store.KindTriplet, keys); err != nil || got != 2 {
			t.Errorf("Delete(triplets) = %d, %v; want 2 (the expired and the missing one do not count)", got, err)
		}
		if got, err := d.Delete(ctx, store.KindClient, []string{"192.0.2.1", "net2/s/r"}); err != nil || got != 1 {
			t.Errorf("Delete(clients) = %d, %v; want 1", got, err)
		}
		checkTriplet(t, d, "net0/s/r", Triplet{}, false)
		checkTriplet(t, d, "net2/s/r", Triplet{First: 299, Last: 299}, true)
		checkCounts(t, d, 301, 19)
		checkIndex(t, d)
	})
}

func TestDeleteReopen(t *testing.T) {
	path := dbPath(t)
	d := openT(t, path, Options{})
	ctx := context.Background()
	var keys []string
	for i := 0; i < 2000; i++ { // several chunks per shard
		k := fmt.Sprintf("n/s%d/r", i)
		keys = append(keys, k)
		if err := d.PutTriplet(ctx, k, Triplet{First: 1, Last: 2}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := d.Delete(ctx, store.KindTriplet, keys[:1500]); n != 1500 || err != nil {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	d.Close()
	d = openT(t, path, Options{})
	checkCounts(t, d, 500, 0)
	checkTriplet(t, d, keys[0], Triplet{}, false)
	checkTriplet(t, d, keys[1999], Triplet{First: 1, Last: 2}, true)
}

func TestImport(t *testing.T) {
	backends(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		now := time.Now().Unix()
		if err := d.PutTriplet(ctx, "pending", Triplet{First: now - 100, Last: now - 100}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := d.PutClient(ctx, "192.0.2.1", Client{Count: 2, Last: now - 10}, time.Hour); err != nil {
			t.Fatal(err)
		}
		in := []store.Entry{
			{Kind: store.KindTriplet, Key: "pending", First: now - 1000, Last: now - 500, Expires: now + 7200}, // passed: wins
			{Kind: store.KindTriplet, Key: "new", First: now - 50, Last: now - 50, Expires: now + 600},
			{Kind: store.KindTriplet, Key: "forever", First: 1, Last: 2},
			{Kind: store.KindTriplet, Key: "expired", First: 1, Last: 2, Expires: now - 1},
			{Kind: store.KindClient, Key: "192.0.2.1", Count: 5, Last: now - 3000, Expires: now + 100},
			{Kind: store.KindClient, Key: "192.0.2.2", Count: 1, Last: now, Expires: now + 100},
			{Kind: store.KindTriplet, Key: "new", First: now - 60, Last: now - 40, Expires: now + 600}, // again, merges
		}
		imported, merged, err := d.Import(ctx, in, 300)
		if err != nil || imported != 3 || merged != 3 {
			t.Fatalf("Import = %d imported, %d merged, %v; want 3, 3", imported, merged, err)
		}
		checkTriplet(t, d, "pending", Triplet{First: now - 1000, Last: now - 500}, true)
		checkTriplet(t, d, "new", Triplet{First: now - 60, Last: now - 40}, true)
		checkTriplet(t, d, "forever", Triplet{First: 1, Last: 2}, true)
		checkTriplet(t, d, "expired", Triplet{}, false)
		checkClient(t, d, "192.0.2.1", Client{Count: 5, Last: now - 10}, true)
		checkClient(t, d, "192.0.2.2", Client{Count: 1, Last: now}, true)
		if ttl := rawTTL(t, d, "t:forever"); ttl != -1 {
			t.Errorf("entry imported without deadline has TTL %v", ttl)
		}
		if ttl := rawTTL(t, d, "t:pending"); ttl < 7100*time.Second || ttl > 7200*time.Second {
			t.Errorf("merged entry TTL %v, want the later deadline (2h)", ttl)
		}
		checkCounts(t, d, 3, 2)
		checkIndex(t, d)
	})
}

// TestExportImport: what Scan lists, Import restores exactly, across a
// reopen (buntdb → buntdb: what greyd export | greyd import does).
func TestExportImport(t *testing.T) {
	ctx := context.Background()
	src := openT(t, dbPath(t), Options{})
	now := time.Now().Unix()
	for i := 0; i < 1000; i++ {
		if err := src.PutTriplet(ctx, fmt.Sprintf("198.51.%d.0/s%d@example.org/r@example.net", i%250, i), Triplet{First: now - int64(i), Last: now}, time.Duration(i+60)*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		if err := src.PutClient(ctx, fmt.Sprintf("2001:DB8:0:0:0:0:0:%X", i), Client{Count: int64(i), Last: now}, 0); err != nil {
			t.Fatal(err)
		}
	}
	exported := scanAll(t, src)
	path := dbPath(t)
	dst := openT(t, path, Options{})
	if imp, mer, err := dst.Import(ctx, exported, 300); err != nil || imp != 1100 || mer != 0 {
		t.Fatalf("Import = %d, %d, %v", imp, mer, err)
	}
	dst.Close()
	dst = openT(t, path, Options{})
	got := scanAll(t, dst)
	if len(got) != len(exported) {
		t.Fatalf("after import and reopen: %d entries, want %d", len(got), len(exported))
	}
	for i := range got {
		g, w := got[i], exported[i]
		if g.Kind != w.Kind || g.Key != w.Key || g.First != w.First || g.Count != w.Count || g.Last != w.Last || g.Expires < w.Expires || g.Expires > w.Expires+1 {
			t.Errorf("entry %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestRuntimeWhitelist(t *testing.T) {
	path := dbPath(t)
	var logs logBuffer
	d := openT(t, path, Options{Logger: logs.logger()})
	ctx := context.Background()
	v0, _ := d.WhitelistVersion(ctx)
	now := time.Now().Unix()
	adds := []store.WhitelistEntry{
		{Kind: store.WhitelistClient, Value: "relay.partner.example", Comment: "ticket 42", Added: now},
		{Kind: store.WhitelistClient, Value: "/^mx\\d+\\.example\\.com$/", Added: now},
		{Kind: store.WhitelistRecipient, Value: "postmaster@", Added: now, Expires: now + 3600},
		{Kind: store.WhitelistRecipient, Value: "old@example.org", Added: now - 10, Expires: now - 1},
	}
	for _, e := range adds {
		if replaced, err := d.AddWhitelist(ctx, e); err != nil || replaced {
			t.Fatalf("AddWhitelist(%+v) = %v, %v", e, replaced, err)
		}
	}
	if replaced, err := d.AddWhitelist(ctx, store.WhitelistEntry{Kind: store.WhitelistClient, Value: "relay.partner.example", Comment: "ticket 43", Added: now}); err != nil || !replaced {
		t.Errorf("adding again: replaced %v, %v; want true", replaced, err)
	}
	if _, err := d.AddWhitelist(ctx, store.WhitelistEntry{Kind: store.WhitelistClient, Value: "a\nb"}); err == nil {
		t.Error("an entry of two lines was stored")
	}
	v1, _ := d.WhitelistVersion(ctx)
	if v1 == v0 {
		t.Error("version did not change with an add")
	}
	check := func(want ...string) {
		t.Helper()
		got, err := d.Whitelist(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, e := range got {
			s = append(s, string(e.Kind)+" "+e.Value+" "+e.Comment)
		}
		slices.Sort(s)
		if !slices.Equal(s, want) {
			t.Errorf("Whitelist() = %q, want %q", s, want)
		}
	}
	check("client /^mx\\d+\\.example\\.com$/ ", "client relay.partner.example ticket 43", "recipient postmaster@ ")
	if found, err := d.RemoveWhitelist(ctx, store.WhitelistRecipient, "postmaster@"); !found || err != nil {
		t.Errorf("RemoveWhitelist = %v, %v", found, err)
	}
	if found, err := d.RemoveWhitelist(ctx, store.WhitelistRecipient, "postmaster@"); found || err != nil {
		t.Errorf("RemoveWhitelist again = %v, %v; want false", found, err)
	}
	if v2, _ := d.WhitelistVersion(ctx); v2 == v1 {
		t.Error("version did not change with a remove")
	}
	// Not in the index, not counted, not listed as entries; kept across
	// a restart without a warning about malformed values.
	checkCounts(t, d, 0, 0)
	if got := scanAll(t, d); len(got) != 0 {
		t.Errorf("Scan lists whitelist entries: %+v", got)
	}
	d.Close()
	d = openT(t, path, Options{Logger: logs.logger()})
	check("client /^mx\\d+\\.example\\.com$/ ", "client relay.partner.example ticket 43")
	if strings.Contains(logs.String(), "malformed") {
		t.Errorf("reopening warned about the whitelist entries:\n%s", logs.String())
	}
	checkCounts(t, d, 0, 0)
}

// TestAdminConcurrent runs listings, imports and deletes while requests
// step, under -race; the index must agree with buntdb afterwards.
func TestAdminConcurrent(t *testing.T) {
	d := openT(t, dbPath(t), Options{})
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	now := time.Now().Unix()
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				in := &store.StepInput{
					ClientKey: fmt.Sprintf("192.0.2.%d", i%50), TripletKey: fmt.Sprintf("n%d/s%d/r", w, i%500),
					Now: now, Delay: 300, RetryWindow: 86400, MaxAge: 86400, AWLClients: 5,
				}
				if _, err := d.Step(ctx, in); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for round := 0; round < 20; round++ {
		var keys []string
		var entries []store.Entry
		d.Scan(ctx, nil, func(e store.Entry) bool {
			if e.Kind == store.KindTriplet && len(keys) < 100 {
				keys = append(keys, e.Key)
			}
			entries = append(entries, e)
			return true
		})
		if _, _, err := d.Import(ctx, entries, 300); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Delete(ctx, store.KindTriplet, keys); err != nil {
			t.Fatal(err)
		}
		d.Counts()
	}
	stop.Store(true)
	wg.Wait()
	checkIndex(t, d)
	nt, nc := d.Counts()
	lt, lc, _ := d.Len()
	if nt != lt || nc != lc {
		t.Errorf("Counts() = %d, %d; buntdb holds %d, %d", nt, nc, lt, lc)
	}
}

// TestScanChunks: Scan walks buntdb's keys in chunks; every entry is
// listed exactly once across the chunks' seams, expired ones are left
// out, and a listing stops when fn says so.
func TestScanChunks(t *testing.T) {
	d := openT(t, Memory, Options{})
	noSweep(t, d) // the expired entry stays in buntdb's key tree
	ctx := context.Background()
	n := 2*scanChunk + 7
	for i := 0; i < n; i++ {
		if err := d.PutTriplet(ctx, fmt.Sprintf("k%05d", i), Triplet{First: int64(i), Last: int64(i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.PutTriplet(ctx, "expired", Triplet{First: 1, Last: 1}, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the entry put with a TTL of 1 ns reads as expired", func() bool {
		_, found, _ := d.Triplet(ctx, "expired")
		return !found
	})
	seen := map[string]int{}
	if err := d.Scan(ctx, nil, func(e store.Entry) bool { seen[e.Key]++; return true }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("Scan listed %d distinct entries; want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("Scan listed %q %d times", k, c)
		}
	}
	got := 0
	if err := d.Scan(ctx, nil, func(store.Entry) bool { got++; return got < scanChunk+1 }); err != nil || got != scanChunk+1 {
		t.Errorf("Scan stopped after %d entries (%v); want %d", got, err, scanChunk+1)
	}
}
