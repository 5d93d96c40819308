package buntdb

import (
	"context"
	"errors"
	"testing"
	"time"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/store"
)

// checkIndex fails unless the index holds exactly buntdb's live entries,
// with the same values.
func checkIndex(t *testing.T, d *DB) {
	t.Helper()
	now := time.Now().UnixNano()
	want := 0
	err := d.db.View(func(tx *bunt.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			a, b, ok := store.ParseValue(v)
			if _, err := tx.TTL(k); err != nil || !ok || isWhitelistKey([]byte(k)) {
				return true // expired, not swept yet; or not an entry
			}
			want++
			if e, found := d.idx.get([]byte(k), now); !found {
				t.Errorf("buntdb has %q, the index does not", k)
			} else if e.a != a || e.b != b {
				t.Errorf("index has %q = %d,%d; buntdb %d,%d", k, e.a, e.b, a, b)
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for i := range d.idx.shards {
		sh := &d.idx.shards[i]
		sh.mu.RLock()
		for _, s := range sh.m {
			if (entry{exp: int64(s.exp)}).live(now) {
				got++
			}
		}
		for _, s := range sh.wide {
			if (entry{exp: s.exp}).live(now) {
				got++
			}
		}
		sh.mu.RUnlock()
	}
	if got != want {
		t.Errorf("index has %d live entries, buntdb %d", got, want)
	}
}

// indexHas reports whether the index holds key at all, expired or not.
func indexHas(d *DB, key string) bool {
	k := d.idx.keyOf(key)
	sh := d.idx.shard(k)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	_, mine := sh.get(k)
	return mine
}

// buntdbHas reports whether buntdb holds key at all, expired or not.
func buntdbHas(t *testing.T, d *DB, key string) bool {
	t.Helper()
	err := d.db.View(func(tx *bunt.Tx) error {
		_, err := tx.Get(key, true)
		return err
	})
	if err != nil && !errors.Is(err, bunt.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestIndexSweep: buntdb's once-a-second sweep removes expired entries
// from the file and from the index, and nothing else.
func TestIndexSweep(t *testing.T) {
	backends(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		if err := d.PutTriplet(ctx, "short", Triplet{First: 1, Last: 2}, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := d.PutClient(ctx, "short", Client{Count: 1, Last: 2}, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := d.PutTriplet(ctx, "long", Triplet{First: 3, Last: 4}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := d.PutTriplet(ctx, "forever", Triplet{First: 5, Last: 6}, 0); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for indexHas(d, "t:short") || indexHas(d, "c:short") {
			if time.Now().After(deadline) {
				t.Fatal("expired entries still in the index after 5 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if buntdbHas(t, d, "t:short") || buntdbHas(t, d, "c:short") {
			t.Error("expired entries left the index but not buntdb")
		}
		checkTriplet(t, d, "long", Triplet{First: 3, Last: 4}, true)
		checkTriplet(t, d, "forever", Triplet{First: 5, Last: 6}, true)
		checkIndex(t, d)
	})
}

// TestExpireRenewed: keys the sweep reported are kept if a put renewed
// them meanwhile, and deleted from both if not.
func TestExpireRenewed(t *testing.T) {
	d := openT(t, Memory, Options{})
	noSweep(t, d) // the test calls expire itself
	ctx := context.Background()
	if err := d.PutTriplet(ctx, "renewed", Triplet{First: 1, Last: 2}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.PutTriplet(ctx, "gone", Triplet{First: 3, Last: 4}, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the entry put with a TTL of 1 ns reads as expired", func() bool {
		_, found, _ := d.Triplet(ctx, "gone")
		return !found
	})
	d.expire(d.db, []string{"t:renewed", "t:gone", "t:unknown"})
	checkTriplet(t, d, "renewed", Triplet{First: 1, Last: 2}, true)
	if !buntdbHas(t, d, "t:renewed") {
		t.Error("renewed entry deleted from buntdb")
	}
	if indexHas(d, "t:gone") || buntdbHas(t, d, "t:gone") {
		t.Error("expired entry not deleted from both")
	}
}

// TestIndexReopen: deadlines survive a restart through the index (buntdb
// keeps them in whole seconds).
func TestIndexReopen(t *testing.T) {
	path := dbPath(t)
	d := openT(t, path, Options{})
	ctx := context.Background()
	if err := d.PutTriplet(ctx, "soon", Triplet{First: 1, Last: 2}, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := d.PutClient(ctx, "later", Client{Count: 3, Last: 4}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openT(t, path, Options{})
	checkTriplet(t, d, "soon", Triplet{First: 1, Last: 2}, true)
	checkClient(t, d, "later", Client{Count: 3, Last: 4}, true)
	checkIndex(t, d)
	k := d.idx.keyOf("c:later")
	sh := d.idx.shard(k)
	sh.mu.RLock()
	e, _ := sh.get(k)
	sh.mu.RUnlock()
	left := time.Until(time.Unix(e.exp, 0))
	if left < time.Hour-3*time.Second || left > time.Hour {
		t.Errorf("after reopen an entry put with a TTL of 1h expires in %v", left)
	}
	waitFor(t, "the entry put with a TTL of 1.5 s reads as expired", func() bool {
		_, found, _ := d.Triplet(ctx, "soon")
		return !found
	})
	checkTriplet(t, d, "soon", Triplet{}, false)
	checkClient(t, d, "later", Client{Count: 3, Last: 4}, true)
}

// TestIndexCollision: keys whose 64-bit hashes collide share a slot, and
// the check hash tells them apart: the key that lost its slot reads as
// missing (a triplet old enough to pass is greylisted once more, never
// the reverse), Counts follows the slot's owner, and deleting the loser
// leaves the owner.
func TestIndexCollision(t *testing.T) {
	d := openT(t, Memory, Options{})
	d.idx.collide = func(_ uint64, check uint32) (uint64, uint32) { return 42, check }
	ctx := context.Background()
	old := time.Now().Unix() - 3600
	if err := d.PutTriplet(ctx, "a", Triplet{First: old, Last: old}, time.Hour); err != nil {
		t.Fatal(err)
	}
	checkTriplet(t, d, "a", Triplet{First: old, Last: old}, true)
	if err := d.PutClient(ctx, "b", Client{Count: 1, Last: old}, time.Hour); err != nil {
		t.Fatal(err)
	}
	checkTriplet(t, d, "a", Triplet{}, false)
	checkClient(t, d, "b", Client{Count: 1, Last: old}, true)
	if tr, cl := d.Counts(); tr != 0 || cl != 1 {
		t.Errorf("Counts() = %d, %d; want 0, 1 (the client owns the slot)", tr, cl)
	}
	res, err := d.Step(ctx, newTriplet("a"))
	if err != nil || res.Outcome != store.Greylisted {
		t.Errorf("Step of the key that lost its slot = %+v, %v; want greylisted", res, err)
	}
	checkClient(t, d, "b", Client{}, false)
	if n, err := d.Delete(ctx, store.KindClient, []string{"b"}); n != 0 || err != nil {
		t.Errorf("Delete of the key that lost its slot = %d, %v; want 0, nil", n, err)
	}
	checkTriplet(t, d, "a", Triplet{First: res.Now, Last: res.Now}, true)
}

// TestWideValues: numbers a 32-bit slot cannot hold (negative, past 2106)
// and a deadline past 2106 are kept in the side map, and an entry moves
// between the two maps as its values change.
func TestWideValues(t *testing.T) {
	d := openT(t, Memory, Options{})
	ctx := context.Background()
	sizes := func() (m, wide int) {
		for i := range d.idx.shards {
			m, wide = m+len(d.idx.shards[i].m), wide+len(d.idx.shards[i].wide)
		}
		return m, wide
	}
	for _, c := range []struct {
		tr      Triplet
		ttl     time.Duration
		m, wide int
	}{
		{Triplet{First: -5, Last: 1 << 40}, time.Hour, 0, 1},
		{Triplet{First: 5, Last: 6}, time.Hour, 1, 0},
		{Triplet{First: 5, Last: 6}, 100 * 365 * 24 * time.Hour, 0, 1},
		{Triplet{First: 1<<32 - 1, Last: 0}, 0, 1, 0},
	} {
		if err := d.PutTriplet(ctx, "k", c.tr, c.ttl); err != nil {
			t.Fatal(err)
		}
		checkTriplet(t, d, "k", c.tr, true)
		if m, wide := sizes(); m != c.m || wide != c.wide {
			t.Errorf("after putting %+v (TTL %v): %d slots, %d wide; want %d, %d", c.tr, c.ttl, m, wide, c.m, c.wide)
		}
		if tr, _ := d.Counts(); tr != 1 {
			t.Errorf("Counts() = %d triplets; want 1", tr)
		}
	}
}

// TestIndexNeverOutlivesTTL: the index keeps whole seconds rounded up,
// yet an entry reads as missing, to the admin commands and to a step,
// as soon as buntdb's TTL (to the nanosecond) has passed: in an entry's
// last second buntdb decides.
func TestIndexNeverOutlivesTTL(t *testing.T) {
	d := openT(t, dbPath(t), Options{})
	noSweep(t, d)
	ctx := context.Background()
	// A deadline in the middle of a second, which rounded up the index
	// would outlive by half a second.
	due := time.Now().Truncate(time.Second).Add(2500 * time.Millisecond)
	if err := d.PutTriplet(ctx, "t", Triplet{First: 1, Last: 2}, time.Until(due)); err != nil {
		t.Fatal(err)
	}
	checkTriplet(t, d, "t", Triplet{First: 1, Last: 2}, true)
	waitFor(t, "buntdb expires the entry", func() bool {
		var err error
		d.db.View(func(tx *bunt.Tx) error { _, err = tx.Get("t:t"); return nil })
		return errors.Is(err, bunt.ErrNotFound)
	})
	k := d.idx.keyOf("t:t")
	sh := d.idx.shard(k)
	sh.mu.RLock()
	e, mine := sh.get(k)
	sh.mu.RUnlock()
	if !mine || !e.live(time.Now().UnixNano()) {
		t.Fatalf("the index's rounded-up deadline (%d) passed already: %v late, the test proves nothing", e.exp, time.Since(due))
	}
	checkTriplet(t, d, "t", Triplet{}, false)
	r, err := d.Step(ctx, &store.StepInput{TripletKey: "t", Now: time.Now().Unix(), Delay: 300, RetryWindow: 7200, MaxAge: 86400})
	if err != nil || r.Before.TripletFound || r.Outcome != store.Greylisted {
		t.Errorf("step on the expired triplet: %+v, %v; want it not found, greylisted", r, err)
	}
}
