// Package greylist decides policy requests the way Postgrey 1.37 does:
// client whitelist, recipient whitelist, client auto-whitelist, then the
// client-network/sender/recipient triplet. Decide is a pure function of the
// request, an immutable Snapshot of the configuration, the store and the
// time; Engine adds what must live between requests (the snapshot in use,
// the per-message header dedupe), the store timeout, the answer to a
// store failure (fail open or closed) and the log line of each decision.
// For the admin side it also keeps the runtime whitelist current
// (runtime.go), explains a decision without writing anything (explain.go),
// and counts and times decisions for metrics (observe.go).
package greylist

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
	"time"

	"greyd/internal/identity"
	"greyd/internal/signals"
	"greyd/internal/tarpit"
	"greyd/internal/whitelist"
)

// Settings are the greylisting parameters of one configuration.
type Settings struct {
	Delay, RetryWindow, MaxAge time.Duration
	LookupByHost               bool
	IPv4Prefix, IPv6Prefix     int
	Action                     string // e.g. "DEFER_IF_PERMIT"
	Text                       string // %s seconds left, %r recipient domain
	XGreylistHeader            bool
	HeaderText                 string // %t delay, %v version, %h host, %d date
	Hostname                   string
	Version                    string
	AutoWhitelistClients       int // 0 disables
	// DeferOnStoreError answers DEFER_IF_PERMIT StoreErrorText instead
	// of DUNNO when the store fails (fail closed instead of open).
	DeferOnStoreError bool
	StoreErrorText    string
	// UseTestTime honours Postgrey's non-standard policy_test_time
	// attribute as the request's clock (its test suite and policy-test
	// replay tool rely on it): greylist { policy_test_time = true }.
	UseTestTime bool
	// DryRun decides and learns as usual but always answers DUNNO
	// (greylist { dry_run = true }): a site watches what greyd would do
	// before it defers anything. Greylisted requests are logged with
	// " (dry run)" and counted with their real action.
	DryRun bool
	// LogDecisions selects which decision lines are written (log {
	// decisions = ... }); warnings and errors are always written.
	LogDecisions DecisionLog
}

// DecisionLog selects the decision lines the engine writes. At tens of
// thousands of requests a second one line per request is more than
// journald keeps (its default rate limit drops lines beyond 10,000 per
// 30 s per service, silently): a busy site logs only what delays mail.
type DecisionLog uint8

// Decision log settings; the zero value logs every decision, as Postgrey.
const (
	LogAllDecisions      DecisionLog = iota // "all"
	LogGreylistDecisions                    // "greylist": only greylisted requests
	LogNoDecisions                          // "none"
)

// ParseDecisionLog maps the configuration's log.decisions ("all",
// "greylist", "none"; validated by package config) to a DecisionLog;
// anything else is "all".
func ParseDecisionLog(s string) DecisionLog {
	switch s {
	case "greylist":
		return LogGreylistDecisions
	case "none":
		return LogNoDecisions
	}
	return LogAllDecisions
}

// Default header text, as Postgrey's with our name.
const DefaultHeaderText = "X-Greylist: delayed %t seconds by greyd-%v at %h; %d"

// Snapshot is one immutable configuration: settings plus compiled
// whitelists. Requests use exactly one snapshot from start to end.
type Snapshot struct {
	Settings
	Clients    *whitelist.Clients
	Recipients *whitelist.Recipients
	// Privacy, when set, turns every stored key into a keyed hash so the
	// database reveals no addresses.
	Privacy *Hasher
	// Identity, when set (lookup_by "auto"), keys verified mail servers by
	// their organisation instead of their network; the network's key is
	// read as well (store.StepInput.AltKey).
	Identity *identity.Matcher
	// Runtime holds the runtime whitelist entries (kept in the store,
	// changed with greyd whitelist add/remove), checked after the files'.
	// Nil: none.
	Runtime *RuntimeWhitelist
	// Selective is selective greylisting (selective.go); nil: every
	// request is greylisted as Postgrey does.
	Selective *Selective
	// Scorer computes scores with the daemon's resolver; the Engine sets
	// it (SetResolver), as it sets Runtime.
	Scorer *signals.Evaluator
	// Traps, when set, are the greytraps (trap.go). Nil: none, and the
	// store reads no trap entry.
	Traps *Traps
	// Tarpit, when set, is the tarpit (tarpit.go) for Selective.TarpitAt;
	// tarpits is the engine's state for it, set as Runtime is.
	Tarpit  *tarpit.Settings
	tarpits *tarpit.Table
}

// RuntimeWhitelist is the compiled runtime whitelist; either list may be
// nil.
type RuntimeWhitelist struct {
	Clients    *whitelist.Clients
	Recipients *whitelist.Recipients
}

// Hasher computes keyed hashes (HMAC-SHA256, truncated to 128 bits, hex)
// of store keys. Unlike Postgrey's unsalted SHA-1 it cannot be reversed by
// hashing every IPv4 address with known senders.
type Hasher struct {
	pool sync.Pool
}

// NewHasher returns a Hasher for secret.
func NewHasher(secret []byte) *Hasher {
	s := append([]byte(nil), secret...)
	h := &Hasher{}
	h.pool.New = func() any { return &hasher{mac: hmac.New(sha256.New, s), sum: make([]byte, 0, sha256.Size)} }
	return h
}

// Append appends the hex hash of key to dst.
func (h *Hasher) Append(dst, key []byte) []byte {
	m := h.pool.Get().(*hasher)
	m.mac.Reset()
	// key is copied before the (interface) Write: passed on as it is, it
	// would make every caller's stack buffer escape to the heap, privacy
	// or not.
	m.buf = append(m.buf[:0], key...)
	m.mac.Write(m.buf)
	m.sum = m.mac.Sum(m.sum[:0])
	dst = hex.AppendEncode(dst, m.sum[:16])
	if cap(m.buf) <= 1024 {
		h.pool.Put(m)
	}
	return dst
}

// hasher is one pooled HMAC with its scratch space.
type hasher struct {
	mac      hash.Hash
	buf, sum []byte
}
