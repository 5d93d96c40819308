package buntdb

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	bunt "github.com/tidwall/buntdb"
)

// Options configure Open. The zero value is usable.
type Options struct {
	// Sync says when writes reach the disk. The zero value is
	// SyncEverySecond.
	Sync SyncPolicy

	// Logger receives the loud lines about corrupt or truncated files and
	// background shrink failures. Nil means slog.Default().
	Logger *slog.Logger

	// Now names quarantined files (".corrupt-<UTC time>"). Nil means
	// time.Now. Expiry does not use it: buntdb stamps and sweeps TTLs with
	// its own wall clock, so callers pass a duration, not a deadline.
	Now func() time.Time

	// ShrinkMinSize and ShrinkEvery drive the automatic rewrite of the
	// file (DB.Shrink): every ShrinkEvery the file is rewritten if it is
	// over ShrinkMinSize and twice what the last rewrite left. Zero
	// means DefaultShrinkMinSize, DefaultShrinkEvery.
	ShrinkMinSize int64
	ShrinkEvery   time.Duration
}

// Auto-shrink defaults: a file under 32 MiB is never worth a rewrite, and
// a check is one stat(2).
const (
	DefaultShrinkMinSize = 32 << 20
	DefaultShrinkEvery   = 5 * time.Second
)

// SyncPolicy says how often the database file is fsynced.
type SyncPolicy int

const (
	// SyncEverySecond fsyncs once a second when something was written: a
	// power loss forgets at most a second of triplets, whose senders then
	// get greylisted once more. It is the zero value and the default.
	SyncEverySecond SyncPolicy = iota
	// SyncNever leaves flushing to the kernel.
	SyncNever
	// SyncAlways fsyncs every write while holding buntdb's global lock,
	// so all lookups queue behind the disk: a few thousand writes per
	// second at best.
	SyncAlways
)

// ParseSync parses the configuration strings "never", "everysecond" and
// "always" (any case). The empty string means the default, SyncEverySecond.
func ParseSync(s string) (SyncPolicy, error) {
	switch {
	case s == "", strings.EqualFold(s, "everysecond"):
		return SyncEverySecond, nil
	case strings.EqualFold(s, "never"):
		return SyncNever, nil
	case strings.EqualFold(s, "always"):
		return SyncAlways, nil
	}
	return 0, fmt.Errorf("unknown sync policy %q: want \"never\", \"everysecond\" or \"always\"", s)
}

// String returns the configuration spelling of p.
func (p SyncPolicy) String() string {
	switch p {
	case SyncEverySecond:
		return "everysecond"
	case SyncNever:
		return "never"
	case SyncAlways:
		return "always"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

func (p SyncPolicy) buntdb() (bunt.SyncPolicy, error) {
	switch p {
	case SyncEverySecond:
		return bunt.EverySecond, nil
	case SyncNever:
		return bunt.Never, nil
	case SyncAlways:
		return bunt.Always, nil
	}
	return 0, fmt.Errorf("invalid sync policy %v", p)
}
