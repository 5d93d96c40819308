package greylist

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"greyd/internal/identity"
	"greyd/internal/policy"
	"greyd/internal/store"
)

// Explanation is what Explain found: the decision greyd would make for a
// request right now, and the stored state it looked at.
type Explanation struct {
	// Snapshot is the configuration the decision used.
	Snapshot *Snapshot
	Decision Decision
	// Reply is the action greyd would answer, without "action=". A first
	// pass shows the X-Greylist header the first recipient of a message
	// gets.
	Reply string
	// Enforced is the reply with dry run off: what a dry run would
	// answer once greylisting is enforced (Reply otherwise).
	Enforced string
	// Input and Step are the store's question and answer. When a
	// whitelist decided, the store was not part of the decision; they
	// show what it holds all the same (StoreErr if that failed).
	Input    store.StepInput
	Step     store.StepResult
	StoreErr error
	// Identity and Org say how lookup_by "auto" keyed the triplet (see
	// Decision), for the step that built Input.
	Identity identity.Rule
	Org      string
}

// Explain decides req as ServePolicy would at this moment, with the same
// snapshot, store and clock, and writes nothing: not the store (a dry
// step), not the header memory, not the counters, not the log.
func (e *Engine) Explain(ctx context.Context, req *policy.Request) Explanation {
	snap := e.snap.Load()
	now := e.now()
	st := e.store
	if e.stuck.Load() > 0 {
		st = e.stalled()
	}
	d := decideDry(ctx, req, snap, st, now)
	x := Explanation{Snapshot: snap, Decision: d, Reply: replyFor(snap, req, d), Input: d.Input, Step: d.Step, Identity: d.Identity, Org: d.Org}
	x.Enforced = x.Reply
	if snap.DryRun {
		enforced := *snap
		enforced.DryRun = false
		x.Enforced = replyFor(&enforced, req, d)
	}
	if d.Action == Pass && (d.Reason < ClientAWL || d.Reason == PolicyNever) {
		bare := *snap
		bare.Clients, bare.Recipients, bare.Runtime, bare.Selective = nil, nil, nil, nil
		sd := decideDry(ctx, req, &bare, st, now)
		x.Input, x.Step, x.StoreErr, x.Identity, x.Org = sd.Input, sd.Step, sd.Err, sd.Identity, sd.Org
		// The bare snapshot has no recipient policy: the stored triplet
		// is still judged with the request's own delay.
		x.Input.Delay = int64(snap.selectFor(req.Recipient).delay / time.Second)
	}
	return x
}

// decideDry is DecideDry with a panic in the store turned into a failure,
// as for requests.
func decideDry(ctx context.Context, req *policy.Request, snap *Snapshot, st store.Store, now time.Time) (d Decision) {
	defer func() {
		if r := recover(); r != nil {
			d = Decision{Action: Failed, Now: now, Err: fmt.Errorf("panic in the decision: %v", r)}
		}
	}()
	return DecideDry(ctx, req, snap, st, now)
}

// replyFor is the reply of decision d without side effects: a first pass
// is assumed to be the message's first recipient.
func replyFor(snap *Snapshot, req *policy.Request, d Decision) string {
	if snap.DryRun {
		return "DUNNO"
	}
	switch d.Action {
	case Failed:
		if snap.DeferOnStoreError {
			return storeErrorReply(snap)
		}
	case Greylist:
		return greylistReply(snap, req, d.Missing)
	case Sleep:
		return "SLEEP " + strconv.FormatInt(d.Sleep, 10)
	case FirstPass:
		if snap.XGreylistHeader {
			return headerReply(snap, d)
		}
	}
	return "DUNNO"
}
