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
// nothing could be answered. Open therefore fills the index itself
// (parse.go: no B-trees, about a quarter of buntdb's work), and a file of
// asyncLoadMin or more is opened in two halves:
//
//  1. Open opens a small second buntdb file, path+".boot", and returns.
//     Steps read the index and write to the boot file, with the same
//     durability as always (a reply only once its entries are written,
//     with the configured sync policy).
//  2. Meanwhile buntdb loads the main file on another core. Then, with
//     no write under way (the group commit's lead, commit.go), what the
//     boot file holds is copied into the main file (a boot entry that
//     expired meanwhile deletes the main file's older copy), the main file
//     is fsynced, the boot file removed, and writes go to the main file.
//     Admin operations that wait for buntdb proceed.
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

// readIndex checks the file (and a boot file left behind) and reads it
// into a new index, d.idx.
func (d *DB) readIndex(path string, opts Options) (*fileReader, error) {
	if err := checkFile(path, opts); err != nil {
		return nil, err
	}
	read := func() (*fileReader, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		d.idx = newIndex(int(fi.Size() / 130)) // bytes per triplet on disk, measured
		r := &fileReader{idx: d.idx, wl: map[string]string{}, now: time.Now().UnixNano()}
		return r, r.readFile(path)
	}
	r, err := read()
	if errors.Is(err, errCorrupt) {
		// readFile refused what checkAOF passed: the file is moved aside
		// and the database starts empty, as for any damaged file.
		if err = quarantine(path, opts, err); err == nil {
			if err = checkFile(path, opts); err == nil {
				r, err = read()
			}
		}
	}
	if err != nil {
		return nil, err
	}
	boot := path + bootSuffix
	if bfi, err := os.Stat(boot); err == nil && bfi.Size() > 0 {
		if err := checkFile(boot, opts); err != nil {
			return nil, err
		}
		if err := r.readFile(boot); errors.Is(err, errCorrupt) {
			// Unexpected after checkFile. Its writes are lost, not the
			// rest: the index is read again without them.
			if err := quarantine(boot, opts, err); err != nil {
				return nil, err
			}
			if r, err = read(); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		r.boot = true
		opts.Logger.Warn("the last start-up did not finish loading the database; merging the writes it took meanwhile",
			"path", path, "from", boot)
	}
	if r.bad > 0 {
		d.log.Warn("ignoring malformed database values; those entries read as new and are overwritten at their next use",
			"path", path, "count", r.bad, "example_key", r.example)
	}
	return r, nil
}

// openAsync is Open's path for a big file (see above); the index holds
// what it read.
func (d *DB) openAsync(path string, r *fileReader, policy bunt.SyncPolicy, opts Options) error {
	bdb, err := openFile(path+bootSuffix, opts)
	if err != nil {
		return err
	}
	if err := d.configure(bdb, policy, true); err != nil {
		_ = bdb.Close()
		return err
	}
	d.boot, d.wdb, d.wlEarly = bdb, bdb, r.wl
	d.log.Info(fmt.Sprintf("database read in %.1f s (%d entries); answering while buntdb loads it in the background",
		time.Since(time.Unix(0, r.now)).Seconds(), d.idx.len()), "path", path)
	go d.loadMain(path, policy, r.liveSize(), opts, loadHook)
	return nil
}

// loadMain is step 2 of the background load.
func (d *DB) loadMain(path string, policy bunt.SyncPolicy, live int64, opts Options, hook func()) {
	defer close(d.loadDone)
	if hook != nil {
		hook()
	}
	start := time.Now()
	var db *bunt.DB
	var rebuilt bool
	for attempt := 0; ; attempt++ {
		var err error
		if db, rebuilt, err = d.openMain(path, policy, opts); err == nil {
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
		err := d.exclusive(func() error { return d.mergeBoot(db, path, rebuilt) })
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
	if rebuilt {
		live = 0
	}
	d.startShrink(live, opts)
}

// startShrink starts autoShrink. The file is rewritten once it is twice
// what a rewrite would leave (live), not at the first check: right after
// a restart the rewrite would cost a second of CPU and a file's worth of
// memory for a file that is mostly live data.
func (d *DB) startShrink(live int64, opts Options) {
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
// checkAOF and readFile accepted (never seen), the file is moved aside as
// Open would and buntdb starts empty; rebuilt says so, and the index must
// forget what it read from that file.
func (d *DB) openMain(path string, policy bunt.SyncPolicy, opts Options) (db *bunt.DB, rebuilt bool, err error) {
	db, err = openBuntdb(path)
	if errors.Is(err, errCorrupt) {
		if err := quarantine(path, opts, err); err != nil {
			return nil, false, err
		}
		rebuilt = true
		db, err = openFile(path, opts)
	}
	if err != nil {
		return nil, false, err
	}
	if err := d.configure(db, policy, false); err != nil {
		_ = db.Close()
		return nil, false, err
	}
	return db, rebuilt, nil
}

// setEntry writes k with the deadline exp (unix nanoseconds, 0: none);
// an entry already past it is deleted.
func setEntry(tx *bunt.Tx, k, v string, exp int64) error {
	var opts *bunt.SetOptions
	if exp != 0 {
		ttl := time.Until(time.Unix(0, exp))
		if ttl <= 0 {
			if _, err := tx.Delete(k); err != nil && !errors.Is(err, bunt.ErrNotFound) {
				return err
			}
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
// its older values over newer ones). With rebuilt (openMain), the index
// keeps only the boot file's entries.
func (d *DB) mergeBoot(db *bunt.DB, path string, rebuilt bool) error {
	if rebuilt {
		for i := range d.idx.shards {
			d.idx.shards[i].mu.Lock()
		}
		d.idx.reset(0)
		d.wlEarly = map[string]string{}
		for i := range d.idx.shards {
			d.idx.shards[i].mu.Unlock()
		}
	}
	if d.boot != nil {
		if err := d.copyBoot(db, path, rebuilt); err != nil {
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
// The boot file keeps its expired entries (configure), so that one that
// expired before the merge deletes the main file's older copy, which the
// index no longer shows. With index, the entries go into the index too.
func (d *DB) copyBoot(db *bunt.DB, path string, index bool) error {
	type rec struct {
		k, v string
		exp  int64 // unix nanoseconds; 0: none; -1: expired
	}
	var recs []rec
	err := d.boot.View(func(tx *bunt.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			r := rec{k: k, v: v}
			if ttl, err := tx.TTL(k); err != nil {
				r.exp = -1
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
	for _, r := range recs {
		a, b, ok := store.ParseValue(r.v)
		if !index || r.exp < 0 || !ok || isWhitelistKey([]byte(r.k)) {
			continue
		}
		k := d.idx.keyOf(r.k)
		sh := d.idx.shard(k)
		sh.mu.Lock()
		sh.set(k, entry{a: a, b: b, exp: (r.exp + 1e9 - 1) / 1e9})
		sh.mu.Unlock()
	}
	// Durable before the boot file goes, whatever the sync policy: fsync
	// on another descriptor flushes the same file.
	return syncFile(path)
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
