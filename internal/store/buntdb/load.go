package buntdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/store"
)

// Loading a big database in the background.
//
// buntdb's Open replays the whole file into its two B-trees before it
// returns: about 3 s of one CPU at a million triplets, during which
// nothing could be answered. A file of asyncLoadMin or more is therefore
// opened in two halves:
//
//  1. Open reads the file into the index itself (parse.go: no B-trees,
//     about a quarter of buntdb's work), opens a small second buntdb file,
//     path+".boot", and returns. Steps read the index and write to the
//     boot file, with the same durability as always (a reply only once
//     its entries are written, with the configured sync policy).
//  2. Meanwhile buntdb loads the main file on another core. Then, with
//     no write under way (the group commit's lead, commit.go), what the
//     boot file holds is copied into the main file, the main file is
//     fsynced, the boot file removed, and writes go to the main file.
//     Admin operations that write, which waited until here, proceed.
//  3. The index's keys are pointed at buntdb's own strings (so that the
//     keys are not held twice), and expiry is handed to the index as
//     before (startIndex).
//
// A crash before step 2 completes leaves path+".boot" behind; the next
// Open reads it after the main file (everything in it is newer) and step 2
// merges it. A crash after the copy but before the removal merges the
// same entries twice, which changes nothing.
var asyncLoadMin int64 = 8 << 20

// loadHook, if set, runs before buntdb loads the main file (tests hold
// the load there).
var loadHook func()

// bootSuffix names the file that takes the writes while the main file loads.
const bootSuffix = ".boot"

// openAsync is Open's path for a big file (see above). The file has
// passed prepareFile.
func (d *DB) openAsync(path string, opts Options) error {
	start := time.Now()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	d.idx = newIndex(int(fi.Size() / 130)) // bytes per triplet on disk, measured
	r := &fileReader{idx: d.idx, wl: map[string]string{}, now: time.Now().UnixNano()}
	if err := r.readFile(path); err != nil {
		return err
	}
	boot := path + bootSuffix
	if bfi, err := os.Stat(boot); err == nil && bfi.Size() > 0 {
		if err := checkFile(boot, opts); err != nil {
			return err
		}
		if err := r.readFile(boot); errors.Is(err, errCorrupt) {
			// Unexpected after checkFile. Its writes are lost, not the
			// rest: the index is read again without them.
			if err := quarantine(boot, opts, err); err != nil {
				return err
			}
			d.idx = newIndex(int(fi.Size() / 130))
			r = &fileReader{idx: d.idx, wl: map[string]string{}, now: r.now}
			if err := r.readFile(path); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		opts.Logger.Warn("the last start-up did not finish loading the database; merging the writes it took meanwhile",
			"path", path, "from", boot)
	}
	if r.bad > 0 {
		d.log.Warn("ignoring malformed database values; those entries read as new and are overwritten at their next use",
			"path", d.path, "count", r.bad, "example_key", r.example)
	}
	bdb, err := openFile(boot, opts)
	if err != nil {
		return err
	}
	policy, _ := opts.Sync.buntdb() // validated by Open
	if err := configure(bdb, policy); err != nil {
		_ = bdb.Close()
		return err
	}
	d.boot, d.wdb, d.wlEarly = bdb, bdb, r.wl
	d.log.Info(fmt.Sprintf("database read in %.1f s (%d entries); answering while buntdb loads it in the background",
		time.Since(start).Seconds(), d.idx.len()), "path", path)
	go d.loadMain(path, policy, r.liveSize(), opts, loadHook)
	return nil
}

// loadMain is steps 2 and 3 of the background load.
func (d *DB) loadMain(path string, policy bunt.SyncPolicy, live int64, opts Options, hook func()) {
	defer close(d.loadDone)
	if hook != nil {
		hook()
	}
	start := time.Now()
	var db *bunt.DB
	for attempt := 0; ; attempt++ {
		var err error
		if db, err = d.openMain(path, policy, opts); err == nil {
			break
		}
		if attempt == 0 {
			d.log.Error("loading the database failed; answering from what was read, writes go to "+path+bootSuffix+"; retrying every second",
				"path", path, "err", err)
		}
		if !d.sleep(time.Second) {
			return
		}
	}
	if d.closed.Load() {
		_ = db.Close() // the boot file keeps the start-up's writes
		return
	}
	for attempt := 0; ; attempt++ {
		err := d.exclusive(func() error { return d.mergeBoot(db, path) })
		if err == nil {
			break
		}
		if attempt == 0 {
			d.log.Error("moving the writes of the start-up into the database failed; retrying every second",
				"path", path, "from", path+bootSuffix, "err", err)
		}
		if !d.sleep(time.Second) {
			_ = db.Close()
			return
		}
	}
	d.db = db
	close(d.ready)
	d.log.Info(fmt.Sprintf("database loaded in the background in %.1f s; admin commands that change entries work again", time.Since(start).Seconds()), "path", path)

	d.repoint()
	if err := d.handOverExpiry(); err != nil {
		d.log.Warn("could not hand buntdb's expiry to the index; expired entries read as missing but stay in the file until the next start",
			"path", path, "err", err)
	}
	d.shrinkMu.Lock()
	d.shrunk = live
	d.shrinkMu.Unlock()
	d.shrinkMin, d.shrinkEvery = opts.ShrinkMinSize, opts.ShrinkEvery
	d.shrinkOn = true
	go d.autoShrink()
}

// sleep waits for t or Close; it reports false on Close.
func (d *DB) sleep(t time.Duration) bool {
	select {
	case <-d.stop:
		return false
	case <-time.After(t):
		return true
	}
}

// openMain opens the main file in buntdb. If buntdb refuses a file that
// checkAOF and readFile accepted, the file is moved aside as Open would
// and rebuilt from the index, which holds everything read from it.
func (d *DB) openMain(path string, policy bunt.SyncPolicy, opts Options) (*bunt.DB, error) {
	db, err := openBuntdb(path)
	rebuild := false
	if errors.Is(err, errCorrupt) {
		if err := quarantine(path, opts, err); err != nil {
			return nil, err
		}
		rebuild = true
		db, err = openFile(path, opts)
	}
	if err != nil {
		return nil, err
	}
	if err := configure(db, policy); err != nil {
		_ = db.Close()
		return nil, err
	}
	if rebuild {
		if err := d.rebuild(db); err != nil {
			_ = db.Close()
			return nil, err
		}
		d.log.Warn("rebuilt the database file from the entries read at start-up", "path", path)
	}
	return db, nil
}

// rebuild writes the index and the whitelist records read at start-up
// into db.
func (d *DB) rebuild(db *bunt.DB) error {
	for i := range d.idx.shards {
		sh := &d.idx.shards[i]
		sh.mu.RLock()
		err := db.Update(func(tx *bunt.Tx) error {
			var num [41]byte
			for k, e := range sh.m {
				if err := setEntry(tx, k, string(store.AppendValue(num[:0], e.a, e.b)), e.expires); err != nil {
					return err
				}
			}
			return nil
		})
		sh.mu.RUnlock()
		if err != nil {
			return err
		}
	}
	return db.Update(func(tx *bunt.Tx) error {
		for k, v := range d.wlEarly {
			if _, _, err := tx.Set(k, v, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// setEntry writes k with the deadline exp (unix nanoseconds, 0: none);
// an entry already past it is left out.
func setEntry(tx *bunt.Tx, k, v string, exp int64) error {
	var opts *bunt.SetOptions
	if exp != 0 {
		ttl := time.Until(time.Unix(0, exp))
		if ttl <= 0 {
			return nil
		}
		opts = &bunt.SetOptions{Expires: true, TTL: ttl}
	}
	_, _, err := tx.Set(k, v, opts)
	return err
}

// mergeBoot is step 2; it runs with the group commit's lead, so no step
// writes meanwhile and none is in the boot file but not yet in the index.
// Once the copy is durable, writes go to db; if removing the boot file
// then fails, a retry only removes it (copying it again later would put
// its older values over newer ones).
func (d *DB) mergeBoot(db *bunt.DB, path string) error {
	if d.boot != nil {
		if err := d.copyBoot(db, path); err != nil {
			return err
		}
		if err := d.boot.Close(); err != nil && !errors.Is(err, bunt.ErrDatabaseClosed) {
			return err
		}
		d.boot, d.wdb = nil, db
	}
	boot := path + bootSuffix
	if err := os.Remove(boot); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(boot + cleanSuffix)
	return syncDir(filepath.Dir(path))
}

// copyBoot writes what the boot file holds into db and fsyncs db's file.
func (d *DB) copyBoot(db *bunt.DB, path string) error {
	type rec struct {
		k, v string
		exp  int64
	}
	var recs []rec
	err := d.boot.View(func(tx *bunt.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			r := rec{k: k, v: v}
			if ttl, err := tx.TTL(k); err != nil {
				return true // expired
			} else if ttl >= 0 {
				r.exp = time.Now().Add(ttl).UnixNano()
			}
			recs = append(recs, r)
			return true
		})
	})
	if err != nil || len(recs) == 0 {
		return err
	}
	err = db.Update(func(tx *bunt.Tx) error {
		for _, r := range recs {
			if err := setEntry(tx, r.k, r.v, r.exp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Durable before the boot file goes, whatever the sync policy: fsync
	// on another descriptor flushes the same file.
	return syncFile(path)
}

// repoint replaces the index's keys, read from the file by readFile, by
// buntdb's copies of the same strings (a map assignment to an existing
// string key stores the new key), so that each key is in memory once. It
// walks buntdb in chunks, so writers wait at most a chunk's walk. A key
// buntdb holds that the index lacks (readFile and buntdb disagreeing;
// never seen) is added, with a warning.
func (d *DB) repoint() {
	const chunk = 4096
	keys := make([]string, 0, chunk)
	pivot, first := "", true
	missing := 0
	for !d.closed.Load() {
		keys = keys[:0]
		err := d.db.View(func(tx *bunt.Tx) error {
			return tx.AscendGreaterOrEqual("", pivot, func(k, _ string) bool {
				if !first && k == pivot && len(keys) == 0 {
					return true // the last key of the previous chunk
				}
				keys = append(keys, k)
				return len(keys) < chunk
			})
		})
		if err != nil || len(keys) == 0 {
			break
		}
		first = false
		for _, k := range keys {
			if k == "" || k[0] != nsTriplet && k[0] != nsClient && k[0] != nsTrap && k[0] != nsTarpit {
				continue
			}
			sh := d.idx.shardOf(k)
			sh.mu.Lock()
			if e, ok := sh.m[k]; ok {
				sh.m[k] = e
			} else if d.addMissing(sh, k) {
				missing++
			}
			sh.mu.Unlock()
		}
		pivot = keys[len(keys)-1]
	}
	if missing > 0 {
		d.log.Warn("the database held entries its start-up read had not; added them", "path", d.path, "count", missing)
	}
}

// addMissing reads k from buntdb into the index; the caller holds sh.
func (d *DB) addMissing(sh *shard, k string) bool {
	var e entry
	ok := false
	_ = d.db.View(func(tx *bunt.Tx) error {
		v, err := tx.Get(k)
		if err != nil {
			return nil
		}
		ttl, err := tx.TTL(k)
		if err != nil {
			return nil
		}
		a, b, good := store.ParseValue(v)
		if !good {
			return nil
		}
		e, ok = entry{a: a, b: b}, true
		if ttl >= 0 {
			e.expires = time.Now().Add(ttl).UnixNano()
		}
		return nil
	})
	if ok {
		sh.set(k, e)
	}
	return ok
}

// handOverExpiry installs expire as buntdb's OnExpired and sweeps what
// expired before (see startIndex).
func (d *DB) handOverExpiry() error {
	var c bunt.Config
	if err := d.db.ReadConfig(&c); err != nil {
		return err
	}
	c.OnExpired = d.expire
	if err := d.db.SetConfig(c); err != nil {
		return err
	}
	d.sweep()
	return nil
}

// waitReady waits until the main file is loaded: admin operations that
// write or read buntdb directly.
func (d *DB) waitReady(ctx context.Context) error {
	select {
	case <-d.ready:
		return nil
	default:
	}
	select {
	case <-d.ready:
		return nil
	case <-d.stop:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("store: still loading the database: %w", ctx.Err())
	}
}

// Loaded is closed once the database is fully loaded (at once for a
// file loaded by Open itself) and the loading garbage can be returned.
func (d *DB) Loaded() <-chan struct{} { return d.loadDone }

// loading reports whether the main file is still loading.
func (d *DB) loading() bool {
	select {
	case <-d.ready:
		return false
	default:
		return true
	}
}

// len is the number of entries in the index.
func (x *index) len() int {
	n := 0
	for i := range x.shards {
		n += len(x.shards[i].m)
	}
	return n
}
