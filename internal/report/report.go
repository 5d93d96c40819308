// Package report is greyd's postgreyreport: it reads a mail log (Postfix's
// greylisting rejects and greyd's own decision lines), keeps the triplets
// that were greylisted, has the daemon say what it holds for each (through
// a Lookup: the daemon's store is the only one that knows), selects the
// fatal ones, greylisted and never retried after the delay, and writes
// them in postgreyreport's format, with its options. The command line and
// the control socket are cmd/greyd's.
package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"greyd/internal/normalize"
	"greyd/internal/whitelist"
)

// Triplet is a greylisted client address, sender and recipient, with
// what the log and the daemon say about it.
type Triplet struct {
	Addr netip.Addr
	// Name is the client's name on the last line that named it.
	Name string
	// Sender and Recipient are the parts as greyd keys them: the sender
	// normalised (VERP numbers, +extensions, BATV and SRS undone) and
	// both in lower case; the null sender is "".
	Sender, Recipient string
	// LogSender and LogRecipient are as the last line logged them: what
	// the daemon is asked about.
	LogSender, LogRecipient string
	// Time is the timestamp of the last greylisted attempt, as logged.
	Time string
	// Rejects counts Postfix's reject lines, Decisions greyd's greylist
	// lines: the same attempts when the log has both.
	Rejects, Decisions int
	// PassedInLog: a greyd pass line names the triplet.
	PassedInLog bool
	// Known is what the daemon holds for the triplet (Judge).
	Known []Stored
	// Unjudged says why the daemon could not look the triplet up.
	Unjudged string
	// Fatal: greylisted and never retried after the delay (Judge).
	Fatal bool

	seq int // order of first appearance
}

// Tries is the number of greylisted attempts: the larger of the two
// counts, since a log may have Postfix's lines, greyd's, or both for
// the same attempts.
func (t *Triplet) Tries() int { return max(t.Rejects, t.Decisions) }

// Filter selects the clients a report covers: postgreyreport's
// --match_clients, --skip_clients and --skip_pool.
type Filter struct {
	// Match, if not nil, is the only clients reported on (the entries
	// of -match-clients files, in the client whitelist's format).
	Match *whitelist.Clients
	// Skip is the clients never reported on.
	Skip *whitelist.Clients
	// SkipPool skips IPv4 clients whose name holds the last two numbers
	// of their address (a provider's pool of dial-up addresses).
	SkipPool bool
}

// Keep reports whether the client name[addr] is reported on.
func (f *Filter) Keep(name string, addr netip.Addr) bool {
	if f.Match != nil && !f.Match.MatchName(name) && !f.Match.MatchAddr(addr) {
		return false
	}
	if f.Skip.MatchName(name) || f.Skip.MatchAddr(addr) {
		return false
	}
	if f.SkipPool && addr.Is4() {
		b := addr.As4()
		if strings.Contains(name, strconv.Itoa(int(b[2]))) && strings.Contains(name, strconv.Itoa(int(b[3]))) {
			return false
		}
	}
	return true
}

// MaxLine is the longest line the report reads; longer ones (no Postfix
// or greyd line is) are skipped and counted.
const MaxLine = 64 << 10

// Log is what a mail log says about greylisted triplets.
type Log struct {
	Parser Parser
	Filter Filter

	triplets map[string]*Triplet
	passed   map[string]bool
	filtered map[string]bool
	// Lines counts the lines read, Long those skipped for their length.
	Lines, Long int
}

// NewLog returns an empty Log that reads lines with p and keeps the
// clients f keeps.
func NewLog(p Parser, f Filter) *Log {
	return &Log{Parser: p, Filter: f, triplets: map[string]*Triplet{}, passed: map[string]bool{}, filtered: map[string]bool{}}
}

// key identifies a triplet as greyd's key does, per client address.
func key(addr netip.Addr, sender, recipient string) string {
	return addr.String() + "\x00" + sender + "\x00" + recipient
}

// Add records an event.
func (l *Log) Add(e Event) {
	sender := string(normalize.AppendSender(nil, e.Sender))
	rcpt := strings.ToLower(e.Recipient)
	k := key(e.Addr, sender, rcpt)
	if e.Kind == Pass {
		l.passed[k] = true
		if t := l.triplets[k]; t != nil {
			t.PassedInLog = true
		}
		return
	}
	if !l.Filter.Keep(e.Name, e.Addr) {
		l.filtered[k] = true
		return
	}
	t := l.triplets[k]
	if t == nil {
		t = &Triplet{Addr: e.Addr, Sender: sender, Recipient: rcpt, seq: len(l.triplets), PassedInLog: l.passed[k]}
		l.triplets[k] = t
	}
	if e.Name != "" {
		t.Name = e.Name
	}
	t.LogSender, t.LogRecipient, t.Time = e.Sender, e.Recipient, e.Time
	if e.Kind == Reject {
		t.Rejects++
	} else {
		t.Decisions++
	}
}

// Read reads a mail log, plain or gzip-compressed, line by line.
func (l *Log) Read(r io.Reader) error {
	br := bufio.NewReaderSize(r, MaxLine)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("reading gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, MaxLine)
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			l.Lines++
			l.Long++
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			line = nil
		} else if len(line) > 0 {
			l.Lines++
			l.line(line)
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}

var (
	markReject = []byte("reject: ")
	markAction = []byte("action=")
)

// line parses one line; most lines of a mail log are neither kind, and
// cost no allocation.
func (l *Log) line(b []byte) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if !bytes.Contains(b, markReject) && !bytes.Contains(b, markAction) {
		return
	}
	if e, ok := l.Parser.Parse(string(b)); ok {
		l.Add(e)
	}
}

// Triplets returns the greylisted triplets (the filters passed), sorted
// by client address, then in the order the log first named them.
func (l *Log) Triplets() []*Triplet {
	ts := make([]*Triplet, 0, len(l.triplets))
	for _, t := range l.triplets {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b *Triplet) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	return ts
}

// Stored is what the daemon holds under one key of a triplet.
type Stored struct {
	Found       bool
	First, Last int64 // Unix seconds
}

// Query names a triplet as the log did, for the daemon, which builds
// its keys from it as for a request.
type Query struct {
	Addr, Name, Sender, Recipient string
}

// Answer is what the daemon holds for one triplet: the entry of its key
// and, under lookup_by "auto", that of its network's key read alongside.
// Err says why it could not look the triplet up.
type Answer struct {
	Keys []Stored
	Err  string
}

// Lookup asks the daemon about triplets; it answers one Answer per query,
// in order.
type Lookup func(ctx context.Context, qs []Query) ([]Answer, error)

// Judge asks lookup about every greylisted triplet that no pass line of
// the log covers, batch at a time, and marks the fatal ones: those that
// no key of the daemon shows as retried after delay seconds, as
// postgreyreport's is_fatal_triplet (a triplet the daemon no longer holds
// is fatal: it expired unfinished).
func (l *Log) Judge(ctx context.Context, lookup Lookup, delay int64, batch int) error {
	var todo []*Triplet
	for _, t := range l.Triplets() {
		if !t.PassedInLog {
			todo = append(todo, t)
		}
	}
	for len(todo) > 0 {
		n := min(len(todo), max(batch, 1))
		qs := make([]Query, n)
		for i, t := range todo[:n] {
			name := t.Name
			if name == "" {
				name = "unknown"
			}
			qs[i] = Query{Addr: t.Addr.String(), Name: name, Sender: t.LogSender, Recipient: t.LogRecipient}
		}
		as, err := lookup(ctx, qs)
		if err != nil {
			return err
		}
		if len(as) != n {
			return fmt.Errorf("the daemon answered %d triplets for %d", len(as), n)
		}
		for i, t := range todo[:n] {
			t.Known, t.Unjudged = as[i].Keys, as[i].Err
			t.Fatal = as[i].Err == "" && Fatal(as[i].Keys, delay)
		}
		todo = todo[n:]
	}
	return nil
}

// Fatal reports whether a triplet with these stored entries was never
// retried after delay seconds: no entry has a last-seen time delay or
// more after its first-seen time.
func Fatal(keys []Stored, delay int64) bool {
	for _, k := range keys {
		if k.Found && k.Last-k.First >= delay {
			return false
		}
	}
	return true
}

// Summary counts triplets.
type Summary struct {
	// Greylisted triplets, and the greylisted attempts they made.
	Greylisted, Attempts int
	// Passed were retried and passed (by the daemon's entries or a pass
	// line of the log); Fatal never were.
	Passed, Fatal int
	// Unjudged could not be looked up (the daemon said why).
	Unjudged int
	// Filtered triplets were left out by the client filters.
	Filtered int
	// Long lines were skipped.
	Long int
}

// Summary counts the triplets after Judge.
func (l *Log) Summary() Summary {
	s := Summary{Greylisted: len(l.triplets), Long: l.Long}
	for _, t := range l.triplets {
		s.Attempts += t.Tries()
		switch {
		case t.Unjudged != "":
			s.Unjudged++
		case t.Fatal:
			s.Fatal++
		default:
			s.Passed++
		}
	}
	for k := range l.filtered {
		if l.triplets[k] == nil {
			s.Filtered++
		}
	}
	return s
}

// String is the summary line.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d triplets greylisted (%d attempts): %d retried and passed, %d never retried", s.Greylisted, s.Attempts, s.Passed, s.Fatal)
	if s.Unjudged > 0 {
		fmt.Fprintf(&b, ", %d not looked up", s.Unjudged)
	}
	if s.Filtered > 0 {
		fmt.Fprintf(&b, "; %d left out by the client filters", s.Filtered)
	}
	if s.Long > 0 {
		fmt.Fprintf(&b, "; %d lines longer than %d bytes skipped", s.Long, MaxLine)
	}
	return b.String()
}

// Fatal returns the fatal triplets in report order.
func (l *Log) Fatal() []*Triplet {
	var out []*Triplet
	for _, t := range l.Triplets() {
		if t.Fatal {
			out = append(out, t)
		}
	}
	return out
}
