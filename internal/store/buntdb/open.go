package buntdb

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	bunt "github.com/tidwall/buntdb"
)

// Memory is the path that opens a buntdb database without a file: no lock,
// no corruption handling, nothing survives Close. Tests of other packages
// use it to run against the real store without touching the disk.
const Memory = ":memory:"

// Open opens (creating it if needed) the database file at path, or an
// in-memory database if path is Memory.
//
// The file is created with mode 0600 and world permissions are removed from
// an existing one. A second greyd on the same file is refused through an
// flock on path+".lock". A damaged file is moved aside to
// path+".corrupt-<UTC time>" and replaced by an empty database, with an
// ERROR log line: greylisting state is disposable, availability is not.
// Of those copies the newest three are kept, older ones deleted.
// A file that ends mid-record (a crash during a write) loses only that
// record, with a WARN line.
func Open(path string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ShrinkMinSize <= 0 {
		opts.ShrinkMinSize = DefaultShrinkMinSize
	}
	if opts.ShrinkEvery <= 0 {
		opts.ShrinkEvery = DefaultShrinkEvery
	}
	policy, err := opts.Sync.buntdb()
	if err != nil {
		return nil, fmt.Errorf("open database %q: %w", path, err)
	}
	d := &DB{log: opts.Logger, ready: make(chan struct{}), loadDone: make(chan struct{})}
	if path == Memory {
		d.idx = newIndex(0)
		if d.db, err = bunt.Open(Memory); err == nil {
			if err = d.configure(d.db, policy, false); err != nil {
				_ = d.db.Close()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("open database %q: %w", path, err)
		}
		d.wdb = d.db
		close(d.ready)
		close(d.loadDone)
		return d, nil
	}

	d.path = path
	if d.lock, err = lockFile(path); err != nil {
		return nil, err
	}
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	r, err := d.readIndex(path, opts)
	if err == nil {
		// Big: answer from the index at once, buntdb loads meanwhile. A
		// boot file left by an interrupted start takes the same path,
		// whatever the size, since that path merges it.
		if fi, serr := os.Stat(path); r.boot || serr == nil && fi.Size() >= asyncLoadMin {
			err = d.openAsync(path, r, policy, opts)
		} else {
			err = d.openSync(path, r, policy, opts)
		}
	}
	if err != nil {
		unlockFile(d.lock)
		return nil, fmt.Errorf("open database %q: %w", path, err)
	}
	return d, nil
}

// openSync opens a small file in buntdb before Open returns. The index
// read it already.
func (d *DB) openSync(path string, r *fileReader, policy bunt.SyncPolicy, opts Options) error {
	db, rebuilt, err := d.openMain(path, policy, opts)
	if err != nil {
		return err
	}
	if rebuilt {
		d.idx.reset(0)
		r.wl, r.live = map[string]string{}, 0
	}
	d.db, d.wdb = db, db
	close(d.ready)
	close(d.loadDone)
	d.startShrink(r.liveSize(), opts)
	return nil
}

// configure applies the sync policy, turns buntdb's own auto-shrink off
// (its rewrite creates the new file with mode 0666, less umask, so greyd
// runs the same policy itself, see DB.Shrink) and hands expiry to the
// index (DB.expire) before buntdb's first sweep, a second after its Open:
// from then on buntdb deletes nothing by itself. The boot file's expired
// entries are kept instead, for the merge to see (load.go).
func (d *DB) configure(db *bunt.DB, policy bunt.SyncPolicy, boot bool) error {
	var c bunt.Config
	if err := db.ReadConfig(&c); err != nil {
		return err
	}
	c.SyncPolicy = policy
	c.AutoShrinkDisabled = true
	c.OnExpired = func(keys []string) { d.expire(db, keys) }
	if boot {
		c.OnExpired = func([]string) {}
	}
	return db.SetConfig(c)
}

// lockFile takes the single-process lock: buntdb has none, and two
// processes appending to one file corrupt it.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database %q: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("database %q: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open database %q: lock %s: %w", path, f.Name(), err)
	}
	return f, nil
}

// unlockFile releases the lock. The lock file stays: removing it would let
// a third process lock a new inode while a second still holds the old one.
func unlockFile(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_ = f.Close()
}

// checkFile checks and repairs the file, or quarantines it (leaving no
// file: the next open creates an empty one).
func checkFile(path string, opts Options) error {
	err := prepareFile(path, opts.Logger)
	if errors.Is(err, errCorrupt) {
		if err := quarantine(path, opts, err); err != nil {
			return err
		}
		err = prepareFile(path, opts.Logger)
	}
	return err
}

// openFile checks, repairs or quarantines the file, then opens it.
func openFile(path string, opts Options) (*bunt.DB, error) {
	for attempt := 0; ; attempt++ {
		err := prepareFile(path, opts.Logger)
		if err == nil {
			var db *bunt.DB
			if db, err = openBuntdb(path); err == nil {
				return db, nil
			}
		}
		// Unwrapped: Open names the database (and os errors the file).
		if attempt > 0 || !errors.Is(err, errCorrupt) {
			return nil, err
		}
		if err := quarantine(path, opts, err); err != nil {
			return nil, err
		}
	}
}

// prepareFile creates the file with mode 0600 if it is missing (buntdb would
// use 0666), strips world permissions, validates it with checkAOF and
// truncates a torn last record.
func prepareFile(path string, log *slog.Logger) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		if err := f.Chmod(perm &^ 0o007); err != nil {
			return err
		}
		log.Warn("database file was accessible to everyone; removed the permissions for others",
			"path", path, "mode", fmt.Sprintf("%#o", perm))
	}
	if takeCleanMark(path, f) {
		log.Debug("database was closed cleanly and is unchanged: integrity check skipped", "path", path)
		return nil
	}
	good, err := checkAOF(f, fi.Size())
	if err != nil {
		return err
	}
	if good < fi.Size() {
		log.Warn("database file ends with an incomplete record (crash during a write?); dropping it",
			"path", path, "offset", good, "bytes", fi.Size()-good)
		if err := f.Truncate(good); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// openBuntdb is bunt.Open with its known failure modes on damaged input
// mapped to errCorrupt. checkAOF should have caught them all already.
func openBuntdb(path string) (db *bunt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			// buntdb leaks its file handle here; once per corrupt start.
			db, err = nil, fmt.Errorf("%w: buntdb panicked: %v", errCorrupt, r)
		}
	}()
	db, err = bunt.Open(path)
	var numErr *strconv.NumError
	if errors.Is(err, bunt.ErrInvalid) || errors.As(err, &numErr) {
		err = fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return db, err
}

// Quarantined files are named path+corruptSuffix+<UTC time>, with ".2"
// to ".99" after it for more than one in a second.
const (
	corruptSuffix = ".corrupt-"
	corruptTime   = "20060102T150405Z"
)

// keepCorrupt is how many quarantined files of one database are kept: a
// disk that damages the file at every start would otherwise fill up with
// copies of it, and the newest few are what a post-mortem needs.
const keepCorrupt = 3

// quarantine moves a damaged file aside, keeping it for a post-mortem,
// and deletes older quarantined files beyond keepCorrupt.
func quarantine(path string, opts Options, cause error) error {
	base := path + corruptSuffix + opts.Now().UTC().Format(corruptTime)
	dst := base
	for i := 2; i < 100; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = base + "." + strconv.Itoa(i)
	}
	if err := os.Rename(path, dst); err != nil {
		return fmt.Errorf("move corrupt database aside: %w", err)
	}
	_ = syncDir(filepath.Dir(path))
	opts.Logger.Error("database file is corrupt: moved it aside and started an empty database; greylisting state was reset",
		"path", path, "moved_to", dst, "err", cause)
	pruneQuarantined(path, dst, opts.Logger)
	return nil
}

// pruneQuarantined deletes the quarantined files of path beyond the
// newest keepCorrupt, by the time in their names. The file just moved
// aside (kept) stays whatever its name says (a clock set back), and so do
// files whose names are not quarantine's (an operator's copy).
func pruneQuarantined(path, kept string, log *slog.Logger) {
	dir, prefix := filepath.Dir(path), filepath.Base(path)+corruptSuffix
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("could not list old copies of a corrupt database to delete", "dir", dir, "err", err)
		return
	}
	type aside struct {
		name string
		at   time.Time
		n    int
	}
	var old []aside
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok || !e.Type().IsRegular() || filepath.Join(dir, name) == kept {
			continue
		}
		stamp, suffix, more := strings.Cut(rest, ".")
		at, err := time.Parse(corruptTime, stamp)
		n := 1
		if more {
			n, err = strconv.Atoi(suffix)
			if err == nil && (n < 2 || n > 99 || suffix != strconv.Itoa(n)) {
				err = errors.New("not a counter")
			}
		}
		if err != nil {
			continue
		}
		old = append(old, aside{name, at, n})
	}
	// Newest first.
	slices.SortFunc(old, func(a, b aside) int {
		return cmp.Or(b.at.Compare(a.at), cmp.Compare(b.n, a.n))
	})
	for _, a := range old[min(len(old), keepCorrupt-1):] {
		name := filepath.Join(dir, a.name)
		if err := os.Remove(name); err != nil {
			log.Warn("could not delete an old copy of a corrupt database", "path", name, "err", err)
			continue
		}
		log.Warn(fmt.Sprintf("deleted an old copy of a corrupt database: the newest %d are kept", keepCorrupt), "path", name)
	}
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
