package greylist

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"greyd/internal/dns/dnstest"
	"greyd/internal/policy"
	"greyd/internal/whitelist"
)

// trapSnapshot is testSnapshot with trap@example.org a trap for a day.
func trapSnapshot(t testing.TB) *Snapshot {
	t.Helper()
	snap := testSnapshot(t)
	traps, ps := whitelist.ParseRecipients("traps", strings.NewReader("trap@example.org\n"))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	snap.Traps = &Traps{Recipients: traps, For: 24 * time.Hour}
	return snap
}

func TestTraps(t *testing.T) {
	bob := req("198.51.100.60", "unknown", "alice@foo.example", "bob@example.org")
	carol := req("198.51.100.60", "unknown", "alice@foo.example", "carol@example.org")
	bait := req("198.51.100.60", "unknown", "x@spam.example", "Trap@Example.org")
	neighbour := req("198.51.100.61", "unknown", "alice@foo.example", "bob@example.org")
	const day = 24 * time.Hour
	runSteps(t, trapSnapshot(t), newStore(t), []step{
		{0, bob, Greylist, New, 300, 0},
		{0, carol, Greylist, New, 300, 0},
		{10 * time.Second, bait, Greylist, Greytrap, 300, 0},
		// Held past the delay, to every recipient.
		{400 * time.Second, bob, Greylist, Trapped, 300, 0},
		{time.Hour, req("198.51.100.60", "unknown", "z@z.example", "dave@example.org"), Greylist, Trapped, 300, 0},
		// Traps are per address: the same /24's triplet passes for
		// another host.
		{500 * time.Second, neighbour, FirstPass, TripletFound, 0, 500},
		// Whitelists still win.
		{time.Hour, req("198.51.100.60", "unknown", "alice@foo.example", "postmaster@example.org"), Pass, RecipientWhitelist, 0, 0},
		{day + 9*time.Second, bob, Greylist, Trapped, 300, 0},
		// Over: the triplets left pending read as new.
		{day + 10*time.Second, carol, Greylist, New, 300, 0},
		{day + 310*time.Second, carol, FirstPass, TripletFound, 0, 300},
	})
}

func TestTrapExempt(t *testing.T) {
	ctx := context.Background()
	t.Run("whitelisted client", func(t *testing.T) {
		snap, st := trapSnapshot(t), newStore(t)
		runSteps(t, snap, st, []step{
			{0, req("192.0.2.7", "unknown", "a@x.example", "trap@example.org"), Pass, ClientWhitelist, 0, 0},
			{time.Second, req("192.0.2.7", "unknown", "a@x.example", "bob@example.org"), Pass, ClientWhitelist, 0, 0},
		})
		// Nothing was stored for it: without the whitelist it is new.
		snap.Clients = nil
		runSteps(t, snap, st, []step{{2 * time.Second, req("192.0.2.7", "unknown", "a@x.example", "bob@example.org"), Greylist, New, 300, 0}})
	})
	t.Run("runtime whitelisted client", func(t *testing.T) {
		snap, st := trapSnapshot(t), newStore(t)
		rt, _ := whitelist.ParseClients("runtime", strings.NewReader("198.51.100.9\n"))
		snap.Runtime = &RuntimeWhitelist{Clients: rt}
		a := req("198.51.100.9", "unknown", "a@x.example", "trap@example.org")
		if d := Decide(ctx, a, snap, st, t0); d.Action != Pass || d.Reason != ClientWhitelist || !d.Runtime {
			t.Errorf("runtime whitelisted client to a trap: %+v", d)
		}
		snap.Runtime = nil
		runSteps(t, snap, st, []step{{time.Second, req("198.51.100.9", "unknown", "a@x.example", "bob@example.org"), Greylist, New, 300, 0}})
	})
	t.Run("auto-whitelisted client", func(t *testing.T) {
		snap, st := trapSnapshot(t), newStore(t)
		snap.AutoWhitelistClients = 1
		runSteps(t, snap, st, []step{
			{0, req("198.51.100.60", "unknown", "a@x.example", "bob@example.org"), Greylist, New, 300, 0},
			{300 * time.Second, req("198.51.100.60", "unknown", "a@x.example", "bob@example.org"), FirstPass, TripletFound, 0, 300},
			{400 * time.Second, req("198.51.100.60", "unknown", "b@x.example", "trap@example.org"), Pass, ClientAWL, 0, 0},
			{500 * time.Second, req("198.51.100.60", "unknown", "c@x.example", "carol@example.org"), Pass, ClientAWL, 0, 0},
		})
	})
	t.Run("a client on its way to the auto-whitelist starts over", func(t *testing.T) {
		snap, st := trapSnapshot(t), newStore(t)
		snap.AutoWhitelistClients = 2
		runSteps(t, snap, st, []step{
			{0, req("198.51.100.60", "unknown", "a@x.example", "bob@example.org"), Greylist, New, 300, 0},
			{300 * time.Second, req("198.51.100.60", "unknown", "a@x.example", "bob@example.org"), FirstPass, TripletFound, 0, 300},
			{2 * time.Hour, req("198.51.100.60", "unknown", "b@x.example", "trap@example.org"), Greylist, Greytrap, 300, 0},
		})
		d := DecideDry(ctx, req("198.51.100.60", "unknown", "c@x.example", "carol@example.org"), snap, st, t0.Add(50*time.Hour))
		if d.Step.Before.ClientFound {
			t.Errorf("after the trap, the client's auto-whitelist entry is still there: %+v", d.Step.Before.Client)
		}
	})
}

// TestTrapReply: the reply to a trapped client is the greylist reply, as
// for any new triplet; only the log says why.
func TestTrapReply(t *testing.T) {
	e, clk, logs := newEngine(t)
	e.SetSnapshot(trapSnapshot(t))
	ctx := context.Background()
	r := "request=smtpd_access_policy\nclient_address=198.51.100.60\nclient_name=unknown\nsender=a@x.example\nrecipient=%s\netrn_domain=\n"
	want := "DEFER_IF_PERMIT 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/example.org.html"
	for i, tc := range []struct {
		rcpt string
		at   time.Duration
		log  string
	}{
		{"trap@example.org", 0, "action=greylist, reason=greytrap, client_name=unknown, client_address=198.51.100.60, sender=a@x.example, recipient=trap@example.org"},
		{"bob@example.org", time.Hour, "action=greylist, reason=trapped, client_name=unknown, client_address=198.51.100.60, sender=a@x.example, recipient=bob@example.org"},
	} {
		clk.t = t0.Add(tc.at)
		if got := e.ServePolicy(ctx, policy.ParseRequest(fmt.Sprintf(r, tc.rcpt))); got != want {
			t.Errorf("%d: reply %q, want %q", i, got, want)
		}
		if got := lastLine(logs); got != "<5>"+tc.log {
			t.Errorf("%d: log %q, want %q", i, got, "<5>"+tc.log)
		}
	}
	if set, held := e.TrapCounts(); set != 1 || held != 1 {
		t.Errorf("TrapCounts() = %d, %d; want 1, 1", set, held)
	}
	found := 0
	for _, c := range e.DecisionCounts() {
		if c.Action == "greylist" && (c.Reason == "greytrap" || c.Reason == "trapped") && c.N == 1 {
			found++
		}
	}
	if found != 2 {
		t.Errorf("DecisionCounts() = %+v; want greylist/greytrap and greylist/trapped at 1", e.DecisionCounts())
	}
}

// TestNoTraps: without a trap block the store is asked nothing about
// traps, and a trap recipient is an ordinary one.
func TestNoTraps(t *testing.T) {
	d := Decide(context.Background(), req("198.51.100.60", "unknown", "a@x.example", "trap@example.org"), testSnapshot(t), newStore(t), t0)
	if d.Input.TrapKey != "" || d.Input.TrapHit || d.Reason != New {
		t.Errorf("without traps: input %+v, reason %v", d.Input, d.Reason)
	}
}

func BenchmarkDecideTraps(b *testing.B) {
	snap, st := trapSnapshot(b), newStore(b)
	reqs := make([]*policy.Request, 1000)
	for i := range reqs {
		reqs[i] = req(fmt.Sprintf("198.51.%d.%d", i/250, i%250), "unknown", fmt.Sprintf("user%d@foo.example", i), "bob@example.org")
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Decide(ctx, reqs[i%len(reqs)], snap, st, t0.Add(time.Duration(i)*time.Millisecond))
	}
}

// TestTrapsNotScoredAway: in mode score, a client that looks clean (it
// passes at first sight) is still trapped by a trap address and held
// afterwards: the score never lets a trap's request through.
func TestTrapsNotScoredAway(t *testing.T) {
	srv := dnstest.Start(t)
	snap := selectiveSnapshot(t, srv, false)
	snap.Traps = trapSnapshot(t).Traps
	clean := func(rcpt string) *policy.Request {
		return heloReq("198.0.0.1", "mail.example.com", "mail.example.com", "a@example.com", rcpt)
	}
	runSteps(t, snap, newStore(t), []step{
		{0, clean("u@example.org"), Pass, Scored, 0, 0},
		{time.Second, clean("trap@example.org"), Greylist, Greytrap, 300, 0},
		{2 * time.Second, clean("u@example.org"), Greylist, Trapped, 300, 0},
		{time.Hour, clean("v@example.org"), Greylist, Trapped, 300, 0},
	})
}
