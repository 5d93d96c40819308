package greylist

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"greyd/internal/logging"
	"greyd/internal/policy"
	"greyd/internal/signals"
	"greyd/internal/store"
	"greyd/internal/tarpit"
)

// LevelNotice is the level of decision lines: syslog "notice", as
// Postgrey logs them.
const LevelNotice = slog.Level(2)

// Engine answers policy requests: it implements policy.Handler.
type Engine struct {
	store store.Store
	steps store.Store // store, or store timed for the Observer (observe.go)
	obs   Observer    // nil: none
	now   func() time.Time
	log   *slog.Logger
	lines *logging.Handler // log's handler, if it is one: decision lines skip slog
	snap  atomic.Pointer[Snapshot]
	inst  instances
	rt    runtimeState // the runtime whitelist (runtime.go)
	// scorer holds the resolver of selective greylisting (selective.go);
	// set under rt.mu, like the runtime whitelist it joins in snapshots.
	scorer *signals.Evaluator
	// classes counts scored requests by class.
	classes [signals.Greylist + 1]atomic.Uint64
	// dnsLookups and dnsCacheHits count the resolver's lookups.
	dnsLookups, dnsCacheHits atomic.Uint64
	// tarpits is the tarpit's state on this host (tarpit.go).
	tarpits *tarpit.Table

	decisions [Failed + 1]atomic.Uint64
	// decided counts answered requests by kind and reason, for metrics
	// and greyd stats (DecisionCounts).
	decided [Failed + 1][numReasons]atomic.Uint64

	// Store failures: one error line per storeErrorEvery, and a line when
	// the store works again.
	storeErrs    logging.Limiter
	failing      atomic.Bool
	failingSince atomic.Int64 // unix nanoseconds of the first failure
	failures     atomic.Uint64

	// Requests whose policy_test_time was ignored: any client can send
	// one with every request.
	badTestTimes logging.Limiter

	// The store timeout (deadline.go).
	timeout    atomic.Int64 // nanoseconds; 0: no deadline
	stuck      atomic.Int64 // decisions answered by Late, still running
	stuckSince atomic.Int64 // unix nanoseconds
	probing    atomic.Bool  // a CheckStore is waiting for the store
}

// storeErrorEvery is how often a failing store is logged: a dead disk
// fails every request, and a line per request would flood the journal.
const storeErrorEvery = 10 * time.Second

// NewEngine returns an Engine deciding with snap and st; now is the clock.
func NewEngine(st store.Store, snap *Snapshot, now func() time.Time, log *slog.Logger) *Engine {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{store: st, steps: st, now: now, log: log}
	e.lines, _ = log.Handler().(*logging.Handler)
	e.storeErrs.Interval = storeErrorEvery
	e.badTestTimes.Interval = storeErrorEvery
	e.tarpits = tarpit.New(now().Unix(), func(msg string) { log.Warn(msg) })
	if snap.Tarpit != nil {
		snap = e.withRuntime(snap) // a copy that carries the tarpit's state
	}
	e.snap.Store(snap)
	return e
}

// SetSnapshot makes snap the configuration for requests that start from
// now on; requests in flight finish with the one they started with. The
// runtime whitelist in use stays: it comes from the store, not from the
// configuration files (snap is copied to carry it).
func (e *Engine) SetSnapshot(snap *Snapshot) {
	e.rt.mu.Lock()
	defer e.rt.mu.Unlock()
	e.snap.Store(e.withRuntime(snap))
}

// Snapshot returns the configuration in use.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// Counts returns how many requests ended in each Action.
func (e *Engine) Counts() (skip, pass, firstPass, greylist, failed uint64) {
	return e.decisions[Skip].Load(), e.decisions[Pass].Load(), e.decisions[FirstPass].Load(),
		e.decisions[Greylist].Load(), e.decisions[Failed].Load()
}

// ServePolicy decides req, logs the decision and returns the reply action.
func (e *Engine) ServePolicy(ctx context.Context, req *policy.Request) string {
	var start time.Time
	if e.obs != nil {
		start = time.Now() // a duration, not the decision's clock
	}
	snap := e.snap.Load()
	now := e.now()
	d := e.decide(ctx, req, snap, now)
	if !req.Claim() {
		// Late answered it meanwhile; the client has its reply.
		e.lateReturned()
		return "DUNNO"
	}
	reply := e.answer(req, snap, now, d)
	if e.obs != nil {
		e.obs.Request(time.Since(start))
	}
	return reply
}

// answer counts and logs decision d and returns its reply action.
func (e *Engine) answer(req *policy.Request, snap *Snapshot, now time.Time, d Decision) string {
	if d.Action == Skip && d.Warning == "" {
		return "DUNNO" // DATA outside a tarpitted session: not a decision
	}
	if d.Capped != "" {
		e.tarpits.Capped()
	}
	e.decisions[d.Action].Add(1)
	k, r := d.label()
	e.decided[k][r].Add(1)
	e.countScoring(&d)
	if d.Action != Failed && d.Reason >= ClientAWL && d.Reason != PolicyNever && e.failing.Load() {
		// Whitelist decisions (reasons before ClientAWL) never reach
		// the store, so they prove nothing about it.
		e.storeWorks(now)
	}
	if d.BadTestTime {
		e.badTestTime(now, req)
	}
	if d.FutureCorrected {
		e.log.Warn("correcting date for first seen in the future!")
	}
	if d.NewlyWhitelisted {
		if req.ClientName != "" {
			e.log.Info("whitelisted: " + req.ClientName + "[" + req.ClientAddress + "]")
		} else {
			e.log.Info("whitelisted: " + req.ClientAddress)
		}
	}
	switch d.Action {
	case Skip:
		e.log.Warn(d.Warning + ": answering DUNNO" + describe(req))
		return "DUNNO"
	case Failed:
		if snap.DryRun {
			e.storeFailed(now, fmt.Sprintf("store failed, answering DUNNO (dry run): %v%s", d.Err, describe(req)))
			return "DUNNO"
		}
		if snap.DeferOnStoreError {
			e.storeFailed(now, fmt.Sprintf("store failed, answering DEFER_IF_PERMIT (on_store_error = \"defer\"): %v%s", d.Err, describe(req)))
			return storeErrorReply(snap)
		}
		e.storeFailed(now, fmt.Sprintf("store failed, answering DUNNO (mail is not greylisted meanwhile): %v%s", d.Err, describe(req)))
		return "DUNNO"
	case Greylist:
		e.logDecision(snap, req, "greylist", d, 0)
		if snap.DryRun {
			return "DUNNO"
		}
		return greylistReply(snap, req, d.Missing)
	case Sleep:
		e.logDecision(snap, req, "tarpit", d, 0)
		return "SLEEP " + strconv.FormatInt(d.Sleep, 10)
	case FirstPass:
		if e.obs != nil {
			e.obs.RetryDelay(d.Waited)
		}
		// In a dry run nothing was delayed, so no header claims it was.
		if !snap.DryRun && snap.XGreylistHeader && e.inst.isNew(req.Instance) {
			e.logDecision(snap, req, "pass", d, d.Waited)
			return headerReply(snap, d)
		}
		e.logDecision(snap, req, "pass", d, 0)
		return "DUNNO"
	default:
		e.logDecision(snap, req, "pass", d, 0)
		return "DUNNO"
	}
}

// headerReply is the reply of a first pass: the X-Greylist header.
func headerReply(snap *Snapshot, d Decision) string {
	var buf [256]byte
	b := append(buf[:0], "PREPEND "...)
	b = appendExpanded(b, snap.HeaderText, &placeholders{header: true, waited: d.Waited, snap: snap, now: d.Now})
	return string(b)
}

// storeFailed logs a store failure, at most once per storeErrorEvery; the
// line says how many were left out since the previous one.
func (e *Engine) storeFailed(now time.Time, msg string) {
	e.failures.Add(1)
	if e.failing.CompareAndSwap(false, true) {
		e.failingSince.Store(now.UnixNano())
	}
	ok, dropped := e.storeErrs.Allow(now)
	if !ok {
		return
	}
	if dropped > 0 {
		msg += fmt.Sprintf(" [%d more store failures not logged since the previous line]", dropped)
	}
	e.log.Error(msg)
}

// badTestTime warns, at most once per storeErrorEvery, that a request's
// policy_test_time was ignored.
func (e *Engine) badTestTime(now time.Time, req *policy.Request) {
	ok, dropped := e.badTestTimes.Allow(now)
	if !ok {
		return
	}
	msg := fmt.Sprintf("ignoring policy_test_time=%q: not a Unix time from 2000-01-01 to 2100-01-01; using the clock%s", req.PolicyTestTime, describe(req))
	if dropped > 0 {
		msg += fmt.Sprintf(" [%d more since the previous line]", dropped)
	}
	e.log.Warn(msg)
}

// storeWorks logs, once, that the store answered again after failures.
func (e *Engine) storeWorks(now time.Time) {
	if !e.failing.CompareAndSwap(true, false) {
		return
	}
	e.storeErrs.Reset()
	n := e.failures.Swap(0)
	since := time.Unix(0, e.failingSince.Load())
	e.log.Warn(fmt.Sprintf("store works again: %d request(s) failed since %s; greylisting resumed",
		n, since.UTC().Format("2006-01-02 15:04:05 UTC")))
}

// storeErrorReply is the fail-closed answer: the store's failure must not
// let mail through ungreylisted, so defer it with a text that says why.
func storeErrorReply(snap *Snapshot) string {
	if snap.StoreErrorText == "" {
		return "DEFER_IF_PERMIT"
	}
	return "DEFER_IF_PERMIT " + snap.StoreErrorText
}

// greylistReply builds "ACTION text" with every %s (seconds left) and %r
// (recipient domain) replaced, and Postgrey's "4.2.0 " prefix when Postfix
// sent etrn_domain (it always does since 2.3) and the text has no status
// code of its own: Exchange needs an enhanced status code.
func greylistReply(snap *Snapshot, req *policy.Request, missing int64) string {
	text := snap.Text
	code := req.Has(policy.AttrETRNDomain) && (text == "" || text[0] < '0' || text[0] > '9')
	domain := req.Recipient
	for i := len(domain) - 1; i >= 0; i-- {
		if domain[i] == '@' {
			domain = domain[i+1:]
			break
		}
	}
	var buf [256]byte
	b := append(append(buf[:0], snap.Action...), ' ')
	if code {
		b = append(b, "4.2.0 "...)
	}
	b = appendExpanded(b, text, &placeholders{missing: missing, domain: domain})
	if len(b) == len(snap.Action)+1 {
		return snap.Action
	}
	return string(b)
}

// appendPrintable appends s with control characters replaced by '?': the
// recipient comes from the SMTP client, and a reply must stay one line
// that Postfix reads as it was meant (found by FuzzDecide).
func appendPrintable(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c == 0x7f {
			c = '?'
		}
		b = append(b, c)
	}
	return b
}

// placeholders are the values of the %x placeholders of the texts: %s
// (seconds left) and %r (recipient domain) in the greylist text, %t
// (seconds waited), %v (version), %h (hostname) and %d (date) in the
// header.
type placeholders struct {
	header          bool // the header's placeholders, else the greylist text's
	missing, waited int64
	domain          string
	snap            *Snapshot // %v, %h
	now             time.Time // %d
}

// appendExpanded appends tmpl with every placeholder that p knows
// replaced, in one pass, so that text substituted in (a recipient domain,
// say) is never expanded again. Unknown placeholders stay as they are.
// (No callback: the reply is built in a stack buffer, and a buffer passed
// to a function value escapes to the heap.)
func appendExpanded(b []byte, tmpl string, p *placeholders) []byte {
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] == '%' && i+1 < len(tmpl) {
			done := true
			switch c := tmpl[i+1]; {
			case c == 's' && !p.header:
				b = strconv.AppendInt(b, p.missing, 10)
			case c == 'r' && !p.header:
				b = appendPrintable(b, p.domain)
			case c == 't' && p.header:
				b = strconv.AppendInt(b, p.waited, 10)
			case c == 'v' && p.header:
				b = append(b, p.snap.Version...)
			case c == 'h' && p.header:
				b = append(b, p.snap.Hostname...)
			case c == 'd' && p.header:
				b = p.now.AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 MST")
			default:
				done = false
			}
			if done {
				i++
				continue
			}
		}
		b = append(b, tmpl[i])
	}
	return b
}

// logDecision writes Postgrey's line:
// "[queue_id: ]action=greylist, reason=new, client_name=..., client_address=..., sender=..., recipient=...",
// with " (dry run)" after a greylist line that was answered DUNNO. Like
// Postgrey, attributes that are empty or "0" are left out. snap's
// LogDecisions says which lines are written at all.
func (e *Engine) logDecision(snap *Snapshot, req *policy.Request, action string, d Decision, delay int64) {
	switch snap.LogDecisions {
	case LogNoDecisions:
		return
	case LogGreylistDecisions:
		if d.Action != Greylist {
			return
		}
	}
	dry := snap.DryRun && d.Action == Greylist
	if e.lines != nil {
		if !e.lines.Enabled(context.Background(), LevelNotice) {
			return
		}
		bp := lineBufs.Get().(*[]byte)
		b := appendDecision((*bp)[:0], req, action, d, delay)
		if dry {
			b = append(b, " (dry run)"...)
		}
		e.lines.Line(LevelNotice, b)
		if cap(b) <= 16<<10 {
			*bp = b
			lineBufs.Put(bp)
		}
		return
	}
	if !e.log.Enabled(context.Background(), LevelNotice) {
		return
	}
	b := appendDecision(make([]byte, 0, 256), req, action, d, delay)
	if dry {
		b = append(b, " (dry run)"...)
	}
	e.log.Log(context.Background(), LevelNotice, string(b))
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func appendDecision(b []byte, req *policy.Request, action string, d Decision, delay int64) []byte {
	if req.QueueID != "" {
		b = append(b, req.QueueID...)
		b = append(b, ": "...)
	}
	b = append(b, "action="...)
	b = append(b, action...)
	b = append(b, ", reason="...)
	b = append(b, d.Reason.String()...)
	if d.Reason == EarlyRetry {
		b = append(b, " ("...)
		b = strconv.AppendInt(b, d.Missing, 10)
		b = append(b, "s missing)"...)
	}
	b = appendScoring(b, &d)
	b = appendTarpit(b, &d)
	if delay > 0 {
		b = append(b, ", delay="...)
		b = strconv.AppendInt(b, delay, 10)
	}
	b = appendAttr(b, "client_name", req.ClientName)
	b = appendAttr(b, "client_address", req.ClientAddress)
	b = appendAttr(b, "sender", req.Sender)
	b = appendAttr(b, "recipient", req.Recipient)
	if d.Reason == TarpitReason && d.Action == Pass {
		b = appendAttr(b, "recipient_count", req.RecipientCount)
	}
	return b
}

// appendTarpit appends the tarpit's attributes of the log line:
// ", sleep=65" for a tarpit, ", waited=65" for the DATA of a session
// that waited, ", tarpit=max_concurrent" for a request of class tarpit
// greylisted instead.
func appendTarpit(b []byte, d *Decision) []byte {
	switch {
	case d.Action == Sleep:
		b = append(b, ", sleep="...)
		b = strconv.AppendInt(b, d.Sleep, 10)
	case d.Reason == TarpitReason:
		b = append(b, ", waited="...)
		b = strconv.AppendInt(b, d.Waited, 10)
	case d.Capped != "":
		b = append(b, ", tarpit="...)
		b = append(b, d.Capped...)
	}
	return b
}

func appendAttr(b []byte, name, value string) []byte {
	if value == "" || value == "0" {
		return b
	}
	b = append(b, ", "...)
	b = append(b, name...)
	b = append(b, '=')
	return append(b, value...)
}

// describe names the client of a request for warnings.
func describe(req *policy.Request) string {
	if req.ClientAddress == "" && req.ClientName == "" {
		return ""
	}
	return " (client " + req.ClientName + "[" + req.ClientAddress + "])"
}

// instances remembers the instance attribute of the last messages that got
// an X-Greylist header, so that a message with several recipients gets one
// header (Postgrey keeps 10; a busy server with many connections needs
// more room, and a lookup in 64 strings is still cheap).
type instances struct {
	mu   sync.Mutex
	ring [64]string
	next int
}

func (in *instances) isNew(id string) bool {
	if id == "" {
		return true
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, s := range in.ring {
		if s == id {
			return false
		}
	}
	in.ring[in.next] = id
	in.next = (in.next + 1) % len(in.ring)
	return true
}
