package buntdb

import (
	"errors"
	"sync"

	bunt "github.com/tidwall/buntdb"
)

// Group commit. A step that writes holds its keys' shard locks until its
// entries are in the file, and buntdb writes each transaction with one
// write(2) under its global lock, so steps of different connections used
// to queue for that lock one write at a time. Steps that arrive while a
// write is under way now queue here instead, and the next write carries
// all of them in one buntdb transaction: one lock hand-off and one
// write(2) (one fsync with SyncAlways) for the batch. Each step still
// returns only once its own entries are written, with the batch's error,
// and still holds its shard locks across the write, so two steps of one
// key are never in one batch and the index changes as before.
//
// There is no committer goroutine: the first step to find no write under
// way leads (a lone connection writes at once, as before); the steps
// that queue meanwhile wait, and when the leader's write is done it wakes
// them with the result and hands the lead to the first one that queued
// after its batch was taken.
type committer struct {
	mu      sync.Mutex
	queue   []*commitReq // waiting for the next write
	spare   []*commitReq // the previous batch's array, for reuse
	leading bool         // a write is under way or about to be
}

// commitReq is one step's writes and, once they are done, the result.
type commitReq struct {
	w    [3]pending   // key "" = nothing to write
	fn   func() error // exclusive: run with no write under way (load.go)
	err  error
	lead bool          // woken to lead the next write, not with a result
	done chan struct{} // buffered: one send per wake-up
}

var commitReqs = sync.Pool{New: func() any { return &commitReq{done: make(chan struct{}, 1)} }}

// commit writes the entries of w, together with those of the steps that
// queued meanwhile, and returns when they are in the file (or failed).
func (d *DB) commit(w [3]pending) error {
	return d.enqueue(w, nil)
}

// exclusive runs fn as a write of its own: after every write under way
// and before any that queues after it. The background load switches the
// write target with it (load.go).
func (d *DB) exclusive(fn func() error) error {
	return d.enqueue([3]pending{}, fn)
}

func (d *DB) enqueue(w [3]pending, fn func() error) error {
	r := commitReqs.Get().(*commitReq)
	r.w, r.fn = w, fn
	defer func() {
		r.w, r.fn, r.err = [3]pending{}, nil, nil // drop the strings before pooling
		commitReqs.Put(r)
	}()
	c := &d.commits
	c.mu.Lock()
	c.queue = append(c.queue, r)
	if c.leading {
		c.mu.Unlock()
		<-r.done
		if !r.lead {
			return r.err // written by another step's transaction
		}
		r.lead = false
		c.mu.Lock() // lead: r is still in the queue
	}
	c.leading = true
	batch := c.queue
	c.queue = c.spare[:0]
	c.mu.Unlock()

	err := d.write(batch)
	for _, o := range batch {
		if o.fn == nil {
			o.err = err
		}
		if o != r {
			o.done <- struct{}{}
		}
	}

	c.mu.Lock()
	clear(batch)
	c.spare = batch[:0]
	if len(c.queue) > 0 {
		next := c.queue[0]
		next.lead = true
		next.done <- struct{}{}
	} else {
		c.leading = false
	}
	c.mu.Unlock()
	return r.err
}

// write stores every entry of batch in one buntdb transaction: all or
// nothing, as buntdb rolls back a failed commit. An exclusive request
// runs first (its error is its own), and may change the target d.wdb,
// which only the leader reads or writes.
func (d *DB) write(batch []*commitReq) error {
	entries := false
	for _, r := range batch {
		if r.fn != nil {
			r.err = r.fn()
		}
		entries = entries || r.w[0].key != "" || r.w[1].key != "" || r.w[2].key != ""
	}
	if !entries {
		return nil
	}
	return d.wdb.Update(func(tx *bunt.Tx) error {
		for _, r := range batch {
			for i := range r.w {
				p := &r.w[i]
				if p.key == "" {
					continue
				}
				if p.del {
					// ErrNotFound: gone already (or expired, which
					// Delete removes all the same).
					if _, err := tx.Delete(p.key); err != nil && !errors.Is(err, bunt.ErrNotFound) {
						return err
					}
					continue
				}
				if _, _, err := tx.Set(p.key, p.val, &bunt.SetOptions{Expires: true, TTL: p.ttl}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
