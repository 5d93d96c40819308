// Package storetest is the behaviour suite of the store seam: one table of
// state-transition cases for store.Store (Run) and one for store.Admin
// (RunAdmin) that every backend runs unchanged, with the same
// expectations (gocloud.dev's drivertest pattern). A backend is correct
// when this suite passes, not when its own tests do; in particular the
// Redis backend's Lua scripts and store.Transition / store.Merge cannot
// drift apart.
package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"greyd/internal/store"
)

// T0 is the time of the first step of every case, in Unix seconds.
const T0 = 1_763_812_800 // 2025-11-22 12:00:00 UTC

// Rules of every case unless it says otherwise (Postgrey's defaults).
const (
	Delay       = 300
	RetryWindow = 2 * 86400
	MaxAge      = 35 * 86400
	AWLClients  = 5
	TrapFor     = 86400 // a trap's duration unless a step says otherwise
	Abandon     = 1800  // the tarpit's abandon delay
)

// Step is one request of a case and what must come of it.
type Step struct {
	At      int64  // seconds after T0
	Client  string // client key; "" = no auto-whitelist
	Triplet string
	Alt     string
	DryRun  bool
	Hold    bool
	AWL     int64  // AWLClients; 0 = the default, -1 = disabled
	Delay   int64  // 0 = the default
	Trap    string // trap key; "" = traps off
	TrapHit bool
	TrapFor int64  // 0 = the default
	Tarpit  string // tarpit key; "" = tarpits off
	Op      store.TarpitOp
	Session int64
	Keep    bool

	Want Want
}

// Want is the expected result. Zero-valued fields are checked too,
// except the Before fields, which are checked only when set.
type Want struct {
	Outcome          store.Outcome
	First            int64 // seconds after T0
	Missing, Waited  int64
	ViaAlt           bool
	NewlyWhitelisted bool
	FutureCorrected  bool
	New              bool
	Trapped, TrapSet bool
	TrapUntil        int64 // seconds after T0; 0 = none
	Tarpit           store.TarpitResult

	Client  *store.Client  // Before.Client, Last relative to T0; &store.Client{} = not found
	Triplet *store.Triplet // Before.Triplet, relative to T0; &store.Triplet{} = not found
	Trap    *store.Trap    // Before.Trap, relative to T0; &store.Trap{} = not found
	Mark    *store.Tarpit  // Before.Tarpit, Since relative to T0; &store.Tarpit{} = not found
}

// Case is a sequence of steps on an empty store.
type Case struct {
	Name  string
	Steps []Step
}

// Input builds the StepInput of s.
func (s *Step) Input() *store.StepInput {
	in := &store.StepInput{
		ClientKey: s.Client, TripletKey: s.Triplet, AltKey: s.Alt,
		Now: T0 + s.At, FixedNow: true,
		Delay: Delay, RetryWindow: RetryWindow, MaxAge: MaxAge, AWLClients: AWLClients,
		DryRun: s.DryRun, Hold: s.Hold,
		TrapKey: s.Trap, TrapHit: s.TrapHit, TrapFor: TrapFor,
		TarpitKey: s.Tarpit, TarpitOp: s.Op, TarpitSession: s.Session, TarpitKeep: s.Keep, AbandonDelay: Abandon,
	}
	if s.TrapFor > 0 {
		in.TrapFor = s.TrapFor
	}
	switch {
	case s.AWL < 0:
		in.AWLClients = 0
	case s.AWL > 0:
		in.AWLClients = s.AWL
	}
	if s.Delay > 0 {
		in.Delay = s.Delay
	}
	return in
}

// Check compares a result with w and returns what differs, "" if nothing.
func (w *Want) Check(r store.StepResult) string {
	var diff string
	add := func(name string, got, want any) {
		if got != want {
			diff += fmt.Sprintf(" %s=%v (want %v)", name, got, want)
		}
	}
	add("outcome", r.Outcome, w.Outcome)
	add("first", r.First-T0, w.First)
	add("missing", r.Missing, w.Missing)
	add("waited", r.Waited, w.Waited)
	add("via_alt", r.ViaAlt, w.ViaAlt)
	add("newly_whitelisted", r.NewlyWhitelisted, w.NewlyWhitelisted)
	add("future_corrected", r.FutureCorrected, w.FutureCorrected)
	add("new", r.New(), w.New)
	add("trapped", r.Trapped, w.Trapped)
	add("trap_set", r.TrapSet, w.TrapSet)
	until := r.TrapUntil
	if until != 0 {
		until -= T0
	}
	add("trap_until", until, w.TrapUntil)
	add("tarpit", r.Tarpit, w.Tarpit)
	if w.Client != nil {
		got := store.Client{}
		if r.Before.ClientFound {
			got = store.Client{Count: r.Before.Client.Count, Last: r.Before.Client.Last - T0}
		}
		add("before.client", got, *w.Client)
	}
	if w.Triplet != nil {
		got := store.Triplet{}
		if r.Before.TripletFound {
			got = store.Triplet{First: r.Before.Triplet.First - T0, Last: r.Before.Triplet.Last - T0}
		}
		add("before.triplet", got, *w.Triplet)
	}
	if w.Trap != nil {
		got := store.Trap{}
		if r.Before.TrapFound {
			got = store.Trap{Since: r.Before.Trap.Since - T0, Until: r.Before.Trap.Until - T0}
		}
		add("before.trap", got, *w.Trap)
	}
	if w.Mark != nil {
		got := store.Tarpit{}
		if r.Before.TarpitFound {
			got = store.Tarpit{Since: r.Before.Tarpit.Since - T0, Session: r.Before.Tarpit.Session}
		}
		add("before.tarpit", got, *w.Mark)
	}
	return diff
}

// Opener returns an empty store for one case; the suite closes it.
type Opener func(t *testing.T) store.Store

// Run runs every case of Cases and the concurrency checks against the
// stores open returns.
func Run(t *testing.T, open Opener) {
	for _, c := range slices.Concat(Cases, TrapCases, TarpitCases) {
		t.Run(c.Name, func(t *testing.T) {
			st := open(t)
			defer st.Close()
			for i, s := range c.Steps {
				r, err := st.Step(context.Background(), s.Input())
				if err != nil {
					t.Fatalf("step %d (at +%d, triplet %q): %v", i, s.At, s.Triplet, err)
				}
				if d := s.Want.Check(r); d != "" {
					t.Errorf("step %d (at +%d, client %q, triplet %q, alt %q, dry %v, trap %q hit %v, tarpit %q op %d session %d):%s",
						i, s.At, s.Client, s.Triplet, s.Alt, s.DryRun, s.Trap, s.TrapHit, s.Tarpit, s.Op, s.Session, d)
				}
			}
		})
	}
	t.Run("concurrent first passes of one client count once", func(t *testing.T) {
		st := open(t)
		defer st.Close()
		Concurrent(t, st, st)
	})
}

// Concurrent checks atomicity: many steps at the same moment, spread over
// a and b (two hosts sharing one state, or the same store twice). The
// first passes of many triplets of one client within an hour count once
// for it: a backend that increments without looking at the last count
// time (HINCRBY) counts each.
func Concurrent(t *testing.T, a, b store.Store) {
	const n = 32
	ctx := context.Background()
	step := func(st store.Store, s Step) store.StepResult {
		t.Helper()
		r, err := st.Step(ctx, s.Input())
		if err != nil {
			t.Fatalf("step at +%d, triplet %q: %v", s.At, s.Triplet, err)
		}
		return r
	}
	// Two earlier passes, hours apart: count 2.
	for i, at := range []int64{-20000, -15000} {
		step(a, Step{At: at, Client: "conc-client", Triplet: fmt.Sprintf("conc-pre-%d", i)})
		step(b, Step{At: at + Delay, Client: "conc-client", Triplet: fmt.Sprintf("conc-pre-%d", i)})
	}
	for i := 0; i < n; i++ {
		step(a, Step{At: 0, Client: "conc-client", Triplet: fmt.Sprintf("conc-%d", i)})
	}
	var wg sync.WaitGroup
	results := make([]store.StepResult, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			s := Step{At: Delay, Client: "conc-client", Triplet: fmt.Sprintf("conc-%d", i)}
			results[i], errs[i] = st.Step(ctx, s.Input())
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if results[i].Outcome != store.FirstPass {
			t.Errorf("triplet %d: outcome %v, want first pass", i, results[i].Outcome)
		}
	}
	r := step(a, Step{At: Delay + 1, Client: "conc-client", Triplet: "conc-probe"})
	if !r.Before.ClientFound || r.Before.Client.Count != 3 {
		t.Errorf("after %d simultaneous first passes within an hour: client entry %+v (found %v), want count 3 (2 + 1)",
			n, r.Before.Client, r.Before.ClientFound)
	}
}
