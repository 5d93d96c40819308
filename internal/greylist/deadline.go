package greylist

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"greyd/internal/policy"
	"greyd/internal/store"
)

// ErrStoreTimeout is the error of a decision abandoned because the store
// did not answer within the store timeout, or not tried because an earlier
// one is still stuck in it.
var ErrStoreTimeout = errors.New("database did not answer in time")

// The store timeout bounds how long a request waits for the store: greyd
// must answer Postfix, which gives a policy server 100 s
// (smtpd_policy_service_timeout), well before then whatever the disk does.
//
// buntdb runs in-process and takes no context: a call blocks for as long
// as buntdb's one lock is held, by a write whose write(2) or fsync hangs
// on a dying disk, by the once-a-second fsync or by a shrink. A deadline
// checked around the call would only notice afterwards. So the Engine
// hands each decision that may touch the store to a small pool of worker
// goroutines and waits for it or the deadline, whichever comes first. On
// timeout the request is answered as a store failure and the worker
// finishes the decision (or stays stuck) on its own. While an abandoned
// decision is still running, new requests do not queue behind it: they
// are decided at once against a store that fails every operation, so
// whitelisted clients and recipients still pass and everything else gets
// the store-failure answer. When the stuck decision returns, the store is
// used again.
//
// One hand-off per request, not per store operation (a request makes two
// to four): two channel operations and a timer reset, no allocation
// (jobs, their channels and their timers are pooled). Measured on 2 cores:
// about 0.5 µs of CPU per request with many connections
// (BenchmarkServePolicyParallel), about 2 µs more latency for a lone one
// (BenchmarkServePolicyStoreTimeout against BenchmarkServePolicy).

// SetStoreTimeout sets the store timeout for requests that start
// afterwards. 0, the default of NewEngine, decides in the caller's
// goroutine without a deadline.
func (e *Engine) SetStoreTimeout(d time.Duration) {
	if e.closed.Load() {
		return
	}
	if d > 0 {
		e.startWorkers.Do(func() {
			e.jobs, e.quit = make(chan *job), make(chan struct{})
			// Enough for buntdb's parallel readers; writers queue on
			// its lock anyway.
			for range max(4, 2*runtime.GOMAXPROCS(0)) {
				go e.work()
			}
		})
	}
	e.timeout.Store(int64(max(d, 0)))
}

// Close stops the workers. Decisions still stuck in the store finish on
// their own; requests after Close are decided without a deadline.
func (e *Engine) Close() {
	e.closed.Store(true)
	e.timeout.Store(0)
	e.startWorkers.Do(func() {}) // none start later; e.quit is settled
	e.stopWorkers.Do(func() {
		if e.quit != nil {
			close(e.quit)
		}
	})
}

// job states: the caller and the worker race to move a job out of
// running; whoever loses leaves the job to the other.
const (
	jobRunning uint32 = iota
	jobDone
	jobAbandoned
)

type job struct {
	req   policy.Request // a copy: the caller reuses its Request
	snap  *Snapshot
	now   time.Time
	probe bool // look the store up once instead of deciding
	d     Decision

	state atomic.Uint32
	done  chan struct{} // capacity 1; the worker signals a finished job
	timer *time.Timer
}

var jobs = sync.Pool{New: func() any {
	j := &job{done: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
	j.timer.Stop()
	return j
}}

func putJob(j *job) {
	j.timer.Stop()
	j.req, j.snap, j.d = policy.Request{}, nil, Decision{}
	jobs.Put(j)
}

// decide runs Decide under the store timeout.
func (e *Engine) decide(ctx context.Context, req *policy.Request, snap *Snapshot, now time.Time) Decision {
	timeout := time.Duration(e.timeout.Load())
	if timeout <= 0 {
		return Decide(ctx, req, snap, e.store, now)
	}
	if e.stuck.Load() > 0 {
		return Decide(ctx, req, snap, e.stalled(), now)
	}
	j := jobs.Get().(*job)
	j.req, j.snap, j.now, j.probe = *req, snap, now, false
	if err := e.run(ctx, j, timeout); err != nil {
		return Decision{Kind: Failed, Now: now, Err: err}
	}
	d := j.d
	putJob(j)
	return d
}

// CheckStore looks a key up under the store timeout, for the daemon's
// watchdog: it fails while the store is stuck.
func (e *Engine) CheckStore(ctx context.Context) error {
	timeout := time.Duration(e.timeout.Load())
	if timeout <= 0 {
		_, _, err := e.store.Client(ctx, "watchdog")
		return err
	}
	if e.stuck.Load() > 0 {
		_, _, err := e.stalled().Client(ctx, "watchdog")
		return err
	}
	j := jobs.Get().(*job)
	j.probe = true
	if err := e.run(ctx, j, timeout); err != nil {
		return err
	}
	err := j.d.Err
	putJob(j)
	return err
}

// run hands j to a worker and waits for it until the deadline. On error j
// no longer belongs to the caller.
func (e *Engine) run(ctx context.Context, j *job, timeout time.Duration) error {
	j.state.Store(jobRunning)
	j.timer.Reset(timeout)
	select {
	case e.jobs <- j: // a worker was waiting: the common case
	default:
		select {
		case e.jobs <- j:
		case <-j.timer.C:
			putJob(j)
			return fmt.Errorf("%w: no worker free within %v", ErrStoreTimeout, timeout)
		case <-ctx.Done():
			putJob(j)
			return ctx.Err()
		case <-e.quit:
			putJob(j)
			return errors.New("engine closed")
		}
	}

	var err error
	select {
	case <-j.done:
		return nil
	case <-j.timer.C:
		err = fmt.Errorf("%w (no answer within %v)", ErrStoreTimeout, timeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if j.state.CompareAndSwap(jobRunning, jobAbandoned) {
		// The worker owns j now and recycles it when Decide returns.
		if e.stuck.Add(1) == 1 {
			e.stuckSince.Store(time.Now().UnixNano())
		}
		return err
	}
	<-j.done // it finished just now
	return nil
}

func (e *Engine) work() {
	for {
		select {
		case j := <-e.jobs:
			e.runJob(j)
			if j.state.CompareAndSwap(jobRunning, jobDone) {
				j.done <- struct{}{}
				continue
			}
			e.stuck.Add(-1)
			putJob(j)
		case <-e.quit:
			return
		}
	}
}

// runJob decides j. A panic (buntdb panics when it cannot truncate a
// failed write) becomes a store failure: on a worker goroutine nothing
// else would recover it, and it would kill the daemon.
func (e *Engine) runJob(j *job) {
	defer func() {
		if r := recover(); r != nil {
			j.d = Decision{Kind: Failed, Now: j.now, Err: fmt.Errorf("panic in the decision: %v", r)}
		}
	}()
	ctx := context.Background() // the caller's deadline is enforced in run
	if j.probe {
		_, _, j.d.Err = e.store.Client(ctx, "watchdog")
		return
	}
	j.d = Decide(ctx, &j.req, j.snap, e.store, j.now)
}

// stalled returns a store that fails every operation at once, for the
// time an abandoned decision is stuck in the real one.
func (e *Engine) stalled() store.Store {
	return stalledStore{since: time.Duration(time.Now().UnixNano() - e.stuckSince.Load())}
}

type stalledStore struct{ since time.Duration }

func (s stalledStore) err() error {
	return fmt.Errorf("%w: an earlier request has been waiting for it for %v", ErrStoreTimeout, s.since.Round(time.Millisecond))
}

func (s stalledStore) Triplet(context.Context, string) (store.Triplet, bool, error) {
	return store.Triplet{}, false, s.err()
}

func (s stalledStore) PutTriplet(context.Context, string, store.Triplet, time.Duration) error {
	return s.err()
}

func (s stalledStore) Client(context.Context, string) (store.Client, bool, error) {
	return store.Client{}, false, s.err()
}

func (s stalledStore) PutClient(context.Context, string, store.Client, time.Duration) error {
	return s.err()
}

func (s stalledStore) Close() error { return nil }
