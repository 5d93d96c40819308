package greylist

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"greyd/internal/identity"
	"greyd/internal/normalize"
	"greyd/internal/policy"
	"greyd/internal/store"
)

// Action is what a decision amounts to.
type Action uint8

// Actions.
const (
	// Skip: the request cannot be judged (Warning says why); DUNNO.
	// Without a Warning it is no decision at all (a DATA request outside
	// a tarpitted session): answered DUNNO, neither counted nor logged.
	Skip Action = iota
	// Pass: whitelisted, auto-whitelisted or a known triplet; DUNNO.
	Pass
	// FirstPass: the triplet completed greylisting just now; the reply is
	// the X-Greylist header for the first recipient of a message.
	FirstPass
	// Greylist: defer with the configured action and text.
	Greylist
	// Sleep: a tarpit, "SLEEP n" (tarpit.go).
	Sleep
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
	// Selective greylisting (selective.go).
	Scored      // the score was below the threshold: pass without delay
	PolicyNever // a recipient policy with mode "never"
	// Greytrap: the recipient is a trap, and the client is trapped now;
	// Trapped: a trap holds the client (trap.go).
	Greytrap
	Trapped
	// The tarpit (tarpit.go): TarpitReason for the tarpit itself (Sleep)
	// and for the DATA of a session that waited (Pass); TarpitSession
	// for a further RCPT of a session that waited; TarpitAbandoned for a
	// client that left during its wait.
	TarpitReason
	TarpitSession
	TarpitAbandoned
	numReasons
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
	case Scored:
		return "score"
	case PolicyNever:
		return "recipient policy"
	case Greytrap:
		return "greytrap"
	case Trapped:
		return "trapped"
	case TarpitReason:
		return "tarpit"
	case TarpitSession:
		return "tarpit-session"
	case TarpitAbandoned:
		return "tarpit-abandoned"
	}
	return ""
}

// The policy_test_time values honoured: 2000-01-01 to 2100-01-01 UTC.
// Beyond them lie only mistakes and attacks (values near the int64 limit
// round differently in Redis's Lua and in Go).
const (
	MinTestTime = 946684800
	MaxTestTime = 4102444800
)

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
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
	// BadTestTime: policy_test_time was honoured but its value was no
	// Unix time from MinTestTime to MaxTestTime, and the clock was used.
	BadTestTime bool
	// Identity is the rule that chose the client part of the key under
	// lookup_by "auto", and Org the organisation it chose ("" = the
	// network).
	Identity identity.Rule
	Org      string
	// Runtime: the whitelist entry that passed the request is a runtime
	// one (greyd whitelist add), not one of the files.
	Runtime bool
	// Err is the store failure of a Failed decision.
	Err error
	// Input is what the store was asked and Step what it answered (zero
	// unless the store was asked).
	Input store.StepInput
	Step  store.StepResult
	// Scoring is what selective greylisting did (selective.go).
	Scoring Scoring
	// Sleep is the tarpit's wait in seconds (Sleep). Capped says why a
	// request of class tarpit was greylisted instead ("stress",
	// "max_concurrent"; "" otherwise).
	Sleep  int64
	Capped string
}

// Decide judges req with the settings and whitelists of snap, the state in
// st, and the time now, exactly as Postgrey 1.37 (reference section 2),
// with max_age also enforced at lookup. Whitelists are checked here; the
// triplet and auto-whitelist rules are one store.Step, which writes what
// the decision implies.
func Decide(ctx context.Context, req *policy.Request, snap *Snapshot, st store.Store, now time.Time) Decision {
	return decide(ctx, req, snap, st, now, false)
}

// DecideDry is Decide that writes nothing: what the decision would be
// right now (greyd explain).
func DecideDry(ctx context.Context, req *policy.Request, snap *Snapshot, st store.Store, now time.Time) Decision {
	return decide(ctx, req, snap, st, now, true)
}

func decide(ctx context.Context, req *policy.Request, snap *Snapshot, st store.Store, now time.Time, dryRun bool) Decision {
	data := isData(req)
	if data && snap.Tarpit == nil {
		return Decision{Action: Skip, Now: now} // DATA matters only to a tarpit
	}
	if w := unjudgeable(req); w != "" {
		return Decision{Action: Skip, Now: now, Warning: w}
	}
	now, fixedNow, badTestTime := requestClock(snap, req, now)
	ip, ok := normalize.ParseAddr(req.ClientAddress)
	if !ok {
		return Decision{Action: Skip, Now: now, Warning: "client_address is not an IP address: '" + req.ClientAddress + "'"}
	}
	if data {
		d := snap.dataDecision(ctx, req, st, ip, now, fixedNow, dryRun)
		d.BadTestTime = badTestTime
		return d
	}
	d := Decision{Now: now, BadTestTime: badTestTime}
	if whitelisted(snap, req, ip, &d) {
		return d
	}
	sel := snap.selectFor(req.Recipient)
	if sel.mode == ModeNever {
		d.Action, d.Reason, d.Scoring.Policy, d.Scoring.Mode = Pass, PolicyNever, sel.policy.Name, ModeNever
		return d
	}
	in := getInput()
	defer putInput(in)
	stepInput(in, snap, sel, req, ip, now, fixedNow, dryRun, &d)
	r, err := sel.step(ctx, snap, st, in, req, ip, &d)
	if err != nil {
		return Decision{Action: Failed, Now: now, Err: err}
	}
	d.fromStep(in, &r)
	return d
}

// inputs recycles store steps' inputs. Handed to the Store interface, an
// input escapes to the heap, and at 184 bytes it was a request's largest
// allocation; a Store uses it only until Step returns.
var inputs = sync.Pool{New: func() any { return new(store.StepInput) }}

func getInput() *store.StepInput { return inputs.Get().(*store.StepInput) }

func putInput(in *store.StepInput) {
	*in = store.StepInput{} // no key strings kept alive in the pool
	inputs.Put(in)
}

// unjudgeable says why req cannot be judged, or "".
func unjudgeable(req *policy.Request) string {
	if req.Request != "smtpd_access_policy" {
		if !req.Has(policy.AttrRequest) {
			return "request attribute missing: not a policy request"
		}
		return "unrecognized request type: '" + req.Request + "'"
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
			return "attribute missing: " + a.name
		}
	}
	return ""
}

// requestClock is the decision's time: policy_test_time when the
// configuration honours it and it is within MinTestTime..MaxTestTime
// (fixed), else now; bad reports a value that was ignored.
func requestClock(snap *Snapshot, req *policy.Request, now time.Time) (t time.Time, fixed, bad bool) {
	if !snap.UseTestTime || req.PolicyTestTime == "" {
		return now, false, false
	}
	n, err := strconv.ParseInt(req.PolicyTestTime, 10, 64)
	if err != nil || n < MinTestTime || n > MaxTestTime {
		return now, false, true
	}
	return time.Unix(n, 0), true, false
}

// whitelisted decides d from the whitelist files and the runtime
// whitelist, which need no store step; false: none matched.
func whitelisted(snap *Snapshot, req *policy.Request, ip netip.Addr, d *Decision) bool {
	switch {
	case snap.Clients.MatchName(req.ClientName) || snap.Clients.MatchAddr(ip):
		d.Action, d.Reason = Pass, ClientWhitelist
		return true
	case snap.Recipients.Match(req.Recipient):
		d.Action, d.Reason = Pass, RecipientWhitelist
		return true
	}
	rt := snap.Runtime
	if rt == nil {
		return false
	}
	switch {
	case rt.Clients != nil && (rt.Clients.MatchName(req.ClientName) || rt.Clients.MatchAddr(ip)):
		d.Action, d.Reason, d.Runtime = Pass, ClientWhitelist, true
		return true
	case rt.Recipients != nil && rt.Recipients.Match(req.Recipient):
		d.Action, d.Reason, d.Runtime = Pass, RecipientWhitelist, true
		return true
	}
	return false
}

// stepInput fills in, the store step of req: the rules of sel, the keys
// (the triplet's, the client's for the auto-whitelist and traps, and
// under lookup_by "auto" the organisation's with the network's read
// alongside). It records the identity rule in d.
func stepInput(in *store.StepInput, snap *Snapshot, sel selection, req *policy.Request, ip netip.Addr, now time.Time, fixedNow, dryRun bool, d *Decision) {
	*in = store.StepInput{
		Now:         now.Unix(),
		FixedNow:    fixedNow,
		Delay:       int64(sel.delay / time.Second),
		RetryWindow: int64(snap.RetryWindow / time.Second),
		MaxAge:      int64(snap.MaxAge / time.Second),
		AWLClients:  int64(snap.AutoWhitelistClients),
		DryRun:      dryRun,
	}
	// Auto-whitelist, per exact client address.
	if snap.AutoWhitelistClients > 0 {
		in.ClientKey = snap.ClientKey(ip)
	}
	snap.trapInput(in, ip, req.Recipient)
	if sel.mode == ModeScore && sel.tarpitAt != nil {
		snap.tarpitInput(in, ip, req)
	}
	in.TripletKey = snap.TripletKey(ip, req.Sender, req.Recipient)
	if snap.Identity != nil {
		// lookup_by "auto": a verified name of an organisation keys the
		// triplet by that organisation, so a pool that retries from
		// another network finds its first attempt; the network's key is
		// read too, so whatever passed under it still passes. The
		// auto-whitelist stays per address.
		org, rule, ok := snap.Identity.Of(ip, req.ClientName)
		d.Identity = rule
		if ok {
			d.Org = org
			in.AltKey = in.TripletKey
			in.TripletKey = snap.OrgTripletKey(org, req.Sender, req.Recipient)
		}
	}
}

// fromStep completes d from the store step's result r of input in.
func (d *Decision) fromStep(in *store.StepInput, r *store.StepResult) {
	if r.Now != in.Now {
		d.Now = time.Unix(r.Now, 0) // the store's clock (Redis TIME)
	}
	d.Step, d.Input = *r, *in
	d.NewlyWhitelisted, d.FutureCorrected = r.NewlyWhitelisted, r.FutureCorrected
	switch r.Tarpit {
	case store.TarpitIssued:
		d.Action, d.Reason = Sleep, TarpitReason
		return
	case store.TarpitSame:
		d.Action, d.Reason = Pass, TarpitSession
		return
	}
	switch r.Outcome {
	case store.AutoWhitelisted:
		d.Action, d.Reason = Pass, ClientAWL
	case store.Greylisted:
		if d.Scoring.passes() {
			d.Action, d.Reason = Pass, Scored
			break
		}
		d.Action, d.Missing, d.Reason = Greylist, r.Missing, EarlyRetry
		if tr := trapReason(r); tr != NoReason {
			d.Reason = tr
		} else if r.Tarpit == store.TarpitAbandoned {
			d.Reason = TarpitAbandoned
		} else if r.New() {
			d.Reason = New
		}
	case store.FirstPass:
		d.Action, d.Reason, d.Waited = FirstPass, TripletFound, r.Waited
	default:
		d.Action, d.Reason = Pass, TripletFound
	}
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
