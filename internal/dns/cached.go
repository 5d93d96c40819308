package dns

import "context"

// LookupCached returns the cached answer for name and t, as Lookup would,
// and true; or, when the cache has none, a zero Result and false without
// asking anything or starting a query. A caller with several lookups to
// make reads the cache with it first and starts goroutines only for what
// is missing. A hit is observed as Lookup's is; a miss is not observed,
// since the Lookup that follows will be.
func (r *Resolver) LookupCached(ctx context.Context, name string, t Type) (Result, bool) {
	start := r.cfg.Now()
	k := key{canonical(name), t}
	r.mu.Lock()
	e, ok := r.cache[k]
	r.mu.Unlock()
	if !ok || !start.Before(e.expires) {
		return Result{}, false // an expired entry is left for Lookup to drop
	}
	res := e.res
	res.Cached = true
	res.Took = r.cfg.Now().Sub(start)
	r.observe(ctx, t, &res)
	return res, true
}
