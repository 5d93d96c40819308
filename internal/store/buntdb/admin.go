package buntdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/store"
)

// store.Admin for buntdb. The index holds no keys, so a listing walks
// buntdb's key tree in chunks of scanChunk keys under its read lock
// (writers wait at most a chunk's walk) and takes each value from the
// index; the chunk is handed to the caller after the lock is released, so
// a slow reader of a listing (a CLI piped into less) never holds up Step.
// Deletes and imports lock one shard at a time, and write at most
// adminChunk entries per buntdb transaction.
//
// The runtime whitelist lives in buntdb's keyspace under "w:c:<value>"
// and "w:r:<value>" with a JSON value; the index leaves it out and it is
// read from buntdb directly (a handful of entries, read when it changes).

var _ store.Admin = (*DB)(nil)

// adminChunk bounds how many entries one transaction of Delete or Import
// writes, and so how long it holds a shard and buntdb's lock: about a
// millisecond.
const adminChunk = 512

// scanChunk bounds how many keys Scan reads per hold of buntdb's lock.
const scanChunk = 4096

// Scan implements store.Admin. It waits for a background load: until
// then buntdb has no keys to list.
func (d *DB) Scan(ctx context.Context, kinds []store.Kind, fn func(store.Entry) bool) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if len(kinds) == 0 {
		kinds = store.Kinds
	}
	var nss []byte
	for _, k := range kinds {
		ns, err := namespace(k)
		if err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		nss = append(nss, ns)
	}
	if err := d.waitReady(ctx); err != nil {
		return err
	}
	keys := make([]string, 0, scanChunk)
	for _, ns := range nss {
		// ';' follows ':', so [x:, x;) is exactly the x namespace.
		from, end := string(ns)+":", string(ns)+";"
		for from != "" {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("store: scan: %w", err)
			}
			if d.closed.Load() {
				return ErrClosed
			}
			start := from
			keys, from = keys[:0], ""
			// Keys only: a shard lock taken under buntdb's read lock
			// would deadlock with a write, which takes them the other
			// way round.
			err := d.db.View(func(tx *bunt.Tx) error {
				return tx.AscendRange("", start, end, func(k, _ string) bool {
					if len(keys) == scanChunk {
						from = k
						return false
					}
					keys = append(keys, k)
					return true
				})
			})
			if err != nil {
				return adminErr("scan", err)
			}
			now := time.Now().UnixNano()
			for _, k := range keys {
				if e, ok := d.idx.get([]byte(k), now); ok && d.liveAt(k, e, now) && !fn(toEntry(k, e)) {
					return nil
				}
			}
		}
	}
	return nil
}

// toEntry converts an index entry. The deadline is the index's, rounded
// up to the second: an exported entry never expires earlier than the
// original.
func toEntry(k string, e entry) store.Entry {
	kind := store.KindTriplet
	switch k[0] {
	case nsClient:
		kind = store.KindClient
	case nsTrap:
		kind = store.KindTrap
	case nsTarpit:
		kind = store.KindTarpit
	}
	return store.StoredEntry(kind, k[2:], e.a, e.b, e.exp)
}

func namespace(k store.Kind) (byte, error) {
	switch k {
	case store.KindTriplet:
		return nsTriplet, nil
	case store.KindClient:
		return nsClient, nil
	case store.KindTrap:
		return nsTrap, nil
	case store.KindTarpit:
		return nsTarpit, nil
	}
	return 0, fmt.Errorf("unknown kind %q", k)
}

// byShard hashes namespaced keys and groups their indexes by shard.
func (d *DB) byShard(nkeys []string) (hs []hkey, groups [indexShards][]int) {
	hs = make([]hkey, len(nkeys))
	for i, k := range nkeys {
		hs[i] = d.idx.keyOf(k)
		s := hs[i].h % indexShards
		groups[s] = append(groups[s], i)
	}
	return hs, groups
}

// Delete implements store.Admin.
func (d *DB) Delete(ctx context.Context, kind store.Kind, keys []string) (int, error) {
	ns, err := namespace(kind)
	if err != nil {
		return 0, fmt.Errorf("store: delete: %w", err)
	}
	if d.closed.Load() {
		return 0, ErrClosed
	}
	if err := d.waitReady(ctx); err != nil {
		return 0, err
	}
	nkeys := make([]string, len(keys))
	for i, k := range keys {
		nkeys[i] = string(ns) + ":" + k
	}
	deleted := 0
	hs, groups := d.byShard(nkeys)
	for s, idx := range groups {
		for len(idx) > 0 {
			if err := ctx.Err(); err != nil {
				return deleted, fmt.Errorf("store: delete: %w", err)
			}
			chunk := idx[:min(len(idx), adminChunk)]
			idx = idx[len(chunk):]
			n, err := d.deleteChunk(&d.idx.shards[s], nkeys, hs, chunk)
			deleted += n
			if err != nil {
				return deleted, err
			}
		}
	}
	return deleted, nil
}

func (d *DB) deleteChunk(sh *shard, nkeys []string, hs []hkey, chunk []int) (int, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if d.closed.Load() {
		return 0, ErrClosed
	}
	now := time.Now().UnixNano()
	n := 0
	var gone []int
	for _, i := range chunk {
		if e, mine := sh.get(hs[i]); mine {
			gone = append(gone, i)
			if d.liveAt(nkeys[i], e, now) {
				n++
			}
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	err := d.db.Update(func(tx *bunt.Tx) error {
		for _, i := range gone {
			if _, err := tx.Delete(nkeys[i]); err != nil && !errors.Is(err, bunt.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, adminErr("delete", err)
	}
	for _, i := range gone {
		sh.del(hs[i])
	}
	return n, nil
}

// Import implements store.Admin.
func (d *DB) Import(ctx context.Context, entries []store.Entry, delay int64) (imported, merged int, err error) {
	if d.closed.Load() {
		return 0, 0, ErrClosed
	}
	if err := d.waitReady(ctx); err != nil {
		return 0, 0, err
	}
	nkeys := make([]string, len(entries))
	for i, e := range entries {
		ns, err := namespace(e.Kind)
		if err == nil {
			err = store.CheckEntry(e)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("store: import %q: %w", e.Key, err)
		}
		nkeys[i] = string(ns) + ":" + e.Key
	}
	hs, groups := d.byShard(nkeys)
	for s, idx := range groups {
		for len(idx) > 0 {
			if err := ctx.Err(); err != nil {
				return imported, merged, fmt.Errorf("store: import: %w", err)
			}
			chunk := idx[:min(len(idx), adminChunk)]
			idx = idx[len(chunk):]
			i, m, err := d.importChunk(&d.idx.shards[s], entries, nkeys, hs, chunk, delay)
			imported, merged = imported+i, merged+m
			if err != nil {
				return imported, merged, err
			}
		}
	}
	return imported, merged, nil
}

func (d *DB) importChunk(sh *shard, entries []store.Entry, nkeys []string, hs []hkey, chunk []int, delay int64) (imported, merged int, err error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if d.closed.Load() {
		return 0, 0, ErrClosed
	}
	now := time.Now()
	type write struct {
		key, val string
		h        hkey
		ttl      time.Duration // 0: none
		e        entry
	}
	writes := make([]write, 0, len(chunk))
	// Two entries of one key in the same import merge with each other:
	// the later one sees the earlier one's write.
	pending := map[string]int{}
	for _, i := range chunk {
		in := entries[i]
		k := nkeys[i]
		if in.Expires != 0 && in.Expires <= now.Unix() {
			continue
		}
		var old store.Entry
		found := false
		if w, ok := pending[k]; ok {
			old, found = toEntry(k, writes[w].e), true
		} else if e, mine := sh.get(hs[i]); mine && e.live(now.UnixNano()) {
			old, found = toEntry(k, e), true
		}
		out := in
		if found {
			out = store.Merge(old, in, delay)
			merged++
		} else {
			imported++
		}
		a, b := out.Stored()
		w := write{key: k, val: string(store.AppendValue(nil, a, b)), h: hs[i], e: entry{a: a, b: b, exp: out.Expires}}
		if out.Expires != 0 {
			w.ttl = time.Unix(out.Expires, 0).Sub(now)
		}
		if j, ok := pending[k]; ok {
			writes[j] = w
			continue
		}
		pending[k] = len(writes)
		writes = append(writes, w)
	}
	if len(writes) == 0 {
		return imported, merged, nil
	}
	err = d.db.Update(func(tx *bunt.Tx) error {
		for _, w := range writes {
			var opts *bunt.SetOptions
			if w.ttl > 0 {
				opts = &bunt.SetOptions{Expires: true, TTL: w.ttl}
			}
			if _, _, err := tx.Set(w.key, w.val, opts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, adminErr("import", err)
	}
	for _, w := range writes {
		sh.set(w.h, w.e)
	}
	return imported, merged, nil
}

// Counts implements store.Admin: the index's counts per namespace, one
// read lock per shard.
func (d *DB) Counts() (triplets, clients int) {
	if d.closed.Load() {
		return 0, 0
	}
	for i := range d.idx.shards {
		sh := &d.idx.shards[i]
		sh.mu.RLock()
		triplets += int(sh.n[nsTriplet])
		clients += int(sh.n[nsClient])
		sh.mu.RUnlock()
	}
	return triplets, clients
}

// wlValue is the stored value of a runtime whitelist entry.
type wlValue struct {
	Comment string `json:"comment,omitempty"`
	Added   int64  `json:"added"`
	Expires int64  `json:"expires,omitempty"`
}

func wlKey(kind store.WhitelistKind, value string) (string, error) {
	switch kind {
	case store.WhitelistClient:
		return "w:c:" + value, nil
	case store.WhitelistRecipient:
		return "w:r:" + value, nil
	}
	return "", fmt.Errorf("store: unknown whitelist %q", kind)
}

// Whitelist implements store.Admin. Expired entries are left out and
// deleted on the way.
func (d *DB) Whitelist(ctx context.Context) ([]store.WhitelistEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if d.closed.Load() {
		return nil, ErrClosed
	}
	now := time.Now().Unix()
	var out []store.WhitelistEntry
	if d.loading() {
		// What Open read; nothing changes it until the load is done.
		for k, v := range d.wlEarly {
			if e, ok := decodeWhitelist(k, v); ok && e.Live(now) {
				out = append(out, e)
			}
		}
		return out, nil
	}
	var expired []string
	err := d.db.View(func(tx *bunt.Tx) error {
		return tx.AscendRange("", "w:", "w;", func(k, v string) bool {
			e, ok := decodeWhitelist(k, v)
			switch {
			case !ok:
				d.log.Warn("ignoring a malformed runtime whitelist entry in the database", "key", k)
			case !e.Live(now):
				expired = append(expired, k)
			default:
				out = append(out, e)
			}
			return true
		})
	})
	if err != nil {
		return nil, adminErr("whitelist", err)
	}
	if len(expired) > 0 {
		// Invisible already, so the version stays: nothing a reader sees
		// changes. A failure is retried at the next read.
		_ = d.db.Update(func(tx *bunt.Tx) error {
			for _, k := range expired {
				_, _ = tx.Delete(k)
			}
			return nil
		})
	}
	return out, nil
}

func decodeWhitelist(k, v string) (store.WhitelistEntry, bool) {
	var kind store.WhitelistKind
	switch {
	case strings.HasPrefix(k, "w:c:"):
		kind = store.WhitelistClient
	case strings.HasPrefix(k, "w:r:"):
		kind = store.WhitelistRecipient
	default:
		return store.WhitelistEntry{}, false
	}
	var wv wlValue
	if err := json.Unmarshal([]byte(v), &wv); err != nil {
		return store.WhitelistEntry{}, false
	}
	return store.WhitelistEntry{Kind: kind, Value: k[4:], Comment: wv.Comment, Added: wv.Added, Expires: wv.Expires}, true
}

// AddWhitelist implements store.Admin.
func (d *DB) AddWhitelist(ctx context.Context, e store.WhitelistEntry) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	if d.closed.Load() {
		return false, ErrClosed
	}
	if err := d.waitReady(ctx); err != nil {
		return false, err
	}
	k, err := wlKey(e.Kind, e.Value)
	if err != nil {
		return false, err
	}
	if e.Value == "" || strings.ContainsAny(e.Value, "\n\r") {
		return false, fmt.Errorf("store: whitelist entry %q: empty or several lines", e.Value)
	}
	v, err := json.Marshal(wlValue{Comment: e.Comment, Added: e.Added, Expires: e.Expires})
	if err != nil {
		return false, fmt.Errorf("store: whitelist entry %q: %w", e.Value, err)
	}
	replaced := false
	err = d.db.Update(func(tx *bunt.Tx) error {
		old, err := tx.Get(k)
		if err == nil {
			if oe, ok := decodeWhitelist(k, old); ok && oe.Live(time.Now().Unix()) {
				replaced = true
			}
		}
		// No buntdb TTL: its expiry hands keys to the index's sweep, and
		// readers drop expired entries anyway.
		_, _, err = tx.Set(k, string(v), nil)
		return err
	})
	if err != nil {
		return false, adminErr("whitelist add", err)
	}
	d.wlVersion.Add(1)
	return replaced, nil
}

// RemoveWhitelist implements store.Admin.
func (d *DB) RemoveWhitelist(ctx context.Context, kind store.WhitelistKind, value string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	if d.closed.Load() {
		return false, ErrClosed
	}
	if err := d.waitReady(ctx); err != nil {
		return false, err
	}
	k, err := wlKey(kind, value)
	if err != nil {
		return false, err
	}
	found := false
	err = d.db.Update(func(tx *bunt.Tx) error {
		old, err := tx.Delete(k)
		switch {
		case errors.Is(err, bunt.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		oe, ok := decodeWhitelist(k, old)
		found = ok && oe.Live(time.Now().Unix())
		return nil
	})
	if err != nil {
		return false, adminErr("whitelist remove", err)
	}
	if found {
		d.wlVersion.Add(1)
	}
	return found, nil
}

// WhitelistVersion implements store.Admin. One process owns a buntdb
// file (the lock), so a counter in memory sees every change.
func (d *DB) WhitelistVersion(ctx context.Context) (int64, error) {
	if d.closed.Load() {
		return 0, ErrClosed
	}
	return d.wlVersion.Load(), nil
}

func adminErr(op string, err error) error {
	if errors.Is(err, bunt.ErrDatabaseClosed) {
		return ErrClosed
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
