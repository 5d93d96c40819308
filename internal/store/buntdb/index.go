package buntdb

import (
	"hash/maphash"
	"sync"
	"time"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/store"
)

// index is a hash index of every entry in front of buntdb, which stays the
// file format, the write path and the expiry index. Reads never touch
// buntdb: its B-tree compares ~20 keys through an interface per lookup,
// about a microsecond with cache misses that grow with the database (15 %
// of greyd's CPU under load, two lookups per request), where a map probe
// costs one hash and does not slow down at millions of entries. It also
// keeps readers off buntdb's lock, which a writer holds across write(2).
//
// The map is authoritative for reads, so it must always agree with buntdb:
// a put holds its shard's lock across buntdb's transaction and updates the
// map only once buntdb committed, and expired entries leave both together
// (buntdb's OnExpired hands us the keys its expiry index found, and
// DB.expire deletes them from buntdb under the shard locks).
type index struct {
	seed   maphash.Seed
	shards [indexShards]shard
}

// indexShards spreads writers, which hold a shard across buntdb's write,
// so that readers of other shards never wait for them.
const indexShards = 64

type shard struct {
	mu sync.RWMutex
	m  map[string]entry
	// clients, traps and tarpits count the client, trap and tarpit
	// entries of m (the rest are triplets), so that Counts needs no scan
	// (admin.go). Changed only through set and del, under mu.
	clients, traps, tarpits int
	_                       [64 - 56]byte // one cache line per shard: no false sharing
}

// count is the counter of k's namespace, nil for triplets.
func (sh *shard) count(k string) *int {
	switch k[0] {
	case nsClient:
		return &sh.clients
	case nsTrap:
		return &sh.traps
	case nsTarpit:
		return &sh.tarpits
	}
	return nil
}

// set stores e under the namespaced key k; the caller holds sh.mu. Only a
// client or trap key costs a second probe (to count it once), and those
// writes are rare: at most one an hour per client.
func (sh *shard) set(k string, e entry) {
	if n := sh.count(k); n != nil {
		if _, ok := sh.m[k]; !ok {
			*n++
		}
	}
	sh.m[k] = e
}

// del removes k; the caller holds sh.mu.
func (sh *shard) del(k string) {
	if n := sh.count(k); n != nil {
		if _, ok := sh.m[k]; ok {
			*n--
		}
	}
	delete(sh.m, k)
}

// entry is a decoded value and its deadline.
type entry struct {
	a, b    int64
	expires int64 // unix nanoseconds; 0: never
}

// newIndex returns an empty index sized for n entries: growing 64 maps
// to a million entries one by one costs more than filling them.
func newIndex(n int) *index {
	x := &index{seed: maphash.MakeSeed()}
	for i := range x.shards {
		x.shards[i].m = make(map[string]entry, n/indexShards+n/(4*indexShards))
	}
	return x
}

func (x *index) shard(key []byte) *shard {
	return &x.shards[maphash.Bytes(x.seed, key)%indexShards]
}

// shardOf is shard for a string key (maphash hashes both alike).
func (x *index) shardOf(key string) *shard {
	return &x.shards[maphash.String(x.seed, key)%indexShards]
}

// get looks up a namespaced key. The map lookup with string(key) does not
// allocate.
func (x *index) get(key []byte, now int64) (entry, bool) {
	sh := x.shard(key)
	sh.mu.RLock()
	e, ok := sh.m[string(key)]
	sh.mu.RUnlock()
	if !ok || e.expires != 0 && e.expires <= now {
		return entry{}, false
	}
	return e, true
}

// getLocked is get for a caller that holds the key's shard locked.
func (x *index) getLocked(key []byte, now int64) (entry, bool) {
	e, ok := x.shard(key).m[string(key)]
	if !ok || e.expires != 0 && e.expires <= now {
		return entry{}, false
	}
	return e, true
}

// load fills the index from buntdb, at Open. Malformed values are left
// out (they read as missing, and the next put overwrites them); it
// returns how many there were, one example key, and the size of the file
// buntdb would write for what it holds (the auto-shrink's baseline).
//
// buntdb has no iterator that yields deadlines, so each key's TTL is
// looked up again: that doubles the cost of the walk, so the key space is
// split in two halves walked in parallel (buntdb's readers share its
// lock, and its trees allow concurrent readers).
//
// It runs before expire is installed (startIndex): the walk holds
// buntdb's read lock while it takes shard locks, and expire holds a shard
// lock while it waits for buntdb's write lock, so the two together could
// deadlock.
func (x *index) load(db *bunt.DB) (bad int, example string, live int64, err error) {
	now := time.Now()
	var mid string
	err = db.View(func(tx *bunt.Tx) error {
		n, err := tx.Len()
		if err != nil {
			return err
		}
		i := 0
		return tx.AscendKeys("*", func(k, _ string) bool {
			if i++; i > n/2 {
				mid = k
				return false
			}
			return true
		})
	})
	if err != nil {
		return 0, "", 0, err
	}
	type half struct {
		bad     int
		example string
		live    int64
		err     error
	}
	var halves [2]half
	var wg sync.WaitGroup
	for h := range halves {
		wg.Go(func() {
			r := &halves[h]
			r.err = db.View(func(tx *bunt.Tx) error {
				visit := func(k, v string) bool {
					if h == 0 && mid != "" && k >= mid {
						return false
					}
					ttl, err := tx.TTL(k)
					if err != nil {
						return true // expired since the walk began
					}
					r.live += recordSize(k, v, ttl >= 0)
					if len(k) > 1 && k[0] == nsWhitelist && k[1] == ':' {
						return true // the runtime whitelist is read from buntdb (admin.go)
					}
					a, b, ok := store.ParseValue(v)
					if !ok {
						if r.bad++; r.bad == 1 {
							r.example = k
						}
						return true
					}
					e := entry{a: a, b: b}
					if ttl >= 0 {
						e.expires = now.Add(ttl).UnixNano()
					}
					// Locked: the other half fills the same shards.
					sh := x.shardOf(k)
					sh.mu.Lock()
					sh.set(k, e)
					sh.mu.Unlock()
					return true
				}
				if h == 0 {
					return tx.Ascend("", visit)
				}
				if mid == "" {
					return nil // fewer than two keys: the first half has all
				}
				return tx.AscendGreaterOrEqual("", mid, visit)
			})
		})
	}
	wg.Wait()
	for _, r := range halves {
		if r.err != nil {
			return 0, "", 0, r.err
		}
		bad += r.bad
		live += r.live
		if example == "" {
			example = r.example
		}
	}
	return bad, example, live, nil
}

// recordSize is the size of the record buntdb writes for an entry when it
// rewrites the file: a RESP array of "set", the key, the value and, with
// a deadline, "ae" and ten digits of Unix seconds.
func recordSize(k, v string, expires bool) int64 {
	return recordLen(len(k), len(v), expires)
}

// recordLen is recordSize from the lengths of the key and the value.
func recordLen(k, v int, expires bool) int64 {
	bulk := func(n int) int64 {
		d := 1
		for m := n; m >= 10; m /= 10 {
			d++
		}
		return int64(1 + d + 2 + n + 2)
	}
	if expires {
		return 4 + bulk(3) + bulk(k) + bulk(v) + bulk(2) + bulk(10)
	}
	return 4 + bulk(3) + bulk(k) + bulk(v)
}

// sweep hands every index entry past its deadline to expire. startIndex
// runs it once expire is installed: until then buntdb's own sweep deleted
// expired entries without telling the index, which still has them (past
// their deadline, since the index's deadline is never later than
// buntdb's).
func (d *DB) sweep() {
	now := time.Now().UnixNano()
	var keys []string
	for i := range d.idx.shards {
		sh := &d.idx.shards[i]
		sh.mu.RLock()
		for k, e := range sh.m {
			if e.expires != 0 && e.expires <= now {
				keys = append(keys, k)
			}
		}
		sh.mu.RUnlock()
	}
	d.expire(keys)
}

// expire is buntdb's OnExpired: keys are entries its expiry index found
// past their deadline (buntdb calls it every second, after its sweep, with
// no lock held, and leaves the deleting to us). Each is deleted from
// buntdb and the index together under its shard's lock, unless a put
// renewed it in the meantime. A failed delete is retried at the next
// sweep, which reports the keys again.
func (d *DB) expire(keys []string) {
	if d.closed.Load() || len(keys) == 0 {
		return
	}
	now := time.Now().UnixNano()
	var byShard [indexShards][]string
	for _, k := range keys {
		i := maphash.String(d.idx.seed, k) % indexShards
		byShard[i] = append(byShard[i], k)
	}
	for i, ks := range byShard {
		if len(ks) == 0 {
			continue
		}
		sh := &d.idx.shards[i]
		sh.mu.Lock()
		del := ks[:0]
		for _, k := range ks {
			if e, ok := sh.m[k]; ok && (e.expires == 0 || e.expires > now) {
				continue // put again since buntdb's sweep
			}
			del = append(del, k)
		}
		err := d.db.Update(func(tx *bunt.Tx) error {
			for _, k := range del {
				// ErrNotFound is how Delete reports an expired item,
				// which it deletes all the same.
				_, _ = tx.Delete(k)
			}
			return nil
		})
		if err == nil {
			for _, k := range del {
				sh.del(k)
			}
		}
		sh.mu.Unlock()
		if err != nil {
			d.expireFailed(err, len(keys))
			return
		}
	}
}

// expireFailed logs a failed expiry sweep, at most once a minute: the
// sweep runs every second, and a full disk fails every one.
func (d *DB) expireFailed(err error, n int) {
	now := time.Now().UnixNano()
	last := d.expireErrAt.Load()
	if now-last < int64(time.Minute) || !d.expireErrAt.CompareAndSwap(last, now) {
		return
	}
	d.log.Warn("deleting expired database entries failed; retrying every second", "entries", n, "err", err)
}

// startIndex builds the index and hands buntdb's expiry to it. The index
// is filled first (see load for why), then expiry is handed over, then
// what buntdb's own sweep deleted meanwhile leaves the index too: from
// then on buntdb deletes nothing by itself, and every entry leaves both
// together. It returns load's estimate of the live data's file size.
func (d *DB) startIndex() (live int64, err error) {
	var n int
	if err := d.db.View(func(tx *bunt.Tx) (err error) { n, err = tx.Len(); return err }); err != nil {
		return 0, err
	}
	d.idx = newIndex(n)
	bad, example, live, err := d.idx.load(d.db)
	if err != nil {
		return 0, err
	}
	if bad > 0 {
		d.log.Warn("ignoring malformed database values; those entries read as new and are overwritten at their next use",
			"path", d.path, "count", bad, "example_key", example)
	}
	var c bunt.Config
	if err := d.db.ReadConfig(&c); err != nil {
		return 0, err
	}
	c.OnExpired = d.expire
	if err := d.db.SetConfig(c); err != nil {
		return 0, err
	}
	d.sweep()
	return live, nil
}
