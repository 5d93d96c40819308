package buntdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"
)

// BenchmarkScale measures the store at a realistic size: it fills a file
// database with GREYD_SCALE triplets (default 1,000,000) shaped like
// greyd's keys, reopens it, and reports the start-up time (integrity check
// plus buntdb's load and index rebuild), the heap it takes, bytes per
// triplet on disk and in memory, and lookups per second at that size.
// open-s is until Open returns (the first answer), loaded-s until buntdb
// has loaded the file in the background too; gc-cpu-ms/cycle is the CPU
// time of one full garbage collection of that heap (runtime/metrics).
//
//	GREYD_SCALE=5000000 go test -run '^$' -bench Scale -benchtime 1x ./internal/store
func BenchmarkScale(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("GREYD_SCALE"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		n = v
	}
	path := filepath.Join(b.TempDir(), "greyd.db")
	ctx := context.Background()
	key := func(i int) string {
		return fmt.Sprintf("198.%d.%d.0/sender%d@example.net/rcpt%d@example.org", i>>16&255, i>>8&255, i, i%1000)
	}
	// The heap is measured from before the fill.
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	fill, err := Open(path, Options{Sync: SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().Unix()
	for i := 0; i < n; i++ {
		if err := fill.PutTriplet(ctx, key(i), Triplet{First: now - 400, Last: now}, 35*24*time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	fill.Close()
	fill = nil
	// buntdb's background goroutine keeps a closed database until its
	// next tick, a second later: wait until the fill's heap is gone.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		if m.HeapAlloc < before.HeapAlloc+16<<20 {
			break
		}
	}
	fi, _ := os.Stat(path)

	for i := 0; i < b.N; i++ {
		start := time.Now()
		db, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		open := time.Since(start)
		<-db.loadDone // buntdb's own load, in the background (load.go)
		loaded := time.Since(start)
		runtime.GC()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		const lookups = 200_000
		start = time.Now()
		for j := 0; j < lookups; j++ {
			if _, found, err := db.Triplet(ctx, key(j*7919%n)); err != nil || !found {
				b.Fatalf("lookup %d: found=%v err=%v", j, found, err)
			}
		}
		perLookup := time.Since(start) / lookups
		gc := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
		metrics.Read(gc)
		gc0 := gc[0].Value.Float64()
		const cycles = 5
		for range cycles {
			runtime.GC()
		}
		metrics.Read(gc)
		b.ReportMetric((gc[0].Value.Float64()-gc0)*1e3/cycles, "gc-cpu-ms/cycle")
		db.Close()
		b.ReportMetric(float64(n), "triplets")
		b.ReportMetric(open.Seconds(), "open-s")
		b.ReportMetric(loaded.Seconds(), "loaded-s")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "heap-MB")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/triplet")
		b.ReportMetric(float64(fi.Size())/float64(n), "disk-B/triplet")
		b.ReportMetric(float64(perLookup.Nanoseconds()), "ns/lookup")
	}
}
