package listen

import (
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"greyd/internal/config"
	"greyd/internal/policy"
)

func oneRequest(l net.Listener) bool {
	o, ok := l.(policy.OneRequestListener)
	return ok && o.OneRequest()
}

// TestOpenExim: the sockets of a block with exim = true, and only those,
// serve one request per connection; an exim TCP socket keeps its allow list.
func TestOpenExim(t *testing.T) {
	dir := t.TempDir()
	blocks := []config.Listen{
		{Unix: filepath.Join(dir, "postfix.sock")},
		{Unix: filepath.Join(dir, "exim.sock"), Inet: "127.0.0.1:0", Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, Exim: true},
		{Inet: "127.0.0.1:0"},
	}
	ls, err := Open(blocks, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		defer l.Close()
	}
	want := []bool{false, true, true, false}
	if len(ls) != len(want) {
		t.Fatalf("Open returned %d listeners, want %d", len(ls), len(want))
	}
	for i, l := range ls {
		if got := oneRequest(l); got != want[i] {
			t.Errorf("listener %d (%v): one request per connection = %v, want %v", i, l.Addr(), got, want[i])
		}
	}
	go serveHello(ls[2])
	if got := dialFrom(t, "127.0.0.1", ls[2].Addr().String()); got != "" {
		t.Errorf("exim socket with allow 127.0.0.2: 127.0.0.1 got %q, want refused", got)
	}
	if got := dialFrom(t, "127.0.0.2", ls[2].Addr().String()); got != "hello" {
		t.Errorf("exim socket with allow 127.0.0.2: 127.0.0.2 got %q, want hello", got)
	}
}

// TestGuardExim: sockets systemd passed take exim from the listen block
// with their address, unix path or inet.
func TestGuardExim(t *testing.T) {
	dir := t.TempDir()
	var ls []net.Listener
	for _, a := range [][2]string{{"unix", dir + "/exim.sock"}, {"unix", dir + "/postfix.sock"}, {"tcp", "127.0.0.1:0"}, {"tcp", "127.0.0.1:0"}} {
		l, err := net.Listen(a[0], a[1])
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, l)
	}
	blocks := []config.Listen{
		{Unix: dir + "/./exim.sock", Exim: true},
		{Unix: dir + "/postfix.sock"},
		{Inet: ls[2].Addr().String(), Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, Exim: true},
	}
	got := Guard(ls, blocks, slog.New(slog.DiscardHandler))
	for i, want := range []bool{true, false, true, false} {
		if oneRequest(got[i]) != want {
			t.Errorf("socket %d (%v): one request per connection = %v, want %v", i, ls[i].Addr(), !want, want)
		}
	}
	if got[1] != ls[1] {
		t.Error("unix socket of a block without exim was wrapped")
	}
	go serveHello(got[2])
	if s := dialFrom(t, "127.0.0.1", ls[2].Addr().String()); s != "" {
		t.Errorf("exim socket with allow 127.0.0.2: 127.0.0.1 got %q, want refused", s)
	}
	if s := dialFrom(t, "127.0.0.2", ls[2].Addr().String()); s != "hello" {
		t.Errorf("exim socket with allow 127.0.0.2: 127.0.0.2 got %q, want hello", s)
	}
}
