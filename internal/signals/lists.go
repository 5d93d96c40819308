package signals

import (
	"net/netip"
	"strings"

	"greyd/internal/dns"
)

// The results of a signal: a fixed vocabulary, fit for a metric label.
const (
	Yes       = "yes"        // a local signal holds
	No        = "no"         // a local signal does not hold
	Listed    = "listed"     // a DNSBL or DNSWL lists the client
	NotListed = "not_listed" // NXDOMAIN, NODATA, or no answer that counts
	Refused   = "refused"    // the list answered with its refusal code
	TimedOut  = "timeout"    // no answer within the budget
	Failed    = "error"      // SERVFAIL, REFUSED by the resolver, a network error
)

// refusal is the block of answers with which Spamhaus (and others after
// it) refuse a query: from a public resolver, over the limit, a typo in
// the zone. Such an answer says nothing about the client.
var refusal = netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 255, 255, 0}), 24)

// read sets s from the answer res to the query of list l.
func (l *list) read(s *Signal, res dns.Result) {
	s.Cached, s.Took = res.Cached, res.Took
	switch {
	case res.Status == dns.Found:
		s.Answer = joinAddrs(res.Addrs)
		s.Result = l.classify(res.Addrs)
	case res.Status.NotFound():
		s.Answer, s.Result = res.Status.String(), NotListed
	case res.Status == dns.Timeout:
		s.Answer, s.Result = res.Status.String(), TimedOut
	default:
		s.Answer, s.Result = res.Status.String(), Failed
	}
	switch s.Result {
	case Listed:
		s.Weight = l.weight
	case Refused, TimedOut, Failed:
		s.Unknown, s.Weight = true, atWorst(l.weight)
	}
}

// classify reads the addresses of an answer. A refusal code anywhere
// wins over a listing: the answer cannot be trusted.
func (l *list) classify(addrs []netip.Addr) string {
	result := NotListed
	for _, a := range addrs {
		a = a.Unmap()
		if l.white {
			b := a.As4()
			switch {
			case !a.Is4() || b[0] != 127 || b[1] != 0:
			case b[3] == 255:
				return Refused
			case int(b[3]) >= l.minTrust:
				result = Listed
			}
			continue
		}
		if refusal.Contains(a) {
			return Refused
		}
		for _, r := range l.listed {
			if r.Contains(a) {
				result = Listed
			}
		}
	}
	return result
}

func joinAddrs(addrs []netip.Addr) string {
	if len(addrs) == 1 {
		return addrs[0].String()
	}
	var b strings.Builder
	for i, a := range addrs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(a.String())
	}
	return b.String()
}
