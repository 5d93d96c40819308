// Package gcpace paces Go's garbage collector to greyd's working set.
//
// With the default GOGC=100 the heap grows to twice the live data before
// each collection. For a small database that is a few megabytes; with a
// million triplets in buntdb (about 300 MB live) it is another 300 MB of
// resident memory that holds nothing but garbage. Pace lowers the GC
// percentage as the live heap grows, so that the headroom above the live
// data stays about Headroom (never below a tenth of the live heap): at a
// million triplets the resident size is that heap goal plus ~30 MB
// (BENCHMARKS.md). Each collection marks the whole live heap (about
// 120 ms of CPU at a million triplets; the index holds no pointers), so a
// smaller headroom means more collections: with ~0.9 KB of garbage per
// request, a tenth costs 2 to 5 µs of CPU per request more than a
// quarter did, of 40 to 60. An administrator's GOGC or GOMEMLIMIT turns
// it off: theirs is the decision.
package gcpace

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Headroom is the heap growth allowed between collections once the live
// heap is larger than this; below, GOGC stays at Go's default of 100.
const Headroom = 32 << 20

// MinPercent bounds how far the GC percentage goes down.
const MinPercent = 10

// Percent is the GC percentage for a live heap of live bytes.
func Percent(live uint64) int {
	if live <= Headroom {
		return 100
	}
	return max(MinPercent, int(100*Headroom/live))
}

// Pace adjusts the GC percentage to the live heap every interval until ctx
// ends, unless the environment sets GOGC or GOMEMLIMIT. It logs each
// change at debug level.
func Pace(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		log.Debug("GOGC or GOMEMLIMIT set: the garbage collector is paced as they say")
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := 100
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not this Go version's metric: leave the default
		}
		live := sample[0].Value.Uint64()
		if p := Percent(live); p != current {
			debug.SetGCPercent(p)
			log.Debug("garbage collector paced to the live heap", "live_mb", live>>20, "gogc", p)
			current = p
		}
	}
}
