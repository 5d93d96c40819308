// Package store persists greylisting state: triplets and auto-whitelist
// client entries. The Store interface is deliberately narrow so that a
// shared networked backend (several MX hosts, one state) can implement it
// next to the local buntdb file.
package store

import (
	"context"
	"errors"
	"time"
)

// Triplet is what greyd remembers about one client-network/sender/recipient
// triplet, in Unix seconds, as Postgrey's "first,last" value.
type Triplet struct {
	First int64 // first seen (reset when an unpassed entry goes stale)
	Last  int64 // last seen
}

// Client is an auto-whitelist entry for one exact client IP, as Postgrey's
// "count,last" value.
type Client struct {
	Count int64 // triplets that completed greylisting, at most one per hour
	Last  int64 // last time Count changed or the entry was refreshed
}

// Store is the persistence seam used by the decision code. Keys are opaque
// strings built by the caller; triplet and client keys live in separate
// namespaces. Implementations must be safe for concurrent use.
//
// A missing or expired entry is reported as found == false with a nil error;
// an error always means the backend failed, and callers fail open.
type Store interface {
	Triplet(ctx context.Context, key string) (t Triplet, found bool, err error)
	PutTriplet(ctx context.Context, key string, t Triplet, ttl time.Duration) error
	Client(ctx context.Context, key string) (c Client, found bool, err error)
	PutClient(ctx context.Context, key string, c Client, ttl time.Duration) error
	Close() error
}

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

// ErrLocked is returned by Open when another greyd process uses the file.
var ErrLocked = errors.New("locked by another greyd process")
