package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"greyd/internal/dns"
	"greyd/internal/signals"
	"greyd/internal/whitelist"
)

// Selective greylisting (issue 21): which requests are greylisted at all.
// The score itself is package signals'; here are its settings.
//
//	selective {
//	  mode        = "always"  # "always": every client is greylisted (Postgrey); "score": by score
//	  greylist_at = 3         # score >= greylist_at: greylisted; below: passes at once
//	  tarpit_at   = 1         # optional, with a tarpit block: tarpit_at <= score < greylist_at waits at RCPT
//	  shadow      = false     # true (with mode "score"): compute, log and count, act as "always"
//	}
//	signals {                 # weights; an absent signal weighs 0 and is not computed
//	  rdns_missing = 3        # and rdns_dynamic, helo_invalid, spf_fail, spf_softfail, spf_pass
//	}
//	dnsbl "zen.spamhaus.org" { weight = 3, listed = ["127.0.0.2-127.0.0.255"] }  # repeatable
//	dnswl "list.dnswl.org"   { weight = -3, min_trust = 1 }                      # repeatable
//	recipient_policy "billing" {                           # repeatable; the first match wins
//	  recipients  = ["@billing.example.com"]               # whitelist_recipients entry syntax
//	  mode        = "always"                               # always | score | never
//	  greylist_at = 5                                      # optional, with mode "score"
//	  delay       = "1m"                                   # optional; default greylist.delay
//	}
//	dns {
//	  servers = []            # "ip:port"; [] = /etc/resolv.conf (restart-only)
//	  budget  = "800ms"       # every lookup of one request together
//	}
//
// Layers: dnsbl, dnswl and recipient_policy blocks are keyed by their
// label. A later file's block with a label seen before overrides that
// block's settings one by one and keeps its place (the order matters for
// recipient policies); a new label is added after the others. One label
// twice in one file is an error. A block cannot be removed by a later
// file: comment it out where it is.

// Selective is the selective block.
type Selective struct {
	Mode       string // SelectiveAlways or SelectiveScore
	GreylistAt int
	// TarpitAt, if set, starts the tarpit class below GreylistAt (and
	// below a recipient policy's greylist_at: a policy whose threshold
	// is at or below it has no tarpit class). Needs a tarpit block.
	TarpitAt *int
	Shadow   bool
}

// Selective.Mode and RecipientPolicy.Mode values.
const (
	SelectiveAlways = "always" // greylist every client (Postgrey)
	SelectiveScore  = "score"  // greylist only at greylist_at or above
	SelectiveNever  = "never"  // recipient_policy only: never greylist
)

// Signals are the weights of the built-in signals; nil is absent.
type Signals struct {
	RDNSMissing, RDNSDynamic, HELOInvalid *int
	SPFFail, SPFSoftfail, SPFPass         *int
}

// DNSBL is one dnsbl block.
type DNSBL struct {
	Zone   string // lower case, no trailing dot
	Weight int
	Listed []string // never empty: signals.DefaultListed when not given
}

// DNSWL is one dnswl block.
type DNSWL struct {
	Zone     string
	Weight   int
	MinTrust int
}

// RecipientPolicy is one recipient_policy block.
type RecipientPolicy struct {
	Name       string
	Recipients []string // whitelist_recipients entries
	Mode       string   // SelectiveAlways, SelectiveScore or SelectiveNever
	GreylistAt *int     // nil: selective.greylist_at
	Delay      *time.Duration
}

// DNS is the dns block.
type DNS struct {
	Servers []string // "ip:port", normalised; empty: /etc/resolv.conf
	Budget  time.Duration
}

// Selective defaults.
const (
	DefaultGreylistAt = 3
	maxWeight         = 1000 // weights and thresholds lie in ±maxWeight
)

// Scoring reports whether any request can be scored: selective mode
// "score", or a recipient policy with mode "score".
func (c *Config) Scoring() bool {
	if c.Selective.Mode == SelectiveScore {
		return true
	}
	for _, p := range c.RecipientPolicies {
		if p.Mode == SelectiveScore {
			return true
		}
	}
	return false
}

// SignalsSpec is the signals part of a signals.Spec (weights, lists,
// budget); the caller adds the dynamic_names matcher and the identity
// matcher.
func (c *Config) SignalsSpec() signals.Spec {
	s := c.Signals
	spec := signals.Spec{
		RDNSMissing: s.RDNSMissing, RDNSDynamic: s.RDNSDynamic, HELOInvalid: s.HELOInvalid,
		SPFFail: s.SPFFail, SPFSoftfail: s.SPFSoftfail, SPFPass: s.SPFPass,
		Budget: c.DNS.Budget,
		P0f:    c.P0fSpec(),
	}
	for _, b := range c.DNSBLs {
		spec.DNSBLs = append(spec.DNSBLs, signals.DNSBLSpec{Zone: b.Zone, Weight: b.Weight, Listed: b.Listed})
	}
	for _, w := range c.DNSWLs {
		t := w.MinTrust
		spec.DNSWLs = append(spec.DNSWLs, signals.DNSWLSpec{Zone: w.Zone, Weight: w.Weight, MinTrust: &t})
	}
	return spec
}

type rawSelective struct {
	Mode            string    `hcl:"mode,optional"`
	ModeRange       hcl.Range `hcl:"mode,attr_value_range"`
	GreylistAt      int       `hcl:"greylist_at,optional"`
	GreylistAtRange hcl.Range `hcl:"greylist_at,attr_value_range"`
	TarpitAt        *int      `hcl:"tarpit_at,optional"`
	TarpitAtRange   hcl.Range `hcl:"tarpit_at,attr_value_range"`
	Shadow          bool      `hcl:"shadow,optional"`
	ShadowRange     hcl.Range `hcl:"shadow,attr_value_range"`
}

type rawSignals struct {
	RDNSMissing      *int      `hcl:"rdns_missing,optional"`
	RDNSMissingRange hcl.Range `hcl:"rdns_missing,attr_value_range"`
	RDNSDynamic      *int      `hcl:"rdns_dynamic,optional"`
	RDNSDynamicRange hcl.Range `hcl:"rdns_dynamic,attr_value_range"`
	HELOInvalid      *int      `hcl:"helo_invalid,optional"`
	HELOInvalidRange hcl.Range `hcl:"helo_invalid,attr_value_range"`
	SPFFail          *int      `hcl:"spf_fail,optional"`
	SPFFailRange     hcl.Range `hcl:"spf_fail,attr_value_range"`
	SPFSoftfail      *int      `hcl:"spf_softfail,optional"`
	SPFSoftfailRange hcl.Range `hcl:"spf_softfail,attr_value_range"`
	SPFPass          *int      `hcl:"spf_pass,optional"`
	SPFPassRange     hcl.Range `hcl:"spf_pass,attr_value_range"`
}

// rawList is a dnsbl or dnswl block; Listed is dnsbl's, MinTrust
// dnswl's (the other one is an error).
type rawList struct {
	DefRange      hcl.Range
	Label         string // as written
	LabelRange    hcl.Range
	Weight        *int      `hcl:"weight,optional"`
	WeightRange   hcl.Range `hcl:"weight,attr_value_range"`
	Listed        []string  `hcl:"listed,optional"`
	ListedRange   hcl.Range `hcl:"listed,attr_value_range"`
	MinTrust      *int      `hcl:"min_trust,optional"`
	MinTrustRange hcl.Range `hcl:"min_trust,attr_value_range"`
}

type rawPolicy struct {
	DefRange        hcl.Range
	Label           string
	LabelRange      hcl.Range
	Recipients      []string  `hcl:"recipients,optional"`
	RecipientsRange hcl.Range `hcl:"recipients,attr_value_range"`
	Mode            string    `hcl:"mode,optional"`
	ModeRange       hcl.Range `hcl:"mode,attr_value_range"`
	GreylistAt      *int      `hcl:"greylist_at,optional"`
	GreylistAtRange hcl.Range `hcl:"greylist_at,attr_value_range"`
	Delay           string    `hcl:"delay,optional"`
	DelayRange      hcl.Range `hcl:"delay,attr_value_range"`
}

type rawDNS struct {
	Servers      []string  `hcl:"servers,optional"`
	ServersRange hcl.Range `hcl:"servers,attr_value_range"`
	Budget       string    `hcl:"budget,optional"`
	BudgetRange  hcl.Range `hcl:"budget,attr_value_range"`
}

// zoneKey is the identity of a list block: zones compare without case
// and trailing dot.
func zoneKey(z string) string { return strings.ToLower(strings.TrimSuffix(z, ".")) }

// decodeLabeled decodes one dnsbl, dnswl or recipient_policy block of a
// file into the list for its type, reporting a label used twice in the
// file.
func (raw *rawConfig) decodeLabeled(b *hcl.Block, seen map[string]hcl.Range) hcl.Diagnostics {
	label, lrng := b.Labels[0], b.LabelRanges[0]
	key := b.Type + " " + label
	if b.Type != "recipient_policy" {
		key = b.Type + " " + zoneKey(label)
	}
	if prev, dup := seen[key]; dup {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Duplicate " + b.Type + " block",
			Detail:  fmt.Sprintf("%s %q is already defined at %s; a later file may override its settings", b.Type, label, posString(prev)),
			Subject: &lrng}}
	}
	seen[key] = lrng
	switch b.Type {
	case "recipient_policy":
		p := rawPolicy{DefRange: b.DefRange, Label: label, LabelRange: lrng}
		ds := nameTypeErrors(gohcl.DecodeBody(b.Body, nil, &p), b.Body)
		raw.Policies = append(raw.Policies, p)
		return ds
	default:
		l := rawList{DefRange: b.DefRange, Label: label, LabelRange: lrng}
		ds := nameTypeErrors(gohcl.DecodeBody(b.Body, nil, &l), b.Body)
		if b.Type == "dnsbl" {
			raw.DNSBLs = append(raw.DNSBLs, l)
		} else {
			raw.DNSWLs = append(raw.DNSWLs, l)
		}
		return ds
	}
}

// mergeLists lays a file's list blocks over dst by zone (see Layers).
func mergeLists(dst []rawList, src []rawList, failed spots) []rawList {
outer:
	for i := range src {
		for j := range dst {
			if zoneKey(dst[j].Label) == zoneKey(src[i].Label) {
				mergeSettings(&dst[j], &src[i], failed)
				continue outer
			}
		}
		dst = append(dst, src[i])
	}
	return dst
}

// mergePolicies lays a file's recipient_policy blocks over dst by name.
func mergePolicies(dst []rawPolicy, src []rawPolicy, failed spots) []rawPolicy {
outer:
	for i := range src {
		for j := range dst {
			if dst[j].Label == src[i].Label {
				mergeSettings(&dst[j], &src[i], failed)
				continue outer
			}
		}
		dst = append(dst, src[i])
	}
	return dst
}

// validateSelective checks the selective, signals, dnsbl, dnswl,
// recipient_policy and dns settings.
func (v *validator) validateSelective(raw rawConfig, cfg *Config) {
	rs := raw.Selective
	cfg.Selective = Selective{
		Mode:       v.oneOf("mode", rs.Mode, rs.ModeRange, SelectiveAlways, SelectiveScore),
		GreylistAt: v.intRange("greylist_at", rs.GreylistAt, rs.GreylistAtRange, -maxWeight, maxWeight),
		Shadow:     rs.Shadow,
	}
	if rs.TarpitAt != nil {
		n := len(v.ps)
		at := v.intRange("tarpit_at", *rs.TarpitAt, rs.TarpitAtRange, -maxWeight, maxWeight)
		cfg.Selective.TarpitAt = &at
		switch {
		case len(v.ps) > n:
		case raw.Tarpit == nil:
			v.errorf(rs.TarpitAtRange, "Missing tarpit block", "selective.tarpit_at needs a tarpit block (duration, max_concurrent, abandon_delay); add one, or remove tarpit_at")
		case at >= cfg.Selective.GreylistAt:
			v.errorf(rs.TarpitAtRange, "Value out of range", "selective.tarpit_at = %d must be below greylist_at = %d", at, cfg.Selective.GreylistAt)
		}
	} else if rt := raw.Tarpit; rt != nil {
		v.warnf(rt.DefRange, "Tarpit without a threshold", "the tarpit block has no effect without selective.tarpit_at")
	}
	if rs.Shadow && cfg.Selective.Mode != SelectiveScore {
		v.warnf(rs.ShadowRange, "Shadow mode without a score",
			`shadow = true computes the class of mode "score" but acts as "always"; with mode = %q nothing is computed: set mode = "score" as well`, cfg.Selective.Mode)
	}

	s := raw.Signals
	weight := func(name string, w *int, rng hcl.Range) *int {
		if w != nil {
			v.intRange("signals."+name, *w, rng, -maxWeight, maxWeight)
		}
		return w
	}
	cfg.Signals = Signals{
		RDNSMissing: weight(signals.RDNSMissing, s.RDNSMissing, s.RDNSMissingRange),
		RDNSDynamic: weight(signals.RDNSDynamic, s.RDNSDynamic, s.RDNSDynamicRange),
		HELOInvalid: weight(signals.HELOInvalid, s.HELOInvalid, s.HELOInvalidRange),
		SPFFail:     weight(signals.SPFFail, s.SPFFail, s.SPFFailRange),
		SPFSoftfail: weight(signals.SPFSoftfail, s.SPFSoftfail, s.SPFSoftfailRange),
		SPFPass:     weight(signals.SPFPass, s.SPFPass, s.SPFPassRange),
	}

	for _, l := range raw.DNSBLs {
		if b, ok := v.list("dnsbl", l); ok {
			cfg.DNSBLs = append(cfg.DNSBLs, DNSBL{Zone: b.Zone, Weight: b.Weight, Listed: b.Listed})
		}
	}
	for _, l := range raw.DNSWLs {
		if b, ok := v.list("dnswl", l); ok {
			cfg.DNSWLs = append(cfg.DNSWLs, DNSWL{Zone: b.Zone, Weight: b.Weight, MinTrust: b.MinTrust})
		}
	}

	entries := map[string]string{} // recipient entry → the policy that has it, at file:line
	for _, p := range raw.Policies {
		if rp, ok := v.policy(p, entries); ok {
			cfg.RecipientPolicies = append(cfg.RecipientPolicies, rp)
		}
	}

	d := raw.DNS
	cfg.DNS.Servers = make([]string, 0, len(d.Servers))
	for _, srv := range d.Servers {
		n, err := dns.CheckServer(srv)
		if err != nil {
			v.errorf(d.ServersRange, "Invalid dns server", "%s", err)
			continue
		}
		cfg.DNS.Servers = append(cfg.DNS.Servers, n)
	}
	n := len(v.ps)
	cfg.DNS.Budget = v.duration("budget", d.Budget, d.BudgetRange, "ms", "", time.Millisecond)
	if len(v.ps) == n {
		if err := signals.CheckBudget(cfg.DNS.Budget); err != nil {
			v.errorf(d.BudgetRange, "Invalid duration", "budget %s", err)
		}
	}

	if cfg.Scoring() && cfg.Signals == (Signals{}) && len(cfg.DNSBLs) == 0 && len(cfg.DNSWLs) == 0 && (cfg.P0f == nil || len(cfg.P0f.OS) == 0) {
		rng := rs.ModeRange
		if cfg.Selective.Mode != SelectiveScore && len(raw.Policies) > 0 {
			rng = raw.Policies[0].DefRange
		}
		v.warnf(rng, "Score without signals",
			`mode "score" without a signals, dnsbl or dnswl block scores every client 0: all pass below greylist_at = %d without delay`, cfg.Selective.GreylistAt)
	}
}

// checkedList is a dnsbl or dnswl block once checked.
type checkedList struct {
	Zone     string
	Weight   int
	Listed   []string
	MinTrust int
}

// list checks one dnsbl or dnswl block.
func (v *validator) list(kind string, l rawList) (checkedList, bool) {
	n := len(v.ps)
	out := checkedList{Zone: zoneKey(l.Label)}
	if err := signals.CheckZone(l.Label); err != nil {
		v.errorf(l.LabelRange, "Invalid zone", "%s %q: the zone %s", kind, l.Label, err)
	}
	if l.Weight == nil {
		v.errorf(l.DefRange, "Incomplete "+kind+" block", "a %s block needs weight = N, the score a listing adds (%s)", kind,
			map[string]string{"dnsbl": "0 or more, e.g. 3", "dnswl": "0 or less, e.g. -3"}[kind])
	} else {
		out.Weight = *l.Weight
		switch {
		case kind == "dnsbl" && (out.Weight < 0 || out.Weight > maxWeight):
			v.errorf(l.WeightRange, "Value out of range", "dnsbl weight must be between 0 and %d (a listing in a block list adds; put lists of good senders in a dnswl block), got %d", maxWeight, out.Weight)
		case kind == "dnswl" && (out.Weight > 0 || out.Weight < -maxWeight):
			v.errorf(l.WeightRange, "Value out of range", "dnswl weight must be between %d and 0 (a listing in a white list lowers the score), got %d", -maxWeight, out.Weight)
		}
	}
	switch kind {
	case "dnsbl":
		if l.MinTrust != nil {
			v.errorf(l.MinTrustRange, "Unsupported argument", "min_trust belongs to dnswl blocks; a dnsbl block says which answers count with listed")
		}
		out.Listed = l.Listed
		if len(out.Listed) == 0 {
			if given(l.ListedRange) {
				v.errorf(l.ListedRange, "Invalid listed", `listed = [] counts no answer as a listing; leave it out for the default ["%s"]`, signals.DefaultListed)
			}
			out.Listed = []string{signals.DefaultListed}
		}
		for _, e := range out.Listed {
			if _, err := signals.ParseRange(e); err != nil {
				v.errorf(l.ListedRange, "Invalid listed entry", "%s", err)
			}
		}
	case "dnswl":
		if given(l.ListedRange) {
			v.errorf(l.ListedRange, "Unsupported argument", "listed belongs to dnsbl blocks; a dnswl block counts 127.0.X.Y with Y >= min_trust")
		}
		out.MinTrust = signals.DefaultMinTrust
		if l.MinTrust != nil {
			out.MinTrust = *l.MinTrust
			if err := signals.CheckMinTrust(out.MinTrust); err != nil {
				v.errorf(l.MinTrustRange, "Value out of range", "min_trust %s", err)
			}
		}
	}
	return out, len(v.ps) == n
}

// policy checks one recipient_policy block; entries maps every recipient
// entry of the policies before it to where it was given.
func (v *validator) policy(p rawPolicy, entries map[string]string) (RecipientPolicy, bool) {
	n := len(v.ps)
	rp := RecipientPolicy{Name: p.Label, Recipients: p.Recipients}
	if p.Label == "" || strings.ContainsFunc(p.Label, isSpaceOrControl) {
		v.errorf(p.LabelRange, "Invalid recipient_policy name", "%q: a name is one word without spaces (it appears in the log line and greyd explain)", p.Label)
	}
	if len(p.Recipients) == 0 {
		rng := p.RecipientsRange
		if !given(rng) {
			rng = p.DefRange
		}
		v.errorf(rng, "Incomplete recipient_policy block", `recipient_policy %q needs recipients = ["@example.com", "user@example.org"] (whitelist_recipients entry syntax)`, p.Label)
	}
	for _, e := range p.Recipients {
		r, probs := whitelist.ParseRecipients("", strings.NewReader(e))
		switch {
		case strings.ContainsAny(e, "#\r\n"):
			v.errorf(p.RecipientsRange, "Invalid recipient entry", "%q: one entry per string, without '#' or line breaks", e)
		case len(probs) > 0:
			v.errorf(p.RecipientsRange, "Invalid recipient entry", "%s", probs[0].Msg)
		case r.Len() == 0:
			v.errorf(p.RecipientsRange, "Invalid recipient entry", "%q is not a whitelist_recipients entry", e)
		default:
			k := strings.ToLower(strings.TrimSpace(e))
			if prev, dup := entries[k]; dup {
				v.errorf(p.RecipientsRange, "Duplicate recipient entry",
					"%q is already in %s: the first matching recipient_policy wins, so this one would never apply to it", e, prev)
				continue
			}
			entries[k] = fmt.Sprintf("recipient_policy %q at %s", p.Label, posString(p.RecipientsRange))
		}
	}
	if !given(p.ModeRange) {
		v.errorf(p.DefRange, "Incomplete recipient_policy block", `recipient_policy %q needs mode = "always", "score" or "never"`, p.Label)
	} else {
		rp.Mode = v.oneOf("mode", p.Mode, p.ModeRange, SelectiveAlways, SelectiveScore, SelectiveNever)
	}
	if p.GreylistAt != nil {
		if rp.Mode != SelectiveScore {
			v.errorf(p.GreylistAtRange, "Unsupported argument", `greylist_at applies to mode = "score" only; this policy's mode is %q`, p.Mode)
		}
		v.intRange("greylist_at", *p.GreylistAt, p.GreylistAtRange, -maxWeight, maxWeight)
		rp.GreylistAt = p.GreylistAt
	}
	if given(p.DelayRange) {
		if rp.Mode == SelectiveNever {
			v.errorf(p.DelayRange, "Unsupported argument", `delay means nothing with mode = "never", which never greylists`)
		}
		d := v.seconds("delay", p.Delay, p.DelayRange, "s", "", 0)
		rp.Delay = &d
	}
	return rp, len(v.ps) == n
}

// writeSelective writes the selective greylisting blocks for WriteHCL.
func (wr *hclWriter) writeSelective(root *hclwrite.Body, c *Config) {
	block := func(typ string, labels []string, prefix string) blockWriter {
		return blockWriter{wr, root.AppendNewBlock(typ, labels).Body(), prefix}
	}
	b := block("selective", nil, "selective.")
	b.str("mode", c.Selective.Mode)
	b.num("greylist_at", c.Selective.GreylistAt)
	if c.Selective.TarpitAt != nil {
		b.num("tarpit_at", *c.Selective.TarpitAt)
	}
	b.boolean("shadow", c.Selective.Shadow)
	root.AppendNewline()

	if c.Signals != (Signals{}) {
		b = block("signals", nil, "signals.")
		s := c.Signals
		for _, w := range []struct {
			name string
			n    *int
		}{
			{signals.RDNSMissing, s.RDNSMissing}, {signals.RDNSDynamic, s.RDNSDynamic}, {signals.HELOInvalid, s.HELOInvalid},
			{signals.SPFFail, s.SPFFail}, {signals.SPFSoftfail, s.SPFSoftfail}, {signals.SPFPass, s.SPFPass},
		} {
			if w.n != nil {
				b.num(w.name, *w.n)
			}
		}
		root.AppendNewline()
	}
	for _, l := range c.DNSBLs {
		b = block("dnsbl", []string{l.Zone}, "dnsbl."+l.Zone+".")
		b.num("weight", l.Weight)
		b.list("listed", l.Listed)
		root.AppendNewline()
	}
	for _, l := range c.DNSWLs {
		b = block("dnswl", []string{l.Zone}, "dnswl."+l.Zone+".")
		b.num("weight", l.Weight)
		b.num("min_trust", l.MinTrust)
		root.AppendNewline()
	}
	for _, p := range c.RecipientPolicies {
		b = block("recipient_policy", []string{p.Name}, "recipient_policy."+p.Name+".")
		b.list("recipients", p.Recipients)
		b.str("mode", p.Mode)
		if p.GreylistAt != nil {
			b.num("greylist_at", *p.GreylistAt)
		}
		if p.Delay != nil {
			b.str("delay", FormatDuration(*p.Delay))
		}
		root.AppendNewline()
	}
	b = block("dns", nil, "dns.")
	b.list("servers", c.DNS.Servers)
	b.str("budget", FormatDuration(c.DNS.Budget))
	root.AppendNewline()
}
