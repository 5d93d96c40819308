package listen

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"greyd/internal/config"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// serveHello accepts on l and writes "hello" to every connection.
func serveHello(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "hello")
		c.Close()
	}
}

// dialFrom connects from the loopback address src and returns what the
// server sent before closing.
func dialFrom(t *testing.T, src, addr string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read from %s (dialled from %s): %v", addr, src, err)
	}
	return string(b)
}

// TestOpenAllow binds a loopback socket whose allow list admits 127.0.0.1
// only and connects from 127.0.0.1 and from 127.0.0.2 (another address of
// the loopback interface, standing in for another host).
func TestOpenAllow(t *testing.T) {
	logs := &logBuf{}
	ls, err := Open([]config.Listen{{Inet: "127.0.0.1:0", Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}},
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l := ls[0]
	defer l.Close()
	go serveHello(l)
	addr := l.Addr().String()
	if got := dialFrom(t, "127.0.0.1", addr); got != "hello" {
		t.Errorf("allowed client got %q, want hello", got)
	}
	for i := 0; i < 3; i++ {
		if got := dialFrom(t, "127.0.0.2", addr); got != "" {
			t.Errorf("refused client got %q, want the connection closed", got)
		}
	}
	if got := dialFrom(t, "127.0.0.1", addr); got != "hello" {
		t.Errorf("allowed client after refusals got %q, want hello", got)
	}
	want := "refused connection from 127.0.0.2:"
	if n := strings.Count(logs.String(), want); n != 1 {
		t.Errorf("log has %d lines %q, want 1 (rate-limited):\n%s", n, want, logs)
	}
}

func TestAllowed(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.9"), Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.9"), Port: 1}, true}, // dual-stack socket
		{&net.TCPAddr{IP: net.ParseIP("192.0.3.9"), Port: 1}, false},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("::2"), Port: 1}, false},
		{&net.TCPAddr{}, false},
		{&net.UnixAddr{Name: "/x", Net: "unix"}, false},
	}
	for _, tc := range tests {
		if got := allowed(tc.addr, allow); got != tc.want {
			t.Errorf("allowed(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// TestGuard restricts sockets as systemd would pass them: matched to a
// listen block by address, loopback-only otherwise.
func TestGuard(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	unix, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	logs := &logBuf{}
	blocks := []config.Listen{{Inet: tcp.Addr().String(), Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}}
	ls := Guard([]net.Listener{tcp, other, unix}, blocks, slog.New(slog.NewTextHandler(logs, nil)))
	if ls[2] != unix {
		t.Error("unix socket was wrapped")
	}
	for _, l := range ls[:2] {
		go serveHello(l)
	}
	// The matched block allows 127.0.0.2 only; the other socket loopback.
	if got := dialFrom(t, "127.0.0.1", tcp.Addr().String()); got != "" {
		t.Errorf("socket with allow 127.0.0.2: 127.0.0.1 got %q, want refused", got)
	}
	if got := dialFrom(t, "127.0.0.2", tcp.Addr().String()); got != "hello" {
		t.Errorf("socket with allow 127.0.0.2: 127.0.0.2 got %q, want hello", got)
	}
	if got := dialFrom(t, "127.0.0.3", other.Addr().String()); got != "hello" {
		t.Errorf("unmatched loopback socket: 127.0.0.3 got %q, want hello", got)
	}
	if strings.Contains(logs.String(), "beyond this host") {
		t.Errorf("warning for a loopback socket:\n%s", logs)
	}
}
