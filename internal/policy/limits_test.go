package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReaderRequestSize(t *testing.T) {
	line := "a=" + strings.Repeat("b", 60) + "\n" // 63 bytes
	tests := []struct {
		lines int
		want  error
	}{
		{4, nil}, // 252 bytes
		{5, ErrRequestTooLarge},
	}
	for _, tc := range tests {
		r := NewReader(strings.NewReader(strings.Repeat(line, tc.lines)+"\n"), 128, 100)
		r.LimitSize(256)
		var req Request
		if err := r.Read(&req); !errors.Is(err, tc.want) {
			t.Errorf("%d lines of 63 bytes, limit 256: Read = %v, want %v", tc.lines, err, tc.want)
		}
	}
}

func TestRequestTooLarge(t *testing.T) {
	_, addr, logs := startServer(t, "unix", Limits{MaxRequestSize: 1024})
	c, r := dial(t, "unix", addr)
	io.WriteString(c, "request=smtpd_access_policy\n"+strings.Repeat("x=yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n", 40)+"\n")
	expectClosed(t, r)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "request larger than 1024 bytes") }, "log line")
}

// TestEvictSlowAtLimit: with no idle connection, room is made by closing
// the connection that has been sending one request for the longest.
func TestEvictSlowAtLimit(t *testing.T) {
	s, addr, logs := startServer(t, "unix", Limits{MaxConnections: 2})
	c1, r1 := dial(t, "unix", addr)
	io.WriteString(c1, "request=smtpd_access_policy\n") // and then nothing
	waitFor(t, func() bool { return slowConns(s) == 1 }, "first connection reading")
	time.Sleep(10 * time.Millisecond) // c1 is the older one
	c2, r2 := dial(t, "unix", addr)
	io.WriteString(c2, "request=smtpd_access_policy\n")
	waitFor(t, func() bool { return s.Stats().Connections == 2 }, "second connection")
	waitFor(t, func() bool { return slowConns(s) == 2 }, "both connections reading")

	c3, r3 := dial(t, "unix", addr)
	io.WriteString(c3, rcpt)
	if got := readReply(t, r3); !strings.HasPrefix(got, "action=DUNNO") {
		t.Fatalf("client at the limit with two slow ones: got %q", got)
	}
	expectClosed(t, r1)
	io.WriteString(c2, "sender=a@b\n\n") // the younger slow one was kept
	if got := readReply(t, r2); !strings.HasPrefix(got, "action=DUNNO smtpd_access_policy||a@b|") {
		t.Errorf("younger slow connection: got %q", got)
	}
	if s.Stats().Evicted != 1 {
		t.Errorf("evicted = %d, want 1", s.Stats().Evicted)
	}
	waitFor(t, func() bool {
		return strings.Contains(logs.String(), "closed the connection from") && strings.Contains(logs.String(), "sending one request for")
	}, "eviction log")
}

func slowConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.readingSince.Load() != 0 {
			n++
		}
	}
	return n
}

// TestBusyNeverEvicted: a connection whose request is being answered is
// not closed to make room; the newcomer is refused instead.
func TestBusyNeverEvicted(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := HandlerFunc(func(_ context.Context, r *Request) string {
		close(started)
		<-release
		return "DUNNO"
	})
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	s := NewServer(h, Limits{MaxConnections: 1}, slog.New(slog.NewTextHandler(logs, nil)))
	go s.Serve(l)
	defer s.Shutdown(context.Background())
	busy, rb := dial(t, "unix", l.Addr().String())
	io.WriteString(busy, rcpt)
	<-started
	_, r2 := dial(t, "unix", l.Addr().String())
	expectClosed(t, r2)
	close(release)
	if got := readReply(t, rb); got != "action=DUNNO" {
		t.Errorf("busy connection: got %q", got)
	}
	if st := s.Stats(); st.Rejected != 1 || st.Evicted != 0 {
		t.Errorf("rejected %d, evicted %d; want 1, 0", st.Rejected, st.Evicted)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "every connection is being answered: refusing") }, "refusal log")
}

// TestProtocolErrorLogLimited: a flood of broken clients writes one line
// per interval, not one per connection.
func TestProtocolErrorLogLimited(t *testing.T) {
	s, addr, logs := startServer(t, "unix", Limits{MaxLineLength: 128})
	for i := 0; i < 20; i++ {
		c, r := dial(t, "unix", addr)
		io.WriteString(c, strings.Repeat("x", 300)+"\n\n")
		expectClosed(t, r)
	}
	waitFor(t, func() bool { return s.Stats().Errors == 20 }, "20 protocol errors")
	if n := strings.Count(logs.String(), "line longer than 128 bytes"); n != 1 {
		t.Errorf("%d log lines for 20 broken clients within %v, want 1:\n%s", n, logEvery, logs)
	}
}
