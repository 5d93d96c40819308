package store

import (
	"runtime"
	"syscall"
	"testing"
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
