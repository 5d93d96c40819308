package buntdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bunt "github.com/tidwall/buntdb"
)

// logBuffer is a goroutine-safe log sink: the shrink goroutine may log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func openT(t testing.TB, path string, opts Options) *DB {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discard
	}
	d, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// waitFor polls cond until it holds, failing t after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "greyd.db") }

// backends runs f against a file database and an in-memory one.
func backends(t *testing.T, f func(t *testing.T, d *DB)) {
	t.Run("file", func(t *testing.T) { f(t, openT(t, dbPath(t), Options{})) })
	t.Run("memory", func(t *testing.T) { f(t, openT(t, Memory, Options{})) })
}

func checkTriplet(t *testing.T, d *DB, key string, want Triplet, wantFound bool) {
	t.Helper()
	got, found, err := d.Triplet(context.Background(), key)
	if err != nil || found != wantFound || got != want {
		t.Errorf("Triplet(%.40q) = %+v, %v, %v; want %+v, %v, nil", key, got, found, err, want, wantFound)
	}
}

func checkClient(t *testing.T, d *DB, key string, want Client, wantFound bool) {
	t.Helper()
	got, found, err := d.Client(context.Background(), key)
	if err != nil || found != wantFound || got != want {
		t.Errorf("Client(%.40q) = %+v, %v, %v; want %+v, %v, nil", key, got, found, err, want, wantFound)
	}
}

// rawTTL is buntdb's TTL of a namespaced key: -1 for "never expires".
func rawTTL(t *testing.T, d *DB, key string) time.Duration {
	t.Helper()
	var ttl time.Duration
	err := d.db.View(func(tx *bunt.Tx) error {
		var err error
		ttl, err = tx.TTL(key)
		return err
	})
	if err != nil {
		t.Fatalf("TTL(%.40q): %v", key, err)
	}
	return ttl
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		key  string
		a, b int64
		ttl  time.Duration
	}{
		{"198.51.100/sender@example.org/rcpt@example.net", 1763812500, 1763812800, 35 * 24 * time.Hour},
		{"", 0, 0, time.Hour},
		{"2001:db8:1::/ä@example.org/x:y", -1, math.MaxInt64, 0},
		{"neg-ttl", math.MinInt64, 1, -time.Second},
		{strings.Repeat("k", 1000), 1, 2, time.Minute}, // grows the pooled buffer
		{strings.Repeat("K", 5000), 3, 4, time.Minute}, // too big to pool
	}
	backends(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		for _, tc := range tests {
			if err := d.PutTriplet(ctx, tc.key, Triplet{First: tc.a, Last: tc.b}, tc.ttl); err != nil {
				t.Fatalf("PutTriplet(%.40q): %v", tc.key, err)
			}
			if err := d.PutClient(ctx, tc.key, Client{Count: tc.b, Last: tc.a}, tc.ttl); err != nil {
				t.Fatalf("PutClient(%.40q): %v", tc.key, err)
			}
		}
		for _, tc := range tests {
			checkTriplet(t, d, tc.key, Triplet{First: tc.a, Last: tc.b}, true)
			checkClient(t, d, tc.key, Client{Count: tc.b, Last: tc.a}, true)
			for _, k := range []string{"t:" + tc.key, "c:" + tc.key} {
				got := rawTTL(t, d, k)
				if tc.ttl <= 0 && got != -1 {
					t.Errorf("TTL(%.40q) = %v; want none (ttl %v)", k, got, tc.ttl)
				}
				if tc.ttl > 0 && (got <= 0 || got > tc.ttl) {
					t.Errorf("TTL(%.40q) = %v; want (0, %v]", k, got, tc.ttl)
				}
			}
		}
		// Overwrite: a later put wins, and a put without ttl clears it.
		k := tests[0].key
		if err := d.PutTriplet(ctx, k, Triplet{First: 7, Last: 8}, 0); err != nil {
			t.Fatal(err)
		}
		checkTriplet(t, d, k, Triplet{First: 7, Last: 8}, true)
		if got := rawTTL(t, d, "t:"+k); got != -1 {
			t.Errorf("TTL after put without ttl = %v; want none", got)
		}
		checkTriplet(t, d, "missing", Triplet{}, false)
		checkClient(t, d, "missing", Client{}, false)
	})
}

func TestNamespaces(t *testing.T) {
	backends(t, func(t *testing.T, d *DB) {
		ctx := context.Background()
		puts := []struct {
			client bool
			key    string
			a, b   int64
		}{
			{false, "k", 1, 2},
			{true, "k", 3, 4},
			{false, "c:x", 5, 6}, // stored as "t:c:x", not client "x"
			{true, "only-client", 7, 8},
			{false, "t:", 9, 10},
		}
		for _, p := range puts {
			var err error
			if p.client {
				err = d.PutClient(ctx, p.key, Client{Count: p.a, Last: p.b}, time.Hour)
			} else {
				err = d.PutTriplet(ctx, p.key, Triplet{First: p.a, Last: p.b}, time.Hour)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		checkTriplet(t, d, "k", Triplet{First: 1, Last: 2}, true)
		checkClient(t, d, "k", Client{Count: 3, Last: 4}, true)
		checkTriplet(t, d, "c:x", Triplet{First: 5, Last: 6}, true)
		checkClient(t, d, "x", Client{}, false)
		checkTriplet(t, d, "only-client", Triplet{}, false)
		checkClient(t, d, "only-client", Client{Count: 7, Last: 8}, true)
		if nt, nc, err := d.Len(); nt != 3 || nc != 2 || err != nil {
			t.Errorf("Len() = %d, %d, %v; want 3, 2, nil", nt, nc, err)
		}
	})
}

// noSweep switches buntdb's expiry sweep off for d (an OnExpired hook that
// keeps the keys), so that expired entries provably stay in the database.
func noSweep(t *testing.T, d *DB) {
	t.Helper()
	var c bunt.Config
	if err := d.db.ReadConfig(&c); err != nil {
		t.Fatal(err)
	}
	c.OnExpired = func([]string) {}
	if err := d.db.SetConfig(c); err != nil {
		t.Fatal(err)
	}
}

// TestExpiry: reads ignore entries past their deadline even before the
// sweep removes them, which is switched off here.
func TestExpiry(t *testing.T) {
	path := dbPath(t)
	d := openT(t, path, Options{})
	noSweep(t, d)
	ctx := context.Background()
	const ttl = 100 * time.Millisecond
	start := time.Now()
	if err := d.PutTriplet(ctx, "short", Triplet{First: 1, Last: 2}, ttl); err != nil {
		t.Fatal(err)
	}
	if err := d.PutClient(ctx, "short", Client{Count: 1, Last: 2}, ttl); err != nil {
		t.Fatal(err)
	}
	if err := d.PutTriplet(ctx, "long", Triplet{First: 3, Last: 4}, time.Hour); err != nil {
		t.Fatal(err)
	}
	got, found, err := d.Triplet(ctx, "short")
	if time.Since(start) < ttl && (!found || got != (Triplet{First: 1, Last: 2}) || err != nil) {
		t.Errorf("Triplet(short) before its TTL = %+v, %v, %v; want {1 2}, true, nil", got, found, err)
	}
	waitFor(t, "short entries read as expired", func() bool {
		_, tf, _ := d.Triplet(ctx, "short")
		_, cf, _ := d.Client(ctx, "short")
		return !tf && !cf
	})
	if time.Since(start) < ttl {
		t.Errorf("entries read as expired %v after they were put with a TTL of %v", time.Since(start), ttl)
	}
	checkTriplet(t, d, "short", Triplet{}, false)
	checkClient(t, d, "short", Client{}, false)
	checkTriplet(t, d, "long", Triplet{First: 3, Last: 4}, true)
	err = d.db.View(func(tx *bunt.Tx) error {
		_, err := tx.Get("t:short", true)
		return err
	})
	if err != nil {
		t.Errorf("expired item was swept already (%v); the test proves nothing", err)
	}

	// Expired records in the file are not loaded again.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openT(t, path, Options{})
	checkTriplet(t, d, "short", Triplet{}, false)
	checkTriplet(t, d, "long", Triplet{First: 3, Last: 4}, true)
	if nt, nc, err := d.Len(); nt != 1 || nc != 0 || err != nil {
		t.Errorf("Len() after reopen = %d, %d, %v; want 1, 0, nil", nt, nc, err)
	}
}

func TestReopen(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncNever, SyncEverySecond, SyncAlways} {
		t.Run(policy.String(), func(t *testing.T) {
			path := dbPath(t)
			ctx := context.Background()
			d := openT(t, path, Options{Sync: policy})
			for i := range 10 {
				key := fmt.Sprintf("198.51.100/s%d@example.org/r@example.net", i)
				if err := d.PutTriplet(ctx, key, Triplet{First: int64(i), Last: int64(i + 1)}, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.PutClient(ctx, "192.0.2.1", Client{Count: 5, Last: 1763812500}, 0); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			d = openT(t, path, Options{Sync: policy})
			for i := range 10 {
				key := fmt.Sprintf("198.51.100/s%d@example.org/r@example.net", i)
				checkTriplet(t, d, key, Triplet{First: int64(i), Last: int64(i + 1)}, true)
			}
			checkClient(t, d, "192.0.2.1", Client{Count: 5, Last: 1763812500}, true)
		})
	}
}

func TestParseSync(t *testing.T) {
	tests := []struct {
		in   string
		want SyncPolicy
		err  bool
	}{
		{"never", SyncNever, false},
		{"everysecond", SyncEverySecond, false},
		{"always", SyncAlways, false},
		{"Always", SyncAlways, false},
		{"", SyncEverySecond, false},
		{"every-second", 0, true},
		{"1s", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseSync(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSync(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil && tc.in != "" {
			if back, _ := ParseSync(got.String()); back != got {
				t.Errorf("ParseSync(%v.String()) = %v", got, back)
			}
		}
	}
	if _, err := Open(Memory, Options{Sync: SyncPolicy(42)}); err == nil {
		t.Error("Open with SyncPolicy(42) succeeded")
	}
}

func TestLocked(t *testing.T) {
	path := dbPath(t)
	d := openT(t, path, Options{})
	d2, err := Open(path, Options{Logger: discard})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("%q", path)) {
		if d2 != nil {
			d2.Close()
		}
		t.Fatalf("second Open = %v; want ErrLocked naming %q", err, path)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	openT(t, path, Options{}) // the lock is released
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Readable and searchable by everyone (t.TempDir is 0700), writable
	// by no one.
	ro, err := os.MkdirTemp("", "greyd-store-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(ro) })
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		root       bool // fails for root too
	}{
		{"missing directory", filepath.Join(dir, "missing", "greyd.db"), true},
		{"parent is a file", filepath.Join(file, "greyd.db"), true},
		{"path is a directory", dir, true},
		{"unwritable directory", filepath.Join(ro, "greyd.db"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := func() (*DB, error) { return Open(tc.path, Options{Logger: discard}) }
			if !tc.root && os.Geteuid() == 0 {
				open = func() (*DB, error) { return openAsNobody(t, tc.path) }
			}
			d, err := open()
			if err == nil {
				d.Close()
				t.Fatalf("Open(%q) succeeded", tc.path)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.path)) {
				t.Errorf("Open(%q) = %v; want the path in the error", tc.path, err)
			}
			t.Log(err)
		})
	}
}

func TestContextDone(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()
	backends(t, func(t *testing.T, d *DB) {
		for _, tc := range []struct {
			ctx  context.Context
			want error
		}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
			ops := map[string]func() error{
				"Triplet":    func() error { _, _, err := d.Triplet(tc.ctx, "k"); return err },
				"PutTriplet": func() error { return d.PutTriplet(tc.ctx, "k", Triplet{First: 1, Last: 2}, time.Hour) },
				"Client":     func() error { _, _, err := d.Client(tc.ctx, "k"); return err },
				"PutClient":  func() error { return d.PutClient(tc.ctx, "k", Client{Count: 1, Last: 2}, time.Hour) },
			}
			for name, op := range ops {
				if err := op(); !errors.Is(err, tc.want) {
					t.Errorf("%s with done context = %v; want %v", name, err, tc.want)
				}
			}
		}
		checkTriplet(t, d, "k", Triplet{}, false)
		checkClient(t, d, "k", Client{}, false)
	})
}

func TestClosed(t *testing.T) {
	for _, path := range []string{"file", Memory} {
		t.Run(path, func(t *testing.T) {
			if path == "file" {
				path = dbPath(t)
			}
			d := openT(t, path, Options{})
			if err := d.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			ctx := context.Background()
			ops := map[string]func() error{
				"Triplet":    func() error { _, _, err := d.Triplet(ctx, "k"); return err },
				"PutTriplet": func() error { return d.PutTriplet(ctx, "k", Triplet{First: 1, Last: 2}, time.Hour) },
				"Client":     func() error { _, _, err := d.Client(ctx, "k"); return err },
				"PutClient":  func() error { return d.PutClient(ctx, "k", Client{Count: 1, Last: 2}, time.Hour) },
				"Len":        func() error { _, _, err := d.Len(); return err },
				"Shrink":     d.Shrink,
			}
			for name, op := range ops {
				if err := op(); !errors.Is(err, ErrClosed) {
					t.Errorf("%s after Close = %v; want ErrClosed", name, err)
				}
			}
			if err := d.Close(); err != nil {
				t.Errorf("second Close = %v; want nil", err)
			}
		})
	}
}

// withUmask runs the test under umask, proving modes do not depend on it.
func withUmask(t *testing.T, umask int) {
	old := syscall.Umask(umask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func checkMode(t *testing.T, name string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %#o; want %#o", filepath.Base(name), got, want)
	}
}

func TestFileMode(t *testing.T) {
	withUmask(t, 0)
	t.Run("new", func(t *testing.T) {
		path := dbPath(t)
		d := openT(t, path, Options{})
		if err := d.PutTriplet(context.Background(), "k", Triplet{First: 1, Last: 2}, time.Hour); err != nil {
			t.Fatal(err)
		}
		checkMode(t, path, 0o600)
		checkMode(t, path+".lock", 0o600)
		if err := d.Shrink(); err != nil {
			t.Fatalf("Shrink: %v", err)
		}
		checkMode(t, path, 0o600)
		if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s.tmp left behind: %v", path, err)
		}
		checkTriplet(t, d, "k", Triplet{First: 1, Last: 2}, true)
	})
	t.Run("existing world-readable", func(t *testing.T) {
		path := dbPath(t)
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		d := openT(t, path, Options{Logger: logs.logger()})
		checkMode(t, path, 0o640)
		if !strings.Contains(logs.String(), "level=WARN") {
			t.Errorf("no warning logged; got:\n%s", logs.String())
		}
		if err := d.Shrink(); err != nil {
			t.Fatalf("Shrink: %v", err)
		}
		checkMode(t, path, 0o640) // the group bit the operator chose survives
	})
}

// TestAutoShrink writes a bloated file with the default thresholds, then
// reopens it with low ones: the first check rewrites it. (Shrinking while
// writes go on would let the doubling rule legitimately skip a rewrite.)
func TestAutoShrink(t *testing.T) {
	withUmask(t, 0)
	path := dbPath(t)
	d := openT(t, path, Options{})
	ctx := context.Background()
	for i := range 500 { // ~40 kB of records for one live key
		if err := d.PutTriplet(ctx, "k", Triplet{First: 1, Last: int64(i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openT(t, path, Options{ShrinkMinSize: 4096, ShrinkEvery: 10 * time.Millisecond})
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < 4096 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file still %d bytes after 10 s", fi.Size())
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkMode(t, path, 0o600)
	checkTriplet(t, d, "k", Triplet{First: 1, Last: 499}, true)
	if err := d.PutTriplet(ctx, "k2", Triplet{First: 2, Last: 3}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openT(t, path, Options{})
	checkTriplet(t, d, "k", Triplet{First: 1, Last: 499}, true)
	checkTriplet(t, d, "k2", Triplet{First: 2, Last: 3}, true)
}

func TestMalformedValue(t *testing.T) {
	path := dbPath(t)
	bad := []string{"", "garbage", "1", "1,2,3", "1,x", "99999999999999999999,1"}
	raw, err := bunt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = raw.Update(func(tx *bunt.Tx) error {
		for i, v := range bad {
			if _, _, err := tx.Set(fmt.Sprintf("t:k%d", i), v, nil); err != nil {
				return err
			}
		}
		_, _, err := tx.Set("t:good", "1,2", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	raw.Close()

	var logs logBuffer
	d := openT(t, path, Options{Logger: logs.logger()})
	for i := range bad {
		checkTriplet(t, d, fmt.Sprintf("k%d", i), Triplet{}, false)
	}
	checkTriplet(t, d, "good", Triplet{First: 1, Last: 2}, true)
	if n := strings.Count(logs.String(), "ignoring malformed database values"); n != 1 {
		t.Errorf("logged %d warnings; want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "count=6") {
		t.Errorf("warning lacks the count of 6:\n%s", logs.String())
	}
	// The next put overwrites a malformed entry.
	if err := d.PutTriplet(context.Background(), "k1", Triplet{First: 5, Last: 6}, 0); err != nil {
		t.Fatal(err)
	}
	checkTriplet(t, d, "k1", Triplet{First: 5, Last: 6}, true)
}

// TestConcurrent is for go test -race: 8 goroutines share keys, while Len
// and Shrink run alongside.
func TestConcurrent(t *testing.T) {
	d := openT(t, dbPath(t), Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				key := fmt.Sprintf("198.51.100/s%d@example.org/r@example.net", i%37)
				if _, _, err := d.Triplet(ctx, key); err != nil {
					errs <- err
					return
				}
				if err := d.PutTriplet(ctx, key, Triplet{First: int64(g), Last: int64(i)}, time.Hour); err != nil {
					errs <- err
					return
				}
				if err := d.PutClient(ctx, fmt.Sprint(g), Client{Count: int64(i), Last: 1}, time.Hour); err != nil {
					errs <- err
					return
				}
				if _, _, err := d.Client(ctx, fmt.Sprint((g+1)%8)); err != nil {
					errs <- err
					return
				}
				if i%100 == 0 {
					if _, _, err := d.Len(); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		if err := d.Shrink(); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if nt, nc, err := d.Len(); nt != 37 || nc != 8 || err != nil {
		t.Errorf("Len() = %d, %d, %v; want 37, 8, nil", nt, nc, err)
	}
}

// TestCloseWhileBusy: requests racing with Close get a result or ErrClosed.
func TestCloseWhileBusy(t *testing.T) {
	d := openT(t, dbPath(t), Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	var busy sync.WaitGroup // every writer has written once
	errs := make(chan error, 16)
	for g := range 8 {
		busy.Add(1)
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprint(g, i)
				err := d.PutTriplet(ctx, key, Triplet{First: 1, Last: 2}, time.Hour)
				if err == nil {
					_, _, err = d.Triplet(ctx, key)
				}
				if i == 0 {
					busy.Done()
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	busy.Wait()
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestAutoShrinkLiveFile reopens a file that is all live data with a
// minimum size below it: the first checks leave it alone (a rewrite would
// not make it smaller), and it is rewritten once overwrites have grown it
// past twice the live data.
func TestAutoShrinkLiveFile(t *testing.T) {
	path := dbPath(t)
	d := openT(t, path, Options{})
	ctx := context.Background()
	for i := range 300 {
		if err := d.PutTriplet(ctx, fmt.Sprintf("k%d", i), Triplet{First: 1, Last: 2}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	live := fi.Size()

	d = openT(t, path, Options{ShrinkMinSize: 4096, ShrinkEvery: 10 * time.Millisecond})
	waitFor(t, "twenty shrink checks", func() bool { return d.shrinkChecks.Load() >= 20 })
	if fi, err := os.Stat(path); err != nil || fi.Size() != live {
		t.Fatalf("file of live data rewritten at the first checks: %d bytes, was %d (%v)", fi.Size(), live, err)
	}
	// Three rounds of overwrites: the file is then 4x the live data.
	for i := range 900 {
		if err := d.PutTriplet(ctx, fmt.Sprintf("k%d", i%300), Triplet{First: 1, Last: int64(i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second) // buntdb's Shrink waits 250 ms first
	for {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		// Unshrunk, the file is 4x live. A rewrite that starts at 2x
		// copies what was written after it began: at most 2x more.
		if fi.Size() < live*7/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file still %d bytes (live data %d) after 10 s", fi.Size(), live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkIndex(t, d)
}
