package storetest

import (
	"context"
	"testing"
	"time"

	"greyd/internal/store"
)

func markAt(since, session int64) *store.Tarpit { return &store.Tarpit{Since: since, Session: session} }

var noMark = &store.Tarpit{}

const (
	issue = store.TarpitIssue
	check = store.TarpitCheck
	data  = store.TarpitData
)

// TarpitCases are the tarpit marks (taRgrey's): a client of class tarpit
// gets one wait per SMTP session, marked at RCPT instead of a triplet; its
// session's DATA proves it waited and passes the session's triplets; a
// client whose mark another session finds left during its wait and is
// greylisted with the abandon delay. Steps that name the client's tarpit
// key are those of a configuration with a tarpit block.
var TarpitCases = []Case{
	{"a tarpit sets the mark and no triplet; the same session's next RCPT passes", []Step{
		{At: 0, Client: "c", Triplet: "t1", Tarpit: "c", Op: issue, Session: 7, Want: Want{Outcome: greylisted, Missing: Delay,
			Tarpit: store.TarpitIssued, Mark: noMark, Triplet: none}},
		{At: 65, Client: "c", Triplet: "t2", Tarpit: "c", Op: check, Session: 7, Want: Want{Outcome: passed, First: 65,
			Tarpit: store.TarpitSame, Mark: markAt(0, 7), Triplet: none}},
		{At: 66, Client: "c", Triplet: "t1", Tarpit: "c", Op: issue, Session: 7, Want: Want{Outcome: passed, First: 66,
			Tarpit: store.TarpitSame, Triplet: none}},
	}},
	{"DATA of the session passes its triplets, counts once for the auto-whitelist and clears the mark", []Step{
		{At: 0, Client: "c", Triplet: "t1", Tarpit: "c", Op: issue, Session: 7, Want: Want{Outcome: greylisted, Missing: Delay, Tarpit: store.TarpitIssued}},
		{At: 65, Client: "c", Triplet: "t2", Tarpit: "c", Op: data, Session: 7, Keep: true, Want: Want{Outcome: firstPass, First: 65 - Delay, Waited: 65,
			Tarpit: store.TarpitWaited, Client: noClient, Triplet: none}},
		{At: 65, Client: "c", Triplet: "t1", Tarpit: "c", Op: data, Session: 7, Want: Want{Outcome: firstPass, First: 65 - Delay, Waited: 65,
			Tarpit: store.TarpitWaited, Client: client(1, 65), Mark: markAt(0, 7)}},
		{At: 100, Client: "c", Triplet: "t1", Tarpit: "c", Op: issue, Session: 8, Want: Want{Outcome: passed, First: 65 - Delay,
			Mark: noMark, Triplet: trip(65-Delay, 65), Client: client(1, 65)}},
		{At: 101, Client: "c", Triplet: "t2", Tarpit: "c", Op: issue, Session: 8, Want: Want{Outcome: passed, First: 65 - Delay}},
	}},
	{"DATA without the session's mark writes nothing", []Step{
		{At: 0, Client: "c", Triplet: "t", Tarpit: "c", Op: data, Session: 7, Want: Want{Outcome: passed, Mark: noMark, Triplet: none}},
		{At: 1, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 8, Want: Want{Outcome: greylisted, First: 1, Missing: Delay,
			Tarpit: store.TarpitIssued, Triplet: none}},
		{At: 2, Client: "c", Triplet: "t", Tarpit: "c", Op: data, Session: 9, Want: Want{Outcome: passed, First: 2, Mark: markAt(1, 8)}},
		{At: 3, Client: "c", Triplet: "t", Tarpit: "c", Op: check, Session: 9, Want: Want{Outcome: greylisted, First: 3, Missing: Abandon,
			Tarpit: store.TarpitAbandoned, Triplet: none, Mark: markAt(1, 8)}},
	}},
	{"DATA with no triplet (lost in a restart) clears this session's mark only", []Step{
		{At: 0, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 7, Want: Want{Outcome: greylisted, Missing: Delay, Tarpit: store.TarpitIssued}},
		{At: 65, Client: "c", Tarpit: "c", Op: data, Session: 9, Want: Want{Outcome: passed, First: 65, Mark: markAt(0, 7), Triplet: none}},
		{At: 65, Client: "c", Tarpit: "c", Op: data, Session: 7, Want: Want{Outcome: passed, First: 65, Waited: 65,
			Tarpit: store.TarpitWaited, Mark: markAt(0, 7), Client: noClient, Triplet: none}},
		// Not taken for a client that left; nothing passed, nothing counted.
		{At: 100, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 8, Want: Want{Outcome: greylisted, First: 100, Missing: Delay,
			Tarpit: store.TarpitIssued, Mark: noMark, Triplet: none, Client: noClient}},
	}},
	{"a client that left during its tarpit is greylisted with the abandon delay and passes after it", []Step{
		{At: 0, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 1, Want: Want{Outcome: greylisted, Missing: Delay, Tarpit: store.TarpitIssued}},
		{At: 600, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 2, Want: Want{Outcome: greylisted, First: 600, Missing: Abandon,
			Tarpit: store.TarpitAbandoned, Mark: markAt(0, 1), Triplet: none}},
		{At: 600 + Delay, Client: "c", Triplet: "t", Tarpit: "c", Op: check, Session: 3, Want: Want{Outcome: greylisted, First: 600, Missing: Abandon - Delay,
			Tarpit: store.TarpitAbandoned, Triplet: trip(600, 600)}},
		{At: 600 + Abandon, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 4, Want: Want{Outcome: firstPass, First: 600, Waited: Abandon}},
		{At: 601 + Abandon, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 5, Want: Want{Outcome: passed, First: 600}},
		// The mark lives on: another triplet of the client waits as long.
		{At: 602 + Abandon, Client: "c", Triplet: "t2", Tarpit: "c", Op: issue, Session: 5, Want: Want{Outcome: greylisted, First: 602 + Abandon, Missing: Abandon,
			Tarpit: store.TarpitAbandoned, Mark: markAt(0, 1)}},
	}},
	{"hold writes no abandoned triplet", []Step{
		{At: 0, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 1, Want: Want{Outcome: greylisted, Missing: Delay, Tarpit: store.TarpitIssued}},
		{At: 10, Client: "c", Triplet: "t", Tarpit: "c", Session: 2, Hold: true, Want: Want{Outcome: greylisted, First: 10, Missing: Abandon, Tarpit: store.TarpitAbandoned}},
		{At: 11, Client: "c", Triplet: "t", Tarpit: "c", Session: 2, Want: Want{Outcome: greylisted, First: 11, Missing: Abandon, Tarpit: store.TarpitAbandoned, Triplet: none}},
	}},
	{"a triplet passed before passes though its client left a tarpit", concat(
		passes("c", "t", 0),
		[]Step{
			{At: 1000, Client: "c", Triplet: "t2", Tarpit: "c", Op: issue, Session: 1, Want: Want{Outcome: greylisted, First: 1000, Missing: Delay, Tarpit: store.TarpitIssued}},
			{At: 2000, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 2, Want: Want{Outcome: passed, First: 0, Mark: markAt(1000, 1)}},
		},
	)},
	{"DATA of a triplet passed before clears the mark", concat(
		passes("", "t", 0),
		[]Step{
			{At: 1000, Triplet: "t2", Tarpit: "c", Op: issue, Session: 1, Want: Want{Outcome: greylisted, First: 1000, Missing: Delay, Tarpit: store.TarpitIssued}},
			{At: 1065, Triplet: "t", Tarpit: "c", Op: data, Session: 1, Want: Want{Outcome: passed, First: 0, Waited: 65, Tarpit: store.TarpitWaited}},
			{At: 1100, Triplet: "t2", Tarpit: "c", Op: issue, Session: 2, Want: Want{Outcome: greylisted, First: 1100, Missing: Delay,
				Tarpit: store.TarpitIssued, Mark: noMark, Triplet: none}},
		},
	)},
	{"a dry run sets no mark and clears none", []Step{
		{At: 0, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 1, DryRun: true, Want: Want{Outcome: greylisted, Missing: Delay, Tarpit: store.TarpitIssued}},
		{At: 1, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 2, Want: Want{Outcome: greylisted, First: 1, Missing: Delay, Tarpit: store.TarpitIssued, Mark: noMark}},
		{At: 2, Client: "c", Triplet: "t", Tarpit: "c", Op: data, Session: 2, DryRun: true, Want: Want{Outcome: firstPass, First: 2 - Delay, Waited: 1, Tarpit: store.TarpitWaited}},
		{At: 3, Client: "c", Triplet: "t", Tarpit: "c", Op: data, Session: 2, Want: Want{Outcome: firstPass, First: 3 - Delay, Waited: 2,
			Tarpit: store.TarpitWaited, Mark: markAt(1, 2), Triplet: none, Client: noClient}},
	}},
	{"an auto-whitelisted client is never tarpitted", []Step{
		{At: 0, Client: "c", Triplet: "t1", AWL: 1, Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: Delay, Client: "c", Triplet: "t1", AWL: 1, Want: Want{Outcome: firstPass, Waited: Delay, NewlyWhitelisted: true}},
		{At: Delay + 1, Client: "c", Triplet: "t2", AWL: 1, Tarpit: "c", Op: issue, Session: 1, Want: Want{Outcome: awl, First: Delay + 1}},
		{At: Delay + 2, Client: "c", Triplet: "t2", AWL: -1, Tarpit: "c", Op: issue, Session: 2, Want: Want{Outcome: greylisted, First: Delay + 2, Missing: Delay,
			Tarpit: store.TarpitIssued, Mark: noMark}},
	}},
	{"a trap holds a tarpitted client", []Step{
		{At: 0, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 1, Want: Want{Outcome: greylisted, Missing: Delay, Tarpit: store.TarpitIssued}},
		{At: 1, Client: "c", Triplet: "bait", Trap: "c", TrapHit: true, Tarpit: "c", Op: check, Session: 1, Want: Want{Outcome: greylisted, First: 1, Missing: Delay,
			TrapSet: true, TrapUntil: 1 + TrapFor}},
		{At: 2, Client: "c", Triplet: "t", Trap: "c", Tarpit: "c", Op: data, Session: 1, Want: Want{Outcome: greylisted, First: 2, Missing: Delay,
			Trapped: true, TrapUntil: 1 + TrapFor}},
	}},
	{"without a tarpit key marks are neither read nor set", []Step{
		{At: 0, Client: "c", Triplet: "t", Tarpit: "c", Op: issue, Session: 1, Want: Want{Outcome: greylisted, Missing: Delay, Tarpit: store.TarpitIssued}},
		{At: 1, Client: "c", Triplet: "t", Op: issue, Session: 2, Want: Want{Outcome: greylisted, First: 1, Missing: Delay, New: true, Mark: noMark}},
		{At: 1 + Delay, Client: "c", Triplet: "t", Want: Want{Outcome: firstPass, First: 1, Waited: Delay}},
	}},
	{"tarpit, trap, client and triplet keys live apart", []Step{
		{At: 0, Client: "same", Triplet: "same", Tarpit: "other", Op: issue, Session: 1, Want: Want{Outcome: greylisted, Missing: Delay, Tarpit: store.TarpitIssued}},
		{At: 1, Client: "same", Triplet: "same", Trap: "same", Tarpit: "same", Op: issue, Session: 2, Want: Want{Outcome: greylisted, First: 1, Missing: Delay,
			Tarpit: store.TarpitIssued, Mark: noMark, Trap: noTrap, Triplet: none, Client: noClient}},
		{At: 2, Client: "x", Triplet: "x", Tarpit: "other", Session: 3, Want: Want{Outcome: greylisted, First: 2, Missing: Abandon, Tarpit: store.TarpitAbandoned, Mark: markAt(0, 1)}},
	}},
}

// adminTarpits: tarpit marks are listed with their deadline (the abandon
// delay and the retry window after they were set), imported without
// replacing a stored one, deleted by kind, and count as neither triplets
// nor clients.
func adminTarpits(t *testing.T, open Opener) {
	st, a := adminOf(t, open)
	ctx := context.Background()
	now := time.Now().Unix()
	in := at(now, "192.0.2.7", "t")
	in.TarpitKey, in.TarpitOp, in.TarpitSession, in.AbandonDelay = "192.0.2.7", store.TarpitIssue, store.MaxValue, 1800
	if r := mustStep(t, st, in); r.Tarpit != store.TarpitIssued {
		t.Fatalf("tarpit: %+v", r)
	}
	want := store.Entry{Kind: store.KindTarpit, Key: "192.0.2.7", First: now, Session: store.MaxValue, Expires: now + 1800 + RetryWindow + 1}
	if got := scanAll(t, a, store.KindTarpit); len(got) != 1 || !sameEntry(got[0], want) {
		t.Errorf("Scan(tarpit) = %+v; want %+v", got, want)
	}
	if got := scanAll(t, a); len(got) != 1 || got[0].Kind != store.KindTarpit {
		t.Errorf("Scan(all) = %+v; want the mark alone (a tarpit writes no triplet)", got)
	}
	checkCounts(t, a, 0, 0)

	imp := []store.Entry{
		{Kind: store.KindTarpit, Key: "192.0.2.8", First: now - 10, Session: 5, Expires: now + 600},
		{Kind: store.KindTarpit, Key: "192.0.2.7", First: now - 100, Session: 6, Expires: now + 60},
	}
	if n, m, err := a.Import(ctx, imp, Delay); err != nil || n != 1 || m != 1 {
		t.Fatalf("Import = %d, %d, %v; want 1 imported, 1 merged", n, m, err)
	}
	got := scanAll(t, a, store.KindTarpit)
	if len(got) != 2 || !sameEntry(got[0], want) || !sameEntry(got[1], imp[0]) {
		t.Errorf("after import, Scan(tarpit) = %+v; want %+v and %+v", got, want, imp[0])
	}
	probe := func(key string, session int64) store.StepResult {
		in := at(now+1, key, "t")
		in.TarpitKey, in.TarpitSession, in.AbandonDelay = key, session, 1800
		return mustStep(t, st, in)
	}
	if r := probe("192.0.2.8", 5); r.Tarpit != store.TarpitSame {
		t.Errorf("step of an imported mark's session: %+v; want the same session", r)
	}
	if n, err := a.Delete(ctx, store.KindTarpit, []string{"192.0.2.7", "192.0.2.9"}); err != nil || n != 1 {
		t.Errorf("Delete(tarpit) = %d, %v; want 1", n, err)
	}
	if r := probe("192.0.2.7", 1); r.Tarpit != store.TarpitNone || r.Outcome != store.Greylisted || !r.New() {
		t.Errorf("step after the mark was deleted: %+v; want a new triplet", r)
	}
	checkCounts(t, a, 1, 0)
}
