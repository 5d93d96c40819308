package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Tarpit is the tarpit block (taRgrey's): a client whose score lies from
// selective.tarpit_at up to greylist_at is made to wait Duration at RCPT
// (Postfix's SLEEP action) instead of being greylisted; a client that
// waits is delivered in the same session.
//
//	tarpit {
//	  duration       = "65s"  # MinTarpitDuration..MaxTarpitDuration
//	  max_concurrent = 30     # tarpits issued within the last duration; beyond: greylisted
//	  abandon_delay  = "30m"  # greylisting delay of a client that left during its wait
//	}
type Tarpit struct {
	Duration      time.Duration
	MaxConcurrent int
	AbandonDelay  time.Duration
}

// Tarpit defaults and bounds. Postfix's smtp client waits 300 s for an
// RCPT reply, and the policy client gives up after
// smtpd_policy_service_timeout (100 s) of its own; SLEEP is Postfix's,
// after the policy reply, so only the SMTP timeout bounds it: 240 s
// leaves a minute's margin.
const (
	DefaultTarpitDuration      = 65 * time.Second
	MinTarpitDuration          = time.Second
	MaxTarpitDuration          = 240 * time.Second
	DefaultTarpitMaxConcurrent = 30
	DefaultAbandonDelay        = 30 * time.Minute
)

type rawTarpit struct {
	DefRange           hcl.Range
	Duration           string    `hcl:"duration,optional"`
	DurationRange      hcl.Range `hcl:"duration,attr_value_range"`
	MaxConcurrent      int       `hcl:"max_concurrent,optional"`
	MaxConcurrentRange hcl.Range `hcl:"max_concurrent,attr_value_range"`
	AbandonDelay       string    `hcl:"abandon_delay,optional"`
	AbandonDelayRange  hcl.Range `hcl:"abandon_delay,attr_value_range"`
}

// newRawTarpit is a tarpit block with its defaults, the first time a
// file has one.
func newRawTarpit(def hcl.Range) *rawTarpit {
	return &rawTarpit{DefRange: def, Duration: FormatDuration(DefaultTarpitDuration),
		MaxConcurrent: DefaultTarpitMaxConcurrent, AbandonDelay: FormatDuration(DefaultAbandonDelay)}
}

// tarpit checks a tarpit block; retry is the greylisting retry window,
// which an abandoned client's wait must fit in.
func (v *validator) tarpit(rt *rawTarpit, retry time.Duration) *Tarpit {
	t := &Tarpit{}
	n := len(v.ps)
	t.Duration = v.seconds("tarpit.duration", rt.Duration, rt.DurationRange, "s", "", MinTarpitDuration)
	if len(v.ps) == n && t.Duration > MaxTarpitDuration {
		v.errorf(rt.DurationRange, "Value out of range",
			"tarpit.duration must be at most %s (a sending MTA waits 300 s for the RCPT reply), got %q", FormatDuration(MaxTarpitDuration), rt.Duration)
	}
	t.MaxConcurrent = v.intRange("tarpit.max_concurrent", rt.MaxConcurrent, rt.MaxConcurrentRange, 1, 1<<31-1)
	n = len(v.ps)
	t.AbandonDelay = v.seconds("tarpit.abandon_delay", rt.AbandonDelay, rt.AbandonDelayRange, "m", "", time.Second)
	if len(v.ps) == n && retry > 0 && t.AbandonDelay >= retry {
		v.errorf(rt.AbandonDelayRange, "Value out of range",
			"tarpit.abandon_delay must be shorter than greylist.retry_window (%s), or a client that left during its tarpit could never pass; got %q",
			FormatDuration(retry), rt.AbandonDelay)
	}
	return t
}
