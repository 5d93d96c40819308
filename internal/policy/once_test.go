package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// oneRequest marks a listener as one of one request per connection.
type oneRequest struct {
	net.Listener
	on bool
}

func (l oneRequest) OneRequest() bool { return l.on }

func startOnce(t *testing.T, network string, h Handler, lim Limits, on bool) (*Server, string) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "policy.sock")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(h, lim, slog.New(slog.DiscardHandler))
	go s.Serve(oneRequest{l, on})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, l.Addr().String()
}

// TestOneRequestListener: the reply is followed by the server's end of
// the connection (a clean EOF, as Exim's ${readsocket} waits for), with
// nothing read after the first request; OneRequest false keeps the
// connection as usual.
func TestOneRequestListener(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s, addr := startOnce(t, network, echo, Limits{}, true)
			for i := 0; i < 3; i++ {
				c, r := dial(t, network, addr)
				io.WriteString(c, rcpt)
				if got, want := readReply(t, r), "action=DUNNO smtpd_access_policy|192.0.2.1|a@example.net|b@example.org"; got != want {
					t.Fatalf("connection %d: got %q, want %q", i, got, want)
				}
				if b, err := r.ReadByte(); !errors.Is(err, io.EOF) {
					t.Fatalf("connection %d after the reply: read %q, %v; want EOF", i, b, err)
				}
			}
			waitFor(t, func() bool { return s.Stats().Connections == 0 }, "the connections to be forgotten")
			if st := s.Stats(); st.Requests != 3 || st.Accepted != 3 || st.Errors != 0 {
				t.Errorf("stats %+v, want 3 requests on 3 connections, no errors", st)
			}

			// A second request on the same connection is not answered.
			c, r := dial(t, network, addr)
			io.WriteString(c, rcpt+rcpt)
			readReply(t, r)
			expectClosed(t, r)

			_, addr = startOnce(t, network, echo, Limits{}, false)
			c, r = dial(t, network, addr)
			for i := 0; i < 2; i++ {
				io.WriteString(c, rcpt)
				if got := readReply(t, r); got != "action=DUNNO smtpd_access_policy|192.0.2.1|a@example.net|b@example.org" {
					t.Fatalf("OneRequest false, request %d: got %q", i, got)
				}
			}
		})
	}
}

// TestOneRequestLate: a reply sent by the late handler ends the
// connection too.
func TestOneRequestLate(t *testing.T) {
	h := &slowHandler{gate: make(chan struct{}), claim: true}
	defer close(h.gate)
	s, addr := startOnce(t, "unix", h, Limits{HandlerTimeout: 50 * time.Millisecond}, true)
	c, r := dial(t, "unix", addr)
	io.WriteString(c, from("block@x"))
	if got, want := readReply(t, r), "action=DEFER late block@x after 50ms"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if b, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the late reply: read %q, %v; want EOF", b, err)
	}
	waitFor(t, func() bool { return s.Stats().Connections == 0 }, "the connection to be forgotten")
}
