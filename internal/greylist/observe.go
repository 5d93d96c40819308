package greylist

import (
	"context"
	"time"

	"greyd/internal/store"
)

// Observer receives the engine's measurements, for metrics. It is called
// on the request path: implementations must be safe for concurrent use,
// must not block, and should not allocate.
type Observer interface {
	// Request: a request was answered d after its decision began.
	Request(d time.Duration)
	// StoreStep: one store step (the one store call of a request) took d,
	// failed or not.
	StoreStep(d time.Duration)
	// RetryDelay: a triplet passed greylisting seconds after it was
	// first seen.
	RetryDelay(seconds int64)
}

// SetObserver makes o receive the engine's measurements. Call it before
// the engine serves its first request.
func (e *Engine) SetObserver(o Observer) {
	e.obs = o
	if o == nil {
		e.steps = e.store
		return
	}
	e.steps = &timedStore{Store: e.store, obs: o}
}

// timedStore times Step for the Observer. A pointer, made once: a
// struct value converted to store.Store would allocate per request.
type timedStore struct {
	store.Store
	obs Observer
}

func (s *timedStore) Step(ctx context.Context, in *store.StepInput) (store.StepResult, error) {
	start := time.Now()
	r, err := s.Store.Step(ctx, in)
	s.obs.StoreStep(time.Since(start))
	return r, err
}

// Label returns the metrics label of a decision kind: the log's action
// ("pass", "greylist"), "skip" for a request that could not be judged
// (answered DUNNO with a warning) and "error" for a store failure.
func (a Action) Label() string {
	switch a {
	case Skip:
		return "skip"
	case Pass, FirstPass:
		return "pass"
	case Greylist:
		return "greylist"
	case Sleep:
		return "tarpit"
	}
	return "error"
}

// label returns the metrics reason of a decision: the log's reason, or
// "malformed" for a skip and "store error" for a failure.
func (d *Decision) label() (kind Action, reason Reason) {
	switch d.Action {
	case Skip, Failed:
		return d.Action, NoReason
	}
	return d.Action, d.Reason
}

// DecisionCount is how many requests ended with one action and reason.
type DecisionCount struct {
	Action, Reason string
	N              uint64
}

// decisionLabels are the action/reason pairs a decision can have, in the
// order DecisionCounts lists them.
var decisionLabels = [...]struct {
	kinds  []Action // counted together (a first pass is a pass)
	reason Reason
	label  string
}{
	{[]Action{Pass, FirstPass}, ClientWhitelist, "client whitelist"},
	{[]Action{Pass, FirstPass}, RecipientWhitelist, "recipient whitelist"},
	{[]Action{Pass, FirstPass}, ClientAWL, "client AWL"},
	{[]Action{Pass, FirstPass}, TripletFound, "triplet found"},
	{[]Action{Pass}, Scored, "score"},
	{[]Action{Pass}, PolicyNever, "recipient policy"},
	{[]Action{Greylist}, New, "new"},
	{[]Action{Greylist}, EarlyRetry, "early-retry"},
	{[]Action{Greylist}, Greytrap, "greytrap"},
	{[]Action{Greylist}, Trapped, "trapped"},
	{[]Action{Sleep}, TarpitReason, "tarpit"},
	{[]Action{Pass}, TarpitReason, "tarpit"},
	{[]Action{Pass}, TarpitSession, "tarpit-session"},
	{[]Action{Greylist}, TarpitAbandoned, "tarpit-abandoned"},
	{[]Action{Skip}, NoReason, "malformed"},
	{[]Action{Failed}, NoReason, "store error"},
}

// DecisionCounts returns the requests answered since the engine started,
// by action and reason (see Action.Label), every pair listed even at zero.
// Their sum is the number of answered requests: each is counted once,
// when its answer is chosen, whether the decision or the store timeout
// (Late) answered it. Explain counts nothing.
func (e *Engine) DecisionCounts() []DecisionCount {
	out := make([]DecisionCount, 0, len(decisionLabels))
	for _, l := range decisionLabels {
		var n uint64
		for _, k := range l.kinds {
			n += e.decided[k][l.reason].Load()
		}
		out = append(out, DecisionCount{Action: l.kinds[0].Label(), Reason: l.label, N: n})
	}
	return out
}
