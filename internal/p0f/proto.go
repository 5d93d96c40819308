// Package p0f is a client of p0f 3's API: what the passive fingerprinter
// p0f thinks of a client's operating system, asked on its unix socket.
// It owns the wire format (a 21-byte query, a 232-byte answer, parsed
// strictly) and a small pool of persistent connections that reconnects
// with back-off and says once when p0f goes away and once when it is
// back. What an answer weighs is package signals'. See README.md.
package p0f

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unicode/utf8"
)

// Sizes and magic numbers of p0f's API (its README, "API access"). The
// magic dwords are in the platform's native byte order: p0f and greyd
// run on the same host.
const (
	QuerySize   = 21
	AnswerSize  = 232
	QueryMagic  = 0x50304601
	AnswerMagic = 0x50304602
	strLen      = 32 // each of the six strings, NUL included
)

// Status is the status dword of an answer.
type Status uint32

// Statuses.
const (
	StatusBadQuery Status = 0x00
	StatusOK       Status = 0x10
	StatusNoMatch  Status = 0x20
)

// Answer is p0f's opinion of a host. Only Status is meaningful unless it
// is StatusOK.
type Answer struct {
	Status     Status
	FirstSeen  uint32 // unix seconds
	LastSeen   uint32
	TotalConn  uint32
	UptimeMin  uint32 // 0: unknown
	UpModDays  uint32
	LastNAT    uint32 // unix seconds of the last sign of address sharing; 0: never
	LastChange uint32 // unix seconds of the last OS mismatch
	Distance   int16  // hops, from the TTL; -1: no data
	BadSW      uint8
	OSMatchQ   uint8 // 0 normal, 1 fuzzy, 2 generic signature, 3 both
	OSName     string
	OSFlavor   string
	HTTPName   string
	HTTPFlavor string
	LinkType   string
	Language   string
}

// Errors of ParseAnswer and Query.
var (
	// ErrBadQuery: p0f answered "bad query" (it could not read ours).
	ErrBadQuery = errors.New("p0f: bad query")
	// ErrGarbage: the answer is not one p0f would send.
	ErrGarbage = errors.New("p0f: malformed answer")
)

// AppendQuery appends the query for addr: the magic, the address type (4
// or 6) and 16 address bytes, an IPv4 address left-aligned. An
// IPv4-mapped IPv6 address is asked as IPv4: p0f saw an IPv4 packet.
func AppendQuery(b []byte, addr netip.Addr) ([]byte, error) {
	addr = addr.Unmap()
	var typ byte
	switch {
	case addr.Is4():
		typ = 4
	case addr.Is6():
		typ = 6
	default:
		return b, fmt.Errorf("p0f: no address to ask about")
	}
	b = binary.NativeEndian.AppendUint32(b, QueryMagic)
	b = append(b, typ)
	var a [16]byte
	if typ == 4 {
		v4 := addr.As4()
		copy(a[:], v4[:])
	} else {
		a = addr.As16()
	}
	return append(b, a[:]...), nil
}

// ParseAnswer reads one answer. Anything but exactly AnswerSize bytes,
// p0f's magic and a known status is ErrGarbage; so is a string of an OK
// answer without its NUL or with control characters or invalid UTF-8
// (the names end up in log lines and explain). "Bad query" is
// ErrBadQuery. The fields of a "no match" answer are not read.
func ParseAnswer(b []byte) (Answer, error) {
	if len(b) != AnswerSize {
		return Answer{}, fmt.Errorf("%w: %d bytes, want %d", ErrGarbage, len(b), AnswerSize)
	}
	ne := binary.NativeEndian
	if m := ne.Uint32(b); m != AnswerMagic {
		return Answer{}, fmt.Errorf("%w: magic %#08x, want %#08x", ErrGarbage, m, AnswerMagic)
	}
	a := Answer{Status: Status(ne.Uint32(b[4:]))}
	switch a.Status {
	case StatusOK:
	case StatusNoMatch:
		return a, nil
	case StatusBadQuery:
		return a, ErrBadQuery
	default:
		return Answer{}, fmt.Errorf("%w: status %#x", ErrGarbage, uint32(a.Status))
	}
	u := func(i int) uint32 { return ne.Uint32(b[8+4*i:]) }
	a.FirstSeen, a.LastSeen, a.TotalConn = u(0), u(1), u(2)
	a.UptimeMin, a.UpModDays, a.LastNAT, a.LastChange = u(3), u(4), u(5), u(6)
	a.Distance = int16(ne.Uint16(b[36:]))
	a.BadSW, a.OSMatchQ = b[38], b[39]
	strs := [...]*string{&a.OSName, &a.OSFlavor, &a.HTTPName, &a.HTTPFlavor, &a.LinkType, &a.Language}
	names := [...]string{"os_name", "os_flavor", "http_name", "http_flavor", "link_type", "language"}
	for i, p := range strs {
		s, err := cString(b[40+strLen*i : 40+strLen*(i+1)])
		if err != nil {
			return Answer{}, fmt.Errorf("%w: %s %v", ErrGarbage, names[i], err)
		}
		*p = s
	}
	return a, nil
}

// cString reads a NUL-terminated string of printable text.
func cString(f []byte) (string, error) {
	n := 0
	for n < len(f) && f[n] != 0 {
		c := f[n]
		if c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("holds control character %#02x", c)
		}
		n++
	}
	if n == len(f) {
		return "", errors.New("has no terminating NUL")
	}
	if !utf8.Valid(f[:n]) {
		return "", errors.New("is not UTF-8")
	}
	return string(f[:n]), nil
}

// AppendAnswer appends a in the wire format: the fake p0f of tests and
// the fuzz target's round trip. Strings longer than 31 bytes are cut.
func AppendAnswer(b []byte, a Answer) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint32(b, AnswerMagic)
	b = ne.AppendUint32(b, uint32(a.Status))
	for _, v := range [...]uint32{a.FirstSeen, a.LastSeen, a.TotalConn, a.UptimeMin, a.UpModDays, a.LastNAT, a.LastChange} {
		b = ne.AppendUint32(b, v)
	}
	b = ne.AppendUint16(b, uint16(a.Distance))
	b = append(b, a.BadSW, a.OSMatchQ)
	for _, s := range [...]string{a.OSName, a.OSFlavor, a.HTTPName, a.HTTPFlavor, a.LinkType, a.Language} {
		var f [strLen]byte
		copy(f[:strLen-1], s)
		b = append(b, f[:]...)
	}
	return b
}

// ParseQuery reads a query: the fake p0f of tests.
func ParseQuery(b []byte) (netip.Addr, error) {
	if len(b) != QuerySize || binary.NativeEndian.Uint32(b) != QueryMagic {
		return netip.Addr{}, fmt.Errorf("p0f: malformed query")
	}
	switch b[4] {
	case 4:
		return netip.AddrFrom4([4]byte(b[5:9])), nil
	case 6:
		return netip.AddrFrom16([16]byte(b[5:21])), nil
	}
	return netip.Addr{}, fmt.Errorf("p0f: address type %d", b[4])
}
