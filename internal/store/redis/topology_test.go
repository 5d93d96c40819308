package redis

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/store"
	"greyd/internal/store/redis/redistest"
	"greyd/internal/store/storetest"
)

// Sentinel: the master is killed (SIGKILL) under a steady stream of
// steps; after the Sentinels promote the replica, the store writes to the
// new master by itself. The test measures how long steps failed and which
// acknowledged writes the new master lacks (replication is asynchronous).
func TestSentinelFailover(t *testing.T) {
	x := redistest.StartSentinel(t)
	var logs logBuffer
	s, err := Open(Options{Addrs: x.Addrs(), MasterSet: redistest.MasterName, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	connected(t, s)
	old := x.Master.Addr()
	if st := s.Status(); !strings.Contains(st, "at "+old+" (sentinel)") {
		t.Errorf("Status: %q, want the master %s", st, old)
	}

	// A writer: a new triplet every 2 ms, each a write on the master.
	type ack struct {
		key string
		at  time.Time
	}
	var (
		mu       sync.Mutex
		acked    []ack
		failures int
		stop     atomic.Bool
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			key := fmt.Sprintf("w%d", i)
			_, err := step(s, key)
			mu.Lock()
			if err == nil {
				acked = append(acked, ack{key, time.Now()})
			} else {
				failures++
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() {
		stop.Store(true)
		<-done
	}()
	acks := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	// A history before the kill, some of it older than the replication
	// lag the checks below allow.
	redistest.WaitFor(t, 20*time.Second, "150 writes acknowledged", func() bool { return acks() >= 150 })

	x.Master.Kill()
	killed := time.Now()
	var promoted time.Duration
	redistest.WaitFor(t, 20*time.Second, "sentinels promote the replica", func() bool {
		if a := x.MasterAddr(); a != "" && a != old {
			promoted = time.Since(killed)
			return true
		}
		return false
	})
	var back time.Duration
	redistest.WaitFor(t, 20*time.Second, "steps succeed on the new master", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if n := len(acked); n > 0 && acked[n-1].at.After(killed) {
			back = acked[n-1].at.Sub(killed)
			return true
		}
		return false
	})
	// Some more on the new master.
	more := acks() + 50
	redistest.WaitFor(t, 20*time.Second, "50 more writes acknowledged", func() bool { return acks() >= more })
	stop.Store(true)
	<-done

	// What the new master has of what was acknowledged.
	var lost []string
	var before, after int
	for _, a := range acked {
		got, err := x.Replica.Do("GET", "{greyd:}t:"+a.key)
		if err != nil {
			t.Fatal(err)
		}
		if a.at.Before(killed) {
			before++
		} else {
			after++
		}
		if got == "" {
			lost = append(lost, fmt.Sprintf("%s (acknowledged %v before the kill)", a.key, killed.Sub(a.at).Round(time.Microsecond)))
		}
	}
	t.Logf("failover: sentinels promoted %s after %v (down-after %v); steps succeed again %v after the kill; %d steps failed meanwhile",
		x.Replica.Addr(), promoted.Round(time.Millisecond), redistest.DownAfter, back.Round(time.Millisecond), failures)
	t.Logf("acknowledged writes: %d before the kill, %d after; lost at the failover: %d %v", before, after, len(lost), lost)
	for _, a := range acked {
		if a.at.After(killed) {
			continue
		}
		// Loopback replication lags well below 100 ms: anything older
		// is a bug, not asynchrony.
		if killed.Sub(a.at) > 100*time.Millisecond && containsKey(lost, a.key) {
			t.Errorf("lost %s, acknowledged %v before the kill", a.key, killed.Sub(a.at))
		}
	}
	for _, a := range acked {
		if a.at.After(killed) && containsKey(lost, a.key) {
			t.Errorf("a write acknowledged after the failover is not on the new master: %s", a.key)
		}
	}
	if st := s.Status(); !strings.Contains(st, "at "+x.Replica.Addr()+" (sentinel)") {
		t.Errorf("Status after the failover: %q, want the new master %s", st, x.Replica.Addr())
	}
	if back > 15*time.Second {
		t.Errorf("steps failed for %v after the master was killed", back)
	}
	t.Logf("log:\n%s", logs.String())
}

func containsKey(lost []string, key string) bool {
	for _, l := range lost {
		if strings.HasPrefix(l, key+" ") {
			return true
		}
	}
	return false
}

// Cluster: three masters. The behaviour suite passes, and every key of a
// site is in one slot (the prefix's hash tag).
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(Options{Addrs: c.Addrs(), KeyPrefix: fmt.Sprintf("case%d:", n.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		connected(t, s)
		return s
	})
	slot := c.Nodes[0].Must("CLUSTER", "KEYSLOT", "{greyd:}schema")
	for _, k := range []string{"{greyd:}t:192.0.2/a@example.net/b@example.org", "{greyd:}c:192.0.2.1", "{greyd:}t:{tag}/x"} {
		if got := c.Nodes[0].Must("CLUSTER", "KEYSLOT", k); got != slot {
			t.Errorf("slot of %s = %s, want %s (the prefix's)", k, got, slot)
		}
	}
	s, err := Open(Options{Addrs: c.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	connected(t, s)
	if st := s.Status(); !strings.HasPrefix(st, "redis: connected to cluster ") {
		t.Errorf("Status: %q", st)
	}
}
