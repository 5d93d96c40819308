// Package tarpit holds what one greyd host remembers of the tarpit
// (taRgrey's: a client of the middle class waits at RCPT instead of
// being greylisted, and its DATA proves it stayed): the tarpits issued
// within the last duration, which max_concurrent counts per host; the
// triplets of each tarpitted session, since Postfix names no recipient at
// DATA when a message has several; and whether DATA seems not to be
// asked at all. The marks that must survive a restart, or be shared by
// several MX hosts, live in the store; the decision is internal/greylist's.
package tarpit

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"greyd/internal/store"
)

// Settings is the compiled tarpit block.
type Settings struct {
	Duration      time.Duration
	MaxConcurrent int
	AbandonDelay  time.Duration
}

const (
	// SessionMargin is how long after its wait a tarpitted session may
	// still reach DATA, in seconds: Postfix's smtpd waits 300 s for each
	// command.
	SessionMargin = 300
	// MaxSessions bounds the sessions remembered; the oldest goes first.
	MaxSessions = 4096
	// MaxSessionTriplets bounds one session's triplets: Postfix's
	// smtpd_recipient_limit is 1000.
	MaxSessionTriplets = 1000
	// WarnAfter tarpitted sessions in a row that never reached DATA make
	// greyd warn that DATA is probably not asked.
	WarnAfter = 20
)

// Keys are the store keys of one triplet of a tarpitted session.
type Keys struct{ Triplet, Alt string }

// session is a session tarpitted on this host.
type session struct {
	at   int64 // Unix seconds of the tarpit
	keys []Keys
}

// Table is the tarpit's state on one host. It outlives reloads: the
// settings come with each call. Times are Unix seconds.
type Table struct {
	mu       sync.Mutex
	started  int64   // when the engine started
	issued   []int64 // recent tarpits, oldest first
	sessions map[string]*session
	missed   int  // tarpitted sessions in a row that never reached DATA
	warned   bool // the warning was logged since the last DATA
	warn     func(msg string)

	capped atomic.Uint64
}

// New returns an empty table for an engine started at started; warn logs
// the warning about DATA not being asked.
func New(started int64, warn func(msg string)) *Table {
	return &Table{started: started, sessions: map[string]*session{}, warn: warn}
}

// prune forgets tarpits older than the duration and sessions past their
// margin; a session forgotten without DATA counts as missed. It returns
// the warning to log, if this made missed reach WarnAfter. The caller
// holds mu.
func (t *Table) prune(now int64, s *Settings) string {
	dur := int64(s.Duration / time.Second)
	i := 0
	for i < len(t.issued) && t.issued[i] <= now-dur {
		i++
	}
	t.issued = append(t.issued[:0], t.issued[i:]...)
	for id, ss := range t.sessions {
		if ss.at+dur+SessionMargin < now {
			delete(t.sessions, id)
			t.missed++
		}
	}
	if t.missed >= WarnAfter && !t.warned {
		t.warned = true
		return "the last " + strconv.Itoa(t.missed) + " tarpitted sessions never reached DATA: " +
			"Postfix's smtpd_data_restrictions probably lacks check_policy_service for greyd, " +
			"and every tarpitted client looks as if it had left (greylisted with tarpit.abandon_delay)"
	}
	return ""
}

// Reserve takes one of max_concurrent's places for a tarpit at now;
// false: all are taken.
func (t *Table) Reserve(now int64, s *Settings) bool {
	t.mu.Lock()
	msg := t.prune(now, s)
	ok := len(t.issued) < s.MaxConcurrent
	if ok {
		t.issued = append(t.issued, now)
	}
	t.mu.Unlock()
	t.warnOnce(msg)
	return ok
}

func (t *Table) warnOnce(msg string) {
	if msg != "" && t.warn != nil {
		t.warn(msg)
	}
}

// Release gives back a place Reserve took for a tarpit that was not
// issued after all.
func (t *Table) Release() {
	t.mu.Lock()
	if n := len(t.issued); n > 0 {
		t.issued = t.issued[:n-1]
	}
	t.mu.Unlock()
}

// Begin remembers session id, tarpitted at now, with its first triplet.
func (t *Table) Begin(id string, now int64, k Keys) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.sessions) >= MaxSessions {
		oldest, at := "", int64(1<<62)
		for sid, ss := range t.sessions {
			if ss.at < at {
				oldest, at = sid, ss.at
			}
		}
		delete(t.sessions, oldest)
	}
	t.sessions[id] = &session{at: now, keys: []Keys{k}}
}

// Add records one more triplet of a tarpitted session.
func (t *Table) Add(id string, k Keys) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ss := t.sessions[id]
	if ss != nil && len(ss.keys) < MaxSessionTriplets && !slices.Contains(ss.keys, k) {
		ss.keys = append(ss.keys, k)
	}
}

// Take returns the triplets of session id, forgetting the session unless
// peek; nil if it was not tarpitted here.
func (t *Table) Take(id string, peek bool) []Keys {
	t.mu.Lock()
	defer t.mu.Unlock()
	ss := t.sessions[id]
	if ss == nil {
		return nil
	}
	if !peek {
		delete(t.sessions, id)
	}
	return slices.Clone(ss.keys)
}

// Reached records that a tarpitted session reached DATA: DATA is asked.
func (t *Table) Reached() {
	t.mu.Lock()
	t.missed, t.warned = 0, false
	t.mu.Unlock()
}

// Recent reports whether now is within a session's life of the engine's
// start: a DATA then may be of a session tarpitted before a restart.
func (t *Table) Recent(now int64, s *Settings) bool {
	return now-t.started <= int64(s.Duration/time.Second)+SessionMargin
}

// Capped counts a request of class tarpit greylisted instead
// (max_concurrent, stress).
func (t *Table) Capped() { t.capped.Add(1) }

// CappedCount is how many times Capped was called.
func (t *Table) CappedCount() uint64 { return t.capped.Load() }

// Status is the tarpit's state on this host (greyd explain).
type Status struct {
	// Active is the number of tarpits issued within the last duration
	// (what max_concurrent counts); Sessions those still waiting for
	// their DATA.
	Active, Sessions int
	// Missed is the number of tarpitted sessions in a row that never
	// reached DATA; Warned says the warning about it was logged.
	Missed int
	Warned bool
}

// Status returns the state at now.
func (t *Table) Status(now int64, s *Settings) Status {
	t.mu.Lock()
	msg := t.prune(now, s)
	st := Status{Active: len(t.issued), Sessions: len(t.sessions), Missed: t.missed, Warned: t.warned}
	t.mu.Unlock()
	t.warnOnce(msg)
	return st
}

// SessionOf is the store's session number of Postfix's instance
// attribute: FNV-1a reduced to what a stored number holds; -1 (never a
// mark's) without one.
func SessionOf(instance string) int64 {
	if instance == "" {
		return -1
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(instance); i++ {
		h ^= uint64(instance[i])
		h *= 1099511628211
	}
	return int64(h & store.MaxValue)
}
