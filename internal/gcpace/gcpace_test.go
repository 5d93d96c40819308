package gcpace

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{10 << 20, 100},
		{Headroom, 100},
		{Headroom + 1, 99},
		{64 << 20, 50},
		{128 << 20, 25},
		{300 << 20, 10}, // a million triplets: 32 MiB is 10.7 %
		{320 << 20, 10},
		{400 << 20, 10}, // a tenth, not 8 %
		{4 << 30, 10},
	} {
		if got := Percent(tc.live); got != tc.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

// TestPaceFollowsLiveHeap: with 200 MiB live, Pace sets the percentage
// that keeps Headroom above it; once the data is gone, back to 100.
func TestPaceFollowsLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Pace(ctx, 5*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil))); close(done) }()
	defer func() { cancel(); <-done }()

	live := make([][]byte, 200)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	// The test binary's own few MiB come on top.
	waitPercent(t, Percent(216<<20), Percent(200<<20))
	runtime.KeepAlive(live)
	live = nil
	waitPercent(t, 100, 100)
}

// TestPaceLeavesAdministratorsSetting: GOGC in the environment wins.
func TestPaceLeavesAdministratorsSetting(t *testing.T) {
	t.Setenv("GOGC", "300")
	before := debug.SetGCPercent(300)
	defer debug.SetGCPercent(before)
	Pace(context.Background(), time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil))) // returns at once
	if got := gogc(); got != 300 {
		t.Errorf("GC percent changed to %d under GOGC=300", got)
	}
}

// waitPercent collects until the GC percentage is within [lo, hi] (Pace
// reads the live heap the last collection measured).
func waitPercent(t *testing.T, lo, hi int) {
	t.Helper()
	p := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		p = gogc()
		if lo <= p && p <= hi {
			return
		}
	}
	t.Fatalf("GC percent %d, never within [%d, %d]", p, lo, hi)
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
