// Package signals scores a client from what it shows before any delay:
// Postfix's verified reverse name (missing, dynamic-looking), its HELO,
// SPF, DNS block lists and white lists. The score decides whether a
// request is greylisted at all; it never blocks.
//
// It owns the rules that turn a signal into a weight, the rule that an
// undetermined signal counts at its worst, and the budget within which
// every lookup of one request runs. DNS goes through internal/dns (its
// cache, background completion and metrics hook); SPF is decided by
// blitiri.com.ar/go/spf on that resolver. A Config is an immutable
// snapshot built by the configuration layer; an Evaluator holds the
// long-lived resolver. See README.md for the rules and the wiring.
package signals

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"greyd/internal/dns"
	"greyd/internal/identity"
	"greyd/internal/whitelist"
)

// Defaults.
const (
	DefaultBudget   = 800 * time.Millisecond
	DefaultListed   = "127.0.0.2-127.0.0.255"
	DefaultMinTrust = 1
	// MaxBudget bounds the budget: the client waits for it in the SMTP
	// dialogue, and Postfix for the policy answer.
	MaxBudget = 10 * time.Second
)

// The names of the built-in signals, as in the configuration's signals
// block, the log line, `greyd explain` and metric labels.
const (
	RDNSMissing = "rdns_missing"
	RDNSDynamic = "rdns_dynamic"
	HELOInvalid = "helo_invalid"
	SPFFail     = "spf_fail"
	SPFSoftfail = "spf_softfail"
	SPFPass     = "spf_pass"
)

// Spec is the configuration as the configuration layer reads it; NewConfig
// compiles it. A nil weight is an absent signal: it weighs 0 and is not
// computed (a weight may be 0 or negative, so 0 cannot mean absent).
type Spec struct {
	RDNSMissing *int // client_name is "unknown"
	RDNSDynamic *int // client_name looks dynamic (DynamicNames, identity rules)
	HELOInvalid *int // HELO is not a host name, or an address literal of another host
	SPFFail     *int // SPF result of the MAIL FROM domain (null sender: the HELO name)
	SPFSoftfail *int
	SPFPass     *int

	DNSBLs []DNSBLSpec // in configuration order
	DNSWLs []DNSWLSpec

	// DynamicNames is the loaded dynamic_names file (LoadDynamicNames);
	// nil matches nothing.
	DynamicNames *whitelist.Clients
	// Identity is the lookup_by matcher, whose rules DynamicDomain,
	// AddressInName and DynamicKeyword also mean "dynamic"; nil is a
	// matcher with empty lists.
	Identity *identity.Matcher

	// Budget bounds every lookup of one request together; 0 means
	// DefaultBudget.
	Budget time.Duration

	// P0f is the p0f block (p0f.go); nil: none.
	P0f *P0fSpec
}

// DNSBLSpec is one dnsbl block.
type DNSBLSpec struct {
	Zone   string
	Weight int      // added when listed; 0 or more
	Listed []string // answers that count as listed: "a-b", "a" or "a/n"; empty: DefaultListed
}

// DNSWLSpec is one dnswl block.
type DNSWLSpec struct {
	Zone     string
	Weight   int  // added when listed; 0 or less
	MinTrust *int // 127.0.X.Y counts when Y >= MinTrust (0 to 254); nil: DefaultMinTrust
}

// Config is a compiled Spec: immutable, safe for concurrent use; a nil
// *Config computes nothing.
type Config struct {
	rdnsMissing, rdnsDynamic, heloInvalid weight
	spf                                   [nSPF]weight // fail, softfail, pass
	spfAny                                bool
	lists                                 []list
	dynamic                               *whitelist.Clients
	ident                                 *identity.Matcher
	budget                                time.Duration
	p0f                                   *p0fConfig // nil: no p0f block
	n                                     int        // signals computed per evaluation
}

type weight struct {
	n   int
	set bool
}

func weightOf(p *int) weight {
	if p == nil {
		return weight{}
	}
	return weight{n: *p, set: true}
}

// atWorst is the weight of a signal that could not be determined: its
// weight if positive, nothing if negative.
func atWorst(w int) int { return max(w, 0) }

const (
	spfFail = iota
	spfSoftfail
	spfPass
	nSPF
)

// list is a compiled dnsbl or dnswl block.
type list struct {
	white    bool
	zone     string // lower case, no trailing dot
	shown    string // zone, its access key hidden (ShownZone)
	name     string // "dnsbl." + shown or "dnswl." + shown
	weight   int
	listed   []Range // dnsbl
	minTrust int     // dnswl
	// label carries the zone for the metrics hook on cache reads, which
	// need nothing else of a context: made once, not per request.
	label context.Context
}

// ShownZone is a list's zone as log lines, explain and metric labels show
// it: a first label that looks like an access key (16 or more letters
// and digits, a digit among them: Spamhaus DQS puts a 26-character key
// there, "KEY.zen.dq.spamhaus.net", Abusix a 32-character one) reads
// "KEY", so that the metrics endpoint and the mail log do not publish
// the key. Zones with no such label are shown as they are.
func ShownZone(zone string) string {
	first, rest, ok := strings.Cut(zone, ".")
	if !ok || len(first) < 16 || !strings.Contains(rest, ".") {
		return zone
	}
	digit := false
	for i := 0; i < len(first); i++ {
		switch c := first[i]; {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		default:
			return zone
		}
	}
	if !digit {
		return zone
	}
	return "KEY." + rest
}

// Range is an inclusive range of IPv4 answers.
type Range struct{ Lo, Hi netip.Addr }

// Contains reports whether a lies in r.
func (r Range) Contains(a netip.Addr) bool {
	return a.Is4() && r.Lo.Compare(a) <= 0 && a.Compare(r.Hi) <= 0
}

func (r Range) String() string {
	if r.Lo == r.Hi {
		return r.Lo.String()
	}
	return r.Lo.String() + "-" + r.Hi.String()
}

// ParseRange reads a listed entry: "127.0.0.2-127.0.0.255", "127.0.0.2"
// or "127.0.0.0/24". DNSBL answers are A records, so only IPv4.
func ParseRange(s string) (Range, error) {
	s = strings.TrimSpace(s)
	addr := func(a string) (netip.Addr, error) {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil || !ip.Is4() {
			return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address (DNSBL answers are A records)", a)
		}
		return ip, nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		l, err := addr(lo)
		if err != nil {
			return Range{}, err
		}
		h, err := addr(hi)
		if err != nil {
			return Range{}, err
		}
		if h.Less(l) {
			return Range{}, fmt.Errorf("%q: the range ends below its start; write low-high", s)
		}
		return Range{l, h}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return Range{}, fmt.Errorf("%q is not an IPv4 network", s)
		}
		p = p.Masked()
		lo := p.Addr().As4()
		hi := lo
		for i := p.Bits(); i < 32; i++ {
			hi[i/8] |= 0x80 >> (i % 8)
		}
		return Range{netip.AddrFrom4(lo), netip.AddrFrom4(hi)}, nil
	}
	a, err := addr(s)
	if err != nil {
		return Range{}, fmt.Errorf("%q is not an address, a range low-high or a network", s)
	}
	return Range{a, a}, nil
}

// CheckZone reports why z cannot be a DNSBL or DNSWL zone: it must be a
// domain name of at least two labels (letters, digits, '-', '_'), short
// enough that an IPv6 client's 64-character nibble name fits under it.
func CheckZone(z string) error {
	z = strings.TrimSuffix(z, ".")
	switch {
	case z == "":
		return errors.New("is empty")
	case strings.HasPrefix(z, "."):
		return errors.New("starts with a dot")
	case len(z) > 253-64:
		return fmt.Errorf("is %d characters long: with the 64 of an IPv6 client's reverse name it exceeds 253", len(z))
	case !strings.Contains(z, "."):
		return errors.New("is a single label: write the list's full zone, e.g. zen.spamhaus.org")
	}
	if tld := z[strings.LastIndexByte(z, '.')+1:]; strings.Trim(tld, "0123456789") == "" {
		return errors.New("ends in a numeric label: write the list's zone, not an address")
	}
	for _, l := range strings.Split(z, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("has an empty label or one over 63 characters (%q)", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("has %q in label %q: only letters, digits, '-' and '_'", c, l)
			}
		}
	}
	return nil
}

// CheckMinTrust reports why t cannot be a min_trust: 127.0.X.255 is
// dnswl.org's refusal, so 0 to 254.
func CheckMinTrust(t int) error {
	if t < 0 || t > 254 {
		return fmt.Errorf("%d is out of range: 0 to 254 (the Y of the answer 127.0.X.Y; 255 is a refusal)", t)
	}
	return nil
}

// CheckBudget reports why d cannot be a budget.
func CheckBudget(d time.Duration) error {
	if d <= 0 || d > MaxBudget {
		return fmt.Errorf("%v is out of range: more than 0 and at most %v (the client waits for it)", d, MaxBudget)
	}
	return nil
}

// NewConfig compiles s. Its error joins everything wrong with s, each
// naming the block and attribute; the configuration layer, which knows
// file:line, runs the Check functions and ParseRange per attribute first.
func NewConfig(s Spec) (*Config, error) {
	c := &Config{
		rdnsMissing: weightOf(s.RDNSMissing),
		rdnsDynamic: weightOf(s.RDNSDynamic),
		heloInvalid: weightOf(s.HELOInvalid),
		spf:         [nSPF]weight{weightOf(s.SPFFail), weightOf(s.SPFSoftfail), weightOf(s.SPFPass)},
		dynamic:     s.DynamicNames,
		ident:       s.Identity,
		budget:      s.Budget,
	}
	var errs []error
	if c.budget == 0 {
		c.budget = DefaultBudget
	} else if err := CheckBudget(c.budget); err != nil {
		errs = append(errs, fmt.Errorf("dns: budget %w", err))
	}
	seen := make(map[string]bool)
	zone := func(kind, z string) (string, bool) {
		if err := CheckZone(z); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: zone %w", kind, z, err))
			return "", false
		}
		z = strings.ToLower(strings.TrimSuffix(z, "."))
		if seen[kind+" "+z] {
			errs = append(errs, fmt.Errorf("%s %q: listed twice", kind, z))
			return "", false
		}
		seen[kind+" "+z] = true
		return z, true
	}
	for _, b := range s.DNSBLs {
		z, ok := zone("dnsbl", b.Zone)
		if b.Weight < 0 {
			errs = append(errs, fmt.Errorf("dnsbl %q: weight %d is negative: a listing in a block list adds; put lists of good senders in a dnswl block", b.Zone, b.Weight))
			ok = false
		}
		shown := ShownZone(z)
		l := list{zone: z, shown: shown, name: "dnsbl." + shown, weight: b.Weight, label: dns.WithLabel(context.Background(), shown)}
		listed := b.Listed
		if len(listed) == 0 {
			listed = []string{DefaultListed}
		}
		for _, e := range listed {
			r, err := ParseRange(e)
			if err != nil {
				errs = append(errs, fmt.Errorf("dnsbl %q: listed %w", b.Zone, err))
				ok = false
				continue
			}
			l.listed = append(l.listed, r)
		}
		if ok {
			c.lists = append(c.lists, l)
		}
	}
	for _, w := range s.DNSWLs {
		z, ok := zone("dnswl", w.Zone)
		if w.Weight > 0 {
			errs = append(errs, fmt.Errorf("dnswl %q: weight %d is positive: a listing in a white list should lower the score (weight 0 or less)", w.Zone, w.Weight))
			ok = false
		}
		shown := ShownZone(z)
		l := list{white: true, zone: z, shown: shown, name: "dnswl." + shown, weight: w.Weight, minTrust: DefaultMinTrust,
			label: dns.WithLabel(context.Background(), shown)}
		if w.MinTrust != nil {
			l.minTrust = *w.MinTrust
			if err := CheckMinTrust(l.minTrust); err != nil {
				errs = append(errs, fmt.Errorf("dnswl %q: min_trust %w", w.Zone, err))
				ok = false
			}
		}
		if ok {
			c.lists = append(c.lists, l)
		}
	}
	c.p0f = compileP0f(s.P0f, &errs)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, w := range c.spf {
		c.spfAny = c.spfAny || w.set
	}
	for _, w := range []weight{c.rdnsMissing, c.rdnsDynamic, c.heloInvalid} {
		if w.set {
			c.n++
		}
	}
	if c.spfAny {
		c.n++
	}
	c.n += len(c.lists)
	if c.p0f != nil {
		c.n += len(c.p0f.rules)
	}
	return c, nil
}

// Budget returns the time every lookup of one request has together.
func (c *Config) Budget() time.Duration {
	if c == nil {
		return 0
	}
	return c.budget
}

// Lookups reports whether an evaluation may ask DNS or p0f: a caller with a
// score to compute and no lookups could skip setting up a context.
func (c *Config) Lookups() bool {
	return c != nil && (c.spfAny || len(c.lists) > 0 || c.p0fRules() > 0)
}

// Names returns the name of every signal an evaluation can report, in
// the order of Score.Signals, SPF's results included: the vocabulary of
// the signal metric label.
func (c *Config) Names() []string {
	if c == nil {
		return nil
	}
	var names []string
	for _, s := range []struct {
		w    weight
		name string
	}{{c.rdnsMissing, RDNSMissing}, {c.rdnsDynamic, RDNSDynamic}, {c.heloInvalid, HELOInvalid}} {
		if s.w.set {
			names = append(names, s.name)
		}
	}
	if c.spfAny {
		names = append(names, spfNames[:]...)
	}
	for _, l := range c.lists {
		names = append(names, l.name)
	}
	if c.p0f != nil {
		for _, r := range c.p0f.rules {
			names = append(names, r.name)
		}
	}
	return names
}

// p0fRules returns how many p0f signals an evaluation computes.
func (c *Config) p0fRules() int {
	if c.p0f == nil {
		return 0
	}
	return len(c.p0f.rules)
}

// String describes the configuration for `greyd explain` and tests:
// the signals with their weights, in evaluation order.
func (c *Config) String() string {
	if c == nil {
		return "signals: none"
	}
	var b strings.Builder
	sep := ""
	add := func(name string, w weight) {
		if w.set {
			b.WriteString(sep + name + "=" + strconv.Itoa(w.n))
			sep = " "
		}
	}
	add(RDNSMissing, c.rdnsMissing)
	add(RDNSDynamic, c.rdnsDynamic)
	add(HELOInvalid, c.heloInvalid)
	add(SPFFail, c.spf[spfFail])
	add(SPFSoftfail, c.spf[spfSoftfail])
	add(SPFPass, c.spf[spfPass])
	for _, l := range c.lists {
		b.WriteString(sep + l.name + "=" + strconv.Itoa(l.weight))
		sep = " "
	}
	fmt.Fprintf(&b, "%sbudget=%v", sep, c.budget)
	if c.p0f != nil {
		b.WriteString(c.p0f.String())
	}
	return b.String()
}
