// Package policy implements Postfix's policy delegation protocol: reading
// requests (name=value lines ended by an empty line), writing "action=..."
// replies, and serving connections on unix and TCP listeners with limits.
// It knows nothing about greylisting; a Handler decides.
package policy

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Attr identifies the attributes greyd looks at. Everything else Postfix
// sends is accepted and ignored, as the protocol requires.
type Attr uint16

// Attributes with a meaning for greyd. Presence matters for some of them
// (etrn_domain), so Request records which ones were sent.
const (
	AttrRequest Attr = 1 << iota
	AttrProtocolState
	AttrClientAddress
	AttrClientName
	AttrSender
	AttrRecipient
	AttrInstance
	AttrQueueID
	AttrETRNDomain
	AttrPolicyTestTime
	AttrHELOName // selective greylisting's helo_invalid and SPF of the null sender
	// The tarpit's: how many recipients a DATA request stands for, and
	// Postfix's postscreen/anvil "stress" flag.
	AttrRecipientCount
	AttrStress
)

// Request is one parsed policy request. Its string fields are substrings of
// a single string holding the values greyd reads, so parsing a request
// costs one allocation however many attributes it has.
type Request struct {
	Request        string
	ProtocolState  string
	ClientAddress  string
	ClientName     string
	Sender         string
	Recipient      string
	Instance       string
	QueueID        string
	ETRNDomain     string
	PolicyTestTime string
	HELOName       string
	RecipientCount string
	Stress         string

	present Attr
	// Attributes is the number of name=value lines, known or not.
	Attributes int
	// Garbage counts lines without '=' (Postgrey logs and ignores them).
	Garbage int

	// The server's claim on the reply (LateHandler): claim moves from
	// claimAs to claimAs+1 when the handler claims it first.
	claim   *atomic.Uint64
	claimAs uint64
}

// Claim reports whether the handler answering r still is the one whose
// reply the client gets: false when the server has already sent its
// LateHandler's Late reply instead. After Claim returns true, Late will
// not be called for r. Requests not read by a Server are always claimed.
func (r *Request) Claim() bool {
	if r.claim == nil {
		return true
	}
	return r.claim.CompareAndSwap(r.claimAs, r.claimAs+1) || r.claim.Load() == r.claimAs+1
}

// Has reports whether the attribute was present in the request, even with
// an empty value.
func (r *Request) Has(a Attr) bool { return r.present&a != 0 }

// Reset clears r for reuse.
func (r *Request) Reset() { *r = Request{} }

// Errors that end a connection. The server logs them and disconnects, as
// SMTPD_POLICY_README asks of a server "in case of trouble".
var (
	ErrLineTooLong       = errors.New("line too long")
	ErrTooManyAttributes = errors.New("too many attributes in one request")
	ErrRequestTooLarge   = errors.New("request too large")
	ErrUnexpectedEOF     = errors.New("connection closed in the middle of a request")
)

// parse fills r from raw, which holds complete lines, each ended by '\n'
// (a trailing '\r' already removed), without the terminating empty line.
// Duplicate attributes: the last one wins, like Postgrey.
//
// Only the values of the attributes greyd reads are copied, into one
// string: a Postfix 3.7 request is about 1 KiB, of which greyd needs a
// fifth, and the copy is most of what a request allocates (so of the
// garbage collector's work under load).
func (r *Request) parse(raw []byte) {
	var spans [numAttrs]struct{ off, n int }
	total := 0
	for off := 0; off < len(raw); {
		nl := bytes.IndexByte(raw[off:], '\n')
		end := len(raw)
		if nl >= 0 {
			end = off + nl
		}
		line := raw[off:end]
		lineOff := off
		off = end + 1
		eq := bytes.IndexByte(line, '=')
		if eq <= 0 {
			// Postgrey requires a non-empty name ("([^=]+)=(.*)").
			r.Garbage++
			continue
		}
		r.Attributes++
		i := attrIndex(line[:eq])
		if i < 0 {
			continue
		}
		if r.present&(1<<i) != 0 {
			total -= spans[i].n // a duplicate: the last one wins
		}
		r.present |= 1 << i
		spans[i].off, spans[i].n = lineOff+eq+1, len(line)-eq-1
		total += spans[i].n
	}
	if total == 0 {
		return
	}
	buf := make([]byte, 0, total)
	for i := range spans {
		if r.present&(1<<i) == 0 {
			continue
		}
		at := len(buf)
		buf = append(buf, raw[spans[i].off:spans[i].off+spans[i].n]...)
		spans[i].off = at
	}
	s := unsafe.String(unsafe.SliceData(buf), len(buf)) // buf is never written again
	for i := range spans {
		if r.present&(1<<i) != 0 {
			*r.field(i) = s[spans[i].off : spans[i].off+spans[i].n]
		}
	}
}

// numAttrs is the number of Attr values; Attr(1<<i) is attribute i.
const numAttrs = 13

// attrIndex returns i for the attribute named name (Attr(1<<i)), or -1.
// The switch on string(name) does not allocate.
func attrIndex(name []byte) int {
	switch string(name) {
	case "request":
		return 0
	case "protocol_state":
		return 1
	case "client_address":
		return 2
	case "client_name":
		return 3
	case "sender":
		return 4
	case "recipient":
		return 5
	case "instance":
		return 6
	case "queue_id":
		return 7
	case "etrn_domain":
		return 8
	case "policy_test_time":
		return 9
	case "helo_name":
		return 10
	case "recipient_count":
		return 11
	case "stress":
		return 12
	}
	return -1
}

// field returns the field of attribute i.
func (r *Request) field(i int) *string {
	switch i {
	case 0:
		return &r.Request
	case 1:
		return &r.ProtocolState
	case 2:
		return &r.ClientAddress
	case 3:
		return &r.ClientName
	case 4:
		return &r.Sender
	case 5:
		return &r.Recipient
	case 6:
		return &r.Instance
	case 7:
		return &r.QueueID
	case 8:
		return &r.ETRNDomain
	case 10:
		return &r.HELOName
	case 11:
		return &r.RecipientCount
	case 12:
		return &r.Stress
	}
	return &r.PolicyTestTime
}

// ParseRequest parses a request given as text: name=value lines separated
// by "\n" or "\r\n", optionally ended by an empty line. It is meant for
// tests and tools; the server uses Reader.
func ParseRequest(text string) *Request {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	r := new(Request)
	r.parse([]byte(b.String()))
	return r
}
