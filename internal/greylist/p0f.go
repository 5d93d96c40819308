package greylist

import (
	"greyd/internal/p0f"
	"greyd/internal/signals"
)

// SetP0f gives the engine the daemon's one p0f client (its connections
// outlive reloads; the socket comes with each snapshot's signals) for the
// p0f signals of selective greylisting; nil: none, they are unknown.
// Call it before the engine serves, like SetResolver.
func (e *Engine) SetP0f(c *p0f.Client) {
	e.setScorer(func(ev *signals.Evaluator) { ev.P0f = c })
}

// setScorer changes the engine's scorer (SetResolver, SetP0f): with
// neither a resolver nor p0f there is none.
func (e *Engine) setScorer(change func(*signals.Evaluator)) {
	e.rt.mu.Lock()
	defer e.rt.mu.Unlock()
	ev := signals.Evaluator{Now: e.now}
	if e.scorer != nil {
		ev = *e.scorer
	}
	change(&ev)
	e.scorer = &ev
	if ev.Resolver == nil && ev.P0f == nil {
		e.scorer = nil
	}
	e.snap.Store(e.withRuntime(e.snap.Load()))
}
