package buntdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/store"
)

// asyncAlways makes every file that Open finds load in the background.
func asyncAlways(t testing.TB) {
	old := asyncLoadMin
	asyncLoadMin = 0
	t.Cleanup(func() { asyncLoadMin = old })
}

// holdLoad makes background loads wait before buntdb's load until
// release is called (at the latest at the end of the test).
func holdLoad(t testing.TB) (release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	loadHook = func() { <-ch }
	t.Cleanup(func() { release(); loadHook = nil })
	return release
}

// fill writes n triplets "k<i>" = {i, i+1} and one client, and closes.
func fill(t *testing.T, path string, n int) {
	t.Helper()
	d := openT(t, path, Options{})
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if err := d.PutTriplet(ctx, fmt.Sprintf("k%d", i), Triplet{First: int64(i), Last: int64(i + 1)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.PutClient(ctx, "192.0.2.1", Client{Count: 3, Last: 9}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddWhitelist(ctx, store.WhitelistEntry{Kind: store.WhitelistClient, Value: "198.51.100.7", Added: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// newTriplet is a step that writes a first sighting of key.
func newTriplet(key string) *store.StepInput {
	return &store.StepInput{TripletKey: key, Now: time.Now().Unix(), Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting after 10 s", what)
	}
}

// TestBackgroundLoad: while buntdb loads a big file, Open has returned,
// reads answer from what it read, steps write to the boot file, admin
// writes wait; afterwards the boot file's writes are in the main file,
// the boot file is gone and the index agrees with buntdb.
func TestBackgroundLoad(t *testing.T) {
	asyncAlways(t)
	path := dbPath(t)
	fill(t, path, 2000)

	release := holdLoad(t)
	var logs logBuffer
	d := openT(t, path, Options{Logger: logs.logger()})
	ctx := context.Background()
	if !d.loading() {
		t.Fatal("not loading in the background")
	}
	checkTriplet(t, d, "k1999", Triplet{First: 1999, Last: 2000}, true)
	if c, found, _ := d.Client(ctx, "192.0.2.1"); !found || c != (Client{Count: 3, Last: 9}) {
		t.Errorf("client = %+v, %v", c, found)
	}
	if wl, err := d.Whitelist(ctx); err != nil || len(wl) != 1 || wl[0].Value != "198.51.100.7" {
		t.Errorf("Whitelist while loading = %+v, %v", wl, err)
	}
	if tr, cl := d.Counts(); tr != 2000 || cl != 1 {
		t.Errorf("Counts while loading = %d, %d", tr, cl)
	}
	res, err := d.Step(ctx, newTriplet("during-load"))
	if err != nil || res.Outcome != store.Greylisted {
		t.Fatalf("Step while loading = %+v, %v", res, err)
	}
	written := Triplet{First: res.Now, Last: res.Now}
	checkTriplet(t, d, "during-load", written, true)
	boot, err := os.ReadFile(path + bootSuffix)
	if err != nil || !bytes.Contains(boot, []byte("t:during-load")) {
		t.Fatalf("boot file: %v; has the step's write: %v", err, bytes.Contains(boot, []byte("t:during-load")))
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = d.Delete(tctx, store.KindTriplet, []string{"k1"})
	cancel()
	if err == nil || !strings.Contains(err.Error(), "still loading") {
		t.Errorf("Delete while loading: %v; want a 'still loading' error", err)
	}

	release()
	waitClosed(t, d.loadDone, "background load")
	if d.loading() {
		t.Fatal("still loading after the loader finished")
	}
	if _, err := os.Stat(path + bootSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("boot file after the load: %v; want it gone", err)
	}
	if n, err := d.Delete(ctx, store.KindTriplet, []string{"k1"}); n != 1 || err != nil {
		t.Errorf("Delete after the load = %d, %v", n, err)
	}
	checkIndex(t, d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything is in the main file: reopened without a background load.
	asyncLoadMin = 1 << 62
	d = openT(t, path, Options{})
	checkTriplet(t, d, "during-load", written, true)
	checkTriplet(t, d, "k1", Triplet{}, false)
	checkTriplet(t, d, "k1998", Triplet{First: 1998, Last: 1999}, true)
	if wl, err := d.Whitelist(ctx); err != nil || len(wl) != 1 {
		t.Errorf("Whitelist after reopening = %+v, %v", wl, err)
	}
}

// TestBootFileAfterCrash: a crash before the load finished leaves the
// boot file; the next Open reads it over the main file and merges it.
func TestBootFileAfterCrash(t *testing.T) {
	asyncAlways(t)
	path := dbPath(t)
	fill(t, path, 100)
	ctx := context.Background()

	release := holdLoad(t)
	d := openT(t, path, Options{})
	// Add an entry and overwrite one of the main file (k5's old
	// timestamps make it start over).
	for _, k := range []string{"crash-new", "k5"} {
		if _, err := d.Step(ctx, newTriplet(k)); err != nil {
			t.Fatal(err)
		}
	}
	wantNew, _, _ := d.Triplet(ctx, "crash-new")
	want5, _, _ := d.Triplet(ctx, "k5")
	if want5 == (Triplet{First: 5, Last: 6}) {
		t.Fatal("the step did not change k5")
	}
	// The state a kill -9 leaves: both files as they are now.
	crashed := filepath.Join(t.TempDir(), "greyd.db")
	for _, suffix := range []string{"", bootSuffix} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crashed+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	release()
	loadHook = nil

	// A small file: the boot file alone sends Open down the merging path.
	asyncLoadMin = 1 << 62
	var logs logBuffer
	d2 := openT(t, crashed, Options{Logger: logs.logger()})
	checkTriplet(t, d2, "crash-new", wantNew, true)
	checkTriplet(t, d2, "k5", want5, true)
	checkTriplet(t, d2, "k6", Triplet{First: 6, Last: 7}, true)
	if !strings.Contains(logs.String(), "did not finish loading") {
		t.Errorf("no warning about the unfinished start-up; log:\n%s", logs.String())
	}
	waitClosed(t, d2.loadDone, "background load")
	if _, err := os.Stat(crashed + bootSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("boot file after the merge: %v", err)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	d3 := openT(t, crashed, Options{})
	checkTriplet(t, d3, "crash-new", wantNew, true)
	checkTriplet(t, d3, "k5", want5, true)
}

// TestCloseWhileLoading: Close waits for buntdb's load, keeps the boot
// file (its writes are not in the main file yet) and the next Open
// merges it.
func TestCloseWhileLoading(t *testing.T) {
	asyncAlways(t)
	path := dbPath(t)
	fill(t, path, 10)
	release := holdLoad(t)
	d, err := Open(path, Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Step(context.Background(), newTriplet("before-close"))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, release)
	if err := d.Close(); err != nil {
		t.Fatalf("Close while loading: %v", err)
	}
	if _, err := os.Stat(path + bootSuffix); err != nil {
		t.Fatalf("boot file after Close during the load: %v; want it kept", err)
	}
	loadHook = nil
	d = openT(t, path, Options{})
	checkTriplet(t, d, "before-close", Triplet{First: res.Now, Last: res.Now}, true)
	checkTriplet(t, d, "k9", Triplet{First: 9, Last: 10}, true)
}

// FuzzReadFileAgrees: for any file checkAOF accepts, readFile's index and
// whitelist hold exactly what buntdb loads from it.
func FuzzReadFileAgrees(f *testing.F) {
	past := fmt.Sprint(time.Now().Add(-time.Hour).Unix())
	for _, s := range []string{
		recAll, recA + recB + resp("del", "t:a"), recA + resp("flushdb") + recB,
		resp("set", "t:x", "1,2", "ae", future) + resp("set", "t:x", "3,4", "ae", past),
		resp("set", "t:x", "1,2", "ex", "100") + resp("set", "w:c:1.2.3.4", `{"added":1}`),
		resp("set", "t:bad", "x") + resp("SET", "c:k", "1,2") + resp("set", "", "1,2"),
		resp("set", "t:x", "1,2", "ex", "99999999999"), resp("set", "t:x", "1,2", "ae", "-5"),
		recA + "\x00\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		good, err := checkAOF(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		path := dbPath(t)
		if err := os.WriteFile(path, data[:good], 0o600); err != nil {
			t.Fatal(err)
		}
		r := &fileReader{idx: newIndex(0), wl: map[string]string{}, now: time.Now().UnixNano()}
		if err := r.readFile(path); err != nil {
			t.Fatalf("readFile of a file checkAOF accepted: %v", err)
		}
		db, err := openBuntdb(path)
		if err != nil {
			t.Fatalf("buntdb: %v", err)
		}
		defer db.Close()
		now := time.Now()
		entries, wl := 0, 0
		err = db.View(func(tx *bunt.Tx) error {
			return tx.Ascend("", func(k, v string) bool {
				if isWhitelistKey([]byte(k)) {
					wl++
					if got, ok := r.wl[k]; !ok || got != v {
						t.Errorf("whitelist record %q: readFile %q, %v; buntdb %q", k, got, ok, v)
					}
					return true
				}
				e, ok := r.idx.get([]byte(k), now.UnixNano())
				a, b, good := store.ParseValue(v)
				if k == "" || !good {
					if ok {
						t.Errorf("key %q (value %q): readFile has it, buntdb's value is not an entry", k, v)
					}
					return true
				}
				entries++
				if !ok || e.a != a || e.b != b {
					t.Errorf("key %q: readFile %+v, %v; buntdb %q", k, e, ok, v)
					return true
				}
				ttl, err := tx.TTL(k)
				switch {
				case err != nil:
				case ttl < 0 && e.exp != 0, ttl >= 0 && e.exp == 0:
					t.Errorf("key %q: readFile deadline %d, buntdb TTL %v", k, e.exp, ttl)
				case ttl >= 0 && ttl < 100*365*24*time.Hour:
					if d := time.Duration(e.exp*1e9 - now.Add(ttl).UnixNano()); d < -2*time.Second || d > 2*time.Second {
						t.Errorf("key %q: readFile deadline %v off buntdb's", k, d)
					}
				}
				return true
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := r.idx.len(); n != entries {
			t.Errorf("readFile holds %d entries, buntdb %d", n, entries)
		}
		if len(r.wl) != wl {
			t.Errorf("readFile holds %d whitelist records, buntdb %d", len(r.wl), wl)
		}
	})
}

// TestCloseTimeoutWhileLoading: a load that outlasts Close's bound is
// reported as such (not as a hung disk), and its writes are kept.
func TestCloseTimeoutWhileLoading(t *testing.T) {
	asyncAlways(t)
	path := dbPath(t)
	fill(t, path, 10)
	release := holdLoad(t)
	old := closeTimeout
	closeTimeout = 50 * time.Millisecond
	t.Cleanup(func() { closeTimeout = old })
	d, err := Open(path, Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Step(context.Background(), newTriplet("kept"))
	if err != nil {
		t.Fatal(err)
	}
	err = d.Close()
	if err == nil || !strings.Contains(err.Error(), "still loading") || !strings.Contains(err.Error(), bootSuffix) {
		t.Errorf("Close during a long load: %v; want a 'still loading' error naming the boot file", err)
	}
	release()
	waitClosed(t, d.loadDone, "background load")
	// The process would exit here; the lock goes with it.
	unlockFile(d.lock)
	loadHook = nil
	d = openT(t, path, Options{})
	checkTriplet(t, d, "kept", Triplet{First: res.Now, Last: res.Now}, true)
}

// TestBootExpiredDeletesOld: an entry written to the boot file during the
// load that expires before the merge deletes the main file's older copy,
// which would otherwise come back at the next start.
func TestBootExpiredDeletesOld(t *testing.T) {
	asyncAlways(t)
	path := dbPath(t)
	fill(t, path, 10) // k5 = 5,6 for an hour
	release := holdLoad(t)
	d := openT(t, path, Options{})
	p := prepare(nsTriplet, "k5", 7, 8, 1)
	p.h = d.idx.keyOf(p.key)
	if err := d.commit([3]pending{p}); err != nil {
		t.Fatal(err)
	}
	d.idx.shard(p.h).set(p.h, p.e)
	checkTriplet(t, d, "k5", Triplet{First: 7, Last: 8}, true)
	waitFor(t, "the boot file's k5 reads as expired", func() bool {
		_, found, _ := d.Triplet(context.Background(), "k5")
		return !found
	})
	release()
	waitClosed(t, d.loadDone, "background load")
	checkTriplet(t, d, "k5", Triplet{}, false)
	checkIndex(t, d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	loadHook = nil
	d = openT(t, path, Options{})
	checkTriplet(t, d, "k5", Triplet{}, false)
	checkTriplet(t, d, "k6", Triplet{First: 6, Last: 7}, true)
}
