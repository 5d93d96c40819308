package control

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// Listings and exports of a million entries are written by hand rather
// than with encoding/json: its reflection and one allocation per record
// took most of the daemon's time in a listing (2.8 s for a million, now
// under a second) and filled the heap with garbage next to a store of
// several hundred megabytes.

// appendRecord appends r as one JSON line, the fields that encoding/json
// would write for it (omitempty) in the same order. A key that is not
// valid UTF-8 (a sender's bytes are whatever the client sent) goes into
// key_base64, so that an export stays lossless; JSON strings cannot hold
// such bytes.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"kind":`...)
	b = appendJSONString(b, r.Kind)
	if r.Key != "" {
		if utf8.ValidString(r.Key) {
			b = appendField(b, "key", r.Key)
		} else {
			b = append(b, `,"key_base64":"`...)
			b = base64.StdEncoding.AppendEncode(b, []byte(r.Key))
			b = append(b, '"')
		}
	}
	b = appendField(b, "client", r.Client)
	b = appendField(b, "sender", r.Sender)
	b = appendField(b, "recipient", r.Recipient)
	b = appendField(b, "state", r.State)
	b = appendInt(b, "first", r.First)
	b = appendInt(b, "count", r.Count)
	b = appendInt(b, "last", r.Last)
	b = appendInt(b, "until", r.Until)
	b = appendInt(b, "session", r.Session)
	b = appendInt(b, "expires", r.Expires)
	b = appendField(b, "list", r.List)
	b = appendField(b, "value", r.Value)
	b = appendField(b, "comment", r.Comment)
	b = appendInt(b, "added", r.Added)
	b = appendField(b, "format", r.Format)
	b = appendField(b, "version", r.Version)
	b = appendInt(b, "exported", r.Exported)
	if r.Privacy {
		b = append(b, `,"privacy":true`...)
	}
	b = appendField(b, "privacy_key", r.PrivacyKey)
	return append(b, "}\n"...)
}

func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

func appendInt(b []byte, name string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD (as
// encoding/json does), everything else as it is.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ndjson starts a streamed answer: records are written by appendRecord
// into one reused buffer, flushed every 32 KiB.
type ndjson struct {
	w   http.ResponseWriter
	buf []byte
	err error
}

func newNDJSON(w http.ResponseWriter) *ndjson {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &ndjson{w: w, buf: make([]byte, 0, 40<<10)}
}

func (n *ndjson) write(r *Record) error {
	if n.err != nil {
		return n.err
	}
	n.buf = appendRecord(n.buf, r)
	if len(n.buf) >= 32<<10 {
		n.flush()
	}
	return n.err
}

func (n *ndjson) flush() {
	if n.err == nil && len(n.buf) > 0 {
		_, n.err = n.w.Write(n.buf)
	}
	n.buf = n.buf[:0]
}
