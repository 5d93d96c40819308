package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram is a log-linear latency recorder in the spirit of HdrHistogram:
// values below 2*subCount ns are counted exactly, larger values fall into one
// of subCount buckets per power of two, so every reported value is within
// 1/subCount (< 0.8 %) of the true one. It has a fixed size, records without
// allocating or locking, and is owned by one connection; merge combines them.
type histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    uint64 // ns; overflows only after ~584 years of total latency
	min    uint64
	max    uint64
}

const (
	subBits    = 7
	subCount   = 1 << subBits // buckets per octave
	numBuckets = 2*subCount + (64-subBits-1)*subCount
)

// bucketOf maps a value to its bucket index.
func bucketOf(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits // >= 1
	top := v >> uint(shift)              // in [subCount, 2*subCount)
	return 2*subCount + (shift-1)*subCount + int(top-subCount)
}

// bucketRange returns the smallest and largest value that map to bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < 2*subCount {
		return uint64(i), uint64(i)
	}
	j := i - 2*subCount
	shift := uint(j/subCount + 1)
	top := uint64(subCount + j%subCount)
	lo = top << shift
	return lo, lo + (1 << shift) - 1
}

// record adds one latency.
func (h *histogram) record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// merge adds all of o's samples to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// recorded value v such that at least ceil(q*n) samples are <= v. The value
// is the upper end of its bucket, clamped to the observed [min, max], so it
// never under-reports.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketRange(i)
			hi = max(min(hi, h.max), h.min)
			return time.Duration(hi)
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}
