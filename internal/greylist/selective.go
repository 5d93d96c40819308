package greylist

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"greyd/internal/dns"
	"greyd/internal/policy"
	"greyd/internal/signals"
	"greyd/internal/store"
	"greyd/internal/tarpit"
	"greyd/internal/whitelist"
)

// Selective greylisting (issue 21): a request the triplet rules would
// greylist is scored first (package signals), and greylisted only when
// its score reaches the threshold; below it passes at once and leaves no
// triplet behind. The store step runs with Hold, which writes nothing for
// a Greylisted outcome, so a known client costs one step and no lookup;
// only a request the state would greylist is scored, and stepped again
// without Hold if its class is greylist.

// Mode says which requests may be greylisted.
type Mode uint8

// Modes.
const (
	ModeAlways Mode = iota // every request the triplet rules hold (Postgrey)
	ModeScore              // only those whose score reaches the threshold
	ModeNever              // none (a recipient policy): pass, no store step
)

var modeNames = [...]string{ModeAlways: "always", ModeScore: "score", ModeNever: "never"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode maps the configuration's mode ("always", "score", "never";
// validated by package config) to a Mode; anything else is ModeAlways.
func ParseMode(s string) Mode {
	switch s {
	case "score":
		return ModeScore
	case "never":
		return ModeNever
	}
	return ModeAlways
}

// Selective is the compiled selective greylisting of a snapshot. A nil
// *Selective is mode "always" for every recipient: nothing is scored.
type Selective struct {
	Mode       Mode
	GreylistAt int
	// TarpitAt, if set (with a tarpit), starts the tarpit class below
	// the greylisting threshold that applies; a recipient policy whose
	// threshold is at or below it has none.
	TarpitAt *int
	// Shadow computes, logs and counts the class of mode score but acts
	// as mode always: a site compares the classes with the retries
	// before it lets anyone through.
	Shadow   bool
	Signals  *signals.Config
	Policies []RecipientPolicy // in configuration order; the first match wins
}

// RecipientPolicy is a compiled recipient_policy block.
type RecipientPolicy struct {
	Name       string
	Recipients *whitelist.Recipients
	Mode       Mode
	GreylistAt *int           // nil: Selective.GreylistAt
	Delay      *time.Duration // nil: Settings.Delay
}

// selection is what applies to one request: the recipient policy (nil:
// none) and the mode, threshold and delay that follow.
type selection struct {
	policy     *RecipientPolicy
	mode       Mode
	greylistAt int
	tarpitAt   *int // nil: no tarpit class
	delay      time.Duration
}

// DelayFor returns the greylisting delay of a triplet to recipient, as
// decisions use it: its recipient policy's own, or greylist's.
func (snap *Snapshot) DelayFor(recipient string) time.Duration {
	return snap.selectFor(recipient).delay
}

// selectFor finds what applies to recipient.
func (snap *Snapshot) selectFor(recipient string) selection {
	s := selection{delay: snap.Delay}
	sel := snap.Selective
	if sel == nil {
		return s
	}
	s.mode, s.greylistAt = sel.Mode, sel.GreylistAt
	for i := range sel.Policies {
		p := &sel.Policies[i]
		if !p.Recipients.Match(recipient) {
			continue
		}
		s.policy, s.mode = p, p.Mode
		if p.GreylistAt != nil {
			s.greylistAt = *p.GreylistAt
		}
		if p.Delay != nil {
			s.delay = *p.Delay
		}
		break
	}
	if t := sel.TarpitAt; t != nil && snap.Tarpit != nil && *t < s.greylistAt {
		s.tarpitAt = t
	}
	return s
}

// Scoring is what selective greylisting did for one decision.
type Scoring struct {
	// Mode is the mode that applied (the recipient policy's, or
	// selective's); Policy the recipient policy ("": none).
	Mode   Mode
	Policy string
	// Scored: the request was scored (mode score or shadow, and the
	// triplet rules would have greylisted it); Score and Class hold the
	// outcome.
	Scored bool
	Score  signals.Score
	Class  signals.Class
	// GreylistAt is the threshold the class was read against.
	GreylistAt int
	// Shadow: the class was only computed, logged and counted; the
	// decision is mode always's.
	Shadow bool
}

// step is the store step of a request under s: one plain step in mode
// always; in mode score a step with Hold, then, only if the state would
// greylist, the score, and a second step without Hold if the class is
// greylist. With shadow the first step writes as usual and the score is
// only recorded. d receives the Scoring; a class pass is d.Scoring.Class
// == signals.Pass with d.Scoring.Shadow false.
func (s selection) step(ctx context.Context, snap *Snapshot, st store.Store, in *store.StepInput, req *policy.Request, ip netip.Addr, d *Decision) (store.StepResult, error) {
	if s.policy != nil {
		d.Scoring.Policy = s.policy.Name
	}
	d.Scoring.Mode, d.Scoring.GreylistAt = s.mode, s.greylistAt
	if s.mode != ModeScore {
		return st.Step(ctx, in)
	}
	shadow := snap.Selective.Shadow
	in.Hold = !shadow
	r, err := st.Step(ctx, in)
	switch {
	case err != nil:
		return r, err
	case r.Tarpit == store.TarpitSame:
		// One wait per session: the session's DATA passes this triplet too.
		if !in.DryRun {
			snap.tarpits.Add(req.Instance, tarpit.Keys{Triplet: in.TripletKey, Alt: in.AltKey})
		}
		return r, nil
	case r.Tarpit == store.TarpitAbandoned:
		// Never scored away either: the client left during its wait.
		if !in.Hold || in.DryRun {
			return r, nil
		}
		in.Hold = false
		return st.Step(ctx, in)
	case r.Outcome != store.Greylisted || r.Trapped || r.TrapSet:
		// A trap is never scored away: Hold does not apply to it, and a
		// trapped client is held whatever it looks like.
		return r, err
	}
	ev := snap.Scorer
	if ev == nil {
		ev = &signals.Evaluator{} // no resolver: DNS signals are unknown, counted at worst
	}
	sc := ev.Evaluate(ctx, snap.Selective.Signals, signals.Input{Addr: ip, Name: req.ClientName, HELO: req.HELOName, Sender: req.Sender})
	d.Scoring.Scored, d.Scoring.Score, d.Scoring.Shadow = true, sc, shadow
	d.Scoring.Class = signals.Thresholds{TarpitAt: s.tarpitAt, GreylistAt: s.greylistAt}.Classify(sc.Total)
	if d.Scoring.Class == signals.Tarpit && !shadow {
		if tr, ok, err := s.tarpitStep(ctx, snap, st, in, req, d); ok {
			return tr, err
		}
		if in.DryRun {
			return r, nil
		}
		in.Hold, in.TarpitOp = false, store.TarpitCheck
		return st.Step(ctx, in) // greylisted as class greylist is
	}
	if shadow || in.DryRun || d.Scoring.Class == signals.Pass {
		// A dry step writes nothing either way: the first one is the answer.
		return r, nil
	}
	in.Hold = false
	return st.Step(ctx, in)
}

// passes reports whether selective greylisting let a request the triplet
// rules would greylist pass at once.
func (sc *Scoring) passes() bool {
	return sc.Scored && !sc.Shadow && sc.Class == signals.Pass
}

// appendScoring appends the selective greylisting attributes of the log
// line: ", score=1, signals=rdns_dynamic:2" (and ", class=pass" in
// shadow mode, where the action does not show it; ", policy=name" when
// a recipient policy applied).
func appendScoring(b []byte, d *Decision) []byte {
	sc := &d.Scoring
	if sc.Policy != "" {
		b = append(b, ", policy="...)
		b = append(b, sc.Policy...)
	}
	if !sc.Scored {
		return b
	}
	if sc.Shadow {
		b = append(b, ", class="...)
		b = append(b, sc.Class.String()...)
	}
	b = append(b, ", score="...)
	b = strconv.AppendInt(b, int64(sc.Score.Total), 10)
	n := len(b)
	b = append(b, ", signals="...)
	m := len(b)
	if b = sc.Score.AppendFormat(b); len(b) == m {
		b = b[:n] // nothing weighed
	}
	return b
}

// SetResolver gives the engine the daemon's one resolver (its cache
// outlives reloads) for the scores of selective greylisting; nil: none,
// DNS signals are unknown. Call it before the engine serves, after
// SetObserver.
func (e *Engine) SetResolver(r *dns.Resolver) {
	e.setScorer(func(ev *signals.Evaluator) { ev.Resolver = r })
}

// ObserveDNS is the resolver's metrics hook (dns.Config.Observe): it
// hands every lookup to the Observer, if it is a DNSObserver. The
// resolver is made before the observer is set, hence the indirection.
func (e *Engine) ObserveDNS(label string, t dns.Type, s dns.Status, took time.Duration, cached bool) {
	e.dnsLookups.Add(1)
	if cached {
		e.dnsCacheHits.Add(1)
	}
	if o, ok := e.obs.(DNSObserver); ok {
		o.DNSLookup(label, t, s, took, cached)
	}
}

// DNSObserver is an Observer that also receives selective greylisting's
// measurements.
type DNSObserver interface {
	// DNSLookup: one lookup of the resolver (see dns.Config.Observe).
	DNSLookup(label string, t dns.Type, s dns.Status, took time.Duration, cached bool)
	// Scored: a request was scored; sc's list signals are the lookups
	// by zone and result.
	Scored(sc *signals.Score)
}

// SelectiveCount is how many scored requests ended in a class.
type SelectiveCount struct {
	Class string
	N     uint64
}

// SelectiveCounts returns the scored requests since the engine started,
// by class (pass, tarpit, greylist), shadow ones included, every class listed
// even at zero.
func (e *Engine) SelectiveCounts() []SelectiveCount {
	return []SelectiveCount{
		{signals.Pass.String(), e.classes[signals.Pass].Load()},
		{signals.Tarpit.String(), e.classes[signals.Tarpit].Load()},
		{signals.Greylist.String(), e.classes[signals.Greylist].Load()},
	}
}

// DNSCounts returns the resolver's lookups since the engine started and
// how many of them the cache answered.
func (e *Engine) DNSCounts() (lookups, cacheHits uint64) {
	return e.dnsLookups.Load(), e.dnsCacheHits.Load()
}

// countScoring counts a scored decision.
func (e *Engine) countScoring(d *Decision) {
	if !d.Scoring.Scored {
		return
	}
	e.classes[d.Scoring.Class].Add(1)
	if o, ok := e.obs.(DNSObserver); ok {
		// A copy: a pointer into d through the interface would move every
		// request's Decision (~500 B) to the heap, scored or not.
		sc := d.Scoring.Score
		o.Scored(&sc)
	}
}
