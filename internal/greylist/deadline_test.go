package greylist

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/logging"
	"greyd/internal/policy"
	"greyd/internal/store"
)

// gated is a Store whose operations wait while the gate is closed, like
// buntdb behind a write hung on a dead disk; with panics set they panic,
// like buntdb failing to truncate a failed write.
type gated struct {
	store.Store
	gate   atomic.Pointer[chan struct{}]
	calls  atomic.Int64
	panics atomic.Bool
}

// hold makes operations wait until the returned function is called.
func (g *gated) hold() (release func()) {
	ch := make(chan struct{})
	g.gate.Store(&ch)
	var once sync.Once
	return func() { once.Do(func() { g.gate.Store(nil); close(ch) }) }
}

func (g *gated) wait() {
	g.calls.Add(1)
	if g.panics.Load() {
		panic("buntdb: truncate failed")
	}
	if ch := g.gate.Load(); ch != nil {
		<-*ch
	}
}

func (g *gated) Step(ctx context.Context, in *store.StepInput) (store.StepResult, error) {
	g.wait()
	return g.Store.Step(ctx, in)
}

func (g *gated) Healthy(ctx context.Context) error {
	g.wait()
	return g.Store.Healthy(ctx)
}

// syncLog is a goroutine-safe log sink.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// deadlineEngine is an engine with a store timeout over a gated store, a
// settable clock and a log, served by a policy.Server on a unix socket
// with the store timeout as its handler timeout, as the daemon does.
func deadlineEngine(t *testing.T, timeout time.Duration) (*Engine, *gated, *atomic.Int64, *syncLog, string) {
	t.Helper()
	g := &gated{Store: newStore(t)}
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	logs := &syncLog{}
	e := NewEngine(g, testSnapshot(t), func() time.Time { return time.Unix(0, clock.Load()) },
		slog.New(logging.New(logs, logging.Options{Journal: true})))
	e.SetStoreTimeout(timeout)
	return e, g, &clock, logs, serve(t, e, timeout)
}

// serve serves e on a unix socket and returns its path.
func serve(t *testing.T, e *Engine, timeout time.Duration) string {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "greyd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := policy.NewServer(e, policy.Limits{HandlerTimeout: timeout}, nil)
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return l.Addr().String()
}

// client is one policy connection.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func connect(t *testing.T, sock string) *client {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// ask sends a request and returns the reply's action. It fails the test
// if no reply comes within 10 s: the property under test is that greyd
// answers without waiting for a stuck store, so this bound only catches
// a hang.
func (c *client) ask(addr, name, sender, rcpt string) string {
	c.t.Helper()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c.c, "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=%s\nclient_name=%s\nsender=%s\nrecipient=%s\n\n", addr, name, sender, rcpt)
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("request for %s/%s/%s: no reply: %v", addr, sender, rcpt, err)
	}
	if empty, err := c.br.ReadString('\n'); err != nil || empty != "\n" {
		c.t.Fatalf("reply %q not followed by an empty line: %q %v", line, empty, err)
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok {
		c.t.Fatalf("reply %q", line)
	}
	return action
}

// answer calls ServePolicy directly.
func answer(t *testing.T, e *Engine, r *policy.Request) string {
	t.Helper()
	return e.ServePolicy(context.Background(), r)
}

// stuckWriter never returns from Write until release is closed: stderr
// on a journald that stalled.
type stuckWriter struct{ release chan struct{} }

func (w stuckWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

// TestLateWithStuckLog: neither the late answer nor the requests after it
// wait for a log output that does not take their lines.
func TestLateWithStuckLog(t *testing.T) {
	w := stuckWriter{release: make(chan struct{})}
	defer close(w.release)
	g := &gated{Store: newStore(t)}
	e := NewEngine(g, testSnapshot(t), time.Now, slog.New(logging.New(w, logging.Options{Journal: true, FlushAfter: 100 * time.Millisecond, Queue: 1 << 16})))
	e.SetStoreTimeout(100 * time.Millisecond)
	c := connect(t, serve(t, e, 100*time.Millisecond))
	release := g.hold()
	defer release()
	for i := range 500 {
		// Every answer logs: the store failures as errors, the
		// whitelisted clients as decisions.
		if got := c.ask("192.0.2.7", "x", fmt.Sprintf("s%d@a.example", i), "b@example.org"); got != "DUNNO" {
			t.Fatalf("request %d: got %q, want DUNNO (whitelisted)", i, got)
		}
		if i < 3 {
			if got := c.ask("198.51.100.1", "x", fmt.Sprintf("s%d@a.example", i), "b@example.org"); got != "DUNNO" {
				t.Fatalf("request %d with the store stuck: got %q, want DUNNO (on_store_error)", i, got)
			}
		}
	}
}

func TestStoreTimeout(t *testing.T) {
	e, g, clock, logs, sock := deadlineEngine(t, 250*time.Millisecond)
	c := connect(t, sock)
	const greylisted = "DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/help/y.example.html"
	if got := c.ask("198.51.100.60", "", "a@x.example", "b@y.example"); got != greylisted {
		t.Fatalf("healthy store: got %q, want %q", got, greylisted)
	}

	release := g.hold()
	defer release()
	if got := c.ask("198.51.100.61", "", "c@x.example", "d@y.example"); got != "DUNNO" {
		t.Errorf("stuck store: got %q, want DUNNO", got)
	}
	if !strings.Contains(logs.String(), "<3>error: store failed, answering DUNNO (mail is not greylisted meanwhile): database did not answer in time (no answer within 250ms) (client [198.51.100.61])") {
		t.Errorf("stuck store: log lacks the failure:\n%s", logs)
	}

	// While that decision is stuck, requests on the same connection and
	// on others do not queue behind it and do not reach the store;
	// whitelists still work.
	calls := g.calls.Load()
	c2 := connect(t, sock)
	for i := 0; i < 100; i++ {
		cl := c
		if i%2 == 1 {
			cl = c2
		}
		if got := cl.ask("198.51.100.62", "", fmt.Sprintf("s%d@x.example", i), "d@y.example"); got != "DUNNO" {
			t.Fatalf("request %d behind a stuck one: got %q, want DUNNO", i, got)
		}
	}
	if got := c.ask("192.0.2.7", "", "c@x.example", "d@y.example"); got != "DUNNO" ||
		!strings.Contains(logs.String(), "action=pass, reason=client whitelist") {
		t.Errorf("whitelisted client while stuck: got %q, log:\n%s", got, logs)
	}
	if n := g.calls.Load() - calls; n != 0 {
		t.Errorf("%d operations reached the stuck store", n)
	}
	// One error line, not 101.
	if n := strings.Count(logs.String(), "store failed"); n != 1 {
		t.Errorf("%d store failure lines within %v, want 1:\n%s", n, storeErrorEvery, logs)
	}
	clock.Add(int64(storeErrorEvery))
	c2.ask("198.51.100.61", "", "c@x.example", "d@y.example")
	if !strings.Contains(logs.String(), "database did not answer in time: an earlier request has been waiting for it for ") ||
		!strings.Contains(logs.String(), "[100 more store failures not logged since the previous line]") {
		t.Errorf("after %v: log lacks the next failure line with the count:\n%s", storeErrorEvery, logs)
	}
	// The stuck decision's own result never shows: no decision line for
	// 198.51.100.61 was logged.
	if strings.Contains(logs.String(), "client_address=198.51.100.61") {
		t.Errorf("the abandoned decision was logged:\n%s", logs)
	}

	// The stuck decision returns: the store is used again.
	release()
	deadline := time.Now().Add(10 * time.Second)
	for c.ask("198.51.100.60", "", "a@x.example", "b@y.example") == "DUNNO" {
		if time.Now().After(deadline) {
			t.Fatalf("store never used again after it recovered:\n%s", logs)
		}
		time.Sleep(time.Millisecond)
	}
	if n := e.stuck.Load(); n != 0 {
		t.Errorf("%d decisions still counted as stuck after the store recovered", n)
	}
	var n int
	if i := strings.Index(logs.String(), "<4>warning: store works again: "); i < 0 {
		t.Errorf("no recovery line:\n%s", logs)
	} else if _, err := fmt.Sscanf(logs.String()[i:], "<4>warning: store works again: %d request(s) failed since 2026-11-22 11:00:00 UTC; greylisting resumed", &n); err != nil || n < 102 {
		t.Errorf("recovery line: %d, %v; want at least 102 failures since 2026-11-22 11:00:00 UTC:\n%s", n, err, logs)
	}
	// Greylisting state from before the failure is intact.
	clock.Add(int64(5 * time.Minute))
	if got := c.ask("198.51.100.60", "", "a@x.example", "b@y.example"); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 310 seconds") {
		t.Errorf("after recovery: got %q, want the first pass", got)
	}
}

// TestStoreTimeoutDefer: with on_store_error = "defer" a late decision is
// answered with the store error text.
func TestStoreTimeoutDefer(t *testing.T) {
	e, g, _, _, sock := deadlineEngine(t, 100*time.Millisecond)
	snap := *e.Snapshot()
	snap.DeferOnStoreError = true
	snap.StoreErrorText = "4.3.0 Greylisting database unavailable, try again later"
	e.SetSnapshot(&snap)
	release := g.hold()
	defer release()
	c := connect(t, sock)
	if got, want := c.ask("198.51.100.61", "", "c@x.example", "d@y.example"), "DEFER_IF_PERMIT "+snap.StoreErrorText; got != want {
		t.Errorf("stuck store, fail closed: got %q, want %q", got, want)
	}
	if got := c.ask("192.0.2.7", "", "c@x.example", "d@y.example"); got != "DUNNO" {
		t.Errorf("stuck store, fail closed, whitelisted client: got %q, want DUNNO", got)
	}
}

func TestStoreErrorDefer(t *testing.T) {
	st := newStore(t)
	st.Close()
	snap := testSnapshot(t)
	snap.DeferOnStoreError = true
	snap.StoreErrorText = "4.3.0 Greylisting database unavailable, try again later"
	logs := &syncLog{}
	e := NewEngine(st, snap, func() time.Time { return t0 }, slog.New(logging.New(logs, logging.Options{Journal: true})))
	e.SetStoreTimeout(time.Second)
	if got, want := answer(t, e, req("198.51.100.60", "", "a@x.example", "b@y.example")), "DEFER_IF_PERMIT 4.3.0 Greylisting database unavailable, try again later"; got != want {
		t.Errorf("fail closed: got %q, want %q", got, want)
	}
	if want := `<3>error: store failed, answering DEFER_IF_PERMIT (on_store_error = "defer"): store: closed (client [198.51.100.60])`; !strings.Contains(logs.String(), want) {
		t.Errorf("fail closed: log lacks %q:\n%s", want, logs)
	}
	// Whitelisted mail still passes, and a bad request is still DUNNO.
	if got := answer(t, e, req("192.0.2.7", "", "a@x.example", "b@y.example")); got != "DUNNO" {
		t.Errorf("fail closed, whitelisted client: got %q, want DUNNO", got)
	}
	if got := answer(t, e, req("not-an-ip", "", "a@x.example", "b@y.example")); got != "DUNNO" {
		t.Errorf("fail closed, bad request: got %q, want DUNNO", got)
	}
	snap.StoreErrorText = ""
	if got := answer(t, e, req("198.51.100.60", "", "a@x.example", "b@y.example")); got != "DEFER_IF_PERMIT" {
		t.Errorf("fail closed without text: got %q", got)
	}
}

func TestStorePanicFailsOpen(t *testing.T) {
	e, g, _, logs, _ := deadlineEngine(t, time.Second)
	g.panics.Store(true)
	if got := answer(t, e, req("198.51.100.60", "", "a@x.example", "b@y.example")); got != "DUNNO" {
		t.Errorf("store panicked: got %q, want DUNNO", got)
	}
	if !strings.Contains(logs.String(), "panic in the decision: buntdb: truncate failed") {
		t.Errorf("store panicked: log lacks the panic:\n%s", logs)
	}
	g.panics.Store(false)
	if got := answer(t, e, req("198.51.100.60", "", "a@x.example", "b@y.example")); got == "DUNNO" {
		t.Errorf("after the panic: got DUNNO, want greylisted")
	}
}

func TestCheckStore(t *testing.T) {
	e, g, _, _, _ := deadlineEngine(t, 250*time.Millisecond)
	ctx := context.Background()
	if err := e.CheckStore(ctx); err != nil {
		t.Errorf("healthy store: CheckStore = %v", err)
	}
	release := g.hold()
	defer release()
	for i := 0; i < 2; i++ { // timed out, then still waiting
		if err := e.CheckStore(ctx); !errors.Is(err, ErrStoreTimeout) {
			t.Errorf("stuck store, check %d: CheckStore = %v, want ErrStoreTimeout", i, err)
		}
	}
	if n := g.calls.Load(); n != 2 {
		t.Errorf("%d probes reached the store, want 2 (one stuck, one before)", n)
	}
	release()
	deadline := time.Now().Add(10 * time.Second)
	for e.CheckStore(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("CheckStore never succeeded again after the store recovered")
		}
		time.Sleep(time.Millisecond)
	}
	// Without a timeout the store is asked directly.
	e.SetStoreTimeout(0)
	if err := e.CheckStore(ctx); err != nil {
		t.Errorf("after Close: CheckStore = %v", err)
	}
}

// TestStoreTimeoutConcurrent runs decisions that finish, time out, and
// race with their deadline, through the server; run with -race. Every
// answer must be one a decision can give, and when all have returned
// none is counted as stuck.
func TestStoreTimeoutConcurrent(t *testing.T) {
	e := NewEngine(&jittery{Store: newStore(t)}, testSnapshot(t), time.Now, nil)
	e.SetStoreTimeout(3 * time.Millisecond)
	sock := serve(t, e, 3*time.Millisecond)
	var wg sync.WaitGroup
	var dunno, other atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := connect(t, sock)
			for i := 0; i < 200; i++ {
				got := c.ask(fmt.Sprintf("198.51.100.%d", w), "", fmt.Sprintf("s%d@x.example", i%7), "b@y.example")
				switch {
				case got == "DUNNO":
					dunno.Add(1)
				case strings.HasPrefix(got, "DEFER_IF_PERMIT Greylisted"), strings.HasPrefix(got, "PREPEND X-Greylist"):
					other.Add(1)
				default:
					t.Errorf("unexpected answer %q", got)
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for e.stuck.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d decisions still counted as stuck", e.stuck.Load())
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("%d DUNNO, %d greylisting answers", dunno.Load(), other.Load())
}

// jittery delays operations randomly, sometimes past the deadline.
type jittery struct{ store.Store }

func (j *jittery) Step(ctx context.Context, in *store.StepInput) (store.StepResult, error) {
	if rand.IntN(10) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	return j.Store.Step(ctx, in)
}

// BenchmarkServePolicyParallel is the daemon's situation: many
// connections deciding at once.
func BenchmarkServePolicyParallel(b *testing.B) {
	e := NewEngine(newStore(b), testSnapshot(b), time.Now, slog.New(slog.DiscardHandler))
	reqs := make([]*policy.Request, 1000)
	for i := range reqs {
		reqs[i] = req(fmt.Sprintf("198.51.%d.%d", i/250, i%250), "unknown", fmt.Sprintf("user%d@foo.example", i), "bob@example.org")
	}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e.ServePolicy(context.Background(), reqs[i%len(reqs)])
			i += 7
		}
	})
}
