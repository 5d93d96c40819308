// Package buntdb is greyd's single-host store: one buntdb file (an
// append-only log loaded into memory), a key-less hash index in front of
// it for reads, expiry by buntdb's indexed sweep, and store.Transition
// run under the index's shard locks so that each request's step is
// atomic.
package buntdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/store"
)

// The entry types and errors of the seam, under their short names.
type (
	Triplet = store.Triplet
	Client  = store.Client
)

var (
	ErrClosed = store.ErrClosed
	ErrLocked = store.ErrLocked
)

// Namespaces inside the one buntdb keyspace: "t:<key>", "c:<key>",
// "x:<key>" for greytraps, "p:<key>" for tarpit marks, and
// "w:<kind>:<value>" for the runtime whitelist, which the index leaves
// out.
const (
	nsTriplet   = 't'
	nsClient    = 'c'
	nsTrap      = 'x'
	nsTarpit    = 'p'
	nsWhitelist = 'w'
)

// DB is the buntdb implementation of store.Store: one append-only file, all
// entries in memory, expiry by buntdb's own once-a-second sweep of a tree
// ordered by deadline (no full scans); an entry past its TTL reads as not
// found even before the sweep removes it. Safe for concurrent use: buntdb
// serialises writers (each put is one write(2), plus an fsync under
// SyncAlways) and lets readers run in parallel.
type DB struct {
	db   *bunt.DB // the main file; set before ready is closed
	idx  *index   // reads come from here (index.go)
	log  *slog.Logger
	path string   // "" for Memory
	lock *os.File // nil for Memory

	commits committer // group commit of Step's writes (commit.go)
	wdb     *bunt.DB  // where the group commit writes: db, or boot while loading; the leader's
	// Background load (load.go): boot takes the writes until the main file
	// is loaded; ready is closed when writes go to db; loadDone when the
	// loader is finished; wlEarly is the runtime whitelist read at start,
	// answered until ready.
	boot     *bunt.DB
	ready    chan struct{}
	loadDone chan struct{}
	wlEarly  map[string]string
	shrinkOn bool // autoShrink was started

	closed      atomic.Bool
	expireErrAt atomic.Int64 // unix nanoseconds of the last expiry error logged
	wlVersion   atomic.Int64 // WhitelistVersion (admin.go)

	shrinkMu     sync.Mutex // one rewrite at a time; guards shrunk
	shrunk       int64      // file size after the last rewrite; at Open, the live data's
	shrinkMin    int64
	shrinkEvery  time.Duration
	shrinkChecks atomic.Int64  // ticks of autoShrink done, for tests to wait on
	stop, done   chan struct{} // autoShrink; nil for Memory
}

var _ store.Store = (*DB)(nil)

// Triplet returns the triplet entry of key.
func (d *DB) Triplet(ctx context.Context, key string) (Triplet, bool, error) {
	a, b, found, err := d.get(ctx, nsTriplet, key)
	return Triplet{First: a, Last: b}, found, err
}

// PutTriplet stores a triplet entry. ttl <= 0 stores the entry without expiry.
func (d *DB) PutTriplet(ctx context.Context, key string, t Triplet, ttl time.Duration) error {
	return d.put(ctx, nsTriplet, key, t.First, t.Last, ttl)
}

// Client returns the auto-whitelist entry of key.
func (d *DB) Client(ctx context.Context, key string) (Client, bool, error) {
	a, b, found, err := d.get(ctx, nsClient, key)
	return Client{Count: a, Last: b}, found, err
}

// PutClient stores an auto-whitelist entry. ttl <= 0 stores the entry without expiry.
func (d *DB) PutClient(ctx context.Context, key string, c Client, ttl time.Duration) error {
	return d.put(ctx, nsClient, key, c.Count, c.Last, ttl)
}

func (d *DB) get(ctx context.Context, ns byte, key string) (a, b int64, found bool, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, false, fmt.Errorf("store: %w", err)
	}
	if d.closed.Load() {
		return 0, 0, false, ErrClosed
	}
	// On the stack: only its hash goes into the index.
	var buf [256]byte
	k, now := append(append(buf[:0], ns, ':'), key...), time.Now().UnixNano()
	e, found := d.idx.get(k, now)
	if found && !d.liveAt(unsafe.String(unsafe.SliceData(k), len(k)), e, now) {
		return 0, 0, false, nil
	}
	return e.a, e.b, found, nil
}

func (d *DB) put(ctx context.Context, ns byte, key string, a, b int64, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if d.closed.Load() {
		return ErrClosed
	}
	if err := d.waitReady(ctx); err != nil {
		return err
	}
	var num [41]byte
	v := store.AppendValue(num[:0], a, b)
	// One allocation holds both the key and the value that buntdb keeps;
	// buf is never written again, so the two strings over it are immutable.
	buf := make([]byte, 2+len(key)+len(v))
	buf[0], buf[1] = ns, ':'
	n := 2 + copy(buf[2:], key)
	copy(buf[n:], v)
	k, val := unsafe.String(&buf[0], n), unsafe.String(&buf[n], len(v))

	var opts *bunt.SetOptions
	if ttl > 0 {
		opts = &bunt.SetOptions{Expires: true, TTL: ttl}
	}
	// The shard stays locked until buntdb has committed, so the index
	// never shows what buntdb rolled back, and two puts of one key reach
	// both in the same order.
	hk := d.idx.keyOf(k)
	sh := d.idx.shard(hk)
	sh.mu.Lock()
	err := d.db.Update(func(tx *bunt.Tx) error {
		_, _, err := tx.Set(k, val, opts)
		return err
	})
	if err == nil {
		sh.set(hk, entry{a: a, b: b, exp: deadline(ttl)})
	}
	sh.mu.Unlock()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bunt.ErrDatabaseClosed):
		return ErrClosed
	default:
		return fmt.Errorf("store: put: %w", err)
	}
}

// Len counts the entries of each namespace, expired ones not yet swept
// included. It walks every key under the read lock (writers wait for it):
// for status pages and benchmarks, not for the request path.
func (d *DB) Len() (triplets, clients int, err error) {
	if d.closed.Load() {
		return 0, 0, ErrClosed
	}
	if err := d.waitReady(context.Background()); err != nil {
		return 0, 0, err
	}
	err = d.db.View(func(tx *bunt.Tx) error {
		// ';' follows ':', so [x:, x;) is exactly the x namespace.
		if err := tx.AscendRange("", "t:", "t;", func(_, _ string) bool { triplets++; return true }); err != nil {
			return err
		}
		return tx.AscendRange("", "c:", "c;", func(_, _ string) bool { clients++; return true })
	})
	if errors.Is(err, bunt.ErrDatabaseClosed) {
		return 0, 0, ErrClosed
	} else if err != nil {
		return 0, 0, fmt.Errorf("store: len: %w", err)
	}
	return triplets, clients, nil
}

// Shrink rewrites the file with only the live entries (buntdb's Shrink,
// which blocks writers only briefly at the end). It runs automatically
// (Options.ShrinkEvery) when the file is over 32 MiB (Options.ShrinkMinSize)
// and has doubled since the last rewrite
// (or, the first time, is twice the size of the live data Open loaded:
// buntdb would rewrite any file over 32 MiB at the first check).
//
// buntdb writes the new file as path+".tmp" with mode 0666 less umask and
// renames it over the database, fsyncing neither. Shrink therefore creates
// that file beforehand with the database's mode minus world permissions
// (buntdb's truncating create keeps it), and fsyncs the result and the
// directory afterwards. It is a no-op for Memory.
func (d *DB) Shrink() error {
	if d.closed.Load() {
		return ErrClosed
	}
	if d.path == "" {
		return nil
	}
	if err := d.waitReady(context.Background()); err != nil {
		return err
	}
	d.shrinkMu.Lock()
	defer d.shrinkMu.Unlock()
	if d.closed.Load() {
		return ErrClosed
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		return fmt.Errorf("shrink database %q: %w", d.path, err)
	}
	tmp := d.path + ".tmp"
	if err := createWithMode(tmp, fi.Mode().Perm()&^0o007); err != nil {
		return fmt.Errorf("shrink database %q: %w", d.path, err)
	}
	err = d.db.Shrink()
	_ = os.Remove(tmp) // renamed away on success; left behind by early errors
	if errors.Is(err, bunt.ErrDatabaseClosed) {
		return ErrClosed
	} else if err != nil {
		return fmt.Errorf("shrink database %q: %w", d.path, err)
	}
	if err := syncFile(d.path); err != nil {
		return fmt.Errorf("shrink database %q: %w", d.path, err)
	}
	if err := syncDir(filepath.Dir(d.path)); err != nil {
		return fmt.Errorf("shrink database %q: %w", d.path, err)
	}
	if after, err := os.Stat(d.path); err == nil {
		d.log.Debug("database shrunk", "path", d.path, "before", fi.Size(), "after", after.Size())
		d.shrunk = after.Size()
	}
	return nil
}

// autoShrink replaces buntdb's auto-shrink (see configure). Open sets
// shrunk to the live data's size, so the first rewrite waits until the
// file has grown to twice that.
func (d *DB) autoShrink() {
	defer close(d.done)
	t := time.NewTicker(d.shrinkEvery)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		d.shrinkCheck()
		d.shrinkChecks.Add(1)
	}
}

// shrinkCheck is one tick of autoShrink.
func (d *DB) shrinkCheck() {
	fi, err := os.Stat(d.path)
	if err != nil {
		d.log.Warn("stat database", "path", d.path, "err", err)
		return
	}
	d.shrinkMu.Lock()
	last := d.shrunk
	d.shrinkMu.Unlock()
	size := fi.Size()
	if size <= d.shrinkMin || size <= 2*last {
		return
	}
	if err := d.Shrink(); err != nil && !errors.Is(err, ErrClosed) {
		d.log.Warn("shrink database failed", "path", d.path, "err", err)
		// Retry when the file has doubled again, not every tick.
		d.shrinkMu.Lock()
		d.shrunk = max(d.shrunk, size)
		d.shrinkMu.Unlock()
	}
}

// closeTimeout bounds Close: a database stuck on a hung disk must not keep
// greyd from exiting. A variable for tests.
var closeTimeout = 10 * time.Second

// Close flushes and closes the database and releases the lock. It is
// idempotent; other methods return ErrClosed afterwards. If the disk does
// not let it finish within 10 s, Close returns an error and keeps the lock
// (the process is about to exit, which releases it).
func (d *DB) Close() error {
	if !d.closed.CompareAndSwap(false, true) {
		return nil
	}
	if d.stop != nil {
		close(d.stop)
	}
	done := make(chan error, 1)
	loaded := false
	go func() {
		<-d.loadDone // buntdb's load of a big file cannot be interrupted
		var err error
		if d.boot != nil { // the load did not finish: its writes stay there
			err = d.boot.Close()
		}
		if d.db != nil {
			loaded = true
			err = errors.Join(err, d.db.Close()) // fsyncs; a running Shrink fails fast after this
		}
		if d.shrinkOn {
			<-d.done
			d.shrinkMu.Lock() // wait for a Shrink call still cleaning up
			d.shrinkMu.Unlock()
		}
		done <- err
	}()
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	var err error
	select {
	case err = <-done:
	case <-t.C:
		if d.loading() {
			return fmt.Errorf("close database %q: still loading after %v; the writes since start-up stay in %s and are merged at the next start", d.path, closeTimeout, d.path+bootSuffix)
		}
		return fmt.Errorf("close database %q: still busy after %v (hung disk?); writes of the last second may be lost", d.path, closeTimeout)
	}
	if err == nil && d.path != "" && loaded {
		// Still under the lock: no other greyd can change the file.
		if err := writeCleanMark(d.path); err != nil {
			d.log.Warn("could not record the clean shutdown; the next start checks the whole file", "path", d.path, "err", err)
		}
	}
	if d.lock != nil {
		unlockFile(d.lock)
	}
	if err != nil {
		return fmt.Errorf("close database %q: %w", d.path, err)
	}
	return nil
}

// createWithMode creates (or truncates) name with exactly mode perm.
func createWithMode(name string, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// syncFile fsyncs name.
func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
