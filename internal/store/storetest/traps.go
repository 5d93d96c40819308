package storetest

import (
	"context"
	"testing"
	"time"

	"greyd/internal/store"
)

func trapAt(since, until int64) *store.Trap { return &store.Trap{Since: since, Until: until} }

var noTrap = &store.Trap{}

// TrapCases are the greytrap rules (OpenBSD spamd's): a request to a trap
// address traps its client for TrapFor, resets its auto-whitelist
// progress and forgets its pending triplets; a trapped client is
// greylisted whatever its triplets say, and looks like any greylisted
// one; auto-whitelisted clients are never trapped. Steps that name the
// client's trap key are those of a configuration with a trap block.
var TrapCases = []Case{
	{"a trap hit is greylisted like a new triplet and sets the trap", []Step{
		{At: 0, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, Want: Want{Outcome: greylisted, First: 0, Missing: Delay,
			TrapSet: true, TrapUntil: TrapFor, Trap: noTrap, Triplet: none}},
		{At: 1, Client: "c", Triplet: "bait", Trap: "c", Want: Want{Outcome: greylisted, First: 1, Missing: Delay,
			Trapped: true, TrapUntil: TrapFor, Trap: trapAt(0, TrapFor), Triplet: none}},
	}},
	{"a trapped client is held past the delay, to any recipient, until the trap ends", []Step{
		{At: 0, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: greylisted, Missing: Delay, New: true, Trap: noTrap}},
		{At: 10, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, Want: Want{Outcome: greylisted, First: 10, Missing: Delay, TrapSet: true, TrapUntil: 10 + TrapFor}},
		{At: Delay, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: greylisted, First: Delay, Missing: Delay, Trapped: true, TrapUntil: 10 + TrapFor}},
		{At: 9 + TrapFor, Client: "c", Triplet: "other", Trap: "c", Want: Want{Outcome: greylisted, First: 9 + TrapFor, Missing: Delay, Trapped: true, TrapUntil: 10 + TrapFor}},
		// Over: the triplet left pending before the trap reads as new.
		{At: 10 + TrapFor, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: greylisted, First: 10 + TrapFor, Missing: Delay, New: true,
			Trap: trapAt(10, 10+TrapFor), Triplet: none}},
		{At: 10 + TrapFor + Delay, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: firstPass, First: 10 + TrapFor, Waited: Delay}},
	}},
	{"a triplet pending since the trap was set is kept", []Step{
		{At: 0, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, TrapFor: 100, Want: Want{Outcome: greylisted, Missing: Delay, TrapSet: true, TrapUntil: 100}},
		{At: 100, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: greylisted, First: 100, Missing: Delay, New: true, Trap: trapAt(0, 100)}},
		{At: 100 + Delay, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: firstPass, First: 100, Waited: Delay, Triplet: trip(100, 100)}},
	}},
	{"a passed triplet is held while trapped and passes after", concat(
		passes("", "t", 0),
		[]Step{
			{At: 1000, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, TrapFor: 500, Want: Want{Outcome: greylisted, First: 1000, Missing: Delay, TrapSet: true, TrapUntil: 1500}},
			{At: 1499, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: greylisted, First: 1499, Missing: Delay, Trapped: true, TrapUntil: 1500}},
			{At: 1500, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: passed, First: 0, Triplet: trip(0, Delay)}},
		},
	)},
	{"the trap ends at its until; a new hit sets it again", []Step{
		{At: 0, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, TrapFor: 100, Want: Want{Outcome: greylisted, Missing: Delay, TrapSet: true, TrapUntil: 100}},
		{At: 50, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, TrapFor: 100, Want: Want{Outcome: greylisted, First: 50, Missing: Delay, TrapSet: true, TrapUntil: 150, Trap: trapAt(0, 100)}},
		{At: 149, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: greylisted, First: 149, Missing: Delay, Trapped: true, TrapUntil: 150}},
		{At: 150, Client: "c", Triplet: "t", Trap: "c", Want: Want{Outcome: greylisted, First: 150, Missing: Delay, New: true, Trap: trapAt(50, 150)}},
	}},
	{"a trap hit resets the client's auto-whitelist progress", concat(
		passes("c", "t1", 0),
		[]Step{
			{At: 5000, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, Want: Want{Outcome: greylisted, First: 5000, Missing: Delay,
				TrapSet: true, TrapUntil: 5000 + TrapFor, Client: client(1, Delay)}},
			{At: 5000 + TrapFor, Client: "c", Triplet: "t2", Trap: "c", Want: Want{Outcome: greylisted, First: 5000 + TrapFor, Missing: Delay, New: true, Client: noClient}},
		},
	)},
	{"an auto-whitelisted client is never trapped", concat(
		[]Step{
			{At: 0, Client: "c", Triplet: "t1", AWL: 1, Trap: "c", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
			{At: Delay, Client: "c", Triplet: "t1", AWL: 1, Trap: "c", Want: Want{Outcome: firstPass, Waited: Delay, NewlyWhitelisted: true}},
			{At: Delay + 1, Client: "c", Triplet: "bait", AWL: 1, Trap: "c", TrapHit: true, Want: Want{Outcome: awl, First: Delay + 1, Client: client(1, Delay)}},
			// Nothing was set: with the auto-whitelist off, the client
			// is an ordinary one.
			{At: Delay + 2, Client: "c", Triplet: "t2", AWL: -1, Trap: "c", Want: Want{Outcome: greylisted, First: Delay + 2, Missing: Delay, New: true, Trap: noTrap}},
		},
	)},
	{"a dry run sets no trap and deletes nothing", concat(
		passes("c", "t1", 0),
		[]Step{
			{At: 1000, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, DryRun: true, Want: Want{Outcome: greylisted, First: 1000, Missing: Delay, TrapSet: true, TrapUntil: 1000 + TrapFor}},
			{At: 1001, Client: "c", Triplet: "t1", Trap: "c", Want: Want{Outcome: passed, First: 0, Client: client(1, Delay), Trap: noTrap}},
		},
	)},
	{"a trapped client's dry run is held too", []Step{
		{At: 0, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, Want: Want{Outcome: greylisted, Missing: Delay, TrapSet: true, TrapUntil: TrapFor}},
		{At: 1, Client: "c", Triplet: "t", Trap: "c", DryRun: true, Want: Want{Outcome: greylisted, First: 1, Missing: Delay, Trapped: true, TrapUntil: TrapFor}},
	}},
	{"hold does not apply to traps", []Step{
		{At: 0, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, Hold: true, Want: Want{Outcome: greylisted, Missing: Delay, TrapSet: true, TrapUntil: TrapFor}},
		{At: 1, Client: "c", Triplet: "t", Trap: "c", Hold: true, Want: Want{Outcome: greylisted, First: 1, Missing: Delay, Trapped: true, TrapUntil: TrapFor}},
	}},
	{"without a trap key traps are neither read nor set", []Step{
		{At: 0, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, Want: Want{Outcome: greylisted, Missing: Delay, TrapSet: true, TrapUntil: TrapFor}},
		// The trap block removed: the client is judged by its triplets.
		{At: 1, Client: "c", Triplet: "t", Want: Want{Outcome: greylisted, First: 1, Missing: Delay, New: true, Trap: noTrap}},
		{At: 1 + Delay, Client: "c", Triplet: "t", Want: Want{Outcome: firstPass, First: 1, Waited: Delay}},
		// A trap hit without a key (no trap block) is nothing.
		{At: 2 + Delay, Client: "d", Triplet: "u", TrapHit: true, Want: Want{Outcome: greylisted, First: 2 + Delay, Missing: Delay, New: true}},
	}},
	{"trap, client and triplet keys live apart", []Step{
		{At: 0, Client: "same", Triplet: "same", Trap: "other", TrapHit: true, Want: Want{Outcome: greylisted, Missing: Delay, TrapSet: true, TrapUntil: TrapFor}},
		{At: 1, Client: "same", Triplet: "same", Trap: "same", Want: Want{Outcome: greylisted, First: 1, Missing: Delay, New: true, Trap: noTrap, Triplet: none, Client: noClient}},
		{At: 2, Client: "other", Triplet: "other", Trap: "other", Want: Want{Outcome: greylisted, First: 2, Missing: Delay, Trapped: true, TrapUntil: TrapFor, Client: noClient}},
	}},
}

// adminTraps: traps are listed, imported (merged by store.Merge), deleted
// like the other kinds, by kind, and count as neither triplets nor
// clients.
func adminTraps(t *testing.T, open Opener) {
	st, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	hit := at(now, "192.0.2.7", "bait")
	hit.TrapKey, hit.TrapHit, hit.TrapFor = "192.0.2.7", true, 3600
	if r := mustStep(t, st, hit); !r.TrapSet || r.TrapUntil != now+3600 {
		t.Fatalf("trap hit: %+v", r)
	}
	want := store.Entry{Kind: store.KindTrap, Key: "192.0.2.7", First: now, Until: now + 3600, Expires: now + 3600 + RetryWindow + 1}
	if got := scanAll(t, a, store.KindTrap); len(got) != 1 || !sameEntry(got[0], want) {
		t.Errorf("Scan(trap) = %+v; want %+v", got, want)
	}
	if got := scanAll(t, a); len(got) != 1 || got[0].Kind != store.KindTrap {
		t.Errorf("Scan(all) = %+v; want the trap alone (a trap hit writes no triplet)", got)
	}
	if got := scanAll(t, a, store.KindTriplet, store.KindClient); len(got) != 0 {
		t.Errorf("Scan(triplet, client) = %+v; want nothing", got)
	}
	checkCounts(t, a, 0, 0)

	// Import: a new trap, and one merged with the stored one.
	imp := []store.Entry{
		{Kind: store.KindTrap, Key: "192.0.2.8", First: now - 10, Until: now + 600, Expires: now + 600 + RetryWindow},
		{Kind: store.KindTrap, Key: "192.0.2.7", First: now - 100, Until: now + 60, Expires: now + 60 + RetryWindow},
	}
	if n, m, err := a.Import(ctx, imp, Delay); err != nil || n != 1 || m != 1 {
		t.Fatalf("Import = %d, %d, %v; want 1 imported, 1 merged", n, m, err)
	}
	got := scanAll(t, a, store.KindTrap)
	merged := store.Entry{Kind: store.KindTrap, Key: "192.0.2.7", First: now - 100, Until: now + 3600, Expires: want.Expires}
	if len(got) != 2 || !sameEntry(got[0], merged) || !sameEntry(got[1], imp[0]) {
		t.Errorf("after import, Scan(trap) = %+v; want %+v and %+v", got, merged, imp[0])
	}
	probe := func(key string) store.StepResult {
		in := at(now+1, key, "t")
		in.TrapKey, in.TrapFor = key, 3600
		return mustStep(t, st, in)
	}
	if r := probe("192.0.2.8"); !r.Trapped || r.TrapUntil != now+600 {
		t.Errorf("step of an imported trap's client: %+v; want trapped until %d", r, now+600)
	}

	if n, err := a.Delete(ctx, store.KindClient, []string{"192.0.2.7"}); err != nil || n != 0 {
		t.Errorf("Delete(client, trapped address) = %d, %v; want 0: a trap is no client entry", n, err)
	}
	if n, err := a.Delete(ctx, store.KindTrap, []string{"192.0.2.7", "192.0.2.9"}); err != nil || n != 1 {
		t.Errorf("Delete(trap) = %d, %v; want 1", n, err)
	}
	if r := probe("192.0.2.7"); r.Trapped || r.Outcome != store.Greylisted || !r.New() {
		t.Errorf("step after the trap was deleted: %+v; want a new triplet, not trapped", r)
	}
	checkCounts(t, a, 1, 0)
}
