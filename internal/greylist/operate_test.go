package greylist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"greyd/internal/metrics"
	"greyd/internal/policy"
	"greyd/internal/store"
)

// Tests of what the admin side of greyd relies on: explain, the runtime
// whitelist, dry run, the decision log setting and the counters.

func TestExplainWritesNothing(t *testing.T) {
	e, clk, logs := newEngine(t)
	ctx := context.Background()
	r := func(inst string) *policy.Request {
		return policy.ParseRequest("request=smtpd_access_policy\nclient_address=198.51.100.60\nclient_name=mx.foo.example\nsender=alice@foo.example\nrecipient=bob@example.org\netrn_domain=\ninstance=" + inst + "\n")
	}
	// Never seen: would be greylisted as new, and stays unknown.
	for i := 0; i < 2; i++ {
		x := e.Explain(ctx, r("x"))
		if x.Decision.Action != Greylist || x.Decision.Reason != New || x.Step.Before.TripletFound {
			t.Fatalf("explain %d of a new triplet: %+v", i, x.Decision)
		}
		if want := "DEFER_IF_PERMIT 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/example.org.html"; x.Reply != want {
			t.Errorf("reply %q, want %q", x.Reply, want)
		}
		if x.Input.TripletKey != "198.51.100.0/alice@foo.example/bob@example.org" || x.Input.ClientKey != "198.51.100.60" {
			t.Errorf("keys: %+v", x.Input)
		}
	}
	before := logs.Len()
	e.ServePolicy(ctx, r("1"))
	clk.t = t0.Add(100 * time.Second)
	x := e.Explain(ctx, r("2"))
	if x.Decision.Reason != EarlyRetry || x.Decision.Missing != 200 || x.Step.Before.Triplet.First != t0.Unix() {
		t.Errorf("explain of an early retry: %+v, step %+v", x.Decision, x.Step)
	}
	clk.t = t0.Add(310 * time.Second)
	for i := 0; i < 2; i++ {
		x = e.Explain(ctx, r("3"))
		if x.Decision.Action != FirstPass || !strings.HasPrefix(x.Reply, "PREPEND X-Greylist: delayed 310 seconds") {
			t.Errorf("explain %d after the delay: %+v, reply %q", i, x.Decision, x.Reply)
		}
	}
	// Explain consumed nothing: the real retry with the same instance
	// still gets its header; nothing was counted or logged for explain.
	if got := e.ServePolicy(ctx, r("3")); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 310 seconds") {
		t.Errorf("real retry after explain: %q", got)
	}
	var n uint64
	for _, c := range e.DecisionCounts() {
		n += c.N
	}
	if n != 2 {
		t.Errorf("counted %d decisions, want the 2 real requests", n)
	}
	if got := strings.Count(logs.String()[before:], "action="); got != 2 {
		t.Errorf("%d decision lines, want 2:\n%s", got, logs.String()[before:])
	}
}

func TestExplainWhitelistedShowsState(t *testing.T) {
	e, _, _ := newEngine(t)
	ctx := context.Background()
	e.ServePolicy(ctx, req("198.51.100.60", "unknown", "a@x.example", "postmaster@example.org"))
	x := e.Explain(ctx, req("198.51.100.60", "unknown", "a@x.example", "postmaster@example.org"))
	if x.Decision.Reason != RecipientWhitelist || x.Reply != "DUNNO" {
		t.Errorf("decision %+v, reply %q", x.Decision, x.Reply)
	}
	// Whitelisted requests never reach the store, so it holds nothing;
	// explain still looked the keys up.
	if x.Input.TripletKey == "" || x.Step.Before.TripletFound || x.StoreErr != nil {
		t.Errorf("state of a whitelisted request: input %+v, step %+v, err %v", x.Input, x.Step, x.StoreErr)
	}
}

// fakeRuntime is a RuntimeSource in memory.
type fakeRuntime struct {
	entries []store.WhitelistEntry
	version atomic.Int64
	fail    error
}

func (f *fakeRuntime) Whitelist(context.Context) ([]store.WhitelistEntry, error) {
	return f.entries, f.fail
}

func (f *fakeRuntime) WhitelistVersion(context.Context) (int64, error) {
	return f.version.Load(), f.fail
}

func TestRuntimeWhitelist(t *testing.T) {
	e, clk, logs := newEngine(t)
	ctx := context.Background()
	src := &fakeRuntime{}
	if err := e.RefreshRuntime(ctx, src); err != nil {
		t.Fatal(err)
	}
	if e.Snapshot().Runtime != nil {
		t.Error("no entries: Runtime should be nil")
	}
	tests := []struct {
		r      *policy.Request
		want   Reason
		wantRT bool
	}{
		{req("198.51.100.60", "mx.partner.example", "a@x.example", "b@example.org"), ClientWhitelist, true},
		{req("203.0.113.200", "unknown", "a@x.example", "b@example.org"), ClientWhitelist, true},
		{req("198.51.100.99", "unknown", "a@x.example", "sales+x@Example.org"), RecipientWhitelist, true},
		{req("198.51.100.99", "unknown", "a@x.example", "other@example.org"), New, false},
		{req("198.51.100.99", "unknown", "a@x.example", "postmaster@example.org"), RecipientWhitelist, false}, // the file's
	}
	src.entries = []store.WhitelistEntry{
		{Kind: store.WhitelistClient, Value: "partner.example"},
		{Kind: store.WhitelistClient, Value: "203.0.113.128/25"},
		{Kind: store.WhitelistRecipient, Value: "sales@example.org", Expires: t0.Unix() + 60},
		{Kind: store.WhitelistClient, Value: "not a valid entry"},
		{Kind: store.WhitelistClient, Value: "expired.example", Expires: t0.Unix() - 1},
	}
	src.version.Add(1)
	if err := e.RefreshRuntime(ctx, src); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `runtime whitelist entry "not a valid entry" ignored`) {
		t.Errorf("bad entry not logged:\n%s", logs)
	}
	if got := len(e.RuntimeEntries()); got != 4 {
		t.Errorf("%d entries in effect, want 4 (the expired one dropped)", got)
	}
	for i, tc := range tests {
		d := Decide(ctx, tc.r, e.Snapshot(), e.store, clk.t)
		if d.Reason != tc.want || d.Runtime != tc.wantRT {
			t.Errorf("%d: %s %s: reason %q runtime %v, want %q %v", i, tc.r.ClientName, tc.r.Recipient, d.Reason, d.Runtime, tc.want, tc.wantRT)
		}
	}
	// A reload keeps the runtime lists.
	e.SetSnapshot(testSnapshot(t))
	if d := Decide(ctx, tests[0].r, e.Snapshot(), e.store, clk.t); d.Reason != ClientWhitelist || !d.Runtime {
		t.Errorf("after a reload: %+v", d)
	}
	// Expiry: the poll drops the recipient entry once it expired.
	clk.t = t0.Add(61 * time.Second)
	if err := e.pollRuntime(ctx, src); err != nil {
		t.Fatal(err)
	}
	if d := Decide(ctx, tests[2].r, e.Snapshot(), e.store, clk.t); d.Runtime {
		t.Errorf("expired entry still whitelists: %+v", d)
	}
	// Another host's change: a new version is picked up by the poll.
	src.entries = src.entries[:1]
	src.version.Add(1)
	if err := e.pollRuntime(ctx, src); err != nil {
		t.Fatal(err)
	}
	if d := Decide(ctx, tests[1].r, e.Snapshot(), e.store, clk.t); d.Runtime {
		t.Errorf("removed entry still whitelists: %+v", d)
	}
	src.fail = errors.New("boom")
	if err := e.RefreshRuntime(ctx, src); err == nil {
		t.Error("failing source: no error")
	}
	if d := Decide(ctx, tests[0].r, e.Snapshot(), e.store, clk.t); !d.Runtime {
		t.Error("a failing source dropped the entries in effect")
	}
}

func TestDryRun(t *testing.T) {
	e, clk, logs := newEngine(t)
	snap := *e.Snapshot()
	snap.DryRun, snap.DeferOnStoreError = true, true
	e.SetSnapshot(&snap)
	ctx := context.Background()
	r := req("198.51.100.60", "mx.foo.example", "a@x.example", "b@example.org")
	if got := e.ServePolicy(ctx, r); got != "DUNNO" {
		t.Errorf("dry run, new triplet: %q, want DUNNO", got)
	}
	if want := "<5>action=greylist, reason=new, client_name=mx.foo.example, client_address=198.51.100.60, sender=a@x.example, recipient=b@example.org (dry run)"; lastLine(logs) != want {
		t.Errorf("log %q, want %q", lastLine(logs), want)
	}
	// It learned: the retry after the delay is a first pass, without the
	// header (nothing was delayed).
	clk.t = t0.Add(301 * time.Second)
	if got := e.ServePolicy(ctx, r); got != "DUNNO" {
		t.Errorf("dry run, first pass: %q, want DUNNO", got)
	}
	if !strings.Contains(lastLine(logs), "action=pass, reason=triplet found, client_name") || strings.Contains(lastLine(logs), "dry run") {
		t.Errorf("log %q", lastLine(logs))
	}
	counts := map[string]uint64{}
	for _, c := range e.DecisionCounts() {
		counts[c.Action+"/"+c.Reason] = c.N
	}
	if counts["greylist/new"] != 1 || counts["pass/triplet found"] != 1 {
		t.Errorf("counts %v: want the real actions", counts)
	}
	// A failing store answers DUNNO too, even with on_store_error = defer.
	e2 := NewEngine(failingStore{}, &snap, clk.now, slog.New(slog.DiscardHandler))
	if got := e2.ServePolicy(ctx, r); got != "DUNNO" {
		t.Errorf("dry run, store failure: %q", got)
	}
	if x := e.Explain(ctx, req("198.51.100.61", "x", "new@x.example", "b@example.org")); x.Reply != "DUNNO" || x.Decision.Action != Greylist {
		t.Errorf("explain in a dry run: %+v, reply %q", x.Decision, x.Reply)
	}
}

type failingStore struct{}

func (failingStore) Step(context.Context, *store.StepInput) (store.StepResult, error) {
	return store.StepResult{}, errors.New("disk on fire")
}
func (failingStore) Healthy(context.Context) error { return errors.New("disk on fire") }
func (failingStore) Close() error                  { return nil }

func TestLogDecisions(t *testing.T) {
	reqs := []*policy.Request{
		req("198.51.100.60", "x", "a@x.example", "b@example.org"),          // greylist
		req("198.51.100.60", "x", "a@x.example", "postmaster@example.org"), // pass
		policy.ParseRequest("request=smtpd_access_policy\nclient_address=bad\nclient_name=x\nsender=\nrecipient=a@b\n"),
	}
	tests := []struct {
		setting DecisionLog
		want    []string
	}{
		{LogAllDecisions, []string{"action=greylist", "action=pass", "warning: client_address"}},
		{LogGreylistDecisions, []string{"action=greylist", "warning: client_address"}},
		{LogNoDecisions, []string{"warning: client_address"}},
	}
	for i, tc := range tests {
		e, _, logs := newEngine(t)
		snap := *e.Snapshot()
		snap.LogDecisions = tc.setting
		e.SetSnapshot(&snap)
		for _, r := range reqs {
			e.ServePolicy(context.Background(), r)
		}
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("%d: %d lines, want %d:\n%s", i, len(lines), len(tc.want), logs)
			continue
		}
		for j, w := range tc.want {
			if !strings.Contains(lines[j], w) {
				t.Errorf("%d: line %d %q lacks %q", i, j, lines[j], w)
			}
		}
	}
	if ParseDecisionLog("greylist") != LogGreylistDecisions || ParseDecisionLog("none") != LogNoDecisions || ParseDecisionLog("all") != LogAllDecisions {
		t.Error("ParseDecisionLog")
	}
}

// countingObserver counts what it is told.
type countingObserver struct {
	requests, steps, passes atomic.Int64
	waited                  atomic.Int64
}

func (o *countingObserver) Request(time.Duration)   { o.requests.Add(1) }
func (o *countingObserver) StoreStep(time.Duration) { o.steps.Add(1) }
func (o *countingObserver) RetryDelay(s int64)      { o.passes.Add(1); o.waited.Store(s) }

func TestObserverAndCounts(t *testing.T) {
	e, clk, _ := newEngine(t)
	obs := &countingObserver{}
	e.SetObserver(obs)
	ctx := context.Background()
	reqs := []*policy.Request{
		req("198.51.100.60", "x", "a@x.example", "b@example.org"),
		req("198.51.100.60", "x", "a@x.example", "postmaster@example.org"),
		req("192.0.2.7", "x", "a@x.example", "b@example.org"),
		policy.ParseRequest("request=junk\n"),
	}
	for _, r := range reqs {
		e.ServePolicy(ctx, r)
	}
	clk.t = t0.Add(400 * time.Second)
	e.ServePolicy(ctx, reqs[0])
	e.Explain(ctx, reqs[0])
	if obs.requests.Load() != 5 || obs.steps.Load() != 2 || obs.passes.Load() != 1 || obs.waited.Load() != 400 {
		t.Errorf("observer: %d requests, %d steps, %d passes (waited %d); want 5, 2, 1 (400)",
			obs.requests.Load(), obs.steps.Load(), obs.passes.Load(), obs.waited.Load())
	}
	var got []string
	for _, c := range e.DecisionCounts() {
		if c.N > 0 {
			got = append(got, fmt.Sprintf("%s/%s=%d", c.Action, c.Reason, c.N))
		}
	}
	want := "pass/client whitelist=1 pass/recipient whitelist=1 pass/triplet found=1 greylist/new=1 skip/malformed=1"
	if strings.Join(got, " ") != want {
		t.Errorf("counts %q, want %q", strings.Join(got, " "), want)
	}
}

// TestObserverAllocs: metrics cost no allocation per request.
func TestObserverAllocs(t *testing.T) {
	snap, st := testSnapshot(t), newStore(t)
	e := NewEngine(st, snap, time.Now, slog.New(slog.DiscardHandler))
	r := req("198.51.100.60", "unknown", "a@x.example", "b@example.org")
	ctx := context.Background()
	e.ServePolicy(ctx, r)
	base := testing.AllocsPerRun(200, func() { e.ServePolicy(ctx, r) })
	e.SetObserver(&countingObserver{})
	with := testing.AllocsPerRun(200, func() { e.ServePolicy(ctx, r) })
	if with > base {
		t.Errorf("ServePolicy: %v allocations with an observer, %v without", with, base)
	}
}

// TestDecisionStaysOnStack: a request's Decision (about 500 B) is not
// garbage: through the daemon it was 38 % of the bytes allocated per
// request, and the garbage collector's cost at a million triplets is
// proportional to those bytes. The observer that takes the score is set,
// as in the daemon.
func TestDecisionStaysOnStack(t *testing.T) {
	snap, st := testSnapshot(t), newStore(t)
	e := NewEngine(st, snap, time.Now, slog.New(slog.DiscardHandler))
	e.SetObserver(metrics.New(metrics.Sources{}))
	r := req("198.51.100.61", "unknown", "a@x.example", "b@example.org")
	ctx := context.Background()
	e.ServePolicy(ctx, r)
	const n = 200
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		e.ServePolicy(ctx, r)
	}
	runtime.ReadMemStats(&m1)
	if per := (m1.TotalAlloc - m0.TotalAlloc) / n; per >= uint64(unsafe.Sizeof(Decision{})) {
		t.Errorf("ServePolicy allocates %d B per request, as much as a Decision (%d B)", per, unsafe.Sizeof(Decision{}))
	} else if per >= uint64(unsafe.Sizeof(store.StepInput{})) && !raceEnabled {
		// The keys and the reply are all a request should allocate.
		// (Under the race detector sync.Pool drops a quarter of its
		// items on purpose; make test runs this test without it too.)
		t.Errorf("ServePolicy allocates %d B per request, as much as a store.StepInput (%d B): is it recycled?", per, unsafe.Sizeof(store.StepInput{}))
	}
}

// BenchmarkServePolicyMetrics is BenchmarkServePolicy with the daemon's
// Prometheus observer: the cost of the metrics per request.
func BenchmarkServePolicyMetrics(b *testing.B) {
	snap, st := testSnapshot(b), newStore(b)
	e := NewEngine(st, snap, time.Now, slog.New(slog.DiscardHandler))
	e.SetObserver(metrics.New(metrics.Sources{}))
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
