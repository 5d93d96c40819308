package greylist

import (
	"net/netip"
	"time"

	"greyd/internal/store"
	"greyd/internal/whitelist"
)

// Traps are the greytraps of a configuration (OpenBSD spamd's): recipient
// addresses that only a spammer writes to. A client that is neither
// whitelisted nor auto-whitelisted and writes to one is trapped for For:
// every request of its address is greylisted, its pending triplets are
// forgotten and its auto-whitelist progress is reset. The state lives in
// the store, keyed by the client address (store.StepInput.TrapKey).
type Traps struct {
	Recipients *whitelist.Recipients
	For        time.Duration
}

// trapInput adds the trap inputs of a request from ip to recipient to in,
// when the snapshot has traps: the client address's key (the
// auto-whitelist's, when that is on) and whether the recipient is a trap.
func (s *Snapshot) trapInput(in *store.StepInput, ip netip.Addr, recipient string) {
	t := s.Traps
	if t == nil {
		return
	}
	in.TrapKey = in.ClientKey
	if in.TrapKey == "" {
		in.TrapKey = s.ClientKey(ip)
	}
	in.TrapHit = t.Recipients != nil && t.Recipients.Match(recipient)
	in.TrapFor = int64(t.For / time.Second)
}

// trapReason is the reason of a greylisted step that a trap decided, or
// NoReason.
func trapReason(r *store.StepResult) Reason {
	switch {
	case r.TrapSet:
		return Greytrap
	case r.Trapped:
		return Trapped
	}
	return NoReason
}

// TrapCounts returns how many requests set a trap and how many a trap
// held, since the engine started (metrics).
func (e *Engine) TrapCounts() (set, held uint64) {
	return e.decided[Greylist][Greytrap].Load(), e.decided[Greylist][Trapped].Load()
}
