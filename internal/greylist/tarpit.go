package greylist

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"greyd/internal/policy"
	"greyd/internal/store"
)

// The tarpit (taRgrey's): a client whose score lies from
// Selective.TarpitAt up to the greylisting threshold is made to wait at
// RCPT (Postfix's "SLEEP n") instead of being greylisted. A mark in the
// store, keyed by the client address, remembers the session; the
// session's DATA request proves the client stayed, and its triplets are
// recorded as passed. A client whose mark another session finds left
// during its wait and is greylisted with AbandonDelay. The marks live in
// the store, so that RCPT and DATA may straddle a restart and MX hosts
// sharing Redis agree; what only this host needs (the session's triplets,
// the cap) lives in memory.

// Tarpit is the compiled tarpit block.
type Tarpit struct {
	Duration      time.Duration
	MaxConcurrent int
	AbandonDelay  time.Duration
}

const (
	// sessionMargin is how long after its wait a tarpitted session may
	// still reach DATA: Postfix's smtpd waits 300 s for each command.
	sessionMargin = 300
	// maxSessions bounds the sessions remembered; the oldest goes first.
	maxSessions = 4096
	// maxSessionTriplets bounds one session's triplets: Postfix's
	// smtpd_recipient_limit is 1000.
	maxSessionTriplets = 1000
	// abandonWarnAfter tarpitted sessions in a row that never reached
	// DATA make greyd warn that DATA is probably not asked.
	abandonWarnAfter = 20
)

// tarpitKeys are the keys of one triplet of a tarpitted session.
type tarpitKeys struct{ triplet, alt string }

// tarpitSession is a session tarpitted on this host.
type tarpitSession struct {
	at   int64 // Unix seconds of the tarpit
	keys []tarpitKeys
}

// tarpits is the engine's tarpit state on this host: the tarpits issued
// within the last duration (max_concurrent counts them here, per host),
// the sessions waiting for their DATA, and whether DATA seems not to be
// asked. It outlives reloads; the settings come with each call.
type tarpits struct {
	mu       sync.Mutex
	started  int64   // Unix seconds the engine started
	issued   []int64 // Unix seconds of recent tarpits, oldest first
	sessions map[string]*tarpitSession
	missed   int  // tarpitted sessions in a row that never reached DATA
	warned   bool // the warning was logged since the last DATA
	warn     func(msg string)

	capped atomic.Uint64
}

func newTarpits(started int64, warn func(string)) *tarpits {
	return &tarpits{started: started, sessions: map[string]*tarpitSession{}, warn: warn}
}

// prune forgets tarpits older than the duration and sessions past their
// margin; a session forgotten without DATA counts as missed. It returns
// the warning to log, if this made missed reach abandonWarnAfter. The
// caller holds mu.
func (tp *tarpits) prune(now int64, t *Tarpit) string {
	dur := int64(t.Duration / time.Second)
	i := 0
	for i < len(tp.issued) && tp.issued[i] <= now-dur {
		i++
	}
	tp.issued = append(tp.issued[:0], tp.issued[i:]...)
	for id, s := range tp.sessions {
		if s.at+dur+sessionMargin < now {
			delete(tp.sessions, id)
			tp.missed++
		}
	}
	if tp.missed >= abandonWarnAfter && !tp.warned {
		tp.warned = true
		return "the last " + strconv.Itoa(tp.missed) + " tarpitted sessions never reached DATA: " +
			"Postfix's smtpd_data_restrictions probably lacks check_policy_service for greyd, " +
			"and every tarpitted client looks as if it had left (greylisted with tarpit.abandon_delay)"
	}
	return ""
}

// reserve takes one of max_concurrent's places for a tarpit at now;
// false: all are taken.
func (tp *tarpits) reserve(now int64, t *Tarpit) bool {
	tp.mu.Lock()
	msg := tp.prune(now, t)
	ok := len(tp.issued) < t.MaxConcurrent
	if ok {
		tp.issued = append(tp.issued, now)
	}
	tp.mu.Unlock()
	if msg != "" && tp.warn != nil {
		tp.warn(msg)
	}
	return ok
}

// release gives back a place reserve took for a tarpit that was not
// issued after all.
func (tp *tarpits) release() {
	tp.mu.Lock()
	if n := len(tp.issued); n > 0 {
		tp.issued = tp.issued[:n-1]
	}
	tp.mu.Unlock()
}

// begin remembers a session tarpitted at now with its first triplet.
func (tp *tarpits) begin(id string, now int64, k tarpitKeys) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.sessions) >= maxSessions {
		oldest, at := "", int64(1<<62)
		for sid, s := range tp.sessions {
			if s.at < at {
				oldest, at = sid, s.at
			}
		}
		delete(tp.sessions, oldest)
	}
	tp.sessions[id] = &tarpitSession{at: now, keys: []tarpitKeys{k}}
}

// add records one more triplet of a tarpitted session.
func (tp *tarpits) add(id string, k tarpitKeys) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	s := tp.sessions[id]
	if s != nil && len(s.keys) < maxSessionTriplets && !slices.Contains(s.keys, k) {
		s.keys = append(s.keys, k)
	}
}

// take returns the triplets of session id, forgetting the session
// unless peek; nil if it was not tarpitted here.
func (tp *tarpits) take(id string, peek bool) []tarpitKeys {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	s := tp.sessions[id]
	if s == nil {
		return nil
	}
	if !peek {
		delete(tp.sessions, id)
	}
	return slices.Clone(s.keys)
}

// reached records that a tarpitted session reached DATA: DATA is asked.
func (tp *tarpits) reached() {
	tp.mu.Lock()
	tp.missed, tp.warned = 0, false
	tp.mu.Unlock()
}

// recent reports whether now is within a session's life of the engine's
// start: a DATA then may be of a session tarpitted before a restart.
func (tp *tarpits) recent(now int64, t *Tarpit) bool {
	return now-tp.started <= int64(t.Duration/time.Second)+sessionMargin
}

// TarpitStatus is the tarpit's state on this host (greyd explain).
type TarpitStatus struct {
	// Active is the number of tarpits issued within the last duration
	// (what max_concurrent counts); Sessions those still waiting for
	// their DATA.
	Active, Sessions int
	// Missed is the number of tarpitted sessions in a row that never
	// reached DATA; Warned says the warning about it was logged.
	Missed int
	Warned bool
}

// TarpitStatus returns the tarpit's state now; zero without a tarpit.
func (e *Engine) TarpitStatus() TarpitStatus {
	snap := e.snap.Load()
	if snap.Tarpit == nil {
		return TarpitStatus{}
	}
	tp := e.tarpits
	tp.mu.Lock()
	msg := tp.prune(e.now().Unix(), snap.Tarpit)
	st := TarpitStatus{Active: len(tp.issued), Sessions: len(tp.sessions), Missed: tp.missed, Warned: tp.warned}
	tp.mu.Unlock()
	if msg != "" && tp.warn != nil {
		tp.warn(msg)
	}
	return st
}

// TarpitCounts returns how many tarpits were issued, how many clients
// waited through theirs (DATA), how many requests were greylisted
// because their client had left one, and how many requests of class
// tarpit were greylisted instead (max_concurrent, stress), since the
// engine started.
func (e *Engine) TarpitCounts() (issued, passed, abandoned, capped uint64) {
	return e.decided[Sleep][TarpitReason].Load(), e.decided[Pass][TarpitReason].Load(),
		e.decided[Greylist][TarpitAbandoned].Load(), e.tarpits.capped.Load()
}

// sessionOf is the store's session number of a Postfix instance
// attribute: FNV-1a reduced to what a stored number holds; -1 (never a
// mark's) without one.
func sessionOf(instance string) int64 {
	if instance == "" {
		return -1
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(instance); i++ {
		h ^= uint64(instance[i])
		h *= 1099511628211
	}
	return int64(h & store.MaxValue)
}

// tarpitInput adds the tarpit inputs to in: the client address's key,
// the session and the abandon delay. Nothing without a tarpit.
func (s *Snapshot) tarpitInput(in *store.StepInput, ip netip.Addr, req *policy.Request) {
	if s.Tarpit == nil || s.tarpits == nil {
		return
	}
	in.TarpitKey = in.ClientKey
	if in.TarpitKey == "" {
		in.TarpitKey = s.ClientKey(ip)
	}
	in.TarpitSession = sessionOf(req.Instance)
	in.AbandonDelay = int64(s.Tarpit.AbandonDelay / time.Second)
}

// isData reports a request of Postfix's smtpd_data_restrictions (BDAT
// for a message sent with CHUNKING).
func isData(req *policy.Request) bool {
	return strings.EqualFold(req.ProtocolState, "DATA") || strings.EqualFold(req.ProtocolState, "BDAT")
}

// tarpitBlocked says why a request of class tarpit cannot wait: "" if it
// can (and, unless dry, a place is reserved), capStress or capFull for
// a cap that is counted, capNone for a request that can never wait (not
// at RCPT, no session, a dry-run configuration).
func (s *Snapshot) tarpitBlocked(req *policy.Request, now int64, dry bool) string {
	switch {
	case s.DryRun || !strings.EqualFold(req.ProtocolState, "RCPT") || req.Instance == "":
		return capNone
	case strings.EqualFold(req.Stress, "yes"):
		return capStress
	case dry:
		return ""
	case !s.tarpits.reserve(now, s.Tarpit):
		return capFull
	}
	return ""
}

// Why a request of class tarpit was greylisted instead (Decision.Capped).
const (
	capNone   = "-"
	capStress = "stress"
	capFull   = "max_concurrent"
)

// tarpitStep runs the tarpit of a request of class tarpit: the step that
// sets the mark, when the request may wait. ok false: it may not, and the
// caller greylists it.
func (s selection) tarpitStep(ctx context.Context, snap *Snapshot, st store.Store, in *store.StepInput, req *policy.Request, d *Decision) (r store.StepResult, ok bool, err error) {
	why := snap.tarpitBlocked(req, in.Now, in.DryRun)
	if why != "" {
		if why != capNone {
			d.Capped = why
		}
		return r, false, nil
	}
	in.Hold, in.TarpitOp = false, store.TarpitIssue
	r, err = st.Step(ctx, in)
	d.Sleep = int64(snap.Tarpit.Duration / time.Second)
	if in.DryRun {
		return r, true, err
	}
	if err != nil || r.Tarpit != store.TarpitIssued {
		snap.tarpits.release()
		return r, true, err
	}
	snap.tarpits.begin(req.Instance, in.Now, tarpitKeys{in.TripletKey, in.AltKey})
	return r, true, nil
}

// dataDecision decides a DATA request: the client of a session tarpitted
// at RCPT waited, and every triplet of the session passes (those this
// host remembers, and DATA's own recipient when there is one: with
// several recipients Postfix sends none). Anything else is answered
// DUNNO quietly, and costs no store step unless greyd started less than
// a session's life ago (the session may have been tarpitted before).
func (snap *Snapshot) dataDecision(ctx context.Context, req *policy.Request, st store.Store, ip netip.Addr, now time.Time, fixedNow, dryRun bool) Decision {
	quiet := Decision{Action: Skip, Now: now}
	tp := snap.tarpits
	if snap.Tarpit == nil || tp == nil || req.Instance == "" {
		return quiet
	}
	keys := tp.take(req.Instance, dryRun)
	if keys == nil && (req.Recipient == "" || !tp.recent(now.Unix(), snap.Tarpit)) {
		return quiet
	}
	d := Decision{Now: now}
	var in store.StepInput
	stepInput(&in, snap, snap.selectFor(req.Recipient), req, ip, now, fixedNow, dryRun, &d)
	snap.tarpitInput(&in, ip, req)
	if req.Recipient != "" {
		if own := (tarpitKeys{in.TripletKey, in.AltKey}); !slices.Contains(keys, own) {
			keys = append(keys, own)
		}
	}
	in.TarpitOp = store.TarpitData
	var first store.StepResult
	for i, k := range keys {
		in.TripletKey, in.AltKey = k.triplet, k.alt
		in.TarpitKeep = i < len(keys)-1
		r, err := st.Step(ctx, &in)
		if err != nil {
			return Decision{Action: Failed, Now: now, Err: err}
		}
		if i == 0 {
			if r.Tarpit != store.TarpitWaited {
				return quiet // not this session's mark (or none): nothing written
			}
			first = r
		}
		d.NewlyWhitelisted = d.NewlyWhitelisted || r.NewlyWhitelisted
	}
	if !dryRun {
		tp.reached()
	}
	newly := d.NewlyWhitelisted
	d.fromStep(&in, &first)
	d.Action, d.Reason, d.Waited, d.NewlyWhitelisted = Pass, TarpitReason, first.Waited, newly
	return d
}
