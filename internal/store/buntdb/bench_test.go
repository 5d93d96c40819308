package buntdb

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"greyd/internal/store"
)

const benchKeys = 100_000

// benchDB is a file database with SyncEverySecond holding benchKeys
// triplets with Postgrey-shaped keys.
func benchDB(b *testing.B) (*DB, []string) {
	b.Helper()
	d := openT(b, dbPath(b), Options{Sync: SyncEverySecond})
	keys := make([]string, benchKeys)
	ctx := context.Background()
	for i := range keys {
		keys[i] = fmt.Sprintf("198.51.%d.%d/sender%d@example.org/rcpt%d@example.net", i>>8&255, i&255, i, i%977)
		if err := d.PutTriplet(ctx, keys[i], Triplet{First: 1763812500, Last: 1763812500 + int64(i)}, 35*24*time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	return d, keys
}

func BenchmarkTripletGet(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, found, err := d.Triplet(ctx, keys[i%benchKeys]); !found || err != nil {
			b.Fatal(found, err)
		}
		i++
	}
}

func BenchmarkTripletGetParallel(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, found, err := d.Triplet(ctx, keys[i%benchKeys]); !found || err != nil {
				b.Error(found, err)
				return
			}
			i += 7
		}
	})
}

func BenchmarkTripletPut(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := d.PutTriplet(ctx, keys[i%benchKeys], Triplet{First: 1763812500, Last: 1763899999}, 35*24*time.Hour); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRoundTrip is the store's share of one greylisted request: look
// the triplet up, write it back.
func BenchmarkRoundTrip(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i%benchKeys]
		t, _, err := d.Triplet(ctx, k)
		if err != nil {
			b.Fatal(err)
		}
		t.Last++
		if err := d.PutTriplet(ctx, k, t, 35*24*time.Hour); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRoundTripParallel(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := keys[i%benchKeys]
			t, _, err := d.Triplet(ctx, k)
			if err == nil {
				t.Last++
				err = d.PutTriplet(ctx, k, t, 35*24*time.Hour)
			}
			if err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}

// BenchmarkStepNew is the store's share of a request with a never-seen
// triplet, the write path: a lookup, the decision, one buntdb transaction.
// parallel-64 runs 64 steppers per CPU as 64 connections would, where
// steps that arrive together share a transaction (commit.go). cpu-ns/op is
// the process's CPU time per step, which the machine's other load moves
// less than the wall time.
func BenchmarkStepNew(b *testing.B) {
	run := func(b *testing.B, par int, sync SyncPolicy) {
		d := openT(b, dbPath(b), Options{Sync: sync})
		ctx := context.Background()
		var next atomic.Int64
		now := time.Now().Unix()
		b.ReportAllocs()
		cpu0 := cpuTime()
		b.ResetTimer()
		step := func() {
			i := next.Add(1)
			in := store.StepInput{
				ClientKey:  fmt.Sprintf("198.51.%d.%d", i>>8&255, i&255),
				TripletKey: fmt.Sprintf("198.51.%d.0/sender%d@example.org/rcpt%d@example.net", i>>8&255, i, i%977),
				Now:        now, Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400, AWLClients: 5,
			}
			if _, err := d.Step(ctx, &in); err != nil {
				b.Error(err)
			}
		}
		if par == 0 {
			for b.Loop() {
				step()
			}
		} else {
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					step()
				}
			})
		}
		b.StopTimer()
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("serial", func(b *testing.B) { run(b, 0, SyncEverySecond) })
	b.Run("parallel-64", func(b *testing.B) { run(b, 64, SyncEverySecond) })
	// With an fsync per transaction, the steps that queue during one
	// fsync share the next.
	b.Run("parallel-64-syncalways", func(b *testing.B) { run(b, 64, SyncAlways) })
}

// cpuTime is the process's user and system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
