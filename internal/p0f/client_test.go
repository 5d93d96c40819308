package p0f_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"greyd/internal/p0f"
	"greyd/internal/p0f/p0ftest"
)

var (
	win   = netip.MustParseAddr("192.0.2.10")
	linux = netip.MustParseAddr("2001:db8::25")
	other = netip.MustParseAddr("198.51.100.1")
)

// logBuf collects a logger's lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newClient(t *testing.T) (*p0f.Client, *logBuf) {
	lb := &logBuf{}
	c := p0f.New(p0f.Options{Log: slog.New(slog.NewTextHandler(lb, nil))})
	t.Cleanup(func() { c.Close() })
	return c, lb
}

func query(c *p0f.Client, socket string, a netip.Addr, timeout time.Duration) (p0f.Answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Query(ctx, socket, a)
}

func TestQueryBehaviours(t *testing.T) {
	srv := p0ftest.Start(t)
	srv.Set(win, p0f.Answer{OSName: "Windows", OSFlavor: "7 or 8", Distance: 8})
	srv.Set(linux, p0f.Answer{OSName: "Linux", OSFlavor: "3.11 and newer", Distance: 0})
	srv.Delay = time.Second
	tests := []struct {
		how    p0ftest.Behaviour
		addr   netip.Addr
		result string
		os     string
	}{
		{p0ftest.Normal, win, p0f.ResultOK, "Windows"},
		{p0ftest.Normal, linux, p0f.ResultOK, "Linux"},
		{p0ftest.Normal, other, p0f.ResultNoMatch, ""},
		{p0ftest.BadQuery, win, p0f.ResultBadQuery, ""},
		{p0ftest.Garbage, win, p0f.ResultGarbage, ""},
		{p0ftest.Slow, win, p0f.ResultTimeout, ""},
		{p0ftest.Silent, win, p0f.ResultTimeout, ""},
		{p0ftest.Normal, win, p0f.ResultOK, "Windows"}, // after all that
	}
	c, _ := newClient(t)
	for i, tc := range tests {
		srv.Behave(tc.how)
		start := time.Now()
		a, err := query(c, srv.Path, tc.addr, 50*time.Millisecond)
		took := time.Since(start)
		if got := p0f.ResultOf(a, err); got != tc.result || a.OSName != tc.os {
			t.Errorf("%d: %v on %v: %s %q (%v), want %s %q", i, tc.how, tc.addr, got, a.OSName, err, tc.result, tc.os)
		}
		if took > 500*time.Millisecond {
			t.Errorf("%d: took %v with a 50ms timeout", i, took)
		}
	}
	if a, _ := query(c, srv.Path, win, time.Second); a.Distance != 8 || a.OSFlavor != "7 or 8" {
		t.Errorf("answer %+v", a)
	}
}

// p0f keeps a connection for any number of queries: a sequence of them
// costs one connection, and concurrent ones at most Conns.
func TestPersistentConnections(t *testing.T) {
	srv := p0ftest.Start(t)
	srv.Set(win, p0f.Answer{OSName: "Windows"})
	c, _ := newClient(t)
	for range 20 {
		if a, err := query(c, srv.Path, win, time.Second); err != nil || a.OSName != "Windows" {
			t.Fatalf("%+v, %v", a, err)
		}
	}
	if n := srv.Accepted(); n != 1 {
		t.Errorf("20 queries in a row used %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if a, err := query(c, srv.Path, win, 5*time.Second); err != nil || a.OSName != "Windows" {
				t.Errorf("%+v, %v", a, err)
			}
		})
	}
	wg.Wait()
	if n := srv.Accepted(); n > p0f.DefaultConns {
		t.Errorf("50 concurrent queries opened %d connections, want at most %d", n, p0f.DefaultConns)
	}
	if n := srv.Queries(); n != 70 {
		t.Errorf("p0f read %d queries, want 70", n)
	}
}

// A p0f restarted between two queries: the idle connection is dead, the
// query goes through on a new one, without a warning.
func TestRestartedBetweenQueries(t *testing.T) {
	srv := p0ftest.Start(t)
	srv.Set(win, p0f.Answer{OSName: "Windows"})
	c, lb := newClient(t)
	if _, err := query(c, srv.Path, win, time.Second); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	srv.Set(win, p0f.Answer{OSName: "Windows"})
	if a, err := query(c, srv.Path, win, time.Second); err != nil || a.OSName != "Windows" {
		t.Fatalf("after the restart: %+v, %v", a, err)
	}
	if lb.String() != "" {
		t.Errorf("logged %q", lb.String())
	}
}

// A p0f that goes away: one warning, queries fail at once as "down"
// without reaching for the socket each time, one line when it is back.
func TestDownAndBack(t *testing.T) {
	srv := p0ftest.Start(t)
	srv.Set(win, p0f.Answer{OSName: "Windows"})
	c, lb := newClient(t)
	srv.Stop()
	for i := range 20 {
		start := time.Now()
		_, err := query(c, srv.Path, win, time.Second)
		if !errors.Is(err, p0f.ErrDown) || p0f.ResultOf(p0f.Answer{}, err) != p0f.ResultDown {
			t.Fatalf("query %d with p0f gone: %v", i, err)
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("query %d with p0f gone took %v", i, took)
		}
	}
	if n := strings.Count(lb.String(), "p0f: cannot query"); n != 1 {
		t.Errorf("%d warnings that p0f went away, want 1:\n%s", n, lb)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := query(c, srv.Path, win, time.Second)
		if err == nil {
			if a.OSName != "Windows" {
				t.Fatalf("%+v", a)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("p0f is back, queries still fail: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling the back-off's end
	}
	log := lb.String()
	if strings.Count(log, "answers again") != 1 || strings.Count(log, "level=WARN") != 2 {
		t.Errorf("log:\n%s", log)
	}
	if n := srv.Accepted(); n != 1 {
		t.Errorf("%d connections after p0f came back, want 1", n)
	}
}

func TestHangUpIsDown(t *testing.T) {
	srv := p0ftest.Start(t)
	srv.Behave(p0ftest.HangUp)
	c, _ := newClient(t)
	if _, err := query(c, srv.Path, win, time.Second); !errors.Is(err, p0f.ErrDown) {
		t.Errorf("p0f hanging up: %v", err)
	}
}

// The socket is an argument of each query: a reload may move it.
func TestSocketMoves(t *testing.T) {
	a, b := p0ftest.Start(t), p0ftest.Start(t)
	a.Set(win, p0f.Answer{OSName: "Windows"})
	b.Set(win, p0f.Answer{OSName: "FreeBSD"})
	c, _ := newClient(t)
	for _, tc := range []struct {
		srv *p0ftest.Server
		os  string
	}{{a, "Windows"}, {b, "FreeBSD"}, {a, "Windows"}} {
		if got, err := query(c, tc.srv.Path, win, time.Second); err != nil || got.OSName != tc.os {
			t.Errorf("%s: %+v, %v; want %s", tc.srv.Path, got, err, tc.os)
		}
	}
}

func TestClosed(t *testing.T) {
	srv := p0ftest.Start(t)
	c, _ := newClient(t)
	c.Close()
	if _, err := query(c, srv.Path, win, time.Second); !errors.Is(err, p0f.ErrClosed) {
		t.Errorf("query after Close: %v", err)
	}
}

// BenchmarkQuery is one query on a kept connection to the fake p0f: the
// cost a scored request adds, p0f's own work aside.
func BenchmarkQuery(b *testing.B) {
	srv := p0ftest.Start(b)
	srv.Set(win, p0f.Answer{OSName: "Windows", OSFlavor: "7 or 8"})
	c := p0f.New(p0f.Options{})
	defer c.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if a, err := c.Query(ctx, srv.Path, win); err != nil || a.OSName != "Windows" {
			b.Fatal(a, err)
		}
	}
}

// A p0f that takes queries and never answers: each query costs its
// timeout, and after a few in a row one warning says so; one line when
// it answers again.
func TestSilentAndBack(t *testing.T) {
	srv := p0ftest.Start(t)
	srv.Set(win, p0f.Answer{OSName: "Windows"})
	srv.Behave(p0ftest.Silent)
	c, lb := newClient(t)
	for i := range 12 {
		if _, err := query(c, srv.Path, win, 20*time.Millisecond); !errors.Is(err, p0f.ErrTimeout) {
			t.Fatalf("query %d to a silent p0f: %v, want a timeout", i, err)
		}
		if i == 3 && lb.String() != "" {
			t.Fatalf("a warning after 4 timeouts: %s", lb)
		}
	}
	if n := strings.Count(lb.String(), "answered none of the last 5 in time"); n != 1 {
		t.Errorf("%d warnings of a silent p0f, want 1:\n%s", n, lb)
	}
	srv.Behave(p0ftest.Normal)
	if a, err := query(c, srv.Path, win, time.Second); err != nil || a.OSName != "Windows" {
		t.Fatalf("p0f answering again: %+v, %v", a, err)
	}
	log := lb.String()
	if !strings.Contains(log, "answers again after 12 queries without an answer in time") || strings.Count(log, "level=WARN") != 2 {
		t.Errorf("log:\n%s", log)
	}
}
