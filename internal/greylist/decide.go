package greylist

import (
	"context"
	"strconv"
	"time"

	"greyd/internal/normalize"
	"greyd/internal/policy"
	"greyd/internal/store"
)

// Kind is what a decision amounts to.
type Kind uint8

// Kinds of decisions.
const (
	// Skip: the request cannot be judged (Warning says why); DUNNO.
	Skip Kind = iota
	// Pass: whitelisted, auto-whitelisted or a known triplet; DUNNO.
	Pass
	// FirstPass: the triplet completed greylisting just now; the reply is
	// the X-Greylist header for the first recipient of a message.
	FirstPass
	// Greylist: defer with the configured action and text.
	Greylist
	// Failed: the store failed (Err); fail open with DUNNO.
	Failed
)

// Reason says which rule decided, in Postgrey's log vocabulary.
type Reason uint8

// Reasons, in the order Postgrey checks them.
const (
	NoReason Reason = iota
	ClientWhitelist
	RecipientWhitelist
	ClientAWL
	TripletFound
	New
	EarlyRetry
)

func (r Reason) String() string {
	switch r {
	case ClientWhitelist:
		return "client whitelist"
	case RecipientWhitelist:
		return "recipient whitelist"
	case ClientAWL:
		return "client AWL"
	case TripletFound:
		return "triplet found"
	case New:
		return "new"
	case EarlyRetry:
		return "early-retry"
	}
	return ""
}

// Decision is the outcome of Decide.
type Decision struct {
	Kind   Kind
	Reason Reason
	// Now is the request's time (the clock, or policy_test_time).
	Now time.Time
	// Missing is the number of seconds still to wait (Greylist).
	Missing int64
	// Waited is the number of seconds since first seen (FirstPass).
	Waited int64
	// NewlyWhitelisted: this pass made the client reach the
	// auto-whitelist threshold.
	NewlyWhitelisted bool
	// FutureCorrected: the stored first-seen time was in the future and
	// was reset (the clock went backwards).
	FutureCorrected bool
	// Warning explains a Skip.
	Warning string
	// Err is the store failure of a Failed decision; a failure while
	// updating the auto-whitelist after a decision is also reported here,
	// with Kind unchanged.
	Err error
}

const awlInterval = 3600 // Postgrey counts a client at most once an hour

// Decide judges req with the settings and whitelists of snap, the state in
// st, and the time now. It writes the triplet and auto-whitelist updates a
// decision implies, exactly as Postgrey 1.37 (reference section 2), with
// max_age also enforced at lookup.
func Decide(ctx context.Context, req *policy.Request, snap *Snapshot, st store.Store, now time.Time) Decision {
	if req.Request != "smtpd_access_policy" {
		if !req.Has(policy.AttrRequest) {
			return Decision{Kind: Skip, Now: now, Warning: "request attribute missing: not a policy request"}
		}
		return Decision{Kind: Skip, Now: now, Warning: "unrecognized request type: '" + req.Request + "'"}
	}
	for _, a := range [...]struct {
		attr policy.Attr
		name string
	}{
		{policy.AttrClientAddress, "client_address"},
		{policy.AttrClientName, "client_name"},
		{policy.AttrRecipient, "recipient"},
		{policy.AttrSender, "sender"},
	} {
		if !req.Has(a.attr) {
			return Decision{Kind: Skip, Now: now, Warning: "attribute missing: " + a.name}
		}
	}
	if snap.UseTestTime && req.PolicyTestTime != "" {
		if t, err := strconv.ParseInt(req.PolicyTestTime, 10, 64); err == nil && t > 0 {
			now = time.Unix(t, 0)
		}
	}
	ip, ok := normalize.ParseAddr(req.ClientAddress)
	if !ok {
		return Decision{Kind: Skip, Now: now, Warning: "client_address is not an IP address: '" + req.ClientAddress + "'"}
	}
	d := Decision{Now: now}

	if snap.Clients.MatchName(req.ClientName) || snap.Clients.MatchAddr(ip) {
		d.Kind, d.Reason = Pass, ClientWhitelist
		return d
	}
	if snap.Recipients.Match(req.Recipient) {
		d.Kind, d.Reason = Pass, RecipientWhitelist
		return d
	}

	t := now.Unix()
	maxAge := int64(snap.MaxAge / time.Second)
	var buf [320]byte

	// Auto-whitelist, per exact client address.
	awl := snap.AutoWhitelistClients > 0
	var ckey string
	var client store.Client
	var cfound bool
	if awl {
		a := normalize.AppendClientAddr(buf[:0], ip)
		ckey = snap.key(a[len(a):], a)
		var err error
		client, cfound, err = st.Client(ctx, ckey)
		if err != nil {
			return Decision{Kind: Failed, Now: now, Err: err}
		}
		if cfound && t-client.Last > maxAge {
			cfound = false // expired, whether or not a sweep removed it yet
		}
		if cfound && client.Count >= int64(snap.AutoWhitelistClients) {
			if t >= client.Last+awlInterval || client.Last > t {
				// Keep-alive, at most hourly, as Postgrey.
				d.Err = st.PutClient(ctx, ckey, store.Client{Count: client.Count + 1, Last: t}, snap.MaxAge+time.Second)
			}
			d.Kind, d.Reason = Pass, ClientAWL
			return d
		}
	}

	// The triplet.
	k := normalize.AppendClientNet(buf[:0], ip, snap.LookupByHost, snap.IPv4Prefix, snap.IPv6Prefix)
	k = append(k, '/')
	k = normalize.AppendSender(k, req.Sender)
	k = append(k, '/')
	k = appendLower(k, req.Recipient)
	key := snap.key(k[len(k):], k)
	trip, found, err := st.Triplet(ctx, key)
	if err != nil {
		return Decision{Kind: Failed, Now: now, Err: err}
	}
	delay := int64(snap.Delay / time.Second)
	retry := int64(snap.RetryWindow / time.Second)
	if found && t-trip.Last > maxAge {
		found = false // Postgrey only forgot these in its nightly cleanup
	}
	first := t
	lastOK := false
	if found {
		first = trip.First
		if trip.Last-trip.First >= delay {
			lastOK = true
		} else if t-first > retry {
			first = t // stale unfinished entry: greylisting starts over
		}
		if first > t {
			d.FutureCorrected = true
			first = t
		}
	}
	diff := delay - (t - first)
	if needsWrite(found, trip, first, t, diff, lastOK) {
		if err := st.PutTriplet(ctx, key, store.Triplet{First: first, Last: t}, tripletTTL(diff, first, t, retry, maxAge)); err != nil {
			return Decision{Kind: Failed, Now: now, Err: err}
		}
	}

	if awl && diff <= 0 && !lastOK {
		// First successful pass of this triplet: count it for the client,
		// at most once an hour.
		if !cfound || t >= client.Last+awlInterval {
			n := int64(1)
			if cfound {
				n = client.Count + 1
			}
			d.Err = st.PutClient(ctx, ckey, store.Client{Count: n, Last: t}, snap.MaxAge+time.Second)
			d.NewlyWhitelisted = n == int64(snap.AutoWhitelistClients)
		}
	}

	switch {
	case diff > 0:
		d.Kind, d.Missing = Greylist, diff
		d.Reason = New
		if t != first {
			d.Reason = EarlyRetry
		}
	case !lastOK:
		d.Kind, d.Reason, d.Waited = FirstPass, TripletFound, t-first
	default:
		d.Kind, d.Reason = Pass, TripletFound
	}
	return d
}

// refreshInterval is how stale the last-seen time of a passed triplet may
// get before a request rewrites it: max_age (days) is then enforced to
// within a minute, and a busy triplet costs one write a minute, not one a
// request.
const refreshInterval = 60

// needsWrite reports whether the stored triplet must change. Postgrey
// rewrites "first,last" on every request (one fdatasync each); greyd writes
// only what a later decision can observe: a new or restarted entry (first
// changed), the first pass (last-first reaches the delay), and the
// last-seen time of a passed triplet, at most once a refreshInterval. An
// early retry's last-seen time is never read: an unpassed entry is judged
// by its first-seen time alone, and expires by it.
func needsWrite(found bool, old store.Triplet, first, now, diff int64, lastOK bool) bool {
	switch {
	case !found || old.First != first:
		return true
	case diff > 0:
		return false
	case !lastOK:
		return true
	}
	return now-old.Last >= refreshInterval || old.Last > now
}

// tripletTTL keeps an entry only as long as it can still matter, so the
// store's expiry index removes it without any scan: a passed triplet until
// max_age after it was last seen, an unpassed one until its retry window
// from first sight is over (after that a lookup would start over anyway).
// One second of slack keeps the lookup rules, not the sweep, in charge of
// the boundaries.
func tripletTTL(diff, first, now, retry, maxAge int64) time.Duration {
	ttl := maxAge
	if diff > 0 {
		if r := first + retry - now; r < ttl {
			ttl = r
		}
	}
	if ttl < 0 {
		ttl = 0
	}
	return time.Duration(ttl+1) * time.Second
}

// key returns the store key for raw, hashed when privacy is on. dst is
// scratch space that must not overlap raw's bytes.
func (s *Snapshot) key(dst, raw []byte) string {
	if s.Privacy != nil {
		return string(s.Privacy.Append(dst, raw))
	}
	return string(raw)
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
