package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []uint64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1 << 63, ^uint64(0)}
	for range 10000 {
		values = append(values, r.Uint64()>>r.IntN(64))
	}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of [0,%d)", v, i, numBuckets)
		}
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d,%d]", v, i, lo, hi)
		}
		if width := hi - lo; width > lo/subCount {
			t.Fatalf("bucket %d = [%d,%d] wider than 1/%d of its value", i, lo, hi, subCount)
		}
	}
	// Buckets tile the value range without gaps or overlaps.
	for i := 1; i < numBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
	if _, hi := bucketRange(numBuckets - 1); hi != ^uint64(0) {
		t.Fatalf("last bucket ends at %d, want max uint64", hi)
	}
}

// check fails unless got is within the histogram's resolution of want.
func checkNear(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	tol := want / subCount
	if got < want || got > want+tol {
		t.Errorf("%s = %v, want %v (+%v)", what, got, want, tol)
	}
}

func TestQuantilesKnownSample(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		p50     time.Duration
		p99     time.Duration
		p999    time.Duration
		max     time.Duration
		mean    time.Duration
	}{
		{
			name:    "1..1000us",
			samples: seq(1000, time.Microsecond),
			p50:     500 * time.Microsecond,
			p99:     990 * time.Microsecond,
			p999:    999 * time.Microsecond,
			max:     1000 * time.Microsecond,
			mean:    500500 * time.Nanosecond,
		},
		{
			name:    "exact small values 1..200ns",
			samples: seq(200, time.Nanosecond),
			p50:     100,
			p99:     198,
			p999:    200,
			max:     200,
			mean:    100, // integer mean of 100.5
		},
		{
			name:    "one outlier",
			samples: append(repeatDur(999, time.Millisecond), time.Second),
			p50:     time.Millisecond,
			p99:     time.Millisecond,
			p999:    time.Millisecond,
			max:     time.Second,
		},
		{
			name:    "single sample",
			samples: []time.Duration{42 * time.Millisecond},
			p50:     42 * time.Millisecond,
			p99:     42 * time.Millisecond,
			p999:    42 * time.Millisecond,
			max:     42 * time.Millisecond,
			mean:    42 * time.Millisecond,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Record in two halves and merge, which must equal recording in one.
			var a, b histogram
			for i, s := range tc.samples {
				if i%2 == 0 {
					a.record(s)
				} else {
					b.record(s)
				}
			}
			a.merge(&b)
			if a.n != uint64(len(tc.samples)) {
				t.Fatalf("n = %d, want %d", a.n, len(tc.samples))
			}
			checkNear(t, "p50", a.quantile(0.5), tc.p50)
			checkNear(t, "p99", a.quantile(0.99), tc.p99)
			checkNear(t, "p99.9", a.quantile(0.999), tc.p999)
			if got := time.Duration(a.max); got != tc.max {
				t.Errorf("max = %v, want %v", got, tc.max)
			}
			if tc.mean != 0 {
				if got := a.mean(); got != tc.mean {
					t.Errorf("mean = %v, want %v", got, tc.mean)
				}
			}
		})
	}
}

func TestQuantileEmpty(t *testing.T) {
	var h histogram
	if q := h.quantile(0.99); q != 0 {
		t.Errorf("empty p99 = %v, want 0", q)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	var h histogram
	if n := testing.AllocsPerRun(1000, func() { h.record(1234567) }); n != 0 {
		t.Errorf("record allocates %v times", n)
	}
}

func seq(n int, unit time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i+1) * unit
	}
	return s
}

func repeatDur(n int, d time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = d
	}
	return s
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	var h histogram
	for i := range b.N {
		h.record(time.Duration(i&0xfffff) * 100)
	}
}
