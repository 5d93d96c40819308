package policy

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first fails Accept calls with err; later
// calls block until Close.
type failingListener struct {
	err     error
	fails   int64
	accepts atomic.Int64
	closed  chan struct{}
	once    atomic.Bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.accepts.Add(1) <= l.fails {
		return nil, l.err
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *failingListener) Close() error {
	if l.once.CompareAndSwap(false, true) {
		close(l.closed)
	}
	return nil
}

func (l *failingListener) Addr() net.Addr {
	return &net.UnixAddr{Name: "/run/greyd/policy.sock", Net: "unix"}
}

// TestAcceptErrors: an Accept error that can pass (out of descriptors)
// is retried; one that means the listener is gone for good ends Serve at
// once, with the listener closed and no retry warnings.
func TestAcceptErrors(t *testing.T) {
	tests := []struct {
		errno     syscall.Errno
		permanent bool
	}{
		{syscall.EMFILE, false},
		{syscall.ENFILE, false},
		{syscall.ENOBUFS, false},
		{syscall.ECONNABORTED, false},
		{syscall.EBADF, true},
		{syscall.EINVAL, true},
		{syscall.ENOTSOCK, true},
		{syscall.EOPNOTSUPP, true},
	}
	for _, tc := range tests {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			// A broken listener fails every time; a transient error passes.
			fails := int64(1)
			if tc.permanent {
				fails = 1 << 62
			}
			l := &failingListener{err: os.NewSyscallError("accept", tc.errno), fails: fails, closed: make(chan struct{})}
			defer l.Close()
			logs := &logBuf{}
			s := NewServer(echo, Limits{}, slog.New(slog.NewTextHandler(logs, nil)))
			done := make(chan error, 1)
			go func() { done <- s.Serve(l) }()
			if !tc.permanent {
				waitFor(t, func() bool { return l.accepts.Load() == 2 }, "Accept to be retried")
				select {
				case err := <-done:
					t.Fatalf("Serve returned %v after a transient error", err)
				default:
				}
				return
			}
			select {
			case err := <-done:
				if !errors.Is(err, tc.errno) {
					t.Errorf("Serve returned %v, want an error wrapping %v", err, tc.errno)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Serve still running 5s after a permanent error; Accept called %d times; log:\n%s", l.accepts.Load(), logs)
			}
			if n := l.accepts.Load(); n != 1 {
				t.Errorf("Accept called %d times, want 1", n)
			}
			if !l.once.Load() {
				t.Error("listener not closed")
			}
			if logs.String() != "" {
				t.Errorf("Serve logged (the caller logs its error once):\n%s", logs)
			}
		})
	}
}
