package greylist

import (
	"context"
	"errors"
	"fmt"
	"time"

	"greyd/internal/policy"
	"greyd/internal/store"
)

// ErrStoreTimeout is the error of a decision the store did not let finish
// within the store timeout, or not tried because an earlier one is still
// stuck in it.
var ErrStoreTimeout = errors.New("database did not answer in time")

// The store timeout bounds how long a request waits for the store: greyd
// must answer Postfix, which gives a policy server 100 s
// (smtpd_policy_service_timeout), well before then whatever the disk does.
//
// buntdb runs in-process and takes no context: a call blocks for as long
// as buntdb's one lock is held, by a write whose write(2) or fsync hangs
// on a dying disk, by the once-a-second fsync or by a shrink. A deadline
// checked around the call would only notice afterwards. So the decision
// runs in the connection's goroutine as usual, and policy.Server's timer
// answers for it when it is late: Engine is a policy.LateHandler, and the
// server's HandlerTimeout is the store timeout. The healthy path pays a
// timer reset and a few atomic operations, no hand-off to another
// goroutine (which cost half the throughput of a lone connection).
//
// Late answers as a store failure and counts the decision as stuck until
// it returns. While one is stuck, new requests do not queue behind it:
// they are decided at once against a store that fails every operation,
// so whitelisted clients and recipients still pass and everything else
// gets the store-failure answer. When the stuck decision returns, its
// result is dropped (Request.Claim) and the store is used again.

// SetStoreTimeout sets the store timeout that CheckStore uses and that
// the daemon gives the policy server as its HandlerTimeout. 0, the default
// of NewEngine, means no deadline.
func (e *Engine) SetStoreTimeout(d time.Duration) { e.timeout.Store(int64(max(d, 0))) }

// Late implements policy.LateHandler: req's decision has been running for
// after. It is decided again against a store that fails at once, so a
// whitelisted request still passes and the rest get the store-failure
// answer; req's own decision is dropped when it returns.
func (e *Engine) Late(req *policy.Request, after time.Duration) string {
	if e.stuck.Add(1) == 1 {
		e.stuckSince.Store(time.Now().UnixNano())
	}
	snap := e.snap.Load()
	now := e.now()
	err := fmt.Errorf("%w (no answer within %v)", ErrStoreTimeout, after)
	d := Decide(context.Background(), req, snap, stalledStore{err: err}, now)
	reply := e.answer(req, snap, now, d)
	if e.obs != nil {
		e.obs.Request(after)
	}
	return reply
}

// lateReturned is called when a decision Late answered for returns.
func (e *Engine) lateReturned() { e.stuck.Add(-1) }

// decide runs Decide; while an earlier decision is stuck in the store it
// decides against one that fails at once instead of queueing behind it.
// A panic (buntdb panics when it cannot truncate a failed write) becomes a
// store failure.
func (e *Engine) decide(ctx context.Context, req *policy.Request, snap *Snapshot, now time.Time) (d Decision) {
	defer func() {
		if r := recover(); r != nil {
			d = Decision{Action: Failed, Now: now, Err: fmt.Errorf("panic in the decision: %v", r)}
		}
	}()
	if e.stuck.Load() > 0 {
		return Decide(ctx, req, snap, e.stalled(), now)
	}
	return Decide(ctx, req, snap, e.steps, now)
}

// CheckStore looks a key up under the store timeout, for the daemon's
// watchdog: it fails while the store is stuck.
func (e *Engine) CheckStore(ctx context.Context) error {
	if e.stuck.Load() > 0 {
		return e.stalled().Healthy(ctx)
	}
	timeout := time.Duration(e.timeout.Load())
	if timeout <= 0 {
		return e.store.Healthy(ctx)
	}
	// A goroutine per check (the watchdog checks every few seconds), and
	// never a second one while the first is stuck.
	if !e.probing.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: the previous check is still waiting for it", ErrStoreTimeout)
	}
	done := make(chan error, 1)
	go func() {
		// The flag is cleared before the result is sent: a check that
		// follows a quick one at once must not find it still set.
		err := fmt.Errorf("panic in the store")
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic in the store: %v", r)
			}
			e.probing.Store(false)
			done <- err
		}()
		err = e.store.Healthy(context.Background())
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w (no answer within %v)", ErrStoreTimeout, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stalled returns a store that fails every operation at once, for the
// time an abandoned decision is stuck in the real one.
func (e *Engine) stalled() store.Store {
	since := time.Duration(time.Now().UnixNano() - e.stuckSince.Load())
	return stalledStore{err: fmt.Errorf("%w: an earlier request has been waiting for it for %v", ErrStoreTimeout, since.Round(time.Millisecond))}
}

// stalledStore fails every operation with err.
type stalledStore struct{ err error }

func (s stalledStore) Step(context.Context, *store.StepInput) (store.StepResult, error) {
	return store.StepResult{}, s.err
}

func (s stalledStore) Healthy(context.Context) error { return s.err }

func (s stalledStore) Close() error { return nil }

var _ policy.LateHandler = (*Engine)(nil)
