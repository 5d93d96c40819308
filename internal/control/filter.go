package control

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/normalize"
	"greyd/internal/store"
)

// filter selects entries for list and delete. The admin types addresses;
// entries hold keys as the decision built them (hashed part by part under
// privacy), so the filter turns what was typed into stored forms with the
// snapshot's own key functions.
type filter struct {
	snap              *greylist.Snapshot
	kinds             []store.Kind // nil: all
	client            netip.Prefix // invalid: no client filter
	org               *string      // -client with an organisation (lookup_by "auto"), as stored
	sender, recipient *string
	state             string // "", "pending", "passed"; "trapped", "released"

	// Under privacy: the stored network parts and client keys of the
	// client filter, enumerated (a hash cannot be tested for "in this
	// network").
	netKeys, clientKeys map[string]bool
	// noClients: under privacy the client filter is too large to match
	// auto-whitelist entries (warning says so).
	noClients bool
	warning   string
}

// maxEnumerate bounds how many networks or addresses a client filter may
// stand for under privacy, where each must be hashed.
const maxEnumerate = 1 << 16

// parseFilter reads kind, client, sender, recipient and state from q.
func parseFilter(q url.Values, snap *greylist.Snapshot) (*filter, error) {
	f := &filter{snap: snap}
	if k := q.Get("kind"); k != "" {
		kind, err := store.ParseKind(k)
		if err != nil {
			return nil, fmt.Errorf("-kind %q: %v", k, err)
		}
		f.kinds = []store.Kind{kind}
	}
	switch s := q.Get("state"); s {
	case "", "pending", "passed", "trapped", "released":
		f.state = s
	default:
		return nil, fmt.Errorf(`-state %q: must be "pending", "passed", "trapped" or "released"`, s)
	}
	if q.Has("sender") {
		s := strings.TrimSuffix(strings.TrimPrefix(q.Get("sender"), "<"), ">")
		s = snap.SenderPart(s)
		f.sender = &s
	}
	if q.Has("recipient") {
		r := snap.RecipientPart(q.Get("recipient"))
		f.recipient = &r
	}
	if (f.sender != nil || f.recipient != nil) && f.kinds == nil {
		// Auto-whitelist entries have no sender or recipient.
		f.kinds = []store.Kind{store.KindTriplet}
	}
	if c := q.Get("client"); c != "" {
		p, err := parseClient(c)
		if err != nil {
			if !isDomain(c) {
				return nil, err
			}
			// Under lookup_by "auto" the triplets of a known
			// organisation's mail servers are keyed by its domain.
			// The stored part is taken from the key the decision
			// builds, hashed under privacy like the rest.
			o, _, _ := strings.Cut(snap.OrgTripletKey(strings.ToLower(strings.TrimSuffix(c, ".")), "", ""), "/")
			f.org = &o
			if f.kinds == nil {
				f.kinds = []store.Kind{store.KindTriplet}
			}
			return f, nil
		}
		f.client = p
		if snap.Privacy != nil {
			if err := f.hashClient(); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

// parseClient parses an address or a network; host bits are cleared.
func parseClient(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	if a, ok := normalize.ParseAddr(s); ok {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("-client %q: not an IP address, a network (e.g. 192.0.2.1, 192.0.2.0/24, 2001:db8::/48) or an organisation's domain (lookup_by \"auto\")", s)
}

// isDomain reports whether s looks like a domain name: labels of
// letters, digits and '-', at least two.
func isDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if !strings.Contains(s, ".") || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i] | 0x20
			if !(c >= 'a' && c <= 'z' || l[i] >= '0' && l[i] <= '9' || l[i] == '-') {
				return false
			}
		}
	}
	return true
}

// hashClient fills netKeys and clientKeys.
func (f *filter) hashClient() error {
	s, p := f.snap, f.client
	bits := s.IPv4Prefix
	if !p.Addr().Is4() {
		bits = s.IPv6Prefix
	}
	if s.LookupByHost {
		bits = p.Addr().BitLen()
	}
	nets, ok := enumerate(p, bits)
	if !ok {
		return fmt.Errorf("-client %s: with privacy = true each network is hashed, and %s holds more than %d of them; use a smaller network", p, p, maxEnumerate)
	}
	f.netKeys = make(map[string]bool, len(nets))
	for _, a := range nets {
		f.netKeys[s.NetworkPart(a)] = true
	}
	addrs, ok := enumerate(p, p.Addr().BitLen())
	if !ok {
		f.noClients = true
		f.warning = fmt.Sprintf("auto-whitelist entries not matched: with privacy = true each client address is hashed, and %s holds more than %d addresses", p, maxEnumerate)
		return nil
	}
	f.clientKeys = make(map[string]bool, len(addrs))
	for _, a := range addrs {
		f.clientKeys[s.ClientKey(a)] = true
	}
	return nil
}

// enumerate returns the networks of length bits inside p (one if p is
// that long or longer), or false if there are more than maxEnumerate.
func enumerate(p netip.Prefix, bits int) ([]netip.Addr, bool) {
	if p.Bits() >= bits {
		return []netip.Addr{p.Addr()}, true
	}
	n := bits - p.Bits()
	if n > 16 {
		return nil, false
	}
	out := make([]netip.Addr, 0, 1<<n)
	a := p.Masked().Addr()
	for i := 0; i < 1<<n; i++ {
		out = append(out, a)
		a = stepAddr(a, bits)
	}
	return out, true
}

// stepAddr adds one at prefix length bits: the next network of that
// length.
func stepAddr(a netip.Addr, bits int) netip.Addr {
	if a.Is4() {
		v := a.As4()
		u := binary.BigEndian.Uint32(v[:]) + 1<<(32-bits)
		binary.BigEndian.PutUint32(v[:], u)
		return netip.AddrFrom4(v)
	}
	v := a.As16()
	hi, lo := binary.BigEndian.Uint64(v[:8]), binary.BigEndian.Uint64(v[8:])
	if sh := 128 - bits; sh >= 64 {
		hi += 1 << (sh - 64)
	} else {
		n := lo + 1<<sh
		if n < lo {
			hi++
		}
		lo = n
	}
	binary.BigEndian.PutUint64(v[:8], hi)
	binary.BigEndian.PutUint64(v[8:], lo)
	return netip.AddrFrom16(v)
}

// empty reports whether the filter selects everything (delete refuses).
func (f *filter) empty() bool {
	return !f.client.IsValid() && f.org == nil && f.sender == nil && f.recipient == nil
}

// scanKinds is what to scan for the filter.
func (f *filter) scanKinds() []store.Kind {
	if f.noClients && f.kinds == nil {
		return []store.Kind{store.KindTriplet}
	}
	return f.kinds
}

// match reports whether e is selected.
func (f *filter) match(e store.Entry) bool {
	if f.state != "" && f.stateOf(e) != f.state {
		return false
	}
	switch e.Kind {
	case store.KindClient, store.KindTrap, store.KindTarpit:
		if f.org != nil {
			return false // auto-whitelist entries and traps are per address
		}
		if !f.client.IsValid() {
			return true
		}
		if f.clientKeys != nil {
			return f.clientKeys[e.Key]
		}
		if f.noClients {
			return false
		}
		a, ok := normalize.ParseAddr(e.Key)
		return ok && f.client.Contains(a)
	case store.KindTriplet:
		if f.sender == nil && f.recipient == nil && !f.client.IsValid() && f.org == nil {
			return true
		}
		netPart, sender, rcpt, ok := splitTriplet(e.Key, f.snap.LookupByHost && f.snap.Privacy == nil)
		if !ok {
			return false
		}
		if f.sender != nil && sender != *f.sender || f.recipient != nil && rcpt != *f.recipient {
			return false
		}
		if f.org != nil {
			return netPart == *f.org
		}
		if !f.client.IsValid() {
			return true
		}
		if f.netKeys != nil {
			return f.netKeys[netPart]
		}
		n, ok := f.networkOf(netPart)
		return ok && n.Overlaps(f.client)
	}
	return false
}

// networkOf parses a stored network part: "198.51.100.0" (the configured
// prefix) or "198.51.100.60/32" (by host).
func (f *filter) networkOf(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, true
	}
	a, ok := normalize.ParseAddr(s)
	if !ok {
		return netip.Prefix{}, false
	}
	bits := f.snap.IPv4Prefix
	if !a.Is4() {
		bits = f.snap.IPv6Prefix
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// stateOf is "passed" for a triplet that completed greylisting or a
// client on the auto-whitelist, "trapped" or "released" for a trap, else
// "pending".
func (f *filter) stateOf(e store.Entry) string {
	return stateOf(f.snap, e)
}

func stateOf(snap *greylist.Snapshot, e store.Entry) string {
	switch e.Kind {
	case store.KindTarpit:
		return "marked"
	case store.KindTrap:
		// The wall clock, as the entry's deadline: policy_test_time
		// moves only the decisions' clock.
		if e.Until > time.Now().Unix() {
			return "trapped"
		}
		return "released"
	case store.KindTriplet:
		if e.Last-e.First >= int64(storedDelay(snap, e.Key)/time.Second) {
			return "passed"
		}
	case store.KindClient:
		if snap.AutoWhitelistClients > 0 && e.Count >= int64(snap.AutoWhitelistClients) {
			return "passed"
		}
	}
	return "pending"
}

// storedDelay is the delay that judges a stored triplet, as decisions
// judge it: its recipient's policy's own, else greylist's. Under privacy
// the key holds the recipient's hash, and greylist's delay judges all.
func storedDelay(snap *greylist.Snapshot, key string) time.Duration {
	if snap.Selective == nil || snap.Privacy != nil {
		return snap.Delay
	}
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return snap.Delay
	}
	return snap.DelayFor(key[i+1:])
}

// splitTriplet splits a triplet key "network/sender/recipient". With
// byHost the network part carries its length ("198.51.100.60/32/...").
// The recipient is taken after the last '/', so a sender with a '/' in it
// stays whole; a recipient with one would be split wrongly.
func splitTriplet(key string, byHost bool) (netPart, sender, rcpt string, ok bool) {
	i := strings.IndexByte(key, '/')
	if i < 0 {
		return "", "", "", false
	}
	if byHost {
		j := strings.IndexByte(key[i+1:], '/')
		if j < 0 {
			return "", "", "", false
		}
		i += 1 + j
	}
	netPart, rest := key[:i], key[i+1:]
	j := strings.LastIndexByte(rest, '/')
	if j < 0 {
		return "", "", "", false
	}
	return netPart, rest[:j], rest[j+1:], true
}
