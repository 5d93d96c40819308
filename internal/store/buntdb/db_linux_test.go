package buntdb

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openAsNobody opens path with the file-system uid of nobody, so that a
// test running as root still meets directory permissions. setfsuid is per
// thread: the goroutine keeps its thread locked, so the thread dies with
// it instead of returning to the pool unprivileged.
func openAsNobody(t *testing.T, path string) (*DB, error) {
	type result struct {
		d   *DB
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread()
		// setfsuid returns the previous fsuid; an invalid uid (-1) only
		// queries it.
		syscall.RawSyscall(syscall.SYS_SETFSUID, 65534, 0, 0)
		if got, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0); got != 65534 {
			ch <- result{nil, nil}
			return
		}
		d, err := Open(path, Options{Logger: discard})
		ch <- result{d, err}
	}()
	r := <-ch
	if r.d == nil && r.err == nil {
		t.Skip("cannot change the file-system uid")
	}
	return r.d, r.err
}

// TestWriteFailureKeepsIndex: when buntdb cannot write a put (here
// RLIMIT_FSIZE, as a full disk would), it rolls the put back, and the
// index must keep showing the old value.
func TestWriteFailureKeepsIndex(t *testing.T) {
	d := openT(t, dbPath(t), Options{Sync: SyncNever})
	ctx := context.Background()
	if err := d.PutTriplet(ctx, "k", Triplet{First: 1, Last: 2}, time.Hour); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		t.Fatal(err)
	}
	restore := limitFileSize(t, fi.Size())
	err = d.PutTriplet(ctx, "k", Triplet{First: 7, Last: 8}, time.Hour)
	err2 := d.PutTriplet(ctx, "new", Triplet{First: 9, Last: 9}, time.Hour)
	restore()
	if err == nil || err2 == nil {
		t.Fatalf("puts past RLIMIT_FSIZE: %v, %v; want errors", err, err2)
	}
	checkTriplet(t, d, "k", Triplet{First: 1, Last: 2}, true)
	checkTriplet(t, d, "new", Triplet{}, false)
	checkIndex(t, d)
}

// TestMergeRetriedAfterWriteFailure: when the main file cannot take the
// boot file's entries at the end of a background load (here
// RLIMIT_FSIZE, as a full disk would), the boot file keeps them and
// keeps taking the writes; the copy is retried every second and, once
// the disk has room, everything is in the main file.
func TestMergeRetriedAfterWriteFailure(t *testing.T) {
	asyncAlways(t)
	path := dbPath(t)
	fill(t, path, 2000)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	release := holdLoad(t)
	var logs logBuffer
	d := openT(t, path, Options{Logger: logs.logger()})
	ctx := context.Background()
	if _, err := d.Step(ctx, newTriplet("before-full")); err != nil {
		t.Fatal(err)
	}

	restore := limitFileSize(t, fi.Size()) // the main file cannot grow
	defer restore()
	release()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "moving the writes of the start-up into the database failed"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no error logged for the failed copy:\n%s", logs.String())
		}
	}
	if !d.loading() {
		t.Fatal("the load finished although the copy failed")
	}
	// Still answering, still writing to the boot file (small, under the limit).
	if _, err := d.Step(ctx, newTriplet("while-full")); err != nil {
		t.Fatalf("step while the main file cannot grow: %v", err)
	}
	restore()
	waitClosed(t, d.loadDone, "background load after the disk has room")
	if _, err := os.Stat(path + bootSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("boot file after the retried copy: %v", err)
	}
	want1, _, _ := d.Triplet(ctx, "before-full")
	want2, _, _ := d.Triplet(ctx, "while-full")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	asyncLoadMin = 1 << 62
	d = openT(t, path, Options{})
	checkTriplet(t, d, "before-full", want1, true)
	checkTriplet(t, d, "while-full", want2, true)
	checkTriplet(t, d, "k1999", Triplet{First: 1999, Last: 2000}, true)
}

// limitFileSize makes writes past size fail (RLIMIT_FSIZE, as a full disk
// would) until restore is called; calling it again does nothing.
func limitFileSize(t *testing.T, size int64) (restore func()) {
	t.Helper()
	// Writing past the limit raises SIGXFSZ, which kills by default.
	signal.Ignore(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: uint64(size), Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
		signal.Reset(syscall.SIGXFSZ)
	}
}
