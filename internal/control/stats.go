package control

import (
	"context"
	"net/http"
	"time"

	"greyd/internal/store"
)

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Engine.Snapshot()
	d := s.opts.Daemon()
	now := time.Now()
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
	// Entries by state need a pass over them; it holds nothing up (the
	// scan copies a piece at a time) and costs about a second per
	// million entries.
	out.Entries.Triplets, out.Entries.Clients = s.opts.Admin.Counts()
	s.opts.Admin.Scan(r.Context(), nil, func(e store.Entry) bool {
		passed := stateOf(snap, e) == "passed"
		switch {
		case e.Kind == store.KindTriplet && passed:
			out.Entries.TripletsPassed++
		case e.Kind == store.KindTriplet:
			out.Entries.TripletsPending++
		case passed:
			out.Entries.ClientsWhitelisted++
		}
		return true
	})
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	err := s.opts.Engine.CheckStore(ctx)
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
	writeJSON(w, http.StatusOK, out)
}
