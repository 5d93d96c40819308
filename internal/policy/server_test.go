package policy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// echo answers with the attributes greyd cares about, so tests can see
// exactly what the server parsed.
var echo = HandlerFunc(func(_ context.Context, r *Request) string {
	if r.Request == "panic" {
		panic("handler bug")
	}
	var b strings.Builder
	b.WriteString("DUNNO ")
	b.WriteString(r.Request + "|" + r.ClientAddress + "|" + r.Sender + "|" + r.Recipient)
	if r.Has(AttrETRNDomain) {
		b.WriteString("|etrn")
	}
	return b.String()
})

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startServer(t *testing.T, network string, lim Limits) (*Server, string, *logBuf) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "policy.sock")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	s := NewServer(echo, lim, slog.New(slog.NewTextHandler(logs, nil)))
	go s.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, l.Addr().String(), logs
}

func dial(t *testing.T, network, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readReply reads one reply: its action line and the empty line after it.
func readReply(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading reply: got %q, %v", line, err)
	}
	empty, err := r.ReadString('\n')
	if err != nil || empty != "\n" {
		t.Fatalf("reply %q not followed by an empty line: %q, %v", line, empty, err)
	}
	return strings.TrimSuffix(line, "\n")
}

const rcpt = "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nclient_name=mx.example.net\nsender=a@example.net\nrecipient=b@example.org\n\n"

func TestProtocol(t *testing.T) {
	tests := []struct {
		name, send string
		want       []string
	}{
		{"one request", rcpt, []string{"action=DUNNO smtpd_access_policy|192.0.2.1|a@example.net|b@example.org"}},
		{"CRLF", strings.ReplaceAll(rcpt, "\n", "\r\n"), []string{"action=DUNNO smtpd_access_policy|192.0.2.1|a@example.net|b@example.org"}},
		{"pipelined", rcpt + strings.Replace(rcpt, "192.0.2.1", "192.0.2.2", 1),
			[]string{"action=DUNNO smtpd_access_policy|192.0.2.1|a@example.net|b@example.org", "action=DUNNO smtpd_access_policy|192.0.2.2|a@example.net|b@example.org"}},
		{"duplicates: last wins", "request=smtpd_access_policy\nsender=first@x\nsender=last@x\n\n", []string{"action=DUNNO smtpd_access_policy||last@x|"}},
		{"unknown attributes and garbage ignored", "request=smtpd_access_policy\nfoo=bar\nnot a pair\n=novalue\nccert_subject=a=b\nrecipient=r@x\n\n", []string{"action=DUNNO smtpd_access_policy|||r@x"}},
		{"empty values kept, presence seen", "request=smtpd_access_policy\nsender=\netrn_domain=\n\n", []string{"action=DUNNO smtpd_access_policy||||etrn"}},
		{"value with '='", "request=smtpd_access_policy\nsender=a=b@x\n\n", []string{"action=DUNNO smtpd_access_policy||a=b@x|"}},
		{"empty request", "\n", []string{"action=DUNNO |||"}},
		{"handler panic answers DUNNO", "request=panic\n\n" + rcpt, []string{"action=DUNNO", "action=DUNNO smtpd_access_policy|192.0.2.1|a@example.net|b@example.org"}},
	}
	for _, network := range []string{"unix", "tcp"} {
		_, addr, _ := startServer(t, network, Limits{})
		for _, tc := range tests {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				c, r := dial(t, network, addr)
				if _, err := io.WriteString(c, tc.send); err != nil {
					t.Fatal(err)
				}
				for i, want := range tc.want {
					if got := readReply(t, r); got != want {
						t.Errorf("sent %q: reply %d = %q, want %q", tc.send, i, got, want)
					}
				}
			})
		}
	}
}

func TestIPv6Listener(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback: %v", err)
	}
	s := NewServer(echo, Limits{}, nil)
	go s.Serve(l)
	defer s.Shutdown(context.Background())
	c, r := dial(t, "tcp", l.Addr().String())
	io.WriteString(c, rcpt)
	if got := readReply(t, r); !strings.HasPrefix(got, "action=DUNNO smtpd_access_policy|192.0.2.1") {
		t.Errorf("over ::1: got %q", got)
	}
}

func TestPersistentConnection(t *testing.T) {
	_, addr, _ := startServer(t, "unix", Limits{})
	c, r := dial(t, "unix", addr)
	for i := 0; i < 100; i++ {
		io.WriteString(c, rcpt)
		if got := readReply(t, r); !strings.HasPrefix(got, "action=DUNNO smtpd_access_policy") {
			t.Fatalf("request %d on one connection: got %q", i, got)
		}
	}
}

func expectClosed(t *testing.T, r *bufio.Reader) {
	t.Helper()
	if b, err := r.ReadByte(); err == nil {
		t.Fatalf("connection still open: read %q", b)
	}
}

func TestLimitsDisconnect(t *testing.T) {
	tests := []struct {
		name, send, log string
	}{
		{"line too long", "request=smtpd_access_policy\nsender=" + strings.Repeat("x", 300) + "\n\n", "line longer than 128 bytes"},
		{"too many attributes", strings.Repeat("a=b\n", 6) + "\n", "more than 5 attributes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr, logs := startServer(t, "unix", Limits{MaxLineLength: 128, MaxAttributes: 5})
			c, r := dial(t, "unix", addr)
			io.WriteString(c, tc.send)
			expectClosed(t, r)
			waitFor(t, func() bool { return strings.Contains(logs.String(), tc.log) }, "log line "+tc.log)
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	_, addr, logs := startServer(t, "unix", Limits{RequestTimeout: 200 * time.Millisecond})
	c, r := dial(t, "unix", addr)
	io.WriteString(c, "request=smtpd_access_policy\n") // and never the rest
	expectClosed(t, r)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "request not completed within 200ms") }, "timeout log")
}

func TestIdleTimeout(t *testing.T) {
	_, addr, logs := startServer(t, "unix", Limits{IdleTimeout: 200 * time.Millisecond})
	c, r := dial(t, "unix", addr)
	io.WriteString(c, rcpt)
	readReply(t, r)
	expectClosed(t, r)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "idle for 200ms") }, "idle log")
}

func TestEvictIdleAtLimit(t *testing.T) {
	s, addr, _ := startServer(t, "unix", Limits{MaxConnections: 2})
	c1, r1 := dial(t, "unix", addr)
	io.WriteString(c1, rcpt)
	readReply(t, r1)
	c2, r2 := dial(t, "unix", addr)
	io.WriteString(c2, rcpt)
	readReply(t, r2)
	// A third client makes room by closing the longest-idle connection.
	c3, r3 := dial(t, "unix", addr)
	io.WriteString(c3, rcpt)
	if got := readReply(t, r3); !strings.HasPrefix(got, "action=DUNNO") {
		t.Fatalf("third connection at the limit: got %q", got)
	}
	expectClosed(t, r1)
	if s.Stats().Evicted != 1 {
		t.Errorf("evicted = %d, want 1", s.Stats().Evicted)
	}
	io.WriteString(c2, rcpt)
	readReply(t, r2)
}

func TestShutdownAnswersInFlight(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := HandlerFunc(func(_ context.Context, r *Request) string {
		if r.Request == "slow" {
			close(started)
			<-release
		}
		return "DUNNO"
	})
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(h, Limits{}, nil)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	busy, rb := dial(t, "unix", l.Addr().String())
	idle, ri := dial(t, "unix", l.Addr().String())
	io.WriteString(idle, rcpt)
	readReply(t, ri)
	io.WriteString(busy, "request=slow\n\n")
	<-started
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	expectClosed(t, ri) // idle connections are closed at once
	close(release)
	if got := readReply(t, rb); got != "action=DUNNO" {
		t.Errorf("request in flight during shutdown: got %q, want action=DUNNO", got)
	}
	expectClosed(t, rb)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Errorf("Serve after Shutdown: %v, want ErrServerClosed", err)
	}
	if _, err := net.Dial("unix", l.Addr().String()); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
