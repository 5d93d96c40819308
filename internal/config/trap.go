package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Trap is the greytrap block: recipient addresses that only a spammer
// writes to (scraped from web pages, never used for mail), and how long
// a client that writes to one is greylisted whatever it retries.
//
//	trap {
//	  recipients = ["trap_recipients"]  # files in whitelist_recipients syntax
//	  duration   = "24h"                # at most MaxTrapDuration
//	}
type Trap struct {
	Recipients []string // absolute paths; reloaded like the whitelists
	Duration   time.Duration
}

// Trap defaults and bounds. A trap holds a client for a day, as OpenBSD
// spamd; longer than a month and a compromised host cleaned up since
// would still be held.
const (
	DefaultTrapDuration = 24 * time.Hour
	MaxTrapDuration     = 30 * Day
	DefaultTrapFile     = "trap_recipients"
)

type rawTrap struct {
	DefRange        hcl.Range
	Recipients      []string  `hcl:"recipients,optional"`
	RecipientsRange hcl.Range `hcl:"recipients,attr_value_range"`
	Duration        string    `hcl:"duration,optional"`
	DurationRange   hcl.Range `hcl:"duration,attr_value_range"`
}

// newRawTrap is a trap block with its defaults, the first time a file
// has one.
func newRawTrap(def hcl.Range) *rawTrap {
	return &rawTrap{DefRange: def, Recipients: []string{DefaultTrapFile}, Duration: FormatDuration(DefaultTrapDuration)}
}

// trap checks a trap block. The files are read (and their entries
// checked, with file:line) where the whitelists are: package reload.
func (v *validator) trap(rt *rawTrap) *Trap {
	t := &Trap{Recipients: v.paths("trap.recipients", rt.Recipients, rt.RecipientsRange)}
	if len(rt.Recipients) == 0 {
		v.errorf(rt.RecipientsRange, "Invalid value", "trap.recipients must name at least one file (in whitelist_recipients syntax); to turn traps off, remove the trap block")
	}
	n := len(v.ps)
	t.Duration = v.seconds("trap.duration", rt.Duration, rt.DurationRange, "h", "", time.Second)
	if len(v.ps) == n && t.Duration > MaxTrapDuration {
		v.errorf(rt.DurationRange, "Value out of range", "trap.duration must be at most %s, got %q", FormatDuration(MaxTrapDuration), rt.Duration)
	}
	return t
}
