package dns

import (
	"net/netip"
	"strconv"
	"strings"
)

const hexDigits = "0123456789abcdef"

// ReverseName returns the name under which zone lists addr, as DNSBLs and
// DNSWLs do (RFC 5782): the octets of an IPv4 address reversed
// ("4.3.2.1.zone" for 1.2.3.4), the 32 nibbles of an IPv6 address
// reversed. An IPv4-mapped IPv6 address is read as IPv4. With zone ""
// the name has no zone; an invalid addr gives "".
func ReverseName(addr netip.Addr, zone string) string {
	if !addr.IsValid() {
		return ""
	}
	addr = addr.Unmap()
	zone = strings.TrimSuffix(zone, ".")
	var b strings.Builder
	if addr.Is4() {
		a := addr.As4()
		b.Grow(16 + len(zone))
		var num [3]byte
		for i := 3; i >= 0; i-- {
			b.Write(strconv.AppendUint(num[:0], uint64(a[i]), 10))
			if i > 0 || zone != "" {
				b.WriteByte('.')
			}
		}
	} else {
		a := addr.As16()
		b.Grow(64 + len(zone))
		for i := 15; i >= 0; i-- {
			b.WriteByte(hexDigits[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hexDigits[a[i]>>4])
			if i > 0 || zone != "" {
				b.WriteByte('.')
			}
		}
	}
	b.WriteString(zone)
	return b.String()
}

// PTRName returns the name of addr's PTR record: under in-addr.arpa for
// IPv4 (IPv4-mapped IPv6 included), ip6.arpa for IPv6.
func PTRName(addr netip.Addr) string {
	if addr.Unmap().Is4() {
		return ReverseName(addr, "in-addr.arpa")
	}
	return ReverseName(addr, "ip6.arpa")
}
