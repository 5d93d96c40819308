package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/store"
	"greyd/internal/store/redis/redistest"
	"greyd/internal/store/storetest"
)

// open opens a Store on srv with o's other settings and closes it at
// cleanup (the suite closes its stores too; Close is idempotent).
func open(t testing.TB, srv *redistest.Server, o Options) *Store {
	t.Helper()
	o.Network, o.Addrs = srv.Network(), []string{srv.Addr()}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// connected waits until s has connected.
func connected(t testing.TB, s *Store) {
	t.Helper()
	redistest.WaitFor(t, 10*time.Second, "store connected", func() bool { return s.down.Load() == nil })
}

// step runs one step at the store's own clock on a new triplet key.
func step(s *Store, key string) (store.StepResult, error) {
	return s.Step(context.Background(), &store.StepInput{
		TripletKey: key, Now: time.Now().Unix(),
		Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400,
	})
}

// logBuffer is a slog text handler's output, safe for the store's
// goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// The behaviour suite, each case under its own key prefix on one server.
func TestSuiteUnix(t *testing.T) {
	srv := redistest.Start(t)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, srv, Options{KeyPrefix: fmt.Sprintf("case%d:", n.Add(1))})
		connected(t, s)
		return s
	})
}

func TestSuiteTCP(t *testing.T) {
	srv := redistest.StartTCP(t)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, srv, Options{KeyPrefix: fmt.Sprintf("case%d:", n.Add(1))})
		connected(t, s)
		return s
	})
}

// Stored values are read as store.ParseValue reads them: step.lua's
// numbers are doubles, and Go's are not.
func TestStoredSuite(t *testing.T) {
	srv := redistest.Start(t)
	var n atomic.Int32
	storetest.RunStored(t, func(t *testing.T, stored []storetest.Stored) store.Store {
		s := open(t, srv, Options{KeyPrefix: fmt.Sprintf("stored%d:", n.Add(1))})
		for _, v := range stored {
			ns, _, err := s.namespace(v.Kind)
			if err != nil {
				t.Fatal(err)
			}
			srv.Must("SET", ns+v.Key, v.Value)
		}
		connected(t, s)
		return s
	})
}

// Two greyd hosts: two Store values, each with its own connections, on
// one Redis and one key prefix.
func TestConcurrentTwoHosts(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, Options{KeyPrefix: "site:"})
	b := open(t, srv, Options{KeyPrefix: "site:"})
	connected(t, a)
	connected(t, b)
	storetest.Concurrent(t, a, b)
}

// Without FixedNow the step decides with Redis's clock, whatever the
// caller's clock says.
func TestRedisClock(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Options{})
	connected(t, s)
	in := &store.StepInput{TripletKey: "t", Now: 1000, Delay: 300, RetryWindow: 86400, MaxAge: 86400 * 35}
	r, err := s.Step(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Now - time.Now().Unix(); d < -2 || d > 2 {
		t.Errorf("step's now = %d, %d s from this machine's clock; want Redis's TIME", r.Now, d)
	}
	if r.Outcome != store.Greylisted || r.First != r.Now || !r.New() {
		t.Errorf("first step: %+v", r)
	}
}

// Keys are "{prefix}t:..." and "{prefix}c:...", values Postgrey's text,
// with the TTLs store.Transition asks for; a dry run writes nothing.
func TestKeysValuesTTL(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Options{KeyPrefix: "mx:"})
	connected(t, s)
	const t0 = storetest.T0
	in := func(at int64, dry bool) *store.StepInput {
		return &store.StepInput{
			ClientKey: "192.0.2.1", TripletKey: "192.0.2/a@example.net/b@example.org",
			Now: t0 + at, FixedNow: true, Delay: 300, RetryWindow: 7200, MaxAge: 86400, AWLClients: 5, DryRun: dry,
		}
	}
	if _, err := s.Step(context.Background(), in(0, true)); err != nil {
		t.Fatal(err)
	}
	if keys := srv.Must("KEYS", "*"); keys != "{mx:}schema" {
		t.Errorf("after a dry run, keys %q, want only the schema key (set at connect)", keys)
	}
	for _, at := range []int64{0, 300} {
		if _, err := s.Step(context.Background(), in(at, false)); err != nil {
			t.Fatal(err)
		}
	}
	tk, ck := "{mx:}t:192.0.2/a@example.net/b@example.org", "{mx:}c:192.0.2.1"
	for _, c := range []struct{ key, val string }{
		{tk, fmt.Sprintf("%d,%d", t0, t0+300)},
		{ck, fmt.Sprintf("1,%d", t0+300)},
		{"{mx:}schema", "1"},
	} {
		if got := srv.Must("GET", c.key); got != c.val {
			t.Errorf("GET %s = %q, want %q", c.key, got, c.val)
		}
	}
	for _, key := range []string{tk, ck} {
		ttl, _ := strconv.Atoi(srv.Must("TTL", key))
		if ttl < 86400-5 || ttl > 86401 {
			t.Errorf("TTL %s = %d, want max_age + 1 = 86401", key, ttl)
		}
	}
	if ttl := srv.Must("TTL", "{mx:}schema"); ttl != "-1" {
		t.Errorf("schema key TTL %s, want none", ttl)
	}
	// A pending triplet lives until its retry window ends.
	if _, err := s.Step(context.Background(), &store.StepInput{TripletKey: "pending", Now: t0, FixedNow: true, Delay: 300, RetryWindow: 7200, MaxAge: 86400}); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := strconv.Atoi(srv.Must("TTL", "{mx:}t:pending")); ttl < 7200-5 || ttl > 7201 {
		t.Errorf("pending triplet TTL %d, want retry window + 1 = 7201", ttl)
	}
}

// Exactly one Redis command per step: EVALSHA (after one EVAL that loads
// the script); everything else MONITOR shows runs inside the script.
func TestOneCallPerStep(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Options{})
	connected(t, s)
	const n = 200
	srv.Must("CONFIG", "RESETSTAT")
	mon := srv.Monitor()
	for i := range n {
		if _, err := step(s, fmt.Sprintf("k%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lines := mon.Stop()
	stats := srv.Info("commandstats")
	calls := func(cmd string) int {
		f := stats["cmdstat_"+cmd]
		v, _, _ := strings.Cut(strings.TrimPrefix(f, "calls="), ",")
		n, _ := strconv.Atoi(v)
		return n
	}
	evalsha, eval := calls("evalsha"), calls("eval")
	t.Logf("commandstats after %d steps: evalsha %d, eval %d", n, evalsha, eval)
	if evalsha != n || eval > 1 {
		t.Errorf("after %d steps: %d EVALSHA and %d EVAL calls, want %d and at most 1 (the first, loading the script)", n, evalsha, eval, n)
	}
	scripts := 0
	for _, l := range lines {
		if strings.Contains(l, " lua] ") {
			continue // inside the script
		}
		switch cmd := strings.ToUpper(strings.SplitN(l, `"`, 3)[1]); cmd {
		case "EVALSHA", "EVAL":
			scripts++
		case "HELLO", "CLIENT", "SELECT", "AUTH":
			// Set-up of a connection the client opened meanwhile (it
			// pipelines over a few): per connection, not per step.
		default:
			t.Errorf("command from the client besides the script: %.200s", l)
		}
	}
	if scripts > n+1 {
		t.Errorf("%d script calls for %d steps", scripts, n)
	}
}

// After SCRIPT FLUSH (or a restart, or a failover to a replica that never
// saw the script) EVALSHA fails with NOSCRIPT and the step falls back to
// EVAL by itself.
func TestNoScript(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, Options{})
	connected(t, s)
	if _, err := step(s, "a"); err != nil {
		t.Fatal(err)
	}
	srv.Must("SCRIPT", "FLUSH")
	srv.Must("CONFIG", "RESETSTAT")
	for _, k := range []string{"b", "c"} {
		if r, err := step(s, k); err != nil || r.Outcome != store.Greylisted {
			t.Fatalf("step after SCRIPT FLUSH: %+v, %v", r, err)
		}
	}
	st := srv.Info("commandstats")
	if !strings.HasPrefix(st["cmdstat_eval"], "calls=1,") {
		t.Errorf("EVAL after the flush: %q, want one call", st["cmdstat_eval"])
	}
	if !strings.HasPrefix(st["cmdstat_evalsha"], "calls=2,") {
		t.Errorf("EVALSHA after the flush: %q, want two calls (NOSCRIPT, then the cached script)", st["cmdstat_evalsha"])
	}
}

// A Redis holding another schema under the prefix is refused at Open, and
// noticed by the script when it changes under a running greyd.
func TestSchemaMismatch(t *testing.T) {
	srv := redistest.Start(t)
	srv.Must("SET", "{greyd:}schema", "2")
	_, err := Open(Options{Network: "unix", Addrs: []string{srv.Addr()}})
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), `{greyd:}schema is "2"`) {
		t.Fatalf("Open on schema 2: %v, want ErrSchema naming the key and value", err)
	}
	t.Logf("Open: %v", err)

	// Another prefix is another site: no conflict.
	var logs logBuffer
	s := open(t, srv, Options{KeyPrefix: "other:", Logger: logs.logger()})
	connected(t, s)
	if _, err := step(s, "x"); err != nil {
		t.Fatal(err)
	}
	srv.Must("SET", "{other:}schema", "3")
	for range DefaultBreakerThreshold {
		if _, err := step(s, "x"); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), `{other:}schema is "3"`) {
			t.Fatalf("step on a changed schema: %v, want ErrSchema from the script", err)
		}
	}
	redistest.WaitFor(t, 5*time.Second, "schema error logged", func() bool { return strings.Contains(logs.String(), "another schema") })
	if st := s.Status(); !strings.Contains(st, "REFUSED") || !strings.Contains(st, "schema") {
		t.Errorf("Status: %q", st)
	}
}

// Bad options are refused before anything is dialled.
func TestOptionErrors(t *testing.T) {
	for _, o := range []Options{
		{},
		{Network: "udp", Addrs: []string{"127.0.0.1:6379"}},
		{Addrs: []string{"127.0.0.1"}},
		{Network: "unix", Addrs: []string{"/a", "/b"}},
		{Network: "unix", Addrs: []string{"/a"}, TLS: true},
		{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}, DB: 1},
		{Addrs: []string{"127.0.0.1:6379"}, KeyPrefix: "a{b}"},
		{Addrs: []string{"127.0.0.1:6379"}, DB: -1},
	} {
		if s, err := Open(o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}
