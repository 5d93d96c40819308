package buntdb

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"greyd/internal/store"
)

// TestGroupCommit runs steps of many connections at once, under
// SyncAlways so that they queue behind each other's fsyncs and share
// transactions: every step that wrote is in the index and, after a
// reopen, in the file; steps of one triplet were decided one after the
// other (exactly one first sighting each), and a closed store fails the
// steps that were waiting.
func TestGroupCommit(t *testing.T) {
	path := dbPath(t)
	d := openT(t, path, Options{Sync: SyncAlways})
	ctx := context.Background()
	const workers, keys = 32, 40
	in := func(w, k int) *store.StepInput {
		return &store.StepInput{
			ClientKey:  fmt.Sprintf("192.0.2.%d", w),
			TripletKey: fmt.Sprintf("192.0.2.0/s%d@example.org/r@example.net", k),
			Now:        1_000_000, Delay: 300, RetryWindow: 86400, MaxAge: 35 * 86400, AWLClients: 5,
		}
	}
	var mu sync.Mutex
	firsts := map[int]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := range keys {
				r, err := d.Step(ctx, in(w, (k+w)%keys))
				if err != nil {
					t.Errorf("worker %d key %d: %v", w, k, err)
					return
				}
				if !r.Before.TripletFound {
					mu.Lock()
					firsts[(k+w)%keys]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		if firsts[k] != 1 {
			t.Errorf("triplet %d was new to %d steps, want 1", k, firsts[k])
		}
	}
	checkIndex(t, d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openT(t, path, Options{})
	checkIndex(t, d)
	for k := range keys {
		checkTriplet(t, d, in(0, k).TripletKey, Triplet{First: 1_000_000, Last: 1_000_000}, true)
	}

	// Steps that wait for a write when the store closes fail; none hangs.
	for w := range workers {
		wg.Go(func() {
			for k := range keys {
				s := in(w, keys+w*keys+k) // new triplets: every step writes
				if _, err := d.Step(ctx, s); err != nil {
					return
				}
			}
		})
	}
	d.Close()
	wg.Wait()
}
