package greylist

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"greyd/internal/dns"
	"greyd/internal/dns/dnstest"
	"greyd/internal/policy"
	"greyd/internal/signals"
	"greyd/internal/store"
	"greyd/internal/whitelist"
)

func intp(n int) *int { return &n }

// selectiveSnapshot is testSnapshot in mode score: rdns_missing = 3,
// rdns_dynamic = 2, helo_invalid = 1, dnsbl bl.example (3), dnswl
// wl.example (-3), greylist_at 3, and two recipient policies.
func selectiveSnapshot(t testing.TB, srv *dnstest.Server, shadow bool) *Snapshot {
	t.Helper()
	snap := testSnapshot(t)
	sc, err := signals.NewConfig(signals.Spec{
		RDNSMissing: intp(3), RDNSDynamic: intp(2), HELOInvalid: intp(1),
		DNSBLs: []signals.DNSBLSpec{{Zone: "bl.example", Weight: 3}},
		DNSWLs: []signals.DNSWLSpec{{Zone: "wl.example", Weight: -3}},
		Budget: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	policy := func(entries string) *whitelist.Recipients {
		r, ps := whitelist.ParseRecipients("", strings.NewReader(entries))
		if len(ps) > 0 {
			t.Fatal(ps)
		}
		return r
	}
	minute := time.Minute
	snap.Selective = &Selective{
		Mode: ModeScore, GreylistAt: 3, Shadow: shadow, Signals: sc,
		Policies: []RecipientPolicy{
			{Name: "billing", Recipients: policy("@billing.example.org\n"), Mode: ModeAlways, Delay: &minute},
			{Name: "noreply", Recipients: policy("noreply@example.org\n"), Mode: ModeNever},
			{Name: "strict", Recipients: policy("strict@example.org\n"), Mode: ModeScore, GreylistAt: intp(1)},
		},
	}
	if srv != nil {
		r, err := dns.New(dns.Config{Servers: []string{srv.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		snap.Scorer = &signals.Evaluator{Resolver: r}
	}
	return snap
}

func heloReq(addr, name, helo, sender, rcpt string) *policy.Request {
	return policy.ParseRequest("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=" + addr +
		"\nclient_name=" + name + "\nhelo_name=" + helo + "\nsender=" + sender + "\nrecipient=" + rcpt + "\n")
}

func TestSelectiveDecide(t *testing.T) {
	srv := dnstest.Start(t)
	srv.A("2.0.0.198.bl.example", 300, "127.0.0.2")       // 198.0.0.2 listed
	srv.A("3.0.0.198.wl.example", 300, "127.0.10.2")      // 198.0.0.3 on the white list
	srv.A("4.0.0.198.bl.example", 300, "127.255.255.254") // 198.0.0.4: the list refuses
	srv.Set("5.0.0.198.bl.example", dnstest.Drop)         // 198.0.0.5: never answers

	tests := []struct {
		name     string
		r        *policy.Request
		shadow   bool
		action   Action
		reason   Reason
		scored   bool
		class    signals.Class
		total    int
		policy   string
		delay    int64 // the step's delay, when stepped
		stepped  int   // store steps
		stored   bool  // the triplet is in the store afterwards
		maxTaken time.Duration
	}{
		{name: "verified, valid HELO: passes at first sight", r: heloReq("198.0.0.1", "mail.example.com", "mail.example.com", "a@example.com", "u@example.org"),
			action: Pass, reason: Scored, scored: true, class: signals.Pass, stepped: 1, delay: 300},
		{name: "unverified: greylisted", r: heloReq("198.0.0.1", "unknown", "mail.example.com", "a@example.com", "u@example.org"),
			action: Greylist, reason: New, scored: true, class: signals.Greylist, total: 3, stepped: 2, stored: true, delay: 300},
		{name: "listed: greylisted", r: heloReq("198.0.0.2", "mail.example.com", "mail.example.com", "a@example.com", "u@example.org"),
			action: Greylist, reason: New, scored: true, class: signals.Greylist, total: 3, stepped: 2, stored: true, delay: 300},
		{name: "white-listed without rDNS: passes", r: heloReq("198.0.0.3", "unknown", "mail.example.com", "a@example.com", "u@example.org"),
			action: Pass, reason: Scored, scored: true, class: signals.Pass, total: 0, stepped: 1, delay: 300},
		{name: "refusal counts at worst", r: heloReq("198.0.0.4", "mail.example.com", "mail.example.com", "a@example.com", "u@example.org"),
			action: Greylist, reason: New, scored: true, class: signals.Greylist, total: 3, stepped: 2, stored: true, delay: 300},
		{name: "a list that never answers: the budget, then greylisted", r: heloReq("198.0.0.5", "mail.example.com", "mail.example.com", "a@example.com", "u@example.org"),
			action: Greylist, reason: New, scored: true, class: signals.Greylist, total: 3, stepped: 2, stored: true, delay: 300, maxTaken: 2 * time.Second},
		{name: "shadow: class pass, greylisted all the same", r: heloReq("198.0.0.1", "mail.example.com", "mail.example.com", "a@example.com", "u@example.org"), shadow: true,
			action: Greylist, reason: New, scored: true, class: signals.Pass, stepped: 1, stored: true, delay: 300},
		{name: "policy always: no score, its delay", r: heloReq("198.0.0.1", "mail.example.com", "mail.example.com", "a@example.com", "x@billing.example.org"),
			action: Greylist, reason: New, policy: "billing", stepped: 1, stored: true, delay: 60},
		{name: "policy never: no store step", r: heloReq("198.0.0.1", "unknown", "x", "a@example.com", "noreply@example.org"),
			action: Pass, reason: PolicyNever, policy: "noreply"},
		{name: "policy score with its own threshold", r: heloReq("198.0.0.1", "mail.example.com", "x", "a@example.com", "strict@example.org"),
			action: Greylist, reason: New, policy: "strict", scored: true, class: signals.Greylist, total: 1, stepped: 2, stored: true, delay: 300},
		{name: "whitelisted recipient: nothing", r: heloReq("198.0.0.1", "unknown", "x", "a@example.com", "postmaster@example.org"),
			action: Pass, reason: RecipientWhitelist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := selectiveSnapshot(t, srv, tc.shadow)
			st := &countingStore{Store: newStore(t)}
			start := time.Now()
			d := Decide(context.Background(), tc.r, snap, st, t0)
			took := time.Since(start)
			sc := d.Scoring
			if d.Action != tc.action || d.Reason != tc.reason || sc.Scored != tc.scored || sc.Policy != tc.policy || d.Err != nil {
				t.Fatalf("got %v/%v scored %v policy %q err %v; want %v/%v scored %v policy %q", d.Action, d.Reason, sc.Scored, sc.Policy, d.Err, tc.action, tc.reason, tc.scored, tc.policy)
			}
			if tc.scored && (sc.Class != tc.class || sc.Score.Total != tc.total || sc.Shadow != tc.shadow) {
				t.Errorf("class %v total %d (%s) shadow %v; want %v %d %v", sc.Class, sc.Score.Total, sc.Score.Format(), sc.Shadow, tc.class, tc.total, tc.shadow)
			}
			if st.steps != tc.stepped || (tc.stepped > 0 && st.last.Delay != tc.delay) {
				t.Errorf("%d store steps, delay %d; want %d, %d", st.steps, st.last.Delay, tc.stepped, tc.delay)
			}
			after, _ := st.Step(context.Background(), &store.StepInput{TripletKey: d.Input.TripletKey, Now: t0.Unix(), Delay: 300, RetryWindow: 3600, MaxAge: 3600, DryRun: true})
			if tc.stepped > 0 && after.Before.TripletFound != tc.stored {
				t.Errorf("triplet stored %v, want %v", after.Before.TripletFound, tc.stored)
			}
			if tc.maxTaken > 0 && took > tc.maxTaken {
				t.Errorf("took %v, more than %v", took, tc.maxTaken)
			}
		})
	}
}

// A known triplet costs no score: the held step passes it.
func TestSelectiveKnownClientNoLookup(t *testing.T) {
	srv := dnstest.Start(t)
	snap := selectiveSnapshot(t, srv, false)
	st := newStore(t)
	r := heloReq("198.0.0.9", "unknown", "mail.example.com", "a@example.com", "u@example.org")
	if d := Decide(context.Background(), r, snap, st, t0); d.Action != Greylist || !d.Scoring.Scored {
		t.Fatalf("first attempt: %+v", d)
	}
	n := srv.Total()
	if n == 0 {
		t.Fatal("the first attempt asked no list")
	}
	d := Decide(context.Background(), r, snap, st, t0.Add(6*time.Minute))
	if d.Action != FirstPass || d.Scoring.Scored || srv.Total() != n {
		t.Errorf("retry after the delay: %v/%v scored %v, %d queries (before %d); want a first pass, no score, no query", d.Action, d.Reason, d.Scoring.Scored, srv.Total(), n)
	}
}

// The log line of a score pass, and of a greylisted request in shadow mode.
func TestSelectiveLogLine(t *testing.T) {
	r := heloReq("198.0.0.1", "mail.example.com", "mail.example.com", "a@example.com", "u@example.org")
	d := Decision{Action: Pass, Reason: Scored, Scoring: Scoring{Scored: true, Class: signals.Pass, Score: signals.Score{Total: 1,
		Signals: []signals.Signal{{Name: "helo_invalid", Weight: 1}}}}}
	want := "action=pass, reason=score, score=1, signals=helo_invalid:1, client_name=mail.example.com, client_address=198.0.0.1, sender=a@example.com, recipient=u@example.org"
	if got := string(appendDecision(nil, r, "pass", d, 0)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	d = Decision{Action: Greylist, Reason: New, Scoring: Scoring{Policy: "p", Scored: true, Shadow: true, Class: signals.Pass}}
	want = "action=greylist, reason=new, policy=p, class=pass, score=0, client_name=mail.example.com, client_address=198.0.0.1, sender=a@example.com, recipient=u@example.org"
	if got := string(appendDecision(nil, r, "greylist", d, 0)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// countingStore counts steps and keeps the last input.
type countingStore struct {
	store.Store
	steps int
	last  store.StepInput
}

func (s *countingStore) Step(ctx context.Context, in *store.StepInput) (store.StepResult, error) {
	if !in.DryRun {
		s.steps++
		s.last = *in
	}
	return s.Store.Step(ctx, in)
}

// BenchmarkDecideSelective compares a decision in mode always with one
// in mode score with every DNS answer cached: the bound is 20 %
// of throughput at 64 connections (make bench; BENCHMARKS.md). Half the
// clients are verified (class pass: one held step, nothing written),
// half "unknown" (class greylist: a held step, the score, a second
// step). Signals: rdns_missing, rdns_dynamic (identity rules), helo_invalid,
// a DNSBL and a DNSWL; no SPF.
func BenchmarkDecideSelective(b *testing.B) {
	srv := dnstest.Start(b)
	reqs := make([]*policy.Request, 1000)
	for i := range reqs {
		name := fmt.Sprintf("mail%d.foo%d.example", i, i)
		if i%2 == 1 {
			name = "unknown"
		}
		reqs[i] = heloReq(fmt.Sprintf("198.51.%d.%d", i/250, i%250), name, fmt.Sprintf("mail%d.foo%d.example", i, i), fmt.Sprintf("user%d@foo.example", i), "bob@example.org")
	}
	for _, mode := range []string{"always", "score"} {
		run := func(b *testing.B, parallel bool) {
			snap := selectiveSnapshot(b, srv, false)
			snap.Selective.Policies = nil
			if mode == "always" {
				snap.Selective = nil
			}
			st := newStore(b)
			ctx := context.Background()
			for _, r := range reqs { // warm the cache and the store
				Decide(ctx, r, snap, st, t0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			if !parallel {
				for i := 0; i < b.N; i++ {
					Decide(ctx, reqs[i%len(reqs)], snap, st, t0.Add(time.Duration(i)*time.Millisecond))
				}
				return
			}
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					Decide(ctx, reqs[i%len(reqs)], snap, st, t0.Add(time.Second))
					i += 7
				}
			})
		}
		b.Run(mode, func(b *testing.B) { run(b, false) })
		b.Run(mode+"-parallel", func(b *testing.B) { run(b, true) })
	}
}
