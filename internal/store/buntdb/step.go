package buntdb

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/store"
)

// Step implements store.Store. It reads the entries from the index without
// blocking anyone and runs store.Transition; only when that wants to
// write does it lock the shards of every key involved (in shard order, so
// two steps never deadlock), read and decide again under the locks, and
// write both entries in one buntdb transaction: two requests of one client
// or triplet at the same moment are decided one after the other. A step
// that writes nothing (a passed triplet refreshed within the minute, an
// early retry, an auto-whitelisted client within the hour) takes no lock.
// The write itself may share one buntdb transaction with other steps'
// (group commit, commit.go); the step returns only once it is written.
//
// One host has one clock: in.Now is used whether or not in.FixedNow.
func (d *DB) Step(ctx context.Context, in *store.StepInput) (store.StepResult, error) {
	if err := ctx.Err(); err != nil {
		return store.StepResult{}, fmt.Errorf("store: %w", err)
	}
	if d.closed.Load() {
		return store.StepResult{}, ErrClosed
	}
	// Namespaced keys on the stack: only their hashes go into the index.
	var cb, tb, ab, xb, pb [256]byte
	var ks stepKeys
	if in.ClientKey != "" && in.AWLClients > 0 {
		ks.k[kClient] = append(append(cb[:0], nsClient, ':'), in.ClientKey...)
	}
	ks.k[kTriplet] = append(append(tb[:0], nsTriplet, ':'), in.TripletKey...)
	if in.AltKey != "" && in.AltKey != in.TripletKey {
		ks.k[kAlt] = append(append(ab[:0], nsTriplet, ':'), in.AltKey...)
	}
	if in.TrapKey != "" {
		ks.k[kTrap] = append(append(xb[:0], nsTrap, ':'), in.TrapKey...)
	}
	if in.TarpitKey != "" {
		ks.k[kTarpit] = append(append(pb[:0], nsTarpit, ':'), in.TarpitKey...)
	}
	for i, k := range ks.k {
		if k != nil {
			ks.h[i] = d.idx.key(k)
		}
	}

	res, w := store.Transition(in, in.Now, d.read(&ks, false))
	if in.DryRun || !writes(&w) {
		return res, nil
	}

	locked := d.lockShards(&ks)
	defer unlockShards(locked)
	if d.closed.Load() {
		return store.StepResult{}, ErrClosed
	}
	res, w = store.Transition(in, in.Now, d.read(&ks, true))
	if !writes(&w) {
		return res, nil
	}
	// Transition writes the triplet or the trap, never both.
	var cw, tw, pw pending
	switch {
	case w.Client:
		cw = prepare(nsClient, in.ClientKey, w.ClientVal.Count, w.ClientVal.Last, w.ClientTTL)
	case w.ClientDel:
		cw = pending{key: string(ks.k[kClient]), del: true}
	}
	cw.h = ks.h[kClient]
	switch {
	case w.Triplet:
		tw = prepare(nsTriplet, in.TripletKey, w.TripletVal.First, w.TripletVal.Last, w.TripletTTL)
		tw.h = ks.h[kTriplet]
	case w.Trap:
		tw = prepare(nsTrap, in.TrapKey, w.TrapVal.Since, w.TrapVal.Until, w.TrapTTL)
		tw.h = ks.h[kTrap]
	}
	switch {
	case w.Mark:
		pw = prepare(nsTarpit, in.TarpitKey, w.MarkVal.Since, w.MarkVal.Session, w.MarkTTL)
	case w.MarkDel:
		pw = pending{key: string(ks.k[kTarpit]), del: true}
	}
	pw.h = ks.h[kTarpit]
	// Written together with the steps of other connections that wait
	// meanwhile (commit.go); the shard locks stay held until it is done.
	err := d.commit([3]pending{cw, tw, pw})
	switch {
	case err == nil:
	case errors.Is(err, bunt.ErrDatabaseClosed):
		return store.StepResult{}, ErrClosed
	default:
		return store.StepResult{}, fmt.Errorf("store: put: %w", err)
	}
	// Only now that buntdb has committed: the index never shows what
	// buntdb rolled back.
	for _, p := range [3]*pending{&cw, &tw, &pw} {
		switch {
		case p.key == "":
		case p.del:
			d.idx.shard(p.h).del(p.h)
		default:
			d.idx.shard(p.h).set(p.h, p.e)
		}
	}
	return res, nil
}

// writes reports whether w writes anything.
func writes(w *store.Writes) bool {
	return w.Client || w.Triplet || w.ClientDel || w.Trap || w.Mark || w.MarkDel
}

// stepKeys are the namespaced keys of one step and their hashes; nil:
// not involved.
type stepKeys struct {
	k [5][]byte
	h [5]hkey
}

const (
	kClient = iota
	kTriplet
	kAlt
	kTrap
	kTarpit
)

// read returns the stored state of ks. With locked, the caller holds the
// shards' write locks (lockShards).
func (d *DB) read(ks *stepKeys, locked bool) store.State {
	now := time.Now().UnixNano()
	var e [5]entry
	var found [5]bool
	for i, k := range ks.k {
		if k == nil {
			continue
		}
		sh := d.idx.shard(ks.h[i])
		if !locked {
			sh.mu.RLock()
		}
		e[i], found[i] = sh.get(ks.h[i])
		if !locked {
			sh.mu.RUnlock()
		}
		if !found[i] || !d.liveAt(unsafe.String(unsafe.SliceData(k), len(k)), e[i], now) {
			e[i], found[i] = entry{}, false
		}
	}
	return store.State{
		Client: Client{Count: e[kClient].a, Last: e[kClient].b}, ClientFound: found[kClient],
		Triplet: Triplet{First: e[kTriplet].a, Last: e[kTriplet].b}, TripletFound: found[kTriplet],
		Alt: Triplet{First: e[kAlt].a, Last: e[kAlt].b}, AltFound: found[kAlt],
		Trap: store.Trap{Since: e[kTrap].a, Until: e[kTrap].b}, TrapFound: found[kTrap],
		Tarpit: store.Tarpit{Since: e[kTarpit].a, Session: e[kTarpit].b}, TarpitFound: found[kTarpit],
	}
}

// lockShards write-locks the distinct shards of ks in index order and
// returns them for unlockShards.
func (d *DB) lockShards(ks *stepKeys) []*shard {
	var arr [5]*shard
	list := arr[:0]
	for i, k := range ks.k {
		if k == nil {
			continue
		}
		sh := d.idx.shard(ks.h[i])
		dup := false
		for _, o := range list {
			dup = dup || o == sh
		}
		if !dup {
			list = append(list, sh)
		}
	}
	// Sort by address: the shards are one array, so that is index order.
	for i := 1; i < len(list); i++ {
		for j := i; j > 0 && uintptr(unsafe.Pointer(list[j])) < uintptr(unsafe.Pointer(list[j-1])); j-- {
			list[j], list[j-1] = list[j-1], list[j]
		}
	}
	for _, sh := range list {
		sh.mu.Lock()
	}
	return list
}

func unlockShards(list []*shard) {
	for _, sh := range list {
		sh.mu.Unlock()
	}
}

// pending is one entry to write: buntdb's key and value, and the index
// entry that goes with them; or, with del, a key to delete.
type pending struct {
	key, val string
	ttl      time.Duration
	h        hkey
	e        entry
	del      bool
}

// prepare encodes an entry. One allocation holds both the key and the
// value that buntdb keeps; it is never written again, so the two strings
// over it are immutable.
func prepare(ns byte, key string, a, b, ttlSeconds int64) pending {
	var num [41]byte
	v := store.AppendValue(num[:0], a, b)
	buf := make([]byte, 2+len(key)+len(v))
	buf[0], buf[1] = ns, ':'
	n := 2 + copy(buf[2:], key)
	copy(buf[n:], v)
	ttl := time.Duration(ttlSeconds) * time.Second
	return pending{
		key: unsafe.String(&buf[0], n),
		val: unsafe.String(&buf[n], len(v)),
		ttl: ttl,
		e:   entry{a: a, b: b, exp: (time.Now().Add(ttl).UnixNano() + 1e9 - 1) / 1e9},
	}
}

// Healthy implements store.Store: the index answers a lookup. (A write
// stuck on a dying disk is noticed by the caller's store deadline.)
func (d *DB) Healthy(ctx context.Context) error {
	_, _, err := d.Client(ctx, "watchdog")
	return err
}
