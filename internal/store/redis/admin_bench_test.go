package redis

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/store"
	"greyd/internal/store/redis/redistest"
)

// benchEntries are n triplets shaped like greyd's, live for a day.
func benchEntries(n int) []store.Entry {
	now := time.Now().Unix()
	out := make([]store.Entry, n)
	for i := range out {
		out[i] = store.Entry{Kind: store.KindTriplet, Key: benchKey(i), First: now - int64(i%1000), Last: now, Expires: now + 86400 + int64(i%3600)}
	}
	return out
}

// BenchmarkAdminImport imports 100 000 triplets into an empty Redis per
// op (what greyd import does with an export of that size, in the
// control socket's batches of 1000), and reports entries/s and the time
// Redis spent per entry (admin.lua's usec_per_call / entries per call).
//
//	go test -run '^$' -bench 'Admin' -benchtime 3x ./internal/store/redis
func BenchmarkAdminImport(b *testing.B) {
	const n = 100_000
	srv := redistest.Start(b)
	s := open(b, srv, Options{Timeout: 10 * time.Second})
	connected(b, s)
	entries := benchEntries(n)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		srv.Must("FLUSHALL")
		srv.Must("CONFIG", "RESETSTAT")
		b.StartTimer()
		for i := 0; i < n; i += 1000 {
			if imp, _, err := s.Import(ctx, entries[i:i+1000], 300); err != nil || imp != 1000 {
				b.Fatalf("Import = %d, %v", imp, err)
			}
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	reportScriptTime(b, srv, importBatch)
	if nt, _ := s.Counts(); nt != n {
		b.Errorf("Counts() = %d, want %d", nt, n)
	}
}

// BenchmarkAdminScan lists 100 000 triplets per op (greyd list, export,
// stats).
func BenchmarkAdminScan(b *testing.B) {
	const n = 100_000
	srv := redistest.Start(b)
	s := open(b, srv, Options{Timeout: 10 * time.Second})
	connected(b, s)
	ctx := context.Background()
	entries := benchEntries(n)
	for i := 0; i < n; i += 1000 {
		if _, _, err := s.Import(ctx, entries[i:i+1000], 300); err != nil {
			b.Fatal(err)
		}
	}
	srv.Must("CONFIG", "RESETSTAT")
	b.ReportAllocs()
	for b.Loop() {
		got := 0
		if err := s.Scan(ctx, nil, func(store.Entry) bool { got++; return true }); err != nil || got != n {
			b.Fatalf("Scan: %d entries, %v", got, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	st := srv.Info("commandstats")
	b.Logf("SCAN %s", st["cmdstat_scan"])
}

// BenchmarkAdminDelete deletes 100 000 triplets per op.
func BenchmarkAdminDelete(b *testing.B) {
	const n = 100_000
	srv := redistest.Start(b)
	s := open(b, srv, Options{Timeout: 10 * time.Second})
	connected(b, s)
	ctx := context.Background()
	entries := benchEntries(n)
	keys := make([]string, n)
	for i, e := range entries {
		keys[i] = e.Key
	}
	for b.Loop() {
		b.StopTimer()
		for i := 0; i < n; i += 1000 {
			if _, _, err := s.Import(ctx, entries[i:i+1000], 300); err != nil {
				b.Fatal(err)
			}
		}
		srv.Must("CONFIG", "RESETSTAT")
		b.StartTimer()
		if d, err := s.Delete(ctx, store.KindTriplet, keys); err != nil || d != n {
			b.Fatalf("Delete = %d, %v", d, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	reportScriptTime(b, srv, deleteBatch)
}

// reportScriptTime reports how long one admin.lua call held Redis
// (INFO commandstats), and per entry of a batch of per.
func reportScriptTime(b *testing.B, srv *redistest.Server, per int) {
	f := srv.Info("commandstats")["cmdstat_evalsha"]
	var calls, usec int64
	var perCall float64
	if _, err := fmt.Sscanf(f, "calls=%d,usec=%d,usec_per_call=%f", &calls, &usec, &perCall); err != nil {
		b.Logf("commandstats evalsha: %q: %v", f, err)
		return
	}
	b.ReportMetric(perCall, "redis-µs/call")
	b.ReportMetric(perCall*1000/float64(per), "redis-ns/entry")
}

// BenchmarkStepDuringAdmin is BenchmarkStep's parallel case while a
// listing or an import of 100 000 entries runs over and over: what an
// admin's greyd export, stats or import costs the requests of every host.
// It reports the steps' p50 and p99 latency.
//
//	go test -run '^$' -bench StepDuringAdmin -benchtime 100000x ./internal/store/redis
func BenchmarkStepDuringAdmin(b *testing.B) {
	const n = 100_000
	srv := redistest.Start(b)
	s := open(b, srv, Options{Timeout: 10 * time.Second})
	connected(b, s)
	ctx := context.Background()
	entries := benchEntries(n)
	for i := 0; i < n; i += 1000 {
		if _, _, err := s.Import(ctx, entries[i:i+1000], 300); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name  string
		admin func(ctx context.Context)
	}{
		{"alone", nil},
		{"scan", func(ctx context.Context) { s.Scan(ctx, nil, func(store.Entry) bool { return ctx.Err() == nil }) }},
		{"import", func(ctx context.Context) {
			for i := 0; i < n && ctx.Err() == nil; i += 1000 {
				s.Import(ctx, entries[i:i+1000], 300)
			}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			actx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for bc.admin != nil && actx.Err() == nil {
					bc.admin(actx)
				}
			}()
			var next atomic.Int64
			lats := make([]time.Duration, b.N)
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) - 1
					in := &store.StepInput{ClientKey: "198.51.100.1", TripletKey: fmt.Sprintf("%s-%d", bc.name, i),
						Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400, AWLClients: 5}
					start := time.Now()
					if _, err := s.Step(ctx, in); err != nil {
						b.Error(err)
						return
					}
					lats[i] = time.Since(start)
				}
			})
			b.StopTimer()
			cancel()
			<-done
			slices.Sort(lats)
			b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
		})
	}
}
