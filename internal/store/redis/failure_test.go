package redis

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"greyd/internal/store/redis/redistest"
)

// margin is what a loaded 2-CPU machine (tests run under -race) may add
// to a deadline; fast is what "at once" may take there for one step (a
// preempted goroutine), averages are checked tighter.
const (
	margin = 150 * time.Millisecond
	fast   = 25 * time.Millisecond
)

// timed runs one step and returns its error and duration.
func timed(s *Store, key string) (error, time.Duration) {
	start := time.Now()
	_, err := step(s, key)
	return err, time.Since(start)
}

// A frozen Redis (SIGSTOP: connections are accepted by the kernel, nothing
// is answered) costs each step at most the deadline; once the breaker is
// open, nothing. When Redis wakes up, steps succeed again by themselves.
func TestFrozen(t *testing.T) {
	srv := redistest.Start(t)
	var logs logBuffer
	const timeout = 200 * time.Millisecond
	s := open(t, srv, Options{Timeout: timeout, Logger: logs.logger(), ProbeMin: 10 * time.Millisecond, ProbeMax: 50 * time.Millisecond})
	connected(t, s)
	if _, err := step(s, "before"); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	frozen := time.Now()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()

	// Concurrent steps, as from many Postfix connections.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for i := range 16 {
		wg.Go(func() {
			err, d := timed(s, fmt.Sprintf("frozen-%d", i))
			mu.Lock()
			defer mu.Unlock()
			worst = max(worst, d)
			if err == nil {
				t.Errorf("step %d succeeded on a frozen Redis", i)
			}
		})
	}
	wg.Wait()
	t.Logf("16 concurrent steps on a frozen Redis: slowest %v (deadline %v)", worst, timeout)
	if worst > timeout+margin {
		t.Errorf("slowest step took %v, deadline %v", worst, timeout)
	}
	// Serial steps: each waits at most the deadline until the breaker
	// opens, then fails at once.
	for i := range 10 {
		err, d := timed(s, fmt.Sprintf("serial-%d", i))
		if err == nil {
			t.Fatalf("serial step %d succeeded on a frozen Redis", i)
		}
		if d > timeout+margin {
			t.Errorf("serial step %d took %v, deadline %v", i, d, timeout)
		}
	}
	if s.down.Load() == nil {
		t.Fatal("breaker still closed after 26 failed steps")
	}
	start := time.Now()
	for i := range 1000 {
		if err, d := timed(s, "open"); err == nil || d > fast {
			t.Fatalf("step %d with the breaker open: %v after %v, want an error at once", i, err, d)
		}
	}
	if per := time.Since(start) / 1000; per > 100*time.Microsecond {
		t.Errorf("%v per step with the breaker open, want ~0", per)
	}
	if !strings.Contains(s.Status(), "UNREACHABLE") {
		t.Errorf("Status while frozen: %q", s.Status())
	}
	if err := s.Healthy(context.Background()); err != nil {
		t.Errorf("Healthy while Redis is frozen: %v, want nil (the watchdog must not restart greyd)", err)
	}

	// Stay frozen until a few probes timed out too.
	waitProbes(t, s, 3)
	srv.Thaw()
	thawed = true
	d := time.Since(frozen)
	back := waitSteps(t, s, 10*time.Second)
	t.Logf("frozen for %v; steps succeed %v after SIGCONT", d.Round(time.Millisecond), back)
	checkLogs(t, &logs)
}

// waitProbes waits until n more reconnection probes have failed.
func waitProbes(t *testing.T, s *Store, n int64) {
	t.Helper()
	want := s.probes.Load() + n
	redistest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d failed probes", n), func() bool { return s.probes.Load() >= want })
}

// waitSteps waits until a step succeeds and returns how long that took.
func waitSteps(t *testing.T, s *Store, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		if _, err = step(s, "probe"); err == nil {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("steps still fail %v after Redis is back: %v", limit, err)
	return 0
}

// checkLogs checks for exactly one line about Redis going away (error)
// and one about it working again (warning).
func checkLogs(t *testing.T, logs *logBuffer) {
	t.Helper()
	redistest.WaitFor(t, 2*time.Second, "'works again' logged", func() bool {
		return strings.Contains(logs.String(), "redis works again")
	})
	var down, back int
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		switch {
		case strings.Contains(l, "level=INFO") && strings.Contains(l, "redis: connected to"):
		case strings.Contains(l, "level=ERROR") && strings.Contains(l, "unreachable"):
			down++
		case strings.Contains(l, "level=WARN") && strings.Contains(l, "redis works again"):
			back++
		default:
			t.Errorf("unexpected log line: %s", l)
		}
	}
	if down != 1 || back != 1 {
		t.Errorf("%d 'unreachable' and %d 'works again' lines, want one each:\n%s", down, back, logs.String())
	}
	t.Logf("log:\n%s", logs.String())
}

// A killed Redis: steps fail in milliseconds (the connection is refused),
// then at once (breaker); when Redis is restarted (empty) on the same
// socket, steps succeed again without reopening the store.
func TestKilledAndRestarted(t *testing.T) {
	srv := redistest.Start(t)
	var logs logBuffer
	s := open(t, srv, Options{Logger: logs.logger()})
	connected(t, s)
	if _, err := step(s, "before"); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	var worst time.Duration
	for i := range DefaultBreakerThreshold + 5 {
		err, d := timed(s, "dead")
		if err == nil {
			t.Fatalf("step %d succeeded on a dead Redis", i)
		}
		worst = max(worst, d)
	}
	t.Logf("slowest step on a dead Redis: %v", worst)
	if worst > 100*time.Millisecond {
		t.Errorf("a step on a dead Redis took %v, want milliseconds", worst)
	}
	start := time.Now()
	const n = 10000
	for range n {
		if err, _ := timed(s, "dead"); err == nil {
			t.Fatal("step succeeded on a dead Redis")
		}
	}
	per := time.Since(start) / n
	t.Logf("with the breaker open: %v per step", per)
	if per > 100*time.Microsecond {
		t.Errorf("%v per step with the breaker open, want ~0", per)
	}
	if err := s.Healthy(context.Background()); err != nil {
		t.Errorf("Healthy while Redis is down: %v", err)
	}
	if st := s.Status(); !strings.Contains(st, "UNREACHABLE since") {
		t.Errorf("Status: %q", st)
	}

	srv.Restart()
	back := waitSteps(t, s, 10*time.Second)
	t.Logf("steps succeed %v after the restart", back)
	if r, err := step(s, "before"); err != nil || !r.New() {
		t.Errorf("first step after the restart: %+v, %v (a Redis without persistence restarts empty)", r, err)
	}
	if st := s.Status(); !strings.HasPrefix(st, "redis: connected to unix:") {
		t.Errorf("Status: %q", st)
	}
	checkLogs(t, &logs)
}

// Open while Redis is down returns at once with a store that fails fast;
// the store connects by itself when Redis comes up.
func TestOpenWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	var logs logBuffer
	start := time.Now()
	s := open(t, srv, Options{Logger: logs.logger()})
	if d := time.Since(start); d > margin {
		t.Errorf("Open took %v with Redis down, want at once", d)
	}
	if err, d := timed(s, "x"); err == nil || d > fast {
		t.Errorf("step before connecting: %v after %v, want an error at once", err, d)
	}
	if st := s.Status(); !strings.Contains(st, "NOT CONNECTED") {
		t.Errorf("Status: %q", st)
	}
	if err := s.Healthy(context.Background()); err != nil {
		t.Errorf("Healthy: %v", err)
	}
	srv.Restart()
	back := waitSteps(t, s, 10*time.Second)
	t.Logf("connected %v after Redis started", back)
	l := logs.String()
	if !strings.Contains(l, "cannot be reached") || !strings.Contains(l, "redis works again") {
		t.Errorf("log:\n%s", l)
	}
}

// A server that accepts connections and never answers (a black hole, or
// a frozen Redis at start): Open returns after openWait, not after the
// dial timeout, and Close does not hang either.
func TestOpenNoAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	s, err := Open(Options{Addrs: []string{ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > openWait+margin {
		t.Errorf("Open took %v, want at most %v", d, openWait)
	}
	if err, d := timed(s, "x"); err == nil || d > fast {
		t.Errorf("step: %v after %v, want an error at once", err, d)
	}
	start = time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second+margin {
		t.Errorf("Close took %v", d)
	}
}

// A server that answers but refuses writes (a demoted master that came
// back as a replica before the client switched, a replica named by
// mistake): steps fail, the breaker opens, and the probe, a write, keeps
// it open until the server takes writes again.
func TestReadOnly(t *testing.T) {
	srv := redistest.Start(t)
	other := redistest.StartTCP(t)
	s := open(t, srv, Options{ProbeMin: 10 * time.Millisecond, ProbeMax: 20 * time.Millisecond})
	connected(t, s)
	srv.Must("REPLICAOF", "127.0.0.1", fmt.Sprint(other.Port))
	for i := range DefaultBreakerThreshold {
		if _, err := step(s, "x"); err == nil || !strings.Contains(err.Error(), "READONLY") {
			t.Fatalf("step %d on a replica: %v, want READONLY", i, err)
		}
	}
	waitProbes(t, s, 3)
	if s.down.Load() == nil {
		t.Fatal("breaker closed while the server is read-only")
	}
	srv.Must("REPLICAOF", "NO", "ONE")
	back := waitSteps(t, s, 10*time.Second)
	t.Logf("steps succeed %v after REPLICAOF NO ONE", back)
}
