package policy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowHandler answers "DUNNO <sender>" after waiting for the gate of
// requests whose sender is "block@x", or sleeping for the sender
// "sleep<N>us@x". Late answers "DEFER late <sender>".
type slowHandler struct {
	gate     chan struct{}
	claimed  atomic.Int64 // ServePolicy calls whose Claim succeeded
	dropped  atomic.Int64 // ... and those whose Claim failed
	lateCall atomic.Int64
	claim    bool // call Claim at all
}

func (h *slowHandler) ServePolicy(_ context.Context, r *Request) string {
	if r.Sender == "block@x" {
		<-h.gate
	}
	var us int
	if _, err := fmt.Sscanf(r.Sender, "sleep%dus@x", &us); err == nil {
		time.Sleep(time.Duration(us) * time.Microsecond)
	}
	if h.claim {
		if r.Claim() {
			h.claimed.Add(1)
		} else {
			h.dropped.Add(1)
		}
	}
	return "DUNNO " + r.Sender
}

func (h *slowHandler) Late(r *Request, after time.Duration) string {
	h.lateCall.Add(1)
	return "DEFER late " + r.Sender + " after " + after.String()
}

func startLate(t *testing.T, h Handler, timeout time.Duration) (*Server, string) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "policy.sock"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(h, Limits{HandlerTimeout: timeout}, slog.New(slog.DiscardHandler))
	go s.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, l.Addr().String()
}

func from(sender string) string {
	return "request=smtpd_access_policy\nclient_address=192.0.2.1\nsender=" + sender + "\nrecipient=b@example.org\n\n"
}

func TestLateHandler(t *testing.T) {
	h := &slowHandler{gate: make(chan struct{}), claim: true}
	s, addr := startLate(t, h, 100*time.Millisecond)
	c, r := dial(t, "unix", addr)

	io.WriteString(c, from("block@x"))
	if got, want := readReply(t, r), "action=DEFER late block@x after 100ms"; got != want {
		t.Fatalf("blocked handler: got %q, want %q", got, want)
	}
	// The connection is served while that handler is still blocked.
	for i := 0; i < 3; i++ {
		io.WriteString(c, from(fmt.Sprintf("next%d@x", i)))
		if got, want := readReply(t, r), fmt.Sprintf("action=DUNNO next%d@x", i); got != want {
			t.Fatalf("after the late answer: got %q, want %q", got, want)
		}
	}
	// It returns: its reply is dropped, and it learnt so from Claim.
	close(h.gate)
	waitFor(t, func() bool { return h.dropped.Load() == 1 }, "the late handler to see its claim fail")
	io.WriteString(c, from("last@x"))
	if got, want := readReply(t, r), "action=DUNNO last@x"; got != want {
		t.Errorf("after the late handler returned: got %q, want %q (its reply must be dropped)", got, want)
	}
	if n := h.lateCall.Load(); n != 1 {
		t.Errorf("Late called %d times, want 1", n)
	}
	if n := s.Stats().Requests; n != 5 {
		t.Errorf("Stats().Requests = %d, want 5", n)
	}
}

// A handler that claimed its request is waited for, however long it takes.
func TestLateHandlerClaimed(t *testing.T) {
	h := HandlerFunc(func(_ context.Context, r *Request) string {
		if !r.Claim() {
			return "DUNNO not claimed"
		}
		time.Sleep(150 * time.Millisecond)
		return "DUNNO claimed"
	})
	late := &lateFunc{Handler: h}
	_, addr := startLate(t, late, 50*time.Millisecond)
	c, r := dial(t, "unix", addr)
	io.WriteString(c, from("a@x"))
	if got, want := readReply(t, r), "action=DUNNO claimed"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if n := late.calls.Load(); n != 0 {
		t.Errorf("Late called %d times for a claimed request", n)
	}
}

type lateFunc struct {
	Handler
	calls atomic.Int64
}

func (l *lateFunc) Late(*Request, time.Duration) string { l.calls.Add(1); return "DEFER late" }

// A plain Handler is never cut short, whatever HandlerTimeout says.
func TestHandlerTimeoutNeedsLateHandler(t *testing.T) {
	h := HandlerFunc(func(_ context.Context, r *Request) string {
		time.Sleep(100 * time.Millisecond)
		return "DUNNO slow"
	})
	_, addr := startLate(t, h, 10*time.Millisecond)
	c, r := dial(t, "unix", addr)
	io.WriteString(c, from("a@x"))
	if got, want := readReply(t, r), "action=DUNNO slow"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestLateHandlerRace sends requests whose handlers finish around the
// deadline, on several connections, pipelined or not; run with -race.
// Every request gets exactly one reply, in order, from ServePolicy or
// from Late, and every late ServePolicy call learns it was dropped.
func TestLateHandlerRace(t *testing.T) {
	for _, claim := range []bool{true, false} {
		t.Run(fmt.Sprintf("claim=%v", claim), func(t *testing.T) {
			h := &slowHandler{claim: claim}
			_, addr := startLate(t, h, 2*time.Millisecond)
			var sent atomic.Int64
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("unix", addr)
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(30 * time.Second))
					br := bufio.NewReader(c)
					for i := 0; i < 100; i++ {
						n := 1 + i%3 // pipeline up to 3 requests
						var b strings.Builder
						senders := make([]string, n)
						for j := range senders {
							senders[j] = fmt.Sprintf("sleep%dus@x", rand.IntN(4000))
							b.WriteString(from(senders[j]))
						}
						io.WriteString(c, b.String())
						sent.Add(int64(n))
						for _, sender := range senders {
							line, err := br.ReadString('\n')
							empty, err2 := br.ReadString('\n')
							if err != nil || err2 != nil || empty != "\n" {
								t.Errorf("reading reply: %q %q %v %v", line, empty, err, err2)
								return
							}
							line = strings.TrimSuffix(line, "\n")
							if line != "action=DUNNO "+sender && line != "action=DEFER late "+sender+" after 2ms" {
								t.Errorf("reply for %s: %q", sender, line)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			if claim {
				waitFor(t, func() bool { return h.claimed.Load()+h.dropped.Load() == sent.Load() }, "every handler call to return")
				if d, l := h.dropped.Load(), h.lateCall.Load(); d != l {
					t.Errorf("%d handler calls saw their claim fail, but Late answered %d", d, l)
				}
			}
			t.Logf("%d of %d requests answered late", h.lateCall.Load(), sent.Load())
		})
	}
}

// TestHandlerTimeoutAllocs: the deadline costs no allocation per request.
func TestHandlerTimeoutAllocs(t *testing.T) {
	allocs := func(timeout time.Duration) float64 {
		h := &slowHandler{claim: true}
		_, addr := startLate(t, h, timeout)
		c, err := net.Dial("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := []byte(from("a@x"))
		buf := make([]byte, 4096)
		want := len("action=DUNNO a@x\n\n")
		round := func() {
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			got := 0
			for got < want {
				n, err := c.Read(buf[got:])
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
		}
		round()
		return testing.AllocsPerRun(500, round)
	}
	without, with := allocs(0), allocs(time.Second)
	t.Logf("allocations per round trip: %.2f without a deadline, %.2f with one", without, with)
	if with > without+0.1 {
		t.Errorf("the handler deadline costs %.2f allocations per request", with-without)
	}
}

// BenchmarkRoundTrip is one request and its reply over a unix socket,
// without and with the handler deadline.
func BenchmarkRoundTrip(b *testing.B) {
	for _, timeout := range []time.Duration{0, 2 * time.Second} {
		b.Run(fmt.Sprintf("timeout=%v", timeout), func(b *testing.B) {
			h := &slowHandler{claim: true}
			l, err := net.Listen("unix", filepath.Join(b.TempDir(), "policy.sock"))
			if err != nil {
				b.Fatal(err)
			}
			s := NewServer(h, Limits{HandlerTimeout: timeout}, nil)
			go s.Serve(l)
			defer s.Shutdown(context.Background())
			c, err := net.Dial("unix", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte(from("a@x"))
			buf := make([]byte, 4096)
			want := len("action=DUNNO a@x\n\n")
			b.ReportAllocs()
			for b.Loop() {
				c.Write(req)
				for got := 0; got < want; {
					n, err := c.Read(buf[got:])
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
		})
	}
}

// TestLateHandlerReturnKeepsNextDeadline: a handler that returns after the
// timer answered for it must not disarm the deadline of the connection's
// next request, which is answered by its own Late.
func TestLateHandlerReturnKeepsNextDeadline(t *testing.T) {
	first, second, entered := make(chan struct{}), make(chan struct{}), make(chan struct{})
	defer close(second)
	h := &lateFunc{Handler: HandlerFunc(func(_ context.Context, r *Request) string {
		switch r.Sender {
		case "first@x":
			<-first
		case "second@x":
			close(entered)
			<-second
		}
		return "DUNNO " + r.Sender
	})}
	_, addr := startLate(t, h, 200*time.Millisecond)
	c, r := dial(t, "unix", addr)

	io.WriteString(c, from("first@x"))
	if got, want := readReply(t, r), "action=DEFER late"; got != want {
		t.Fatalf("first request: got %q, want %q", got, want)
	}
	io.WriteString(c, from("second@x"))
	<-entered
	// The first handler returns while the second request's deadline runs.
	close(first)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, want := readReply(t, r), "action=DEFER late"; got != want {
		t.Fatalf("second request: got %q, want %q", got, want)
	}
	if n := h.calls.Load(); n != 2 {
		t.Errorf("Late called %d times, want 2", n)
	}
}
