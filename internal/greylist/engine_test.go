package greylist

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"greyd/internal/logging"
	"greyd/internal/policy"
)

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

func newEngine(t *testing.T) (*Engine, *testClock, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	clk := &testClock{t: t0}
	log := slog.New(logging.New(&logs, logging.Options{Journal: true, Level: slog.LevelDebug}))
	return NewEngine(newStore(t), testSnapshot(t), clk.now, log), clk, &logs
}

func TestReplies(t *testing.T) {
	e, clk, logs := newEngine(t)
	ctx := context.Background()
	r := "request=smtpd_access_policy\nclient_address=198.51.100.60\nclient_name=mx.foo.example\nsender=alice@foo.example\nrecipient=bob@Example.ORG\netrn_domain=\ninstance=%s\nqueue_id=ABC123\n"

	if got, want := e.ServePolicy(ctx, policy.ParseRequest(fmt.Sprintf(r, "1.1"))),
		"DEFER_IF_PERMIT 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/Example.ORG.html"; got != want {
		t.Errorf("first request: got %q, want %q", got, want)
	}
	if got, want := lastLine(logs), "<5>ABC123: action=greylist, reason=new, client_name=mx.foo.example, client_address=198.51.100.60, sender=alice@foo.example, recipient=bob@Example.ORG"; got != want {
		t.Errorf("log: got %q, want %q", got, want)
	}
	clk.t = t0.Add(100 * time.Second)
	e.ServePolicy(ctx, policy.ParseRequest(fmt.Sprintf(r, "1.2")))
	if got, want := lastLine(logs), "<5>ABC123: action=greylist, reason=early-retry (200s missing), client_name=mx.foo.example, client_address=198.51.100.60, sender=alice@foo.example, recipient=bob@Example.ORG"; got != want {
		t.Errorf("log: got %q, want %q", got, want)
	}

	clk.t = t0.Add(301 * time.Second)
	want := "PREPEND X-Greylist: delayed 301 seconds by greyd-test at mx.example.org; Sun, 22 Nov 2026 11:05:01 UTC"
	if got := e.ServePolicy(ctx, policy.ParseRequest(fmt.Sprintf(r, "1.3"))); got != want {
		t.Errorf("first pass: got %q, want %q", got, want)
	}
	if got, want := lastLine(logs), "<5>ABC123: action=pass, reason=triplet found, delay=301, client_name=mx.foo.example, client_address=198.51.100.60, sender=alice@foo.example, recipient=bob@Example.ORG"; got != want {
		t.Errorf("log: got %q, want %q", got, want)
	}
	// A second recipient of the same message (same instance) whose triplet
	// also passes for the first time gets no second header.
	r2 := strings.Replace(r, "bob@Example.ORG", "carol@example.org", 1)
	clk.t = t0
	e.ServePolicy(ctx, policy.ParseRequest(fmt.Sprintf(r2, "0.9")))
	clk.t = t0.Add(301 * time.Second)
	if got := e.ServePolicy(ctx, policy.ParseRequest(fmt.Sprintf(r2, "1.3"))); got != "DUNNO" {
		t.Errorf("second recipient of instance 1.3: got %q, want DUNNO", got)
	}
	if got := e.ServePolicy(ctx, policy.ParseRequest(fmt.Sprintf(r, "1.4"))); got != "DUNNO" {
		t.Errorf("after the first pass: got %q, want DUNNO", got)
	}
	if got, want := lastLine(logs), "<5>ABC123: action=pass, reason=triplet found, client_name=mx.foo.example, client_address=198.51.100.60, sender=alice@foo.example, recipient=bob@Example.ORG"; got != want {
		t.Errorf("log: got %q, want %q", got, want)
	}
}

func TestReplyText(t *testing.T) {
	tests := []struct {
		text, action string
		etrn         bool
		want         string
	}{
		{"Greylisted for %s seconds", "DEFER_IF_PERMIT", false, "DEFER_IF_PERMIT Greylisted for 300 seconds"},
		// Every occurrence is replaced (Postgrey replaced only the first).
		{"%s/%s seconds, %r %r", "DEFER", false, "DEFER 300/300 seconds, example.org example.org"},
		{"Greylisted", "450", true, "450 4.2.0 Greylisted"},
		// A text with its own status code gets no 4.2.0.
		{"4.7.1 Try later", "DEFER_IF_PERMIT", true, "DEFER_IF_PERMIT 4.7.1 Try later"},
		{"100%% sure %x", "DEFER", false, "DEFER 100%% sure %x"},
		{"", "DEFER", false, "DEFER"},
	}
	for i, tc := range tests {
		snap := testSnapshot(t)
		snap.Text, snap.Action = tc.text, tc.action
		rq := req("198.51.100.60", "", "a@x.example", "b@example.org")
		if tc.etrn {
			rq = policy.ParseRequest("request=smtpd_access_policy\nclient_address=198.51.100.60\nclient_name=\nsender=a@x.example\nrecipient=b@example.org\netrn_domain=\n")
		}
		if got := greylistReply(snap, rq, 300); got != tc.want {
			t.Errorf("%d: text %q: got %q, want %q", i, tc.text, got, tc.want)
		}
	}
	// A recipient domain with a placeholder in it is not expanded again.
	snap := testSnapshot(t)
	snap.Text = "%r"
	if got := greylistReply(snap, req("1.2.3.4", "", "", "x@%s.example"), 300); got != "DEFER_IF_PERMIT %s.example" {
		t.Errorf("recipient with %%s: got %q", got)
	}
}

func TestHeaderDisabled(t *testing.T) {
	e, clk, _ := newEngine(t)
	snap := *e.Snapshot()
	snap.XGreylistHeader = false
	e.SetSnapshot(&snap)
	r := req("198.51.100.60", "", "a@x.example", "b@y.example")
	e.ServePolicy(context.Background(), r)
	clk.t = t0.Add(5 * time.Minute)
	if got := e.ServePolicy(context.Background(), r); got != "DUNNO" {
		t.Errorf("first pass without header: got %q, want DUNNO", got)
	}
}

func TestSkipLogsWarning(t *testing.T) {
	e, _, logs := newEngine(t)
	got := e.ServePolicy(context.Background(), policy.ParseRequest("request=smtpd_access_policy\nclient_address=not-an-ip\nclient_name=x\nsender=\nrecipient=a@b\n"))
	if got != "DUNNO" {
		t.Errorf("bad client_address: got %q, want DUNNO", got)
	}
	if want := "<4>warning: client_address is not an IP address: 'not-an-ip': answering DUNNO (client x[not-an-ip])"; lastLine(logs) != want {
		t.Errorf("log: got %q, want %q", lastLine(logs), want)
	}
}

// TestBadTestTimeWarning: an ignored policy_test_time is warned about
// once per interval, with the count of the ones left out.
func TestBadTestTimeWarning(t *testing.T) {
	e, clk, logs := newEngine(t)
	ask := func(value string) {
		e.ServePolicy(context.Background(), policy.ParseRequest("request=smtpd_access_policy\nclient_address=198.51.100.1\nclient_name=x\nsender=a@b\nrecipient=c@d\npolicy_test_time="+value+"\n"))
	}
	warnings := func() []string {
		var ws []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "policy_test_time") {
				ws = append(ws, l)
			}
		}
		return ws
	}
	for _, v := range []string{"9223372036854775807", "1", "2", "1700000000"} {
		ask(v)
	}
	ws := warnings()
	if want := "<4>warning: ignoring policy_test_time=\"9223372036854775807\": not a Unix time from 2000-01-01 to 2100-01-01; using the clock (client x[198.51.100.1])"; len(ws) != 1 || ws[0] != want {
		t.Errorf("3 bad values within the interval: got warnings %q, want one: %q", ws, want)
	}
	clk.t = clk.t.Add(storeErrorEvery)
	ask("0")
	ws = warnings()
	if want := "<4>warning: ignoring policy_test_time=\"0\": not a Unix time from 2000-01-01 to 2100-01-01; using the clock (client x[198.51.100.1]) [2 more since the previous line]"; len(ws) != 2 || ws[1] != want {
		t.Errorf("after the interval: got warnings %q, want a second one: %q", ws, want)
	}
}

func TestInstances(t *testing.T) {
	var in instances
	if !in.isNew("a") || in.isNew("a") {
		t.Fatal("instance a: want new once")
	}
	for i := 0; i < 64; i++ {
		in.isNew(fmt.Sprint(i))
	}
	if !in.isNew("a") {
		t.Error("instance a after 64 others: want new again (ring is bounded)")
	}
	if !in.isNew("") || !in.isNew("") {
		t.Error("missing instance: always new, as Postgrey")
	}
}

func lastLine(b *bytes.Buffer) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	return lines[len(lines)-1]
}

func BenchmarkDecide(b *testing.B) {
	snap, st := testSnapshot(b), newStore(b)
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

func BenchmarkServePolicy(b *testing.B) {
	snap, st := testSnapshot(b), newStore(b)
	e := NewEngine(st, snap, time.Now, slog.New(slog.DiscardHandler))
	reqs := make([]*policy.Request, 1000)
	for i := range reqs {
		reqs[i] = req(fmt.Sprintf("198.51.%d.%d", i/250, i%250), "unknown", fmt.Sprintf("user%d@foo.example", i), "bob@example.org")
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.ServePolicy(ctx, reqs[i%len(reqs)])
	}
}
