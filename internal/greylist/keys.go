package greylist

import (
	"net/netip"

	"greyd/internal/normalize"
)

// Store keys. A triplet key is "network/sender/recipient": the client's
// network (or address, by host), the normalised sender and the lower-cased
// recipient. A client key is the exact client address. Under privacy each
// part is replaced by its keyed hash on its own, so the admin commands can
// still select entries by client, sender or recipient (they hash what the
// admin typed) while the database holds no address.

// ClientKey returns the auto-whitelist key of ip.
func (s *Snapshot) ClientKey(ip netip.Addr) string {
	var buf [128]byte
	a := normalize.AppendClientAddr(buf[:0], ip)
	return s.key(a[len(a):], a)
}

// NetworkPart returns the client part of ip's triplet key, as stored.
func (s *Snapshot) NetworkPart(ip netip.Addr) string {
	var buf [128]byte
	n := normalize.AppendClientNet(buf[:0], ip, s.LookupByHost, s.IPv4Prefix, s.IPv6Prefix)
	return s.key(n[len(n):], n)
}

// SenderPart returns the sender part of a triplet key, as stored.
func (s *Snapshot) SenderPart(sender string) string {
	var buf [320]byte
	k := normalize.AppendSender(buf[:0], sender)
	return s.key(k[len(k):], k)
}

// RecipientPart returns the recipient part of a triplet key, as stored.
func (s *Snapshot) RecipientPart(recipient string) string {
	var buf [320]byte
	k := appendLower(buf[:0], recipient)
	return s.key(k[len(k):], k)
}

// TripletKey returns the key of the triplet ip/sender/recipient.
func (s *Snapshot) TripletKey(ip netip.Addr, sender, recipient string) string {
	var buf [320]byte
	return s.appendTriplet(buf[:0], normalize.AppendClientNet(buf[:0], ip, s.LookupByHost, s.IPv4Prefix, s.IPv6Prefix), sender, recipient)
}

// OrgTripletKey returns the key of a triplet whose client part is the
// organisation org (lookup_by "auto"). A domain never looks like a network
// key, so the two kinds cannot collide.
func (s *Snapshot) OrgTripletKey(org, sender, recipient string) string {
	var buf [320]byte
	return s.appendTriplet(buf[:0], append(buf[:0], org...), sender, recipient)
}

// appendTriplet builds the triplet key of the client part net (raw, in
// dst's array or elsewhere), sender and recipient, in dst's space.
func (s *Snapshot) appendTriplet(dst, net []byte, sender, recipient string) string {
	if s.Privacy == nil {
		k := append(dst[:0], net...) // net may be dst's own bytes: same start, a no-op copy
		k = append(k, '/')
		k = normalize.AppendSender(k, sender)
		k = append(k, '/')
		k = appendLower(k, recipient)
		return string(k)
	}
	var raw [320]byte
	k := s.Privacy.Append(raw[:0], net)
	k = append(k, '/')
	p := normalize.AppendSender(dst[:0], sender)
	k = s.Privacy.Append(k, p)
	k = append(k, '/')
	p = appendLower(dst[:0], recipient)
	k = s.Privacy.Append(k, p)
	return string(k)
}

// key returns the stored form of raw: itself, or its keyed hash under
// privacy. dst is scratch space that must not overlap raw's bytes.
func (s *Snapshot) key(dst, raw []byte) string {
	if s.Privacy != nil {
		return string(s.Privacy.Append(dst, raw))
	}
	return string(raw)
}
