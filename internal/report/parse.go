package report

import (
	"net/netip"
	"strings"

	"greyd/internal/normalize"
)

// Kind says what a log line tells.
type Kind uint8

// Kinds of events.
const (
	// Reject is Postfix's "NOQUEUE: reject: RCPT from NAME[IP]: 450 ...
	// Greylisted ...; from=<S> to=<R>" line: a greylisted attempt.
	Reject Kind = iota + 1
	// Greylist is greyd's own "action=greylist, reason=..." line: the
	// same attempt, seen from greyd (with the null sender and IPv6).
	Greylist
	// Pass is greyd's "action=pass, reason=..." line: the triplet's mail
	// got through (a retry after the delay, or a whitelist).
	Pass
)

// Event is one line of the mail log that the report uses.
type Event struct {
	Kind Kind
	// Time is the line's timestamp as written, "" for a line without one.
	Time string
	// Name is the client's verified name, "unknown" when it has none.
	Name string
	Addr netip.Addr
	// Sender and Recipient are as logged; the null sender is "".
	Sender, Recipient string
}

// DefaultText is what Postgrey's and greyd's default greylist text, and
// so a reject line of theirs, contains (postgreyreport's default).
const DefaultText = "Greylisted"

// Parser reads the lines of a mail log.
type Parser struct {
	// Text is the text that tells greylisting rejects from other
	// rejects (postgreyreport's --greylist-text); "" is DefaultText.
	Text string
}

// Parse reads one line (without its newline): a Postfix reject with the
// greylist text or a greyd decision line, in the formats of syslog (BSD
// or RFC 3339 timestamps) and journalctl (short, short-precise,
// short-iso, short-iso-precise, short-full, short-unix, short-monotonic,
// cat), or as greyd writes to its standard error. ok is false for every
// other line.
func (p *Parser) Parse(line string) (e Event, ok bool) {
	ts, rest := splitStamp(line)
	msg, ok := message(rest)
	if !ok {
		return Event{}, false
	}
	msg = stripPriority(msg)
	if m, isDecision := decisionMessage(msg); isDecision {
		e, ok = parseDecision(m)
	} else {
		e, ok = p.parseReject(msg)
	}
	if !ok {
		return Event{}, false
	}
	e.Time = ts
	return e, true
}

// splitStamp splits a line into its leading timestamp and what follows
// the space after it; ts is "" when no known timestamp starts the line.
func splitStamp(line string) (ts, rest string) {
	n := stampLen(line)
	if n == 0 || n >= len(line) || line[n] != ' ' {
		return "", line
	}
	return line[:n], line[n+1:]
}

// stampLen returns the length of the timestamp at the start of s, or 0.
func stampLen(s string) int {
	// "Dec  7 04:24:54" (syslog, journalctl short), "Dec 07 04:24:54.123456"
	if n := shape(s, "Aaa _d dd:dd:dd"); n > 0 {
		return n + fraction(s[n:])
	}
	// "2024-12-07T04:24:54.123456+01:00" (rsyslog's RFC 3339,
	// journalctl short-iso[-precise], greyd's standard error)
	if n := shape(s, "dddd-dd-ddTdd:dd:dd"); n > 0 {
		n += fraction(s[n:])
		return n + zone(s[n:])
	}
	// "Sat 2024-12-07 04:24:54 CET" (journalctl short-full)
	if n := shape(s, "Aaa dddd-dd-dd dd:dd:dd"); n > 0 {
		n += fraction(s[n:])
		if n < len(s) && s[n] == ' ' {
			if z := word(s[n+1:]); z > 0 {
				return n + 1 + z
			}
		}
		return n
	}
	// "[  123.456789]" (journalctl short-monotonic)
	if len(s) > 0 && s[0] == '[' {
		i := 1
		for i < len(s) && s[i] == ' ' {
			i++
		}
		d := digits(s[i:])
		if d == 0 {
			return 0
		}
		i += d
		i += fraction(s[i:])
		if i < len(s) && s[i] == ']' {
			return i + 1
		}
		return 0
	}
	// "1733541894.123456" (journalctl short-unix)
	if d := digits(s); d >= 9 {
		if f := fraction(s[d:]); f > 0 {
			return d + f
		}
	}
	return 0
}

// shape returns len(pat) if s starts with pat's shape: 'd' is a digit,
// 'A' an upper-case letter, 'a' a lower-case one, '_' a space or a
// digit; other bytes stand for themselves. It returns 0 otherwise.
func shape(s, pat string) int {
	if len(s) < len(pat) {
		return 0
	}
	for i := 0; i < len(pat); i++ {
		c := s[i]
		var ok bool
		switch pat[i] {
		case 'd':
			ok = isDigit(c)
		case 'A':
			ok = 'A' <= c && c <= 'Z'
		case 'a':
			ok = 'a' <= c && c <= 'z'
		case '_':
			ok = c == ' ' || isDigit(c)
		default:
			ok = c == pat[i]
		}
		if !ok {
			return 0
		}
	}
	return len(pat)
}

// fraction returns the length of ".123456" at the start of s, or 0.
func fraction(s string) int {
	if len(s) < 2 || s[0] != '.' {
		return 0
	}
	if d := digits(s[1:]); d > 0 {
		return 1 + d
	}
	return 0
}

// zone returns the length of "Z", "+01:00" or "+0100" at the start of s,
// or 0.
func zone(s string) int {
	if len(s) > 0 && s[0] == 'Z' {
		return 1
	}
	if len(s) == 0 || s[0] != '+' && s[0] != '-' {
		return 0
	}
	if n := shape(s[1:], "dd:dd"); n > 0 {
		return 1 + n
	}
	if n := shape(s[1:], "dddd"); n > 0 {
		return 1 + n
	}
	return 0
}

func digits(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// word returns the length of the letters, digits, '+' and '-' at the
// start of s (a time zone's name or offset).
func word(s string) int {
	i := 0
	for i < len(s) {
		c := s[i]
		if !isDigit(c) && !('A' <= c && c <= 'Z') && !('a' <= c && c <= 'z') && c != '+' && c != '-' {
			break
		}
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// message finds the message in what follows a timestamp: the rest itself
// when it starts with one (greyd's standard error, a bare message), else
// what follows "HOST TAG: ", the syslog header, where TAG is a single word
// such as postfix/smtpd[123] or greyd[45].
func message(rest string) (string, bool) {
	if startsMessage(stripPriority(rest)) {
		return rest, true
	}
	host, after, ok := strings.Cut(rest, " ")
	if !ok || host == "" {
		return "", false
	}
	tag, msg, ok := strings.Cut(after, ": ")
	if !ok || tag == "" || strings.ContainsAny(tag, " \t") {
		return "", false
	}
	return msg, true
}

// startsMessage reports whether s starts with a message the report reads:
// "action=", "ID: action=" or "ID: reject: ".
func startsMessage(s string) bool {
	if strings.HasPrefix(s, "action=") {
		return true
	}
	_, m, ok := cutQueueID(s)
	return ok && (strings.HasPrefix(m, "action=") || strings.HasPrefix(m, "reject: "))
}

// cutQueueID splits "ID: rest", where ID is Postfix's queue ID or NOQUEUE
// (letters and digits).
func cutQueueID(s string) (id, rest string, ok bool) {
	i := 0
	for i < len(s) && (isDigit(s[i]) || 'A' <= s[i] && s[i] <= 'Z' || 'a' <= s[i] && s[i] <= 'z') {
		i++
	}
	if i == 0 || !strings.HasPrefix(s[i:], ": ") {
		return "", "", false
	}
	return s[:i], s[i+2:], true
}

// stripPriority drops the "<5>" that greyd puts before each line when its
// standard error goes to journald.
func stripPriority(s string) string {
	if len(s) >= 3 && s[0] == '<' && isDigit(s[1]) {
		if d := digits(s[1:]); d <= 3 && 1+d < len(s) && s[1+d] == '>' {
			return s[2+d:]
		}
	}
	return s
}

// decisionMessage returns greyd's decision line without its queue ID.
func decisionMessage(msg string) (string, bool) {
	if strings.HasPrefix(msg, "action=") {
		return msg, true
	}
	if _, m, ok := cutQueueID(msg); ok && strings.HasPrefix(m, "action=") {
		return m, true
	}
	return "", false
}

// parseDecision reads greyd's line (package greylist's logDecision):
//
//	action=greylist, reason=new, client_name=N, client_address=A, sender=S, recipient=R
//
// Attributes that are empty or "0" are left out, as Postgrey does; a
// greylist line answered DUNNO ends in " (dry run)" and is not an
// attempt that was deferred.
func parseDecision(m string) (Event, bool) {
	var e Event
	switch {
	case strings.HasPrefix(m, "action=greylist, "):
		e.Kind = Greylist
		if strings.HasSuffix(m, " (dry run)") {
			return Event{}, false
		}
	case strings.HasPrefix(m, "action=pass, "):
		e.Kind = Pass
	default:
		return Event{}, false
	}
	// The reason ("new", "early-retry (12s missing)", "triplet found",
	// ", delay=310") never holds ", client_"; the names and values that
	// follow are Postfix's: the name is a verified DNS name or "unknown"
	// and the address an IP address, neither with ", " in it.
	i := strings.Index(m, ", client_")
	if i < 0 {
		return Event{}, false
	}
	rest := m[i:]
	e.Name = "unknown"
	if v, ok := strings.CutPrefix(rest, ", client_name="); ok {
		j := strings.Index(v, ", client_address=")
		if j < 0 {
			return Event{}, false
		}
		e.Name, rest = v[:j], v[j:]
	}
	v, ok := strings.CutPrefix(rest, ", client_address=")
	if !ok {
		return Event{}, false
	}
	addr := v
	if j := strings.Index(v, ", "); j >= 0 {
		addr, rest = v[:j], v[j:]
	} else {
		rest = ""
	}
	if e.Addr, ok = normalize.ParseAddr(addr); !ok {
		return Event{}, false
	}
	// The sender comes from the SMTP client and may hold ", recipient=";
	// the recipient, last, was accepted as one of ours by the
	// restrictions before greyd's: the last ", recipient=" is the real
	// one.
	if v, ok := strings.CutPrefix(rest, ", sender="); ok {
		j := strings.LastIndex(v, ", recipient=")
		if j < 0 {
			return Event{}, false
		}
		e.Sender, rest = v[:j], v[j:]
	}
	if e.Recipient, ok = strings.CutPrefix(rest, ", recipient="); !ok || e.Recipient == "" {
		return Event{}, false
	}
	return e, true
}

// parseReject reads Postfix's reject line:
//
//	NOQUEUE: reject: RCPT from NAME[ADDR]: 450 4.2.0 <R>: Recipient address rejected: TEXT; from=<S> to=<R> proto=ESMTP helo=<H>
//
// (a queue ID instead of NOQUEUE once a recipient was accepted; DATA
// instead of RCPT when the policy is asked at DATA; ":PORT" after the
// address with smtpd_client_port_logging). The status must be 4xx and
// the reply must contain the greylist text.
func (p *Parser) parseReject(msg string) (Event, bool) {
	_, m, ok := cutQueueID(msg)
	if !ok {
		return Event{}, false
	}
	if m, ok = strings.CutPrefix(m, "reject: "); !ok {
		return Event{}, false
	}
	// "RCPT from "
	_, m, ok = strings.Cut(m, " from ")
	if !ok {
		return Event{}, false
	}
	// NAME[ADDR]: postscreen logs "[ADDR]:PORT" without a name, and
	// never for a policy service's answer.
	open := strings.IndexByte(m, '[')
	if open <= 0 || strings.ContainsAny(m[:open], " \t") {
		return Event{}, false
	}
	end := strings.IndexByte(m[open:], ']')
	if end < 0 {
		return Event{}, false
	}
	e := Event{Kind: Reject, Name: m[:open]}
	if e.Addr, ok = normalize.ParseAddr(m[open+1 : open+end]); !ok {
		return Event{}, false
	}
	m = m[open+end+1:]
	if len(m) > 0 && m[0] == ':' && len(m) > 1 && isDigit(m[1]) {
		m = m[1+digits(m[1:]):] // the port
	}
	m, ok = strings.CutPrefix(m, ": ")
	if !ok || len(m) < 4 || m[0] != '4' || !isDigit(m[1]) || !isDigit(m[2]) || m[3] != ' ' {
		return Event{}, false
	}
	m = m[4:]
	if n := shape(m, "d.d"); n > 0 {
		// The enhanced status code, "4.2.0 " or "4.7.1 ".
		i := n
		for i < len(m) && (isDigit(m[i]) || m[i] == '.') {
			i++
		}
		if i < len(m) && m[i] == ' ' {
			m = m[i+1:]
		}
	}
	// "<R>: Recipient address rejected: ": the client chose R, which
	// may hold anything, the text or "; from=<" included; skip it whole.
	if len(m) > 0 && m[0] == '<' {
		if _, m, ok = cutAngle(m[1:]); !ok {
			return Event{}, false
		}
	}
	text := p.Text
	if text == "" {
		text = DefaultText
	}
	f := strings.Index(m, "; from=<")
	if f < 0 || !strings.Contains(m[:f], text) {
		return Event{}, false
	}
	m = m[f+len("; from=<"):]
	if e.Sender, m, ok = cutAngle(m); !ok {
		return Event{}, false
	}
	if m, ok = strings.CutPrefix(m, " to=<"); !ok {
		return Event{}, false
	}
	if e.Recipient, _, ok = cutAngle(m); !ok || e.Recipient == "" {
		return Event{}, false
	}
	return e, true
}

// cutAngle reads an address up to its closing '>', skipping a quoted
// local part ("a> b"@example.org), and returns it and what follows the
// '>'.
func cutAngle(s string) (addr, rest string, ok bool) {
	i := 0
	if len(s) > 0 && s[0] == '"' {
		i = 1
		for i < len(s) && s[i] != '"' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(s) {
			return "", "", false
		}
	}
	j := strings.IndexByte(s[i:], '>')
	if j < 0 {
		return "", "", false
	}
	return s[:i+j], s[i+j+1:], true
}

// TextOf returns what every Postfix reject of a greylist reply with the
// configured text contains: DefaultText when the text has it (Postgrey's
// and greyd's default texts do), else the text's literal start, before
// its first placeholder (%s, %r), without a status code of its own
// ("4.7.1 ", which Postfix moves to the front of its reply).
func TextOf(text string) string {
	if strings.Contains(text, DefaultText) {
		return DefaultText
	}
	if n := shape(text, "d.d"); n > 0 {
		i := n
		for i < len(text) && (isDigit(text[i]) || text[i] == '.') {
			i++
		}
		if i < len(text) && text[i] == ' ' {
			text = text[i+1:]
		}
	}
	for i := 0; i+1 < len(text); i++ {
		if text[i] == '%' && (text[i+1] == 's' || text[i+1] == 'r') {
			text = text[:i]
			break
		}
	}
	if text = strings.TrimSpace(text); text == "" {
		return DefaultText
	}
	return text
}
