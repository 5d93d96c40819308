// Package policy implements Postfix's policy delegation protocol: reading
// requests (name=value lines ended by an empty line), writing "action=..."
// replies, and serving connections on unix and TCP listeners with limits.
// It knows nothing about greylisting; a Handler decides.
package policy

import (
	"errors"
	"strings"
	"sync/atomic"
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
)

// Request is one parsed policy request. Its string fields are substrings of
// a single string holding the raw request, so parsing a request costs one
// allocation however many attributes it has.
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
func (r *Request) parse(raw string) {
	for len(raw) > 0 {
		nl := strings.IndexByte(raw, '\n')
		var line string
		if nl < 0 {
			line, raw = raw, ""
		} else {
			line, raw = raw[:nl], raw[nl+1:]
		}
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			// Postgrey requires a non-empty name ("([^=]+)=(.*)").
			r.Garbage++
			continue
		}
		r.Attributes++
		r.set(line[:eq], line[eq+1:])
	}
}

func (r *Request) set(name, value string) {
	var a Attr
	switch name {
	case "request":
		a, r.Request = AttrRequest, value
	case "protocol_state":
		a, r.ProtocolState = AttrProtocolState, value
	case "client_address":
		a, r.ClientAddress = AttrClientAddress, value
	case "client_name":
		a, r.ClientName = AttrClientName, value
	case "sender":
		a, r.Sender = AttrSender, value
	case "recipient":
		a, r.Recipient = AttrRecipient, value
	case "instance":
		a, r.Instance = AttrInstance, value
	case "queue_id":
		a, r.QueueID = AttrQueueID, value
	case "etrn_domain":
		a, r.ETRNDomain = AttrETRNDomain, value
	case "policy_test_time":
		a, r.PolicyTestTime = AttrPolicyTestTime, value
	default:
		return
	}
	r.present |= a
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
	r.parse(b.String())
	return r
}
