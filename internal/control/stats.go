package control

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"greyd/internal/store"
)

// countTTL is how long stats reuses its counts of entries by state.
const countTTL = 5 * time.Second

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Engine.Snapshot()
	d := s.opts.Daemon()
	now := s.opts.Now()
	out := Stats{
		Version:       s.opts.Version,
		Started:       s.opts.Started.Unix(),
		UptimeSeconds: int64(now.Sub(s.opts.Started) / time.Second),
		DryRun:        snap.DryRun,
		Privacy:       snap.Privacy != nil,
		Requests:      d.Requests,
		Connections:   d.Connections,
		Reload:        d.Reload,
	}
	for _, c := range s.opts.Engine.DecisionCounts() {
		out.Decisions = append(out.Decisions, DecisionCount{Action: c.Action, Reason: c.Reason, Count: c.N})
		if c.Action == "error" {
			out.Store.Errors += c.N
		}
	}
	if sel := snap.Selective; sel != nil {
		st := &SelectiveStats{Mode: sel.Mode.String(), Shadow: sel.Shadow}
		for _, c := range s.opts.Engine.SelectiveCounts() {
			if c.Class == "tarpit" && c.N == 0 && sel.TarpitAt == nil {
				continue // no tarpit configured, none counted: not a class here
			}
			st.Classes = append(st.Classes, ClassCount{Class: c.Class, Count: c.N})
		}
		st.DNSLookups, st.DNSCacheHits = s.opts.Engine.DNSCounts()
		out.Selective = st
	}
	byState, err := s.states.get(r.Context())
	if err != nil {
		byState = EntryCounts{Error: fmt.Sprintf("counting the entries by state: %v", err)}
	}
	out.Entries = byState
	out.Entries.Triplets, out.Entries.Clients = s.opts.Admin.Counts()
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	err = s.opts.Engine.CheckStore(ctx)
	cancel()
	out.Store.CheckSeconds = time.Since(start).Seconds()
	out.Store.Healthy = err == nil
	if err != nil {
		out.Store.Error = err.Error()
	}
	if s.opts.StoreStatus != nil {
		out.Store.Status = s.opts.StoreStatus()
	}
	if s.opts.StoreLatency != nil {
		n, mean := s.opts.StoreLatency()
		out.Store.Steps, out.Store.StepMeanSeconds = n, mean.Seconds()
	}
	out.RuntimeWhitelist = len(s.opts.Engine.RuntimeEntries())
	if s.opts.LogDropped != nil {
		out.LogDropped = s.opts.LogDropped()
	}
	writeJSON(w, http.StatusOK, out)
}

// countStates counts the entries by state in a pass over them: it holds
// nothing up (the scan copies a piece at a time) and costs about a
// second per million entries.
func (s *Server) countStates(ctx context.Context) (EntryCounts, error) {
	snap := s.opts.Engine.Snapshot()
	var n EntryCounts
	err := s.opts.Admin.Scan(ctx, nil, func(e store.Entry) bool {
		passed := stateOf(snap, e) == "passed"
		switch {
		case e.Kind == store.KindTriplet && passed:
			n.TripletsPassed++
		case e.Kind == store.KindTriplet:
			n.TripletsPending++
		case e.Kind == store.KindTrap:
			n.Traps++
		case passed:
			n.ClientsWhitelisted++
		}
		return true
	})
	if err != nil {
		return EntryCounts{}, err
	}
	return n, nil
}

// stateCounter runs count at most once per ttl: stats in a loop (a
// monitoring script) must not scan a million entries per call. Calls
// that arrive while a count runs wait for it; a failed count is not
// reused.
type stateCounter struct {
	ttl   time.Duration
	now   func() time.Time
	count func(context.Context) (EntryCounts, error)
	// ctx bounds the shared count: not one caller's, whose leaving would
	// fail the others.
	ctx context.Context

	mu      sync.Mutex
	last    EntryCounts
	at      time.Time
	valid   bool
	running *countRun
}

// countRun is a count in progress; done closes when its result is set.
type countRun struct {
	done   chan struct{}
	counts EntryCounts
	err    error
}

// get returns a count at most ttl old, or the error of a fresh one.
func (c *stateCounter) get(ctx context.Context) (EntryCounts, error) {
	c.mu.Lock()
	if c.valid && c.now().Sub(c.at) < c.ttl {
		n := c.last
		c.mu.Unlock()
		return n, nil
	}
	run := c.running
	if run == nil {
		run = &countRun{done: make(chan struct{})}
		c.running = run
		go c.run(run)
	}
	c.mu.Unlock()
	select {
	case <-run.done:
		return run.counts, run.err
	case <-ctx.Done():
		return EntryCounts{}, ctx.Err()
	}
}

func (c *stateCounter) run(run *countRun) {
	start := c.now()
	run.counts, run.err = c.count(c.ctx)
	c.mu.Lock()
	c.running = nil
	if run.err == nil {
		c.last, c.at, c.valid = run.counts, start, true
	}
	c.mu.Unlock()
	close(run.done)
}
