package dns

import (
	"context"
	"errors"
	"time"
)

// evictSample is how many entries a full cache looks at to choose the one
// to drop. Go's map iteration starts at a random place, so this is a
// random sample, as in Redis's eviction.
const evictSample = 8

// sweepEvery is how often a full cache may scan all of itself for expired
// entries; in between, full means sampled eviction.
const sweepEvery = time.Minute

// startLocked starts the query for k in its own goroutine, under the
// resolver's context and LookupTimeout rather than the caller's, so that
// it can outlive the caller. r.mu is held.
func (r *Resolver) startLocked(k key) *flight {
	ctx, cancel := context.WithTimeout(r.base, r.cfg.LookupTimeout)
	f := &flight{done: make(chan struct{}), cancel: cancel}
	r.flights[k] = f
	r.wg.Add(1)
	go r.fly(ctx, k, f)
	return f
}

func (r *Resolver) fly(ctx context.Context, k key, f *flight) {
	defer r.wg.Done()
	res := r.resolve(ctx, k.name, k.t)
	// Cancelled (past MaxBackground, or Close): an answer that slipped in
	// meanwhile is not cached either, so the bound means what it says.
	cancelled := errors.Is(ctx.Err(), context.Canceled)
	f.cancel()
	now := r.cfg.Now()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flights[k] == f {
		delete(r.flights, k)
	}
	if f.background {
		r.background--
	}
	if ttl, ok := r.cacheFor(&res); ok && !r.closed && !cancelled {
		r.storeLocked(k, res, now, now.Add(ttl))
	}
	f.res = res
	f.finished = true
	close(f.done)
}

// leave is called by a caller that stops waiting for f. The last one to
// leave turns f into a background lookup, or cancels it when there are
// MaxBackground of them already.
func (r *Resolver) leave(k key, f *flight) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f.waiters--
	if f.waiters > 0 || f.background || f.finished {
		return
	}
	if r.background < r.cfg.MaxBackground {
		f.background = true
		r.background++
		return
	}
	f.cancel()
	// A caller arriving now starts a new query rather than joining one
	// that will only fail.
	if r.flights[k] == f {
		delete(r.flights, k)
	}
}

// cacheFor says how long res is cached: answers with records for their
// TTL clamped to [MinTTL, MaxTTL], NXDOMAIN and NODATA for NegativeTTL,
// failures not at all (the next request asks again).
func (r *Resolver) cacheFor(res *Result) (time.Duration, bool) {
	switch res.Status {
	case Found:
		return min(max(res.TTL, r.cfg.MinTTL), r.cfg.MaxTTL), true
	case NXDomain, NoData:
		return r.cfg.NegativeTTL, true
	}
	return 0, false
}

// storeLocked caches res until expires, making room first if the cache
// is full: expired entries go first, then the entry of a random sample
// that would expire first. r.mu is held.
func (r *Resolver) storeLocked(k key, res Result, now, expires time.Time) {
	res.Cached, res.Took, res.Err = false, 0, nil
	if _, ok := r.cache[k]; !ok && len(r.cache) >= r.cfg.MaxEntries {
		if now.Sub(r.lastSweep) >= sweepEvery {
			r.lastSweep = now
			for ek, e := range r.cache {
				if !now.Before(e.expires) {
					delete(r.cache, ek)
				}
			}
		}
		for len(r.cache) >= r.cfg.MaxEntries {
			r.evictLocked()
		}
	}
	r.cache[k] = entry{res: res, expires: expires}
}

func (r *Resolver) evictLocked() {
	var victim key
	var first time.Time
	n := 0
	for k, e := range r.cache {
		if n == 0 || e.expires.Before(first) {
			victim, first = k, e.expires
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(r.cache, victim)
}

// Len returns the number of cached answers, expired ones not yet dropped
// included.
func (r *Resolver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cache)
}
