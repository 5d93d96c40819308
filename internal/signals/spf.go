package signals

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"

	"blitiri.com.ar/go/spf"

	"greyd/internal/dns"
)

// spfNames are the names of the SPF signal, one per result.
var spfNames = [...]string{
	"spf_pass", "spf_fail", "spf_softfail", "spf_neutral", "spf_none", "spf_temperror", "spf_permerror",
}

func spfName(r spf.Result) string {
	for _, n := range spfNames {
		if n[len("spf_"):] == string(r) {
			return n
		}
	}
	return "spf_permerror"
}

// spfLabel carries "spf" for the metrics hook on cache reads, which need
// nothing else of a context.
var spfLabel = dns.WithLabel(context.Background(), "spf")

var (
	errNoAddr    = errors.New("no client address")
	errBadDomain = errors.New("not a multi-label domain name")
)

// evalSPF sets s to the SPF result of in: the MAIL FROM domain, or for
// the null sender the HELO name (as postmaster@helo, RFC 7208 2.4).
// pass, fail and softfail weigh their weight (0 if not set); neutral and
// none weigh 0; temperror, permerror and an exhausted budget are unknown
// and weigh the worst of the SPF weights.
func (c *Config) evalSPF(ev *evaluation, in Input, s *Signal) {
	sender, domain := spfIdentity(in.Sender, in.HELO)
	var res spf.Result
	var err error
	// The resolver works on a copy of ev, written back at the end, so
	// that ev stays on the caller's stack when there is no SPF to check.
	r := &spfResolver{ev: *ev}
	defer func() { *ev = r.ev }()
	switch {
	case ev.r == nil:
		res, err = spf.TempError, errors.New("no resolver")
	case !in.Addr.IsValid():
		res, err = spf.PermError, errNoAddr
	case !multiLabel(domain):
		// RFC 7208 4.3: a malformed or single-label domain is "none",
		// without a lookup.
		res, err = spf.None, errBadDomain
	default:
		res, err = spf.CheckHostWithSender(net.IP(in.Addr.Unmap().AsSlice()), in.HELO, sender,
			spf.WithResolver(r), spf.WithContext(ev.ctx))
		s.Cached = r.hits > 0 && !r.missed
	}
	s.Name, s.Result, s.Answer = spfName(res), string(res), string(res)
	switch res {
	case spf.Fail:
		s.Weight = c.spf[spfFail].n
	case spf.SoftFail:
		s.Weight = c.spf[spfSoftfail].n
	case spf.Pass:
		s.Weight = c.spf[spfPass].n
	case spf.Neutral, spf.None:
	default:
		s.Unknown = true
		for _, w := range c.spf {
			if w.set {
				s.Weight = max(s.Weight, atWorst(w.n))
			}
		}
		if ev.bctx != nil && ev.bctx.Err() != nil {
			s.Result = TimedOut
		}
		if err != nil {
			s.Answer += ": " + err.Error()
		}
	}
}

// spfIdentity returns the sender to check and its domain: the MAIL FROM
// address, or postmaster@helo for the null sender (and for a sender
// without a domain, as the library would).
func spfIdentity(sender, helo string) (string, string) {
	sender = strings.TrimSuffix(strings.TrimPrefix(sender, "<"), ">")
	if _, domain, ok := strings.Cut(sender, "@"); ok && domain != "" {
		if sender[0] == '@' {
			sender = "postmaster" + sender
		}
		return sender, domain
	}
	return "postmaster@" + helo, helo
}

// multiLabel reports whether d can be asked for SPF: at least two labels,
// none empty or over 63 bytes, 253 bytes in all, no address literal.
func multiLabel(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if len(d) > 253 || !strings.Contains(d, ".") || strings.ContainsAny(d, "[]: ") {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// spfResolver is the SPF library's resolver: it answers from the cache
// on the calling goroutine and asks what the cache lacks within the
// budget, through dns.NetResolver. Only the evaluating goroutine uses it.
type spfResolver struct {
	ev     evaluation
	hits   int
	missed bool
}

func (r *spfResolver) cached(name string, t dns.Type) (dns.Result, bool) {
	res, ok := r.ev.r.LookupCached(spfLabel, name, t)
	if ok {
		r.hits++
	} else {
		r.missed = true
	}
	return res, ok
}

// miss is the resolver for what the cache lacks.
func (r *spfResolver) miss() (context.Context, dns.NetResolver) {
	return r.ev.budgetCtx(), dns.NetResolver{Resolver: r.ev.r, Label: "spf"}
}

// notFound is the error net gives for NXDOMAIN and NODATA, the only
// negative answers the cache keeps.
func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// LookupTXT returns the TXT records of name. The cached slice is shared:
// the library only reads it.
func (r *spfResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if res, ok := r.cached(name, dns.TypeTXT); ok {
		if res.Status != dns.Found {
			return nil, notFound(name)
		}
		return res.Texts, nil
	}
	ctx, n := r.miss()
	return n.LookupTXT(ctx, name)
}

// LookupMX returns the MX records of name as net does: sorted by
// preference, hosts fully qualified.
func (r *spfResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if res, ok := r.cached(name, dns.TypeMX); ok {
		if res.Status != dns.Found {
			return nil, notFound(name)
		}
		mxs := make([]*net.MX, len(res.MX))
		for i, mx := range res.MX {
			mxs[i] = &net.MX{Host: mx.Host + ".", Pref: mx.Pref}
		}
		slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
		return mxs, nil
	}
	ctx, n := r.miss()
	return n.LookupMX(ctx, name)
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host. Both types
// must be cached to answer from the cache; otherwise NetResolver asks
// for both at once (the cached one is then a second hit).
func (r *spfResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []net.IPAddr{{IP: net.IP(a.AsSlice()), Zone: a.Zone()}}, nil
	}
	if r4, ok := r.cached(host, dns.TypeA); ok {
		if r6, ok := r.cached(host, dns.TypeAAAA); ok {
			var addrs []net.IPAddr
			for _, a := range append(slices.Clip(r4.Addrs), r6.Addrs...) {
				addrs = append(addrs, net.IPAddr{IP: net.IP(a.AsSlice())})
			}
			if len(addrs) == 0 {
				return nil, notFound(host)
			}
			return addrs, nil
		}
	}
	ctx, n := r.miss()
	return n.LookupIPAddr(ctx, host)
}

// LookupAddr returns the names of addr from its PTR records.
func (r *spfResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	if res, ok := r.cached(dns.PTRName(a), dns.TypePTR); ok {
		if res.Status != dns.Found {
			return nil, notFound(dns.PTRName(a))
		}
		names := make([]string, 0, len(res.Names))
		for _, name := range res.Names {
			names = append(names, strings.TrimSuffix(name, ".")+".")
		}
		return names, nil
	}
	ctx, n := r.miss()
	return n.LookupAddr(ctx, addr)
}
