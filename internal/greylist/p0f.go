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
	e.rt.mu.Lock()
	defer e.rt.mu.Unlock()
	ev := signals.Evaluator{Now: e.now}
	if e.scorer != nil {
		ev = *e.scorer
	}
	ev.P0f = c
	e.scorer = &ev
	e.snap.Store(e.withRuntime(e.snap.Load()))
}
