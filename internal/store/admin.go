package store

import (
	"context"
	"errors"
)

// Admin is what the control socket needs from a backend besides Step:
// listing, deleting and importing entries, counting them, and the runtime
// whitelist. A backend implements it next to Store; none of it is on the
// request path, but all of it runs while requests are served, so no
// method may hold up Step for long (a listing of a million entries walks
// the state in small pieces). Implementations must be safe for concurrent
// use.
type Admin interface {
	// Scan calls fn with every live entry of the given kinds (nil: all)
	// until fn returns false, in no particular order. An entry written
	// or deleted while the scan runs may or may not be seen. fn must not
	// call other methods of the store.
	Scan(ctx context.Context, kinds []Kind, fn func(Entry) bool) error

	// Delete removes the entries of kind with the given keys and
	// returns how many existed.
	Delete(ctx context.Context, kind Kind, keys []string) (int, error)

	// Import stores entries, each merged with the entry already stored
	// under its key by Merge (delay is the greylisting delay that tells a
	// passed triplet from a pending one). Entries already past Expires
	// are skipped and counted in neither result. imported counts entries
	// written to a free key, merged those combined with a stored one.
	// An entry with a number CheckEntry refuses fails the whole call with
	// ErrRange before anything is written.
	Import(ctx context.Context, entries []Entry, delay int64) (imported, merged int, err error)

	// Counts returns the number of triplet and client entries, those
	// expired but not yet removed included. It must not scan: metrics
	// call it at every scrape, and a scrape costs the same with a million
	// entries as with none.
	Counts() (triplets, clients int)

	// Whitelist returns the runtime whitelist entries that have not
	// expired, in no particular order.
	Whitelist(ctx context.Context) ([]WhitelistEntry, error)
	// AddWhitelist stores e, replacing an entry of the same kind and
	// value (a new comment or expiry); it reports whether one existed.
	AddWhitelist(ctx context.Context, e WhitelistEntry) (replaced bool, err error)
	// RemoveWhitelist removes the entry of kind with value and reports
	// whether there was one.
	RemoveWhitelist(ctx context.Context, kind WhitelistKind, value string) (bool, error)
	// WhitelistVersion changes whenever the runtime whitelist changes,
	// from this process or from another host sharing the state, so that
	// a daemon polling it notices edits made elsewhere. Entries expiring
	// need not change it: readers drop expired entries themselves.
	WhitelistVersion(ctx context.Context) (int64, error)
}

// Kind is the kind of a stored entry.
type Kind string

// Kinds of entries.
const (
	KindTriplet Kind = "triplet" // A = first seen, B = last seen
	KindClient  Kind = "client"  // A = count, B = last
	KindTrap    Kind = "trap"    // A = since, B = until
	KindTarpit  Kind = "tarpit"  // A = since, B = session
)

// Kinds lists every kind, in the order listings scan them.
var Kinds = []Kind{KindTriplet, KindClient, KindTrap, KindTarpit}

// ParseKind parses "triplet", "client", "trap" or "tarpit".
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindTriplet, KindClient, KindTrap, KindTarpit:
		return k, nil
	}
	return "", errors.New(`kind must be "triplet", "client", "trap" or "tarpit"`)
}

// Entry is one stored entry with its deadline: the unit of list, export
// and import. Key is the key as the decision built it (hashed under
// privacy); times are Unix seconds.
type Entry struct {
	Kind Kind
	Key  string
	// First is when a triplet was first seen (a trap or tarpit mark
	// set), Count how many triplets a client has passed (the other is
	// 0); Last is when a triplet or client was last seen, Until when a
	// trap stops holding its client, Session the session of a tarpit
	// mark.
	First, Count, Last, Until, Session int64
	// Expires is when the backend forgets the entry; 0: never.
	Expires int64
}

// Triplet returns e's value as a triplet.
func (e Entry) Triplet() Triplet { return Triplet{First: e.First, Last: e.Last} }

// Client returns e's value as an auto-whitelist entry.
func (e Entry) Client() Client { return Client{Count: e.Count, Last: e.Last} }

// Trap returns e's value as a trap.
func (e Entry) Trap() Trap { return Trap{Since: e.First, Until: e.Until} }

// Tarpit returns e's value as a tarpit mark.
func (e Entry) Tarpit() Tarpit { return Tarpit{Since: e.First, Session: e.Session} }

// Stored returns the two numbers a backend stores for e, in their stored
// order: first and last for a triplet, count and last for a client,
// since and until for a trap.
func (e Entry) Stored() (int64, int64) {
	switch e.Kind {
	case KindClient:
		return e.Count, e.Last
	case KindTrap:
		return e.First, e.Until
	case KindTarpit:
		return e.First, e.Session
	}
	return e.First, e.Last
}

// StoredEntry is the entry of kind and key whose stored numbers are a and
// b (Stored's inverse).
func StoredEntry(kind Kind, key string, a, b, expires int64) Entry {
	e := Entry{Kind: kind, Key: key, Expires: expires}
	switch kind {
	case KindClient:
		e.Count, e.Last = a, b
	case KindTrap:
		e.First, e.Until = a, b
	case KindTarpit:
		e.First, e.Session = a, b
	default:
		e.First, e.Last = a, b
	}
	return e
}

// Merge combines two entries of the same kind and key, old stored and
// imported new, so that an import never makes a sender wait again:
//   - triplets: a passed one (last - first >= delay) wins over a pending
//     one; of two passed or two pending ones, the result has the earliest
//     first-seen and the latest last-seen time (two
//     pending entries merged this way may become passed, which is right:
//     the sender was first seen that long ago);
//   - clients: the higher count and the latest last time;
//   - traps: the earliest since and the latest until (a trap imported
//     never shortens one held here);
//   - tarpit marks: the stored one (its session may still reach DATA
//     here).
//
// The result expires at the later deadline of the two (0, never, wins):
// the lookup rules enforce max_age and the retry window by themselves, so
// keeping an entry a little longer than needed costs nothing, and
// forgetting it early would cost a sender a delay. Pure, for every
// backend.
func Merge(old, new Entry, delay int64) Entry {
	out := old
	switch old.Kind {
	case KindTriplet:
		op, np := old.Last-old.First >= delay, new.Last-new.First >= delay
		switch {
		case np && !op:
			out.First, out.Last = new.First, new.Last
		case op && !np:
		default:
			out.First, out.Last = min(old.First, new.First), max(old.Last, new.Last)
		}
	case KindClient:
		out.Count, out.Last = max(old.Count, new.Count), max(old.Last, new.Last)
	case KindTrap:
		out.First, out.Until = min(old.First, new.First), max(old.Until, new.Until)
	}
	if old.Expires == 0 || new.Expires == 0 {
		out.Expires = 0
	} else {
		out.Expires = max(old.Expires, new.Expires)
	}
	return out
}

// WhitelistKind names a runtime whitelist: of clients or of recipients.
type WhitelistKind string

// Runtime whitelists.
const (
	WhitelistClient    WhitelistKind = "client"
	WhitelistRecipient WhitelistKind = "recipient"
)

// ParseWhitelistKind parses "client" or "recipient".
func ParseWhitelistKind(s string) (WhitelistKind, error) {
	switch l := WhitelistKind(s); l {
	case WhitelistClient, WhitelistRecipient:
		return l, nil
	}
	return "", errors.New(`whitelist must be "client" or "recipient"`)
}

// WhitelistEntry is one runtime whitelist entry (greyd whitelist add).
// Value is a line as a Postgrey whitelist file would hold it; times are
// Unix seconds.
type WhitelistEntry struct {
	Kind    WhitelistKind
	Value   string
	Comment string
	Added   int64
	Expires int64 // 0: never
}

// Live reports whether e has not expired at now.
func (e WhitelistEntry) Live(now int64) bool { return e.Expires == 0 || e.Expires > now }
