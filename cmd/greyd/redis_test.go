package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"greyd/internal/store/redis/redistest"
)

// redisConfig is testConfig with the state in the Redis srv instead of a
// file.
func redisConfig(t *testing.T, dir string, srv *redistest.Server, extra string) (sock string) {
	t.Helper()
	sock, _ = testConfig(t, dir, extra)
	path := filepath.Join(dir, "greyd.hcl")
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block := fmt.Sprintf("database {\n  redis {\n    url = %q\n  }\n", "unix://"+srv.Socket)
	if !strings.Contains(string(cfg), "database {\n") {
		t.Fatalf("testConfig wrote no database block:\n%s", cfg)
	}
	cfg = []byte(strings.Replace(string(cfg), "database {\n", block, 1))
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return sock
}

// Two greyd hosts on one Redis share one greylist: first seen on A, the
// early retry on B is deferred, the retry after the delay passes on B with
// the header, and the next mail on A passes.
func TestRedisTwoHosts(t *testing.T) {
	srv := redistest.Start(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	sockA, sockB := redisConfig(t, dirA, srv, ""), redisConfig(t, dirB, srv, "")
	a, b := startDaemon(t, dirA), startDaemon(t, dirB)
	a.waitLog("redis: connected to unix:" + srv.Socket)
	b.waitLog("redis: connected to unix:" + srv.Socket)
	ca, cb := dial(t, "unix", sockA), dial(t, "unix", sockB)
	now := time.Now().Unix()
	req := func(at int64) []string {
		return rcpt("198.51.100.60", "mx.foo.example", "alice@foo.example", "bob@example.org", now+at)
	}
	if got := ca.ask(req(0)...); got != greylisted {
		t.Errorf("first attempt on A: got %q, want %q", got, greylisted)
	}
	if got := cb.ask(req(120)...); got != greylisted {
		t.Errorf("early retry on B: got %q, want %q", got, greylisted)
	}
	b.waitLog("action=greylist, reason=early-retry (180s missing)")
	got := cb.ask(req(310)...)
	if !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 310 seconds by greyd-test at ") {
		t.Errorf("retry after the delay on B: got %q, want the X-Greylist header", got)
	}
	if got := ca.ask(req(400)...); got != "DUNNO" {
		t.Errorf("next mail on A: got %q, want DUNNO", got)
	}
	a.waitLog("action=pass, reason=triplet found, client_name=mx.foo.example")
}

// askTimed asks and returns the action and how long the answer took.
func askTimed(c *client, req []string) (string, time.Duration) {
	start := time.Now()
	got := c.ask(req...)
	return got, time.Since(start)
}

// Redis frozen, killed, restarted, with one greyd that keeps running: it
// answers DUNNO within the store timeout while Redis hangs, at once while
// it is dead, and greylists again when Redis is back.
func TestRedisFailures(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	sock := redisConfig(t, dir, srv, "")
	d := startDaemon(t, dir)
	d.waitLog("redis: connected to")
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	n := 0
	fresh := func() []string { // a triplet never seen
		n++
		return rcpt("198.51.100.60", "mx.foo.example", fmt.Sprintf("s%d@foo.example", n), "bob@example.org", now)
	}
	if got := c.ask(fresh()...); got != greylisted {
		t.Fatalf("with Redis up: got %q, want %q", got, greylisted)
	}

	// Frozen: the default store_timeout with Redis is 250 ms.
	srv.Freeze()
	var worst time.Duration
	for i := range 8 {
		got, took := askTimed(c, fresh())
		if got != "DUNNO" {
			t.Errorf("request %d with Redis frozen: got %q, want DUNNO", i, got)
		}
		worst = max(worst, took)
	}
	t.Logf("Redis frozen: slowest answer %v (store_timeout 250ms)", worst)
	if worst > 250*time.Millisecond+250*time.Millisecond {
		t.Errorf("an answer took %v with Redis frozen, store_timeout 250ms", worst)
	}
	srv.Thaw()
	waitGreylisting(t, c, fresh, "after SIGCONT")

	// Killed: DUNNO at once.
	srv.Kill()
	worst = 0
	for i := range 20 {
		got, took := askTimed(c, fresh())
		if got != "DUNNO" {
			t.Errorf("request %d with Redis dead: got %q, want DUNNO", i, got)
		}
		worst = max(worst, took)
	}
	t.Logf("Redis dead: slowest answer %v", worst)
	if worst > 100*time.Millisecond {
		t.Errorf("an answer took %v with Redis dead, want milliseconds", worst)
	}
	srv.Restart()
	waitGreylisting(t, c, fresh, "after Redis restarted")
	d.waitLog("redis works again")
	d.waitLog("store works again")
}

// waitGreylisting asks for fresh triplets until one is greylisted again.
func waitGreylisting(t *testing.T, c *client, fresh func() []string, when string) {
	t.Helper()
	start := time.Now()
	for {
		got := c.ask(fresh()...)
		if got == greylisted {
			t.Logf("greylisting again %v %s", time.Since(start).Round(time.Millisecond), when)
			return
		}
		if got != "DUNNO" {
			t.Fatalf("%s: got %q", when, got)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("still DUNNO 10s %s", when)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// greyd started while Redis is down serves (DUNNO) at once, and connects
// when Redis comes up.
func TestRedisStartWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	dir := t.TempDir()
	sock := redisConfig(t, dir, srv, "")
	start := time.Now()
	d := startDaemon(t, dir)
	t.Logf("greyd listening %v after start with Redis down", time.Since(start).Round(time.Millisecond))
	d.waitLog("cannot be reached")
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	n := 0
	fresh := func() []string {
		n++
		return rcpt("198.51.100.60", "mx.foo.example", fmt.Sprintf("s%d@foo.example", n), "bob@example.org", now)
	}
	if got, took := askTimed(c, fresh()); got != "DUNNO" || took > 100*time.Millisecond {
		t.Errorf("with Redis down: got %q after %v, want DUNNO at once", got, took)
	}
	srv.Restart()
	waitGreylisting(t, c, fresh, "after Redis started")
}
