package store

// AWLInterval is how often a client's auto-whitelist entry may change:
// Postgrey counts a client at most once an hour, and refreshes an
// auto-whitelisted client's entry at most once an hour.
const AWLInterval = 3600

// RefreshInterval is how stale the last-seen time of a passed triplet may
// get before a request rewrites it: max_age (days) is then enforced to
// within a minute, and a busy triplet costs one write a minute, not one a
// request (Postgrey rewrites "first,last" on every request).
const RefreshInterval = 60

// Writes is what a step stores: at most one client entry and one triplet
// entry, each with its time to live in seconds; or, when it sets a trap,
// the trap entry and the removal of the client's auto-whitelist entry;
// and the client's tarpit mark, set or removed.
type Writes struct {
	Client     bool
	ClientVal  Client
	ClientTTL  int64
	Triplet    bool
	TripletVal Triplet
	TripletTTL int64
	// ClientDel removes the client entry (never with Client).
	ClientDel bool
	Trap      bool
	TrapVal   Trap
	TrapTTL   int64
	// Mark sets the tarpit mark, MarkDel removes it (never both).
	Mark    bool
	MarkVal Tarpit
	MarkTTL int64
	MarkDel bool
}

// Transition is the state transition of one request, exactly as Postgrey
// 1.37 (reference section 2) with max_age enforced at lookup: s is what
// is stored (entries past their TTL already count as not found), now the
// step's time. Greytraps (OpenBSD spamd's) come after the auto-whitelist
// and before the triplet. It returns the result and what must be written (nothing
// for a Greylisted outcome under in.Hold); with in.DryRun the writes are
// computed all the same and the caller drops them. Pure: every in-process backend calls it under its own lock, and
// store/redis's Lua script is its line-by-line translation.
func Transition(in *StepInput, now int64, s State) (StepResult, Writes) {
	r := StepResult{Now: now, Before: s}
	var w Writes
	maxAge := in.MaxAge

	// Auto-whitelist, per exact client address.
	awl := in.ClientKey != "" && in.AWLClients > 0
	c, cfound := s.Client, s.ClientFound
	if cfound && now-c.Last > maxAge {
		cfound = false // expired, whether or not the store removed it yet
	}
	r.Before.ClientFound = cfound
	if awl && cfound && c.Count >= in.AWLClients {
		if now >= c.Last+AWLInterval || c.Last > now {
			// Keep-alive, at most hourly, as Postgrey.
			w.Client, w.ClientVal, w.ClientTTL = true, Client{Count: countUp(c.Count), Last: now}, maxAge+1
		}
		r.Outcome, r.First = AutoWhitelisted, now
		return r, w
	}

	// Greytraps, per exact client address: never for an auto-whitelisted
	// client (above). A trap hit (re)sets the trap and resets the
	// client's auto-whitelist progress; a trap still holding greylists
	// every request. Neither writes a triplet, and the result is a new
	// triplet's, so that nothing tells the client it is trapped.
	trapOn := in.TrapKey != ""
	trap, tfound := s.Trap, s.TrapFound && trapOn
	r.Before.TrapFound = tfound
	if trapOn && in.TrapHit {
		until := now + in.TrapFor
		w.Trap, w.TrapVal, w.TrapTTL = true, Trap{Since: now, Until: until}, in.TrapFor+in.RetryWindow+1
		w.ClientDel = awl && s.ClientFound
		r.Outcome, r.First, r.Missing, r.TrapSet, r.TrapUntil = Greylisted, now, in.Delay, true, until
		return r, w
	}
	if tfound && now < trap.Until {
		r.Outcome, r.First, r.Missing, r.Trapped, r.TrapUntil = Greylisted, now, in.Delay, true, trap.Until
		return r, w
	}

	// Tarpit marks, per exact client address (taRgrey's): one wait per
	// session; a client whose mark is another session's left during its
	// wait and is greylisted with the longer abandon delay while the
	// mark lives (its pending triplet is judged by that delay).
	tpOn := in.TarpitKey != ""
	mark, mfound := s.Tarpit, s.TarpitFound && tpOn
	r.Before.TarpitFound = mfound
	same := mfound && mark.Session == in.TarpitSession
	delay := in.Delay
	switch {
	case tpOn && in.TarpitOp == TarpitData:
		if !same {
			r.Outcome, r.First = Passed, now // DATA is never refused
			return r, w
		}
		w.MarkDel = !in.TarpitKeep
		r.Tarpit = TarpitWaited
		if in.TripletKey == "" {
			// The session's triplets are unknown (greyd restarted
			// between RCPT and a DATA that names no recipient): the mark
			// goes all the same, so that the client that waited is not
			// taken for one that left. Nothing passes, nothing counts.
			r.Outcome, r.First, r.Waited = Passed, now, now-mark.Since
			return r, w
		}
	case same:
		r.Outcome, r.First, r.Tarpit = Passed, now, TarpitSame
		return r, w
	case mfound:
		delay = max(delay, in.AbandonDelay)
	}

	// The triplet.
	trip, found := s.Triplet, s.TripletFound
	if found && now-trip.Last > maxAge {
		found = false // Postgrey only forgot these in its nightly cleanup
	}
	if found && tfound && trip.Last-trip.First < in.Delay && trip.First < trap.Since {
		// Pending when its client was trapped: forgotten, so the
		// trapped client starts over once the trap is gone.
		found = false
	}
	r.Before.TripletFound = found
	alt, altFound := s.Alt, s.AltFound && in.AltKey != "" && in.AltKey != in.TripletKey
	if altFound && now-alt.Last > maxAge {
		altFound = false
	}
	r.Before.AltFound = altFound

	first := now
	lastOK := false
	if found {
		first = trip.First
		if trip.Last-trip.First >= in.Delay {
			lastOK = true
		} else if now-first > in.RetryWindow {
			first = now // stale unfinished entry: greylisting starts over
		}
		if first > now {
			r.FutureCorrected = true
			first = now
		}
	}
	if r.Tarpit == TarpitWaited && !lastOK {
		// The client waited through its tarpit: as good as a retry.
		first = min(first, now-in.Delay)
	}

	if !lastOK && altFound && alt.Last-alt.First >= in.Delay {
		// The other key has passed: so has this request. Record it under
		// the chosen key, as passed, so the next request needs only that.
		f := min(alt.First, now-in.Delay)
		w.Triplet, w.TripletVal, w.TripletTTL = true, Triplet{First: f, Last: now}, maxAge+1
		r.Outcome, r.First, r.ViaAlt = Passed, f, true
		if r.Tarpit == TarpitWaited {
			r.Waited = now - mark.Since
		}
		return r, w
	}

	diff := delay - (now - first)
	if diff > 0 && mfound {
		r.Tarpit = TarpitAbandoned
	} else if diff > 0 && tpOn && in.TarpitOp == TarpitIssue {
		// The wait replaces the delay: no triplet is written, DATA
		// writes it as passed.
		w.Mark, w.MarkVal, w.MarkTTL = true, Tarpit{Since: now, Session: in.TarpitSession}, in.AbandonDelay+in.RetryWindow+1
		r.Outcome, r.First, r.Missing, r.Tarpit = Greylisted, first, diff, TarpitIssued
		return r, w
	}
	if needsWrite(found, trip, first, now, diff, lastOK) && !(in.Hold && diff > 0) {
		w.Triplet, w.TripletVal = true, Triplet{First: first, Last: now}
		w.TripletTTL = tripletTTL(diff, first, now, in.RetryWindow, maxAge)
	}

	if awl && diff <= 0 && !lastOK {
		// First successful pass of this triplet: count it for the client,
		// at most once an hour.
		if !cfound || now >= c.Last+AWLInterval {
			n := int64(1)
			if cfound {
				n = countUp(c.Count)
			}
			w.Client, w.ClientVal, w.ClientTTL = true, Client{Count: n, Last: now}, maxAge+1
			r.NewlyWhitelisted = n == in.AWLClients
		}
	}

	r.First = first
	switch {
	case diff > 0:
		r.Outcome, r.Missing = Greylisted, diff
	case !lastOK:
		r.Outcome, r.Waited = FirstPass, now-first
	default:
		r.Outcome = Passed
	}
	if r.Tarpit == TarpitWaited {
		r.Waited = now - mark.Since
	}
	return r, w
}

// countUp is a client's count plus one, which stops at MaxValue: past it
// the stored value would read back as no entry (ParseValue).
func countUp(n int64) int64 { return min(n+1, MaxValue) }

// needsWrite reports whether the stored triplet must change. Only what a
// later decision can observe is written: a new or restarted entry (first
// changed), the first pass (last-first reaches the delay), and the
// last-seen time of a passed triplet, at most once a RefreshInterval. An
// early retry's last-seen time is never read: an unpassed entry is judged
// by its first-seen time alone, and expires by it.
func needsWrite(found bool, old Triplet, first, now, diff int64, lastOK bool) bool {
	switch {
	case !found || old.First != first:
		return true
	case diff > 0:
		return false
	case !lastOK:
		return true
	}
	return now-old.Last >= RefreshInterval || old.Last > now
}

// tripletTTL keeps an entry only as long as it can still matter, so the
// store expires it without any scan: a passed triplet until max_age after
// it was last seen, an unpassed one until its retry window from first
// sight is over (after that a lookup would start over anyway). One second
// of slack keeps the lookup rules, not the expiry, in charge of the
// boundaries.
func tripletTTL(diff, first, now, retry, maxAge int64) int64 {
	ttl := maxAge
	if diff > 0 {
		if r := first + retry - now; r < ttl {
			ttl = r
		}
	}
	if ttl < 0 {
		ttl = 0
	}
	return ttl + 1
}
