package greylist

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/logging"
	"greyd/internal/policy"
	"greyd/internal/signals"
	"greyd/internal/store"
	"greyd/internal/tarpit"
)

// tarpitSnapshot is testSnapshot in mode score with a tarpit: helo_invalid
// = 1 (tarpit), rdns_missing = 3 (greylist), tarpit_at 1, greylist_at 3;
// a tarpit of 65 s, max_concurrent, abandon_delay 30 min.
func tarpitSnapshot(t testing.TB, maxConcurrent int) *Snapshot {
	t.Helper()
	snap := testSnapshot(t)
	sc, err := signals.NewConfig(signals.Spec{RDNSMissing: intp(3), HELOInvalid: intp(1), Budget: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	snap.Selective = &Selective{Mode: ModeScore, GreylistAt: 3, TarpitAt: intp(1), Signals: sc}
	snap.Tarpit = &tarpit.Settings{Duration: 65 * time.Second, MaxConcurrent: maxConcurrent, AbandonDelay: 30 * time.Minute}
	return snap
}

// tarpitEngine is an engine over st with a settable clock and a log.
func tarpitEngine(t *testing.T, st store.Store, snap *Snapshot) (*Engine, *atomic.Int64, *syncLog) {
	t.Helper()
	var clock atomic.Int64
	clock.Store(t0.Unix())
	logs := &syncLog{}
	e := NewEngine(st, snap, func() time.Time { return time.Unix(clock.Load(), 0) },
		slog.New(logging.New(logs, logging.Options{Journal: true})))
	return e, &clock, logs
}

// smtpReq is a request as Postfix sends it in state (RCPT or DATA) of
// session inst; extra lines are added as they are.
func smtpReq(state, inst, addr, name, helo, rcpt string, extra ...string) *policy.Request {
	return policy.ParseRequest("request=smtpd_access_policy\nprotocol_state=" + state + "\ninstance=" + inst +
		"\nclient_address=" + addr + "\nclient_name=" + name + "\nhelo_name=" + helo +
		"\nsender=s@example.com\nrecipient=" + rcpt + "\n" + strings.Join(extra, "\n"))
}

func TestTarpit(t *testing.T) {
	type req struct {
		at    int64 // seconds after t0
		r     *policy.Request
		reply string // "GREYLIST" for the greylisting reply, whatever its text
		log   string // a substring of the decision line; "" = no line
	}
	rcpt := func(inst, addr, helo, to string, extra ...string) *policy.Request {
		return smtpReq("RCPT", inst, addr, "mail.example.com", helo, to, extra...)
	}
	data := func(inst, addr, to string, extra ...string) *policy.Request {
		return smtpReq("DATA", inst, addr, "mail.example.com", "x", to, extra...)
	}
	tests := []struct {
		name                              string
		max                               int
		reqs                              []req
		issued, passed, abandoned, capped uint64
	}{
		{"wait, second RCPT, DATA of two recipients: both triplets pass", 30, []req{
			{0, rcpt("A", "198.51.100.1", "x", "u1@example.org"), "SLEEP 65", "action=tarpit, reason=tarpit, score=1, signals=helo_invalid:1, sleep=65, "},
			{65, rcpt("A", "198.51.100.1", "x", "u2@example.org"), "DUNNO", "action=pass, reason=tarpit-session, "},
			{66, data("A", "198.51.100.1", "", "recipient_count=2"), "DUNNO", "action=pass, reason=tarpit, waited=66, client_name=mail.example.com, client_address=198.51.100.1, sender=s@example.com, recipient_count=2"},
			{100, rcpt("B", "198.51.100.1", "x", "u1@example.org"), "DUNNO", "action=pass, reason=triplet found"},
			{101, rcpt("B", "198.51.100.1", "x", "u2@example.org"), "DUNNO", "action=pass, reason=triplet found"},
			// The mark is gone: another triplet gets a tarpit of its own.
			{102, rcpt("B", "198.51.100.1", "x", "u3@example.org"), "SLEEP 65", "action=tarpit"},
		}, 2, 1, 0, 0},
		{"DATA with its recipient", 30, []req{
			{0, rcpt("A", "198.51.100.1", "x", "u1@example.org"), "SLEEP 65", "action=tarpit"},
			{70, data("A", "198.51.100.1", "u1@example.org", "recipient_count=1"), "DUNNO", "action=pass, reason=tarpit, waited=70, "},
			{80, rcpt("B", "198.51.100.1", "x", "u1@example.org"), "DUNNO", "reason=triplet found"},
		}, 1, 1, 0, 0},
		{"a client that left is greylisted with the abandon delay, and passes after it", 30, []req{
			{0, rcpt("A", "198.51.100.1", "x", "u1@example.org"), "SLEEP 65", "action=tarpit"},
			{600, rcpt("B", "198.51.100.1", "x", "u1@example.org"), "GREYLIST", "action=greylist, reason=tarpit-abandoned, "},
			{600 + 300, rcpt("C", "198.51.100.1", "x", "u1@example.org"), "GREYLIST", "action=greylist, reason=tarpit-abandoned, "},
			{600 + 1800, rcpt("D", "198.51.100.1", "x", "u1@example.org"), "PREPEND X-Greylist: delayed 1800 seconds", "action=pass, reason=triplet found, delay=1800"},
		}, 1, 0, 2, 0},
		{"max_concurrent: the third at once is greylisted; after the duration there is room", 2, []req{
			{0, rcpt("A", "198.51.100.1", "x", "u@example.org"), "SLEEP 65", "action=tarpit"},
			{1, rcpt("B", "198.18.7.5", "x", "u@example.org"), "SLEEP 65", "action=tarpit"},
			{2, rcpt("C", "198.51.100.3", "x", "u@example.org"), "GREYLIST", "action=greylist, reason=new, score=1, signals=helo_invalid:1, tarpit=max_concurrent, "},
			{65, rcpt("D", "198.51.100.4", "x", "u@example.org"), "SLEEP 65", "action=tarpit"},
		}, 3, 0, 0, 1},
		{"stress=yes: greylisted", 30, []req{
			{0, rcpt("A", "198.51.100.1", "x", "u@example.org", "stress=yes"), "GREYLIST", "action=greylist, reason=new, score=1, signals=helo_invalid:1, tarpit=stress, "},
		}, 0, 0, 0, 1},
		{"not at RCPT (or no session): greylisted, never SLEEP", 30, []req{
			{0, smtpReq("MAIL", "A", "198.51.100.1", "mail.example.com", "x", ""), "GREYLIST", "action=greylist, reason=new, score=1, signals=helo_invalid:1, client_name"},
			{1, policy.ParseRequest("request=smtpd_access_policy\nclient_address=198.51.100.2\nclient_name=mail.example.com\nhelo_name=x\nsender=s@example.com\nrecipient=u@example.org\n"),
				"GREYLIST", "action=greylist, reason=new, score=1"},
		}, 0, 0, 0, 0},
		{"a clean client passes; a bad one is greylisted", 30, []req{
			{0, rcpt("A", "198.51.100.1", "mail.example.com", "u@example.org"), "DUNNO", "action=pass, reason=score, "},
			{1, smtpReq("RCPT", "B", "198.18.7.5", "unknown", "x", "u@example.org"), "GREYLIST", "action=greylist, reason=new, score=4, "},
		}, 0, 0, 0, 0},
		{"DATA of a session never tarpitted: DUNNO, no line", 30, []req{
			{0, rcpt("A", "198.51.100.1", "mail.example.com", "u@example.org"), "DUNNO", "action=pass, reason=score"},
			{1, data("A", "198.51.100.1", "u@example.org"), "DUNNO", ""},
			// Another session's DATA does not pass a tarpitted client.
			{2, rcpt("B", "198.18.7.5", "x", "u@example.org"), "SLEEP 65", "action=tarpit"},
			{3, data("C", "198.18.7.5", "u@example.org"), "DUNNO", ""},
		}, 1, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := tarpitSnapshot(t, tc.max)
			e, clock, logs := tarpitEngine(t, newStore(t), snap)
			greylistReply := "DEFER_IF_PERMIT Greylisted"
			for i, q := range tc.reqs {
				clock.Store(t0.Unix() + q.at)
				before := len(logs.String())
				got := e.ServePolicy(t.Context(), q.r)
				line := logs.String()[before:]
				ok := got == q.reply || q.reply == "GREYLIST" && strings.HasPrefix(got, greylistReply) || strings.HasPrefix(q.reply, "PREPEND") && strings.HasPrefix(got, q.reply)
				if !ok {
					t.Errorf("request %d (+%ds): reply %q, want %q; log: %s", i, q.at, got, q.reply, line)
				}
				if q.log == "" && line != "" || !strings.Contains(line, q.log) {
					t.Errorf("request %d (+%ds): log %q, want a line with %q", i, q.at, line, q.log)
				}
			}
			issued, passed, abandoned, capped := e.TarpitCounts()
			if issued != tc.issued || passed != tc.passed || abandoned != tc.abandoned || capped != tc.capped {
				t.Errorf("TarpitCounts = issued %d, passed %d, abandoned %d, capped %d; want %d, %d, %d, %d",
					issued, passed, abandoned, capped, tc.issued, tc.passed, tc.abandoned, tc.capped)
			}
		})
	}
}

// TestTarpitDataCost: a DATA request costs no store step without a
// tarpit, nor with one for a session not tarpitted once greyd has run
// longer than a session lives; within that time after a start it costs
// one step that writes nothing.
func TestTarpitDataCost(t *testing.T) {
	r := smtpReq("DATA", "A", "198.51.100.1", "mail.example.com", "x", "u@example.org")
	st := &countingStore{Store: newStore(t)}
	e, clock, logs := tarpitEngine(t, st, testSnapshot(t))
	if got := e.ServePolicy(t.Context(), r); got != "DUNNO" || st.steps != 0 || logs.String() != "" {
		t.Errorf("no tarpit: reply %q, %d steps, log %q; want DUNNO, none, none", got, st.steps, logs)
	}
	skip, pass, first, grey, failed := e.Counts()
	if skip+pass+first+grey+failed != 0 {
		t.Errorf("no tarpit: a DATA request was counted as a decision")
	}

	e, clock, logs = tarpitEngine(t, st, tarpitSnapshot(t, 30))
	clock.Store(t0.Unix() + 10)
	if got := e.ServePolicy(t.Context(), r); got != "DUNNO" || st.steps != 1 || logs.String() != "" {
		t.Errorf("just started: reply %q, %d steps, log %q; want DUNNO, 1 step, no line", got, st.steps, logs)
	}
	clock.Store(t0.Unix() + 65 + tarpit.SessionMargin + 1)
	if got := e.ServePolicy(t.Context(), r); got != "DUNNO" || st.steps != 1 {
		t.Errorf("running for a while: reply %q, %d steps; want DUNNO, no more steps", got, st.steps)
	}
	// Without its recipient, too: one step that writes nothing (it would
	// only clear this session's mark, TestTarpitRestart).
	e, _, logs = tarpitEngine(t, st, tarpitSnapshot(t, 30))
	if got := e.ServePolicy(t.Context(), smtpReq("DATA", "A", "198.51.100.1", "mail.example.com", "x", "", "recipient_count=2")); got != "DUNNO" || st.steps != 2 || logs.String() != "" {
		t.Errorf("just started, no recipient: reply %q, %d steps, log %q; want DUNNO, 2 steps, no line", got, st.steps, logs)
	}
}

// TestTarpitRestart: the mark is in the store, so the DATA of a session
// tarpitted before a restart passes its recipient.
func TestTarpitRestart(t *testing.T) {
	st := newStore(t)
	e, _, _ := tarpitEngine(t, st, tarpitSnapshot(t, 30))
	if got := e.ServePolicy(t.Context(), smtpReq("RCPT", "A", "198.51.100.1", "mail.example.com", "x", "u@example.org")); got != "SLEEP 65" {
		t.Fatalf("tarpit: %q", got)
	}
	e2, clock, logs := tarpitEngine(t, st, tarpitSnapshot(t, 30))
	clock.Store(t0.Unix() + 65)
	if got := e2.ServePolicy(t.Context(), smtpReq("DATA", "A", "198.51.100.1", "mail.example.com", "x", "u@example.org")); got != "DUNNO" ||
		!strings.Contains(logs.String(), "action=pass, reason=tarpit, waited=65") {
		t.Errorf("DATA after a restart: %q, log %q", got, logs)
	}
	if got := e2.ServePolicy(t.Context(), smtpReq("RCPT", "B", "198.51.100.1", "mail.example.com", "x", "u@example.org")); got != "DUNNO" {
		t.Errorf("next session: %q, want DUNNO (triplet found)", got)
	}

	// Two recipients: DATA names neither, and the restarted engine does
	// not know them. The mark is cleared, so the client's next session
	// is tarpitted again, not greylisted as one that left.
	if got := e2.ServePolicy(t.Context(), smtpReq("RCPT", "C", "198.18.7.5", "mail.example.com", "x", "u@example.org")); got != "SLEEP 65" {
		t.Fatalf("tarpit: %q\n%s", got, logs)
	}
	if got := e2.ServePolicy(t.Context(), smtpReq("RCPT", "C", "198.18.7.5", "mail.example.com", "x", "v@example.org")); got != "DUNNO" {
		t.Fatalf("second recipient: %q", got)
	}
	e3, clock3, logs3 := tarpitEngine(t, st, tarpitSnapshot(t, 30))
	clock3.Store(t0.Unix() + 130)
	if got := e3.ServePolicy(t.Context(), smtpReq("DATA", "C", "198.18.7.5", "mail.example.com", "x", "", "recipient_count=2")); got != "DUNNO" ||
		!strings.Contains(logs3.String(), "action=pass, reason=tarpit, waited=65") {
		t.Errorf("DATA of two recipients after a restart: %q, log %q", got, logs3)
	}
	if got := e3.ServePolicy(t.Context(), smtpReq("RCPT", "D", "198.18.7.5", "mail.example.com", "x", "u@example.org")); got != "SLEEP 65" {
		t.Errorf("next session after the lost triplets: %q, want SLEEP 65 (a new wait, not tarpit-abandoned)", got)
	}
	if strings.Contains(logs3.String(), "tarpit-abandoned") {
		t.Errorf("taken for a client that left:\n%s", logs3)
	}
}

// TestTarpitWarning: tarpitted sessions that never reach DATA make greyd
// warn once; a DATA resets that.
func TestTarpitWarning(t *testing.T) {
	e, clock, logs := tarpitEngine(t, newStore(t), tarpitSnapshot(t, 1000))
	const warning = "tarpitted sessions never reached DATA"
	sleep := func(i int) {
		t.Helper()
		r := smtpReq("RCPT", fmt.Sprint("S", i), fmt.Sprintf("198.51.100.%d", i), "mail.example.com", "x", "u@example.org")
		if got := e.ServePolicy(t.Context(), r); got != "SLEEP 65" {
			t.Fatalf("session %d: %q, want SLEEP 65", i, got)
		}
	}
	for i := 1; i < tarpit.WarnAfter; i++ {
		sleep(i)
	}
	clock.Add(65 + tarpit.SessionMargin + 1)
	sleep(100)
	if s := e.TarpitStatus(); s.Missed != tarpit.WarnAfter-1 || s.Warned || strings.Contains(logs.String(), warning) {
		t.Fatalf("after %d sessions without DATA: %+v, log %q; want no warning yet", tarpit.WarnAfter-1, s, logs)
	}
	clock.Add(65 + tarpit.SessionMargin + 1)
	sleep(101)
	sleep(102)
	if s := e.TarpitStatus(); s.Missed != tarpit.WarnAfter || !s.Warned || strings.Count(logs.String(), warning) != 1 {
		t.Fatalf("after %d sessions without DATA: %+v, log %q; want one warning", tarpit.WarnAfter, s, logs)
	}
	if got := e.ServePolicy(t.Context(), smtpReq("DATA", "S102", "198.51.100.102", "mail.example.com", "x", "u@example.org")); got != "DUNNO" {
		t.Fatalf("DATA: %q", got)
	}
	if s := e.TarpitStatus(); s.Missed != 0 || s.Warned || s.Sessions != 1 || s.Active != 2 {
		t.Errorf("after a DATA: %+v; want missed 0, not warned, 1 session (101) waiting, 2 active", s)
	}
}
