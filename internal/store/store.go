// Package store is the persistence seam of greyd: the greylisting state of
// triplets and auto-whitelisted clients, changed by one atomic Step per
// policy request. The rules of that step (Postgrey's first-seen/last-seen
// and auto-whitelist rules) are written once in Go, in Transition; a
// backend either runs Transition under its own lock and transaction
// (store/buntdb) or carries an exact translation of it (store/redis runs
// it as one Lua script), and the table of cases in store/storetest runs
// against every backend so that the two cannot drift.
//
// Whitelists, key building, normalisation and everything the reply says
// stay in package greylist: a backend only sees opaque keys and numbers.
package store

import (
	"context"
	"errors"
)

// Triplet is what greyd remembers about one client-network/sender/recipient
// triplet, in Unix seconds, as Postgrey's "first,last" value.
type Triplet struct {
	First int64 // first seen (reset when an unpassed entry goes stale)
	Last  int64 // last seen
}

// Trap is a greytrap entry for one exact client IP, "since,until": the
// client wrote to a trap address at Since and is held until Until. The
// entry outlives Until by the retry window, so that the triplets the
// client left pending before Since read as new until they would have
// gone stale anyway.
type Trap struct {
	Since int64 // when the trap was set
	Until int64 // when it stops holding the client
}

// Tarpit is a tarpit mark for one exact client IP, "since,session": the
// client was made to wait at RCPT at Since, in the SMTP session whose
// Postfix instance attribute hashes to Session (TarpitSession). The mark
// is cleared when that session reaches DATA; a request of another session
// that finds it knows the client left during its wait.
type Tarpit struct {
	Since   int64
	Session int64
}

// TarpitOp is what a step does with the client's tarpit mark.
type TarpitOp uint8

// Tarpit operations.
const (
	// TarpitCheck only reads the mark: the same session's mark passes
	// the request (one tarpit per session), another session's makes the
	// client an abandoner, greylisted with AbandonDelay.
	TarpitCheck TarpitOp = iota
	// TarpitIssue (RCPT of a client of class tarpit): as TarpitCheck,
	// and when the triplet would be greylisted and no mark is there, set
	// one instead of writing the triplet.
	TarpitIssue
	// TarpitData (DATA of a session): if the mark is this session's,
	// the client waited: the triplet is written as passed and counts for
	// the auto-whitelist as a first pass does, and the mark is cleared
	// unless TarpitKeep. Without the session's mark nothing is written.
	// With no TripletKey (the session's triplets were lost in a restart)
	// only the mark is cleared.
	TarpitData
)

// Client is an auto-whitelist entry for one exact client IP, as Postgrey's
// "count,last" value.
type Client struct {
	Count int64 // triplets that completed greylisting, at most one per hour
	Last  int64 // last time Count changed or the entry was refreshed
}

// Store is what the decision code needs from a backend. Implementations
// must be safe for concurrent use.
type Store interface {
	// Step runs the state transition of one request atomically: with
	// respect to every other Step on the same state, on this host and on
	// any other host sharing it. An error means the backend failed and
	// nothing is known about what was written; callers fail open.
	Step(ctx context.Context, in *StepInput) (StepResult, error)

	// Healthy reports whether greyd's own side of the store works, for
	// the systemd watchdog. A local store must answer a lookup; a
	// networked one reports nil while its server is unreachable, since a
	// restart of greyd cannot bring a server back (it fails open
	// meanwhile).
	Healthy(ctx context.Context) error

	Close() error
}

// StepInput is one request's state transition, with the keys already
// built (and hashed, under privacy) by the caller.
type StepInput struct {
	// ClientKey is the auto-whitelist key of the exact client address;
	// "" or AWLClients == 0 leaves the auto-whitelist alone.
	ClientKey string
	// TripletKey is the triplet's key, read and written.
	TripletKey string
	// AltKey, if not "" and not TripletKey, is a second triplet key that
	// is only read: a passed entry there passes the request, which then
	// writes TripletKey as passed (lookup_by "auto" reads the subnet key
	// next to the organisation key, so a change of key costs nothing).
	AltKey string

	// Now is the request's time, in Unix seconds.
	Now int64
	// FixedNow says Now must be used as it is (policy_test_time). Without
	// it, a backend shared by several hosts uses its own clock, so that
	// hosts with skewed clocks agree on what "5 minutes" is.
	FixedNow bool

	// The rules, in seconds.
	Delay, RetryWindow, MaxAge int64
	// AWLClients is the number of passed triplets that auto-whitelists a
	// client; 0 disables the auto-whitelist.
	AWLClients int64

	// TrapKey is the greytrap key of the exact client address (the
	// address of ClientKey, in a namespace of its own); "" leaves traps
	// alone: nothing is read or written for them (no trap block).
	TrapKey string
	// TrapHit says this request's recipient is a trap address: the
	// client is trapped for TrapFor seconds (with TrapKey).
	TrapHit bool
	TrapFor int64

	// TarpitKey is the tarpit key of the exact client address (in a
	// namespace of its own); "" leaves tarpits alone (no tarpit block).
	TarpitKey string
	TarpitOp  TarpitOp
	// TarpitSession identifies the SMTP session (a hash of Postfix's
	// instance attribute, 0..MaxValue).
	TarpitSession int64
	// TarpitKeep: a TarpitData step that leaves the mark for the next
	// triplet of the same session (a message with several recipients).
	TarpitKeep bool
	// AbandonDelay is the greylisting delay of a client whose mark is
	// another session's; marks live AbandonDelay + RetryWindow.
	AbandonDelay int64

	// DryRun computes the result and writes nothing (greyd explain).
	DryRun bool
	// Hold writes nothing when the outcome is Greylisted, and as usual
	// otherwise: selective greylisting steps with Hold, scores only a
	// request the state would greylist, and steps again without Hold if
	// the score says greylist, so a client let through at once leaves no
	// triplet behind while a known one still costs one step. It does not
	// apply to traps: a trap hit is set, and a trapped client held,
	// whatever a score would say.
	Hold bool
}

// Outcome is what the state says about a request.
type Outcome uint8

// Outcomes.
const (
	// Greylisted: still within the delay (new, or an early retry).
	Greylisted Outcome = iota + 1
	// FirstPass: the triplet completed greylisting with this request.
	FirstPass
	// Passed: the triplet had passed before (or its AltKey had).
	Passed
	// AutoWhitelisted: the client is on the auto-whitelist.
	AutoWhitelisted
)

func (o Outcome) String() string {
	switch o {
	case Greylisted:
		return "greylisted"
	case FirstPass:
		return "first pass"
	case Passed:
		return "passed"
	case AutoWhitelisted:
		return "auto-whitelisted"
	}
	return "unknown"
}

// State is what a step read: the stored entries before it ran. Entries
// past max_age count as not found.
type State struct {
	Client       Client
	ClientFound  bool
	Triplet      Triplet
	TripletFound bool
	Alt          Triplet
	AltFound     bool
	Trap         Trap
	TrapFound    bool
	Tarpit       Tarpit
	TarpitFound  bool
}

// TarpitResult is what a step did with a tarpit mark.
type TarpitResult uint8

// Tarpit results.
const (
	TarpitNone TarpitResult = iota
	// TarpitIssued: the mark was set (Outcome Greylisted, nothing else
	// written): the client is to wait now.
	TarpitIssued
	// TarpitSame: the mark is this session's (Outcome Passed, nothing
	// written): the session waited once already.
	TarpitSame
	// TarpitWaited: a TarpitData step found this session's mark: the
	// triplet passed (Outcome FirstPass, or Passed if it had before),
	// Waited is the time since the mark was set.
	TarpitWaited
	// TarpitAbandoned: another session's mark is there, and the triplet
	// is greylisted with AbandonDelay.
	TarpitAbandoned
)

func (t TarpitResult) String() string {
	switch t {
	case TarpitIssued:
		return "issued"
	case TarpitSame:
		return "same session"
	case TarpitWaited:
		return "waited"
	case TarpitAbandoned:
		return "abandoned"
	}
	return "none"
}

// StepResult is what the decision needs from a step.
type StepResult struct {
	Outcome Outcome
	// Now is the time the step decided with (the backend's clock unless
	// FixedNow).
	Now int64
	// First is the triplet's effective first-seen time after the rules
	// (resets included); Now when the triplet is new.
	First int64
	// Missing is the number of seconds still to wait (Greylisted).
	Missing int64
	// Waited is the number of seconds since first seen (FirstPass).
	Waited int64
	// ViaAlt: Passed because of AltKey's entry.
	ViaAlt bool
	// NewlyWhitelisted: this pass brought the client to the threshold.
	NewlyWhitelisted bool
	// FutureCorrected: the stored first-seen time was in the future (the
	// clock went backwards) and was reset.
	FutureCorrected bool
	// Trapped: greylisted because a trap holds the client until
	// TrapUntil; TrapSet: greylisted because this request set the trap
	// (a trap hit), which holds until TrapUntil. Either way the result
	// looks like a new triplet's (First = Now, Missing = the delay), so
	// that the reply is the one of any greylisted request.
	Trapped   bool
	TrapSet   bool
	TrapUntil int64
	// Tarpit is what the step did with the client's tarpit mark.
	Tarpit TarpitResult
	// Before is the stored state the step started from.
	Before State
}

// New reports a greylisted request that is the triplet's first (or its
// first since greylisting started over), as opposed to an early retry.
func (r *StepResult) New() bool {
	return r.Outcome == Greylisted && r.First == r.Now && !r.Trapped && !r.TrapSet && r.Tarpit == TarpitNone
}

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

// ErrLocked is returned by Open when another greyd process uses the file.
var ErrLocked = errors.New("locked by another greyd process")
