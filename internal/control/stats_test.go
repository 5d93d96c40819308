package control

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a time that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestStatsScanFails: when the pass over the entries fails, stats says
// so instead of answering zeros.
func TestStatsScanFails(t *testing.T) {
	clk := &clock{t: time.Now()}
	d := startServerWith(t, testSnap(t, false), nil, Options{Now: clk.Now})
	ctx := context.Background()
	ask(d.engine, "198.51.100.7", "x", "a@b.example", "r@example.org")
	st, err := d.client.Stats(ctx)
	if err != nil || st.Entries.TripletsPending != 1 || st.Entries.Error != "" {
		t.Fatalf("stats: %+v, %v", st.Entries, err)
	}
	d.db.Close()
	clk.Add(countTTL)
	st, err = d.client.Stats(ctx)
	if err != nil || st.Entries.TripletsPending != 0 || !strings.Contains(st.Entries.Error, "closed") {
		t.Errorf("stats on a closed store: %+v, %v; want the counts by state marked failed", st.Entries, err)
	}
}

// TestStatsCached: the counts by state are reused for a few seconds;
// the totals and the rest are current at every call.
func TestStatsCached(t *testing.T) {
	clk := &clock{t: time.Now()}
	var dropped atomic.Uint64
	d := startServerWith(t, testSnap(t, false), nil, Options{Now: clk.Now, LogDropped: dropped.Load})
	ctx := context.Background()
	ask(d.engine, "198.51.100.7", "x", "a@b.example", "r@example.org")
	if st, err := d.client.Stats(ctx); err != nil || st.Entries.TripletsPending != 1 || st.LogDropped != 0 {
		t.Fatalf("stats: %+v, %v", st, err)
	}
	ask(d.engine, "198.51.100.7", "x", "b@b.example", "r@example.org")
	dropped.Store(7)
	clk.Add(countTTL - time.Second)
	st, err := d.client.Stats(ctx)
	if err != nil || st.Entries.Triplets != 2 || st.Entries.TripletsPending != 1 || st.LogDropped != 7 {
		t.Errorf("stats within %v: %+v, %v; want 2 triplets, 1 pending (counted before), 7 log lines dropped", countTTL, st, err)
	}
	clk.Add(time.Second)
	if st, err := d.client.Stats(ctx); err != nil || st.Entries.TripletsPending != 2 {
		t.Errorf("stats %v later: %+v, %v; want 2 pending", countTTL, st.Entries, err)
	}
}

// TestStateCounter: calls that arrive during a count share it; a result
// is reused for ttl, a failure not at all; a caller that gives up leaves
// the count to the others.
func TestStateCounter(t *testing.T) {
	clk := &clock{t: time.Now()}
	var calls atomic.Int32
	release := make(chan error)
	c := &stateCounter{ttl: 5 * time.Second, now: clk.Now, ctx: context.Background(),
		count: func(context.Context) (EntryCounts, error) {
			n := calls.Add(1)
			if err := <-release; err != nil {
				return EntryCounts{}, err
			}
			return EntryCounts{TripletsPending: int(n)}, nil
		}}
	ctx := context.Background()
	var wg sync.WaitGroup
	got := make([]int, 8)
	for i := range got {
		wg.Go(func() {
			n, err := c.get(ctx)
			if err != nil {
				t.Error(err)
			}
			got[i] = n.TripletsPending
		})
	}
	// One caller that gives up.
	gone, cancel := context.WithCancel(ctx)
	goneErr := make(chan error)
	go func() { _, err := c.get(gone); goneErr <- err }()
	for deadline := time.Now().Add(5 * time.Second); calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no count started")
		}
	}
	cancel()
	if err := <-goneErr; !errors.Is(err, context.Canceled) {
		t.Errorf("caller that gave up: %v", err)
	}
	release <- nil
	wg.Wait()
	for i, n := range got {
		if n != 1 {
			t.Errorf("caller %d got the result of count %d, want 1", i, n)
		}
	}
	if n, err := c.get(ctx); err != nil || n.TripletsPending != 1 || calls.Load() != 1 {
		t.Errorf("within ttl: %+v, %v after %d counts; want the first count reused", n, err, calls.Load())
	}
	clk.Add(5 * time.Second)
	go func() { release <- errors.New("store down") }()
	if _, err := c.get(ctx); err == nil || err.Error() != "store down" {
		t.Errorf("failed count: %v", err)
	}
	go func() { release <- nil }()
	if n, err := c.get(ctx); err != nil || n.TripletsPending != 3 {
		t.Errorf("after a failure: %+v, %v; want a new count (the third)", n, err)
	}
}
