package greylist

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"greyd/internal/policy"
	"greyd/internal/store"
	"greyd/internal/tarpit"
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

// TarpitStatus returns the tarpit's state on this host now; zero without
// a tarpit.
func (e *Engine) TarpitStatus() tarpit.Status {
	snap := e.snap.Load()
	if snap.Tarpit == nil {
		return tarpit.Status{}
	}
	return e.tarpits.Status(e.now().Unix(), snap.Tarpit)
}

// TarpitCounts returns how many tarpits were issued, how many clients
// waited through theirs (DATA), how many requests were greylisted
// because their client had left one, and how many requests of class
// tarpit were greylisted instead (max_concurrent, stress), since the
// engine started.
func (e *Engine) TarpitCounts() (issued, passed, abandoned, capped uint64) {
	return e.decided[Sleep][TarpitReason].Load(), e.decided[Pass][TarpitReason].Load(),
		e.decided[Greylist][TarpitAbandoned].Load(), e.tarpits.CappedCount()
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
	in.TarpitSession = tarpit.SessionOf(req.Instance)
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
	case !s.tarpits.Reserve(now, s.Tarpit):
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
		snap.tarpits.Release()
		return r, true, err
	}
	snap.tarpits.Begin(req.Instance, in.Now, tarpit.Keys{Triplet: in.TripletKey, Alt: in.AltKey})
	return r, true, nil
}

// dataDecision decides a DATA request: the client of a session tarpitted
// at RCPT waited, and every triplet of the session passes (those this
// host remembers, and DATA's own recipient when there is one: with
// several recipients Postfix sends none; if greyd restarted meanwhile,
// only the mark is cleared, and the triplets wait for the client's next
// session, which is not taken for one that left). Anything else is answered
// DUNNO quietly, and costs no store step unless greyd started less than
// a session's life ago (the session may have been tarpitted before).
func (snap *Snapshot) dataDecision(ctx context.Context, req *policy.Request, st store.Store, ip netip.Addr, now time.Time, fixedNow, dryRun bool) Decision {
	quiet := Decision{Action: Skip, Now: now}
	tp := snap.tarpits
	if snap.Tarpit == nil || tp == nil || req.Instance == "" {
		return quiet
	}
	keys := tp.Take(req.Instance, dryRun)
	if keys == nil {
		if !tp.Recent(now.Unix(), snap.Tarpit) {
			return quiet
		}
		if req.Recipient == "" {
			// Tarpitted before a restart, perhaps, with several
			// recipients this host no longer knows: a step with no
			// triplet clears the session's mark, so that the client
			// is not taken for one that left.
			keys = []tarpit.Keys{{}}
		}
	}
	d := Decision{Now: now}
	var in store.StepInput
	stepInput(&in, snap, snap.selectFor(req.Recipient), req, ip, now, fixedNow, dryRun, &d)
	snap.tarpitInput(&in, ip, req)
	if req.Recipient != "" {
		if own := (tarpit.Keys{Triplet: in.TripletKey, Alt: in.AltKey}); !slices.Contains(keys, own) {
			keys = append(keys, own)
		}
	}
	in.TarpitOp = store.TarpitData
	var first store.StepResult
	for i, k := range keys {
		in.TripletKey, in.AltKey = k.Triplet, k.Alt
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
		tp.Reached()
	}
	newly := d.NewlyWhitelisted
	d.fromStep(&in, &first)
	d.Action, d.Reason, d.Waited, d.NewlyWhitelisted = Pass, TarpitReason, first.Waited, newly
	return d
}
