package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// NetResolver gives a Resolver the methods of *net.Resolver that SPF
// libraries use (blitiri.com.ar/go/spf's DNSResolver), with the errors
// they test: *net.DNSError with IsNotFound for NXDOMAIN and NODATA,
// IsTemporary for SERVFAIL, REFUSED and other failures, IsTimeout too
// for a timeout. Names come back fully qualified, as net's do.
type NetResolver struct {
	Resolver *Resolver
	// Label, if not "", labels its lookups for Observe (WithLabel),
	// unless the context has a label already.
	Label string
}

func (n NetResolver) lookup(ctx context.Context, name string, t Type) (Result, error) {
	if n.Label != "" && Label(ctx) == "" {
		ctx = WithLabel(ctx, n.Label)
	}
	res := n.Resolver.Lookup(ctx, name, t)
	if res.Status == Found {
		return res, nil
	}
	return res, dnsError(res, name)
}

// dnsError is the *net.DNSError net would return for res.
func dnsError(res Result, name string) *net.DNSError {
	e := &net.DNSError{Name: name}
	switch res.Status {
	case NXDomain, NoData:
		e.Err, e.IsNotFound = "no such host", true
	case Timeout:
		e.Err, e.IsTimeout, e.IsTemporary = "i/o timeout", true, true
	case ServFail:
		e.Err, e.IsTemporary = "server misbehaving", true
	case Refused:
		e.Err, e.IsTemporary = "query refused", true
	default:
		if errors.Is(res.Err, ErrInvalidName) {
			e.Err, e.IsNotFound = "no such host", true
			break
		}
		e.Err, e.IsTemporary = "lookup failed", true
		if res.Err != nil {
			e.Err = res.Err.Error()
		}
	}
	return e
}

// LookupTXT returns the TXT records of name, each one's strings joined.
func (n NetResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	res, err := n.lookup(ctx, name, TypeTXT)
	if err != nil {
		return nil, err
	}
	return slices.Clone(res.Texts), nil
}

// LookupMX returns the MX records of name sorted by preference.
func (n NetResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	res, err := n.lookup(ctx, name, TypeMX)
	if err != nil {
		return nil, err
	}
	mxs := make([]*net.MX, len(res.MX))
	for i, mx := range res.MX {
		mxs[i] = &net.MX{Host: mx.Host + ".", Pref: mx.Pref}
	}
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return mxs, nil
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host, asked for
// concurrently. As with net, an answer to either is an answer; an error
// is returned only when both have none, temporary if either was.
func (n NetResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []net.IPAddr{{IP: net.IP(a.AsSlice()), Zone: a.Zone()}}, nil
	}
	type answer struct {
		res Result
		err error
	}
	six := make(chan answer, 1)
	go func() {
		res, err := n.lookup(ctx, host, TypeAAAA)
		six <- answer{res, err}
	}()
	res4, err4 := n.lookup(ctx, host, TypeA)
	a6 := <-six
	var addrs []net.IPAddr
	for _, a := range append(slices.Clip(res4.Addrs), a6.res.Addrs...) {
		addrs = append(addrs, net.IPAddr{IP: net.IP(a.AsSlice())})
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	if e, ok := err4.(*net.DNSError); ok && e.Temporary() || a6.err == nil {
		return nil, err4
	}
	return nil, a6.err
}

// LookupAddr returns the names of the address addr, from its PTR records.
func (n NetResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	res, err := n.lookup(ctx, PTRName(a), TypePTR)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(res.Names))
	for _, name := range res.Names {
		names = append(names, strings.TrimSuffix(name, ".")+".")
	}
	return names, nil
}
