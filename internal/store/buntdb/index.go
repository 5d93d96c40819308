package buntdb

import (
	"errors"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"time"
	"unsafe"

	bunt "github.com/tidwall/buntdb"
)

// index answers every read in front of buntdb, which stays the file
// format, the write path, the key list and the expiry index. buntdb's
// B-tree costs 3-5 µs a lookup at a million entries (it compares ~20 keys
// through an interface, with cache misses), a map probe one hash; and
// readers stay off buntdb's lock, which a writer holds across write(2).
//
// The index holds no keys: a namespaced key maps to a slot by a 64-bit
// keyed hash, and the slot holds a second, independent hash of the key
// (check) besides the entry. A slot whose check differs belongs to another
// key, so a key whose slot was taken by a collision reads as missing: the
// worst a collision does is greylist a triplet once more, never pass one.
// Neither map type holds a pointer, so the garbage collector never scans
// the index, and buntdb's key strings are the only copy of the keys.
//
// The index is authoritative for reads, so it must agree with buntdb: a
// write holds its shard's lock across buntdb's transaction and updates the
// slot only once buntdb committed, and expired entries leave both together
// (buntdb's OnExpired hands us the keys, DB.expire deletes them).
type index struct {
	seed, checkSeed maphash.Seed
	// collide, if set, maps every key's hashes (tests force collisions);
	// it takes no key, so that the keys on callers' stacks stay there.
	collide func(h uint64, check uint32) (uint64, uint32)
	shards  [indexShards]shard
}

// indexShards spreads writers, which hold a shard across buntdb's write,
// so that readers of other shards never wait for them.
const indexShards = 64

type shard struct {
	mu sync.RWMutex
	m  map[uint64]slot
	// wide holds the entries whose numbers do not fit a slot (negative,
	// or past 2^32-1: timestamps after 2106); a key is in m or wide, never
	// both. Allocated at the first such entry.
	wide map[uint64]wideSlot
	// n counts the entries of each namespace (check's low byte), so that
	// Counts needs no scan. Changed only through set and del, under mu.
	n [256]int32
}

// slot is an entry in 16 bytes. exp is the deadline in Unix seconds,
// rounded up (buntdb's is to the nanosecond), 0 for none; check is the
// key's check hash with its namespace byte in the low 8 bits.
type slot struct{ a, b, exp, check uint32 }

// wideSlot is a slot for numbers that do not fit 32 bits.
type wideSlot struct {
	a, b, exp int64
	check     uint32
}

// entry is a decoded slot.
type entry struct {
	a, b int64
	exp  int64 // Unix seconds; 0: never
}

// live reports whether e is still valid at now (Unix nanoseconds).
func (e entry) live(now int64) bool { return e.exp == 0 || e.exp > now/1e9 }

// liveAt reports whether e, the index's entry for key, is live at now
// (Unix nanoseconds). The index keeps deadlines in whole seconds rounded
// up (rounded down, a 100 ms TTL would end at once); in an entry's last
// second buntdb, which keeps its deadline to the nanosecond, decides, so
// that the index never outlives buntdb's TTL. Until buntdb holds every
// write (ready), the index decides alone. Callers may hold shard locks:
// a shard lock is always taken before buntdb's.
func (d *DB) liveAt(key string, e entry, now int64) bool {
	if e.exp == 0 || now/1e9 < e.exp-1 {
		return true
	}
	if !e.live(now) {
		return false
	}
	select {
	case <-d.ready:
	default:
		return true
	}
	// A copy, so that a key on its caller's stack stays there (the
	// closure escapes); made only in an entry's last second.
	k, live := strings.Clone(key), true
	_ = d.db.View(func(tx *bunt.Tx) error {
		_, err := tx.Get(k)
		live = !errors.Is(err, bunt.ErrNotFound)
		return nil
	})
	return live
}

// deadline is the index's deadline for a TTL from now: rounded up to the
// second, 0 for none.
func deadline(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return (time.Now().Add(ttl).UnixNano() + 1e9 - 1) / 1e9
}

// hkey is a key's place in the index: its hash and check (namespace in
// the low byte).
type hkey struct {
	h     uint64
	check uint32
}

// newIndex returns an empty index sized for n entries: growing 64 maps
// to a million entries one by one costs more than filling them.
func newIndex(n int) *index {
	x := &index{seed: maphash.MakeSeed(), checkSeed: maphash.MakeSeed()}
	x.reset(n)
	return x
}

// reset empties the index; the caller holds every shard or owns x.
func (x *index) reset(n int) {
	for i := range x.shards {
		sh := &x.shards[i]
		sh.m = make(map[uint64]slot, n/indexShards+n/(4*indexShards))
		sh.wide, sh.n = nil, [256]int32{}
	}
}

// key hashes a namespaced key.
func (x *index) key(k []byte) hkey { return x.keyOf(unsafe.String(unsafe.SliceData(k), len(k))) }

// keyOf is key for a string.
func (x *index) keyOf(k string) hkey {
	h, c := maphash.String(x.seed, k), uint32(maphash.String(x.checkSeed, k))
	if x.collide != nil {
		h, c = x.collide(h, c)
	}
	var ns uint32
	if len(k) > 0 {
		ns = uint32(k[0])
	}
	return hkey{h: h, check: c&^0xff | ns}
}

func (x *index) shard(k hkey) *shard { return &x.shards[k.h%indexShards] }

// get looks up a key, live or not; the caller holds its shard.
func (sh *shard) get(k hkey) (entry, bool) {
	if s, ok := sh.m[k.h]; ok {
		return entry{int64(s.a), int64(s.b), int64(s.exp)}, s.check == k.check
	}
	if sh.wide != nil {
		if s, ok := sh.wide[k.h]; ok {
			return entry{s.a, s.b, s.exp}, s.check == k.check
		}
	}
	return entry{}, false
}

// set stores e under k, replacing whatever key held k's slot. An
// assignment over the same map key, not a delete and an insert: a delete
// can leave a tombstone, and tombstones make the map grow.
func (sh *shard) set(k hkey, e entry) {
	sh.n[k.check&0xff]++
	if fits(e.a) && fits(e.b) && fits(e.exp) {
		if old, ok := sh.m[k.h]; ok {
			sh.n[old.check&0xff]--
		} else if old, ok := sh.wide[k.h]; ok {
			sh.n[old.check&0xff]--
			delete(sh.wide, k.h)
		}
		sh.m[k.h] = slot{uint32(e.a), uint32(e.b), uint32(e.exp), k.check}
		return
	}
	if old, ok := sh.wide[k.h]; ok {
		sh.n[old.check&0xff]--
	} else if old, ok := sh.m[k.h]; ok {
		sh.n[old.check&0xff]--
		delete(sh.m, k.h)
	}
	if sh.wide == nil {
		sh.wide = map[uint64]wideSlot{}
	}
	sh.wide[k.h] = wideSlot{e.a, e.b, e.exp, k.check}
}

func fits(v int64) bool { return v >= 0 && v <= math.MaxUint32 }

// del removes k, if its slot is k's.
func (sh *shard) del(k hkey) {
	if _, mine := sh.get(k); mine {
		sh.drop(k.h)
	}
}

// drop empties the slot h, whoever's it is.
func (sh *shard) drop(h uint64) {
	if s, ok := sh.m[h]; ok {
		sh.n[s.check&0xff]--
		delete(sh.m, h)
	} else if s, ok := sh.wide[h]; ok {
		sh.n[s.check&0xff]--
		delete(sh.wide, h)
	}
}

// get looks up a namespaced key: found only if live at now (Unix
// nanoseconds).
func (x *index) get(key []byte, now int64) (entry, bool) {
	k := x.key(key)
	sh := x.shard(k)
	sh.mu.RLock()
	e, ok := sh.get(k)
	sh.mu.RUnlock()
	if !ok || !e.live(now) {
		return entry{}, false
	}
	return e, true
}

// len is the number of entries in the index.
func (x *index) len() int {
	n := 0
	for i := range x.shards {
		n += len(x.shards[i].m) + len(x.shards[i].wide)
	}
	return n
}

// expire is buntdb's OnExpired for db: keys are entries its expiry index
// found past their deadline (buntdb calls it every second, with no lock
// held, and leaves the deleting to us). Each is deleted from buntdb and
// the index together under its shard's lock, unless a write renewed it
// in the meantime. A failed delete is retried at the next sweep, which
// reports the keys again.
func (d *DB) expire(db *bunt.DB, keys []string) {
	if d.closed.Load() || len(keys) == 0 {
		return
	}
	hs := make([]hkey, len(keys))
	var byShard [indexShards][]int
	for i, k := range keys {
		hs[i] = d.idx.keyOf(k)
		s := hs[i].h % indexShards
		byShard[s] = append(byShard[s], i)
	}
	for s, is := range byShard {
		if len(is) == 0 {
			continue
		}
		sh := &d.idx.shards[s]
		sh.mu.Lock()
		gone := is[:0]
		err := db.Update(func(tx *bunt.Tx) error {
			for _, i := range is {
				// buntdb's own item says, to the nanosecond, whether a
				// write renewed the key since the sweep; under the
				// shard lock the index agrees with it.
				if _, err := tx.Get(keys[i]); err == nil {
					continue
				}
				// ErrNotFound is how Delete reports an expired item,
				// which it deletes all the same.
				_, _ = tx.Delete(keys[i])
				gone = append(gone, i)
			}
			return nil
		})
		if err == nil {
			for _, i := range gone {
				sh.del(hs[i])
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
