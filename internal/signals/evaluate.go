package signals

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"greyd/internal/dns"
	"greyd/internal/identity"
	"greyd/internal/p0f"
)

// Input is what a score is computed from: the fields of Postfix's policy
// request.
type Input struct {
	Addr   netip.Addr // client_address
	Name   string     // client_name: the verified reverse name, or "unknown"
	HELO   string     // helo_name
	Sender string     // sender; "" (or "<>") for the null sender
}

// Signal is the outcome of one signal.
type Signal struct {
	// Name is stable: a built-in name ("rdns_missing"), "spf_" and the
	// SPF result ("spf_fail", "spf_temperror"), "dnsbl." or "dnswl." and
	// the zone. It comes from the configuration, never from the client.
	Name string
	// Weight is what the signal added to the total: its weight when it
	// holds, 0 when it does not, its weight at worst when Unknown.
	Weight int
	// Result is a fixed vocabulary (Yes, No, Listed, NotListed, Refused,
	// TimedOut, Failed, or the SPF result: "pass", "fail", "softfail",
	// "neutral", "none", "temperror", "permerror", TimedOut), fit for a
	// metric label.
	Result string
	// Unknown: the signal could not be determined (timeout, SERVFAIL, a
	// refusal code, an SPF temperror or permerror). It counts at its
	// worst: its weight if positive, nothing if negative.
	Unknown bool
	// Answer is what was seen, for the log and `greyd explain`: the
	// answer's addresses, the DNS status, the dynamic rule that matched,
	// what is wrong with the HELO. It may hold client data.
	Answer string
	Cached bool          // every lookup of the signal was answered from the cache
	Took   time.Duration // how long its lookups took; 0 for local signals
}

// Score is the outcome of an evaluation.
type Score struct {
	Total   int
	Signals []Signal // in configuration order: rdns_missing, rdns_dynamic, helo_invalid, spf, dnsbls, dnswls, p0f
	Took    time.Duration
	// P0f is p0f's answer, shared by the p0f signals.
	P0f P0fLookup
}

// Unknown returns how many signals could not be determined.
func (s *Score) Unknown() int {
	n := 0
	for i := range s.Signals {
		if s.Signals[i].Unknown {
			n++
		}
	}
	return n
}

// Format returns the signals that weighed, for the log line:
// "rdns_missing:3,dnsbl.zen.spamhaus.org:3?", where "?" marks a signal
// that could not be determined and counts at its worst. "" when nothing
// weighed.
func (s *Score) Format() string {
	return string(s.AppendFormat(nil))
}

// AppendFormat appends Format's text to b.
func (s *Score) AppendFormat(b []byte) []byte {
	first := true
	for i := range s.Signals {
		g := &s.Signals[i]
		if g.Weight == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, g.Name...)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(g.Weight), 10)
		if g.Unknown {
			b = append(b, '?')
		}
	}
	return b
}

// Evaluator computes scores. It holds what lives longer than one
// configuration snapshot; it is safe for concurrent use.
type Evaluator struct {
	// Resolver asks DNS; it is needed when the Config has DNSBLs, DNSWLs
	// or SPF weights (without one, those signals are unknown).
	Resolver *dns.Resolver
	// Now is the clock of Score.Took and Signal.Took; default time.Now.
	// The budget itself is a context deadline, in real time.
	Now func() time.Time
	// P0f asks p0f; without one, the p0f signals are unknown.
	P0f *p0f.Client
}

var errBudget = errors.New("signals: budget exhausted")

// Evaluate computes the score of in under c. Local signals come first;
// then every DNS signal is read from the cache, and only those missing
// are asked, concurrently, within c's budget (SPF on the calling
// goroutine: its lookups follow one another). When the budget ends
// Evaluate returns at once with what is known; the resolver completes the
// lookups in the background for the client's retry. A warm evaluation
// starts no goroutine. A nil c gives an empty Score.
func (e *Evaluator) Evaluate(ctx context.Context, c *Config, in Input) Score {
	if c == nil || c.n == 0 {
		return Score{}
	}
	now := e.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	sc := Score{Signals: make([]Signal, 0, c.n)}

	sc.Signals = c.localSignals(sc.Signals, in)

	ev := evaluation{r: e.Resolver, ctx: ctx, budget: c.budget}
	defer ev.close()
	spfAt := -1
	if c.spfAny {
		spfAt = len(sc.Signals)
		sc.Signals = append(sc.Signals, Signal{})
	}
	listsAt := len(sc.Signals)
	type answer struct {
		i   int
		res dns.Result
	}
	var answers chan answer
	pending := 0
	for i := range c.lists {
		l := &c.lists[i]
		sc.Signals = append(sc.Signals, Signal{Name: l.name})
		s := &sc.Signals[listsAt+i]
		if e.Resolver == nil || !in.Addr.IsValid() {
			l.read(s, dns.Result{Status: dns.Error})
			s.Answer = "no resolver"
			if !in.Addr.IsValid() {
				s.Answer = "no client address"
			}
			continue
		}
		qname := dns.ReverseName(in.Addr, l.zone)
		if res, ok := e.Resolver.LookupCached(l.label, qname, dns.TypeA); ok {
			l.read(s, res)
			continue
		}
		if answers == nil {
			answers = make(chan answer, len(c.lists))
		}
		pending++
		bctx, ch := dns.WithLabel(ev.budgetCtx(), l.shown), answers
		go func() { ch <- answer{i, e.Resolver.Lookup(bctx, qname, dns.TypeA)} }()
	}
	p0fAt, p0fN := len(sc.Signals), c.p0fRules()
	var p0fCh <-chan p0fReply
	if p0fN > 0 {
		for _, r := range c.p0f.rules {
			sc.Signals = append(sc.Signals, Signal{Name: r.name})
		}
		switch {
		case e.P0f == nil:
			c.p0f.read(sc.Signals[p0fAt:], &sc.P0f, p0fReply{err: errors.New("no p0f client")})
		case !in.Addr.IsValid():
			c.p0f.read(sc.Signals[p0fAt:], &sc.P0f, p0fReply{err: errors.New("no client address")})
		default:
			sc.P0f.Asked = true
			p0fCh = c.p0f.start(&ev, e.P0f, in, now)
			pending++
		}
	}
	if spfAt >= 0 {
		spfStart := now()
		c.evalSPF(&ev, in, &sc.Signals[spfAt])
		sc.Signals[spfAt].Took = now().Sub(spfStart)
	}
	if pending > 0 {
		done := ev.budgetCtx().Done()
	wait:
		for pending > 0 {
			select {
			case a := <-answers:
				c.lists[a.i].read(&sc.Signals[listsAt+a.i], a.res)
				pending--
			case r := <-p0fCh:
				c.p0f.read(sc.Signals[p0fAt:], &sc.P0f, r)
				p0fCh = nil
				pending--
			case <-done:
				break wait
			}
		}
	drain: // answers that came with the deadline are worth more
		for pending > 0 {
			select {
			case a := <-answers:
				c.lists[a.i].read(&sc.Signals[listsAt+a.i], a.res)
				pending--
			case r := <-p0fCh:
				c.p0f.read(sc.Signals[p0fAt:], &sc.P0f, r)
				p0fCh = nil
				pending--
			default:
				break drain
			}
		}
		took := now().Sub(start)
		for i := range c.lists {
			if s := &sc.Signals[listsAt+i]; s.Result == "" {
				c.lists[i].read(s, dns.Result{Status: dns.Timeout, Took: took})
			}
		}
		if p0fCh != nil {
			c.p0f.read(sc.Signals[p0fAt:], &sc.P0f, p0fReply{err: p0f.ErrTimeout, took: took})
		}
	}
	for i := range sc.Signals {
		sc.Total += sc.Signals[i].Weight
	}
	sc.Took = now().Sub(start)
	return sc
}

// localSignals appends the signals that need no lookup: rdns_missing,
// rdns_dynamic, helo_invalid.
func (c *Config) localSignals(out []Signal, in Input) []Signal {
	missing := in.Name == "" || strings.EqualFold(in.Name, "unknown")
	if c.rdnsMissing.set {
		s := Signal{Name: RDNSMissing, Result: No, Answer: in.Name}
		if in.Name == "" {
			s.Answer = "empty"
		}
		if missing {
			s.Result, s.Weight = Yes, c.rdnsMissing.n
		}
		out = append(out, s)
	}
	if c.rdnsDynamic.set {
		s := Signal{Name: RDNSDynamic, Result: No, Answer: "no name"}
		if !missing {
			s.Answer = "not dynamic"
			if why := c.dynamicRule(in); why != "" {
				s.Result, s.Weight, s.Answer = Yes, c.rdnsDynamic.n, why
			}
		}
		out = append(out, s)
	}
	if c.heloInvalid.set {
		s := Signal{Name: HELOInvalid, Result: No}
		invalid, why := heloCheck(in.HELO, in.Addr)
		s.Answer = why
		if invalid {
			s.Result, s.Weight = Yes, c.heloInvalid.n
		}
		out = append(out, s)
	}
	return out
}

// dynamicRule says why in's verified name looks dynamic, or "".
func (c *Config) dynamicRule(in Input) string {
	switch _, rule, _ := c.ident.Of(in.Addr, in.Name); rule {
	case identity.DynamicDomain, identity.AddressInName, identity.DynamicKeyword:
		return rule.String()
	}
	if c.dynamic.MatchName(in.Name) {
		return "dynamic_names"
	}
	return ""
}

// evaluation is the state of one Evaluate that SPF's resolver shares.
// Only the calling goroutine touches it.
type evaluation struct {
	r      *dns.Resolver
	ctx    context.Context
	budget time.Duration
	bctx   context.Context // the budget, from the first lookup not cached
	cancel context.CancelFunc
}

// budgetCtx returns the context of the lookups that are not cached,
// starting the budget at the first of them: a warm evaluation sets no
// timer.
func (ev *evaluation) budgetCtx() context.Context {
	if ev.bctx == nil {
		ev.bctx, ev.cancel = context.WithTimeoutCause(ev.ctx, ev.budget, errBudget)
	}
	return ev.bctx
}

func (ev *evaluation) close() {
	if ev.cancel != nil {
		ev.cancel()
	}
}
