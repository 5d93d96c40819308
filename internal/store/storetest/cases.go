package storetest

import (
	"greyd/internal/store"
)

func trip(first, last int64) *store.Triplet  { return &store.Triplet{First: first, Last: last} }
func client(count, last int64) *store.Client { return &store.Client{Count: count, Last: last} }

var (
	none       = &store.Triplet{}
	noClient   = &store.Client{}
	greylisted = store.Greylisted
	firstPass  = store.FirstPass
	passed     = store.Passed
	awl        = store.AutoWhitelisted
)

// passes returns the steps that take triplet key k of client c through
// greylisting: first sight at at, first pass Delay later.
func passes(c, k string, at int64) []Step {
	return []Step{
		{At: at, Client: c, Triplet: k, Want: Want{Outcome: greylisted, First: at, Missing: Delay, New: true}},
		{At: at + Delay, Client: c, Triplet: k, Want: Want{Outcome: firstPass, First: at, Waited: Delay}},
	}
}

func concat(parts ...[]Step) []Step {
	var all []Step
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// Cases are the transitions every backend must get right: Postgrey 1.37's
// rules (reference section 2), max_age at lookup, what is written and
// what is not, the auto-whitelist, the second key of lookup_by "auto",
// and dry runs.
var Cases = []Case{
	{"new triplet is greylisted", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, First: 0, Missing: Delay, New: true, Triplet: none}},
	}},
	{"early retry keeps first seen and is not new", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: 100, Triplet: "t", Want: Want{Outcome: greylisted, Missing: 200, Triplet: trip(0, 0)}},
		// An early retry's last-seen time is never written.
		{At: 299, Triplet: "t", Want: Want{Outcome: greylisted, Missing: 1, Triplet: trip(0, 0)}},
	}},
	{"delay is inclusive", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: Delay, Triplet: "t", Want: Want{Outcome: firstPass, Waited: Delay, Triplet: trip(0, 0)}},
		{At: Delay + 1, Triplet: "t", Want: Want{Outcome: passed, Triplet: trip(0, Delay)}},
	}},
	{"late first retry passes with its real wait", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: 5000, Triplet: "t", Want: Want{Outcome: firstPass, Waited: 5000}},
		{At: 6000, Triplet: "t", Want: Want{Outcome: passed, Triplet: trip(0, 5000)}},
	}},
	{"retry window is strict", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: RetryWindow, Triplet: "t", Want: Want{Outcome: firstPass, Waited: RetryWindow}},
	}},
	{"stale unfinished entry starts over", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: RetryWindow + 1, Triplet: "t", Want: Want{Outcome: greylisted, First: RetryWindow + 1, Missing: Delay, New: true, Triplet: trip(0, 0)}},
		{At: RetryWindow + 1 + Delay, Triplet: "t", Want: Want{Outcome: firstPass, First: RetryWindow + 1, Waited: Delay}},
	}},
	{"passed triplet refreshed at most once a minute", concat(passes("", "t", 0), []Step{
		{At: 400, Triplet: "t", Want: Want{Outcome: passed, Triplet: trip(0, Delay)}},
		{At: 430, Triplet: "t", Want: Want{Outcome: passed, Triplet: trip(0, 400)}},
		{At: 459, Triplet: "t", Want: Want{Outcome: passed, Triplet: trip(0, 400)}},
		{At: 460, Triplet: "t", Want: Want{Outcome: passed, Triplet: trip(0, 400)}},
		{At: 461, Triplet: "t", Want: Want{Outcome: passed, Triplet: trip(0, 460)}},
	})},
	{"max_age is enforced at lookup", concat(passes("", "t", 0), []Step{
		{At: Delay + MaxAge, Triplet: "t", Want: Want{Outcome: passed, Triplet: trip(0, Delay)}},
		{At: 2*Delay + 2*MaxAge + 1, Triplet: "t", Want: Want{Outcome: greylisted, First: 2*Delay + 2*MaxAge + 1, Missing: Delay, New: true, Triplet: none}},
	})},
	{"first seen in the future is corrected", []Step{
		{At: 1000, Triplet: "t", Want: Want{Outcome: greylisted, First: 1000, Missing: Delay, New: true}},
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, First: 0, Missing: Delay, New: true, FutureCorrected: true, Triplet: trip(1000, 1000)}},
		{At: Delay, Triplet: "t", Want: Want{Outcome: firstPass, First: 0, Waited: Delay, Triplet: trip(0, 0)}},
	}},
	// Postgrey resets a first-seen time in the future even on a passed
	// entry, which then goes through greylisting again.
	{"passed triplet first seen in the future starts over", concat(passes("", "t", 5000), []Step{
		{At: 100, Triplet: "t", Want: Want{Outcome: greylisted, First: 100, Missing: Delay, New: true, FutureCorrected: true, Triplet: trip(5000, 5000+Delay)}},
		{At: 101, Triplet: "t", Want: Want{Outcome: greylisted, First: 100, Missing: Delay - 1, Triplet: trip(100, 100)}},
	})},
	{"other delay for the same entry", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: 60, Triplet: "t", Delay: 60, Want: Want{Outcome: firstPass, Waited: 60}},
	}},
	{"client is counted at its triplets' first passes, once an hour", concat(
		passes("c", "t1", 0),
		[]Step{{At: Delay + 1, Client: "c", Triplet: "t1", Want: Want{Outcome: passed, Client: client(1, Delay)}}},
		passes("c", "t2", 1000), // within the hour: not counted
		[]Step{{At: 1000 + Delay + 1, Client: "c", Triplet: "t2", Want: Want{Outcome: passed, First: 1000, Client: client(1, Delay)}}},
		passes("c", "t3", 3600), // an hour after the count: counted
		[]Step{{At: 3600 + Delay + 1, Client: "c", Triplet: "t3", Want: Want{Outcome: passed, First: 3600, Client: client(2, 3600+Delay)}}},
	)},
	{"client reaches the auto-whitelist and passes new triplets", concat(
		passes("c", "t1", 0),
		passes("c", "t2", 4000),
		passes("c", "t3", 8000),
		passes("c", "t4", 12000),
		[]Step{
			{At: 16000, Client: "c", Triplet: "t5", Want: Want{Outcome: greylisted, First: 16000, Missing: Delay, New: true, Client: client(4, 12000+Delay)}},
			{At: 16000 + Delay, Client: "c", Triplet: "t5", Want: Want{Outcome: firstPass, First: 16000, Waited: Delay, NewlyWhitelisted: true}},
			{At: 16400, Client: "c", Triplet: "never-seen", Want: Want{Outcome: awl, First: 16400, Client: client(5, 16000+Delay), Triplet: none}},
			// Keep-alive: at most once an hour.
			{At: 16000 + Delay + 3599, Client: "c", Triplet: "x", Want: Want{Outcome: awl, First: 16000 + Delay + 3599, Client: client(5, 16000+Delay)}},
			{At: 16000 + Delay + 3600, Client: "c", Triplet: "x", Want: Want{Outcome: awl, First: 16000 + Delay + 3600, Client: client(5, 16000+Delay)}},
			{At: 16000 + Delay + 3601, Client: "c", Triplet: "x", Want: Want{Outcome: awl, First: 16000 + Delay + 3601, Client: client(6, 16000+Delay+3600)}},
		},
	)},
	{"auto-whitelist threshold is a parameter", concat(
		[]Step{
			{At: 0, Client: "c", Triplet: "t1", AWL: 1, Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
			{At: Delay, Client: "c", Triplet: "t1", AWL: 1, Want: Want{Outcome: firstPass, Waited: Delay, NewlyWhitelisted: true}},
			{At: Delay + 1, Client: "c", Triplet: "t2", AWL: 1, Want: Want{Outcome: awl, First: Delay + 1, Client: client(1, Delay)}},
			// With a higher threshold the same entry is no longer enough.
			{At: Delay + 2, Client: "c", Triplet: "t2", AWL: 2, Want: Want{Outcome: greylisted, First: Delay + 2, Missing: Delay, New: true, Client: client(1, Delay)}},
		},
	)},
	{"auto-whitelist entry expires after max_age", concat(
		[]Step{
			{At: 0, Client: "c", Triplet: "t1", AWL: 1, Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
			{At: Delay, Client: "c", Triplet: "t1", AWL: 1, Want: Want{Outcome: firstPass, Waited: Delay, NewlyWhitelisted: true}},
			{At: Delay + MaxAge, Client: "c", Triplet: "t2", AWL: 1, Want: Want{Outcome: awl, First: Delay + MaxAge, Client: client(1, Delay)}},
			{At: 2*Delay + 2*MaxAge + 2, Client: "c", Triplet: "t3", AWL: 1, Want: Want{Outcome: greylisted, First: 2*Delay + 2*MaxAge + 2, Missing: Delay, New: true, Client: noClient}},
		},
	)},
	{"an expired client entry counts from 1 again", concat(
		passes("c", "t1", 0),
		passes("c", "t2", MaxAge+1000),
		[]Step{{At: MaxAge + 1000 + Delay + 1, Client: "c", Triplet: "t2", Want: Want{Outcome: passed, First: MaxAge + 1000, Client: client(1, MaxAge+1000+Delay)}}},
	)},
	{"auto-whitelist disabled writes no client entry", []Step{
		{At: 0, Client: "c", Triplet: "t", AWL: -1, Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: Delay, Client: "c", Triplet: "t", AWL: -1, Want: Want{Outcome: firstPass, Waited: Delay}},
		{At: Delay + 1, Client: "c", Triplet: "t2", Want: Want{Outcome: greylisted, First: Delay + 1, Missing: Delay, New: true, Client: noClient}},
	}},
	{"no client key: triplet only", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: Delay, Triplet: "t", Want: Want{Outcome: firstPass, Waited: Delay}},
		{At: Delay + 1, Client: "c", Triplet: "t2", Want: Want{Outcome: greylisted, First: Delay + 1, Missing: Delay, New: true, Client: noClient}},
	}},
	{"client and triplet keys live apart", []Step{
		{At: 0, Client: "same", Triplet: "same", AWL: 1, Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: Delay, Client: "same", Triplet: "same", AWL: 1, Want: Want{Outcome: firstPass, Waited: Delay, NewlyWhitelisted: true}},
		{At: Delay + 1, Triplet: "same", Want: Want{Outcome: passed, Triplet: trip(0, Delay)}},
	}},
	{"a passed second key passes and is copied to the chosen key", concat(
		passes("", "subnet", 0),
		[]Step{
			{At: 1000, Triplet: "org", Alt: "subnet", Want: Want{Outcome: passed, First: 0, ViaAlt: true, Triplet: none}},
			{At: 1001, Triplet: "org", Want: Want{Outcome: passed, First: 0, Triplet: trip(0, 1000)}},
		},
	)},
	{"a pending second key does not pass", []Step{
		{At: 0, Triplet: "subnet", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: 100, Triplet: "org", Alt: "subnet", Want: Want{Outcome: greylisted, First: 100, Missing: Delay, New: true, Triplet: none}},
		{At: Delay + 100, Triplet: "org", Alt: "subnet", Want: Want{Outcome: firstPass, First: 100, Waited: Delay}},
	}},
	{"a second key past max_age does not pass", concat(
		passes("", "subnet", 0),
		[]Step{
			{At: 2*Delay + MaxAge + 1, Triplet: "org", Alt: "subnet", Want: Want{Outcome: greylisted, First: 2*Delay + MaxAge + 1, Missing: Delay, New: true}},
		},
	)},
	{"a pass through the second key does not count the client", concat(
		passes("", "subnet", 0),
		[]Step{
			{At: 1000, Client: "c", Triplet: "org", Alt: "subnet", Want: Want{Outcome: passed, First: 0, ViaAlt: true, Client: noClient}},
			{At: 1001, Client: "c", Triplet: "org2", Want: Want{Outcome: greylisted, First: 1001, Missing: Delay, New: true, Client: noClient}},
		},
	)},
	{"the chosen key's own pass wins over the second key", concat(
		passes("", "org", 0),
		passes("", "subnet", 0),
		[]Step{{At: 2000, Triplet: "org", Alt: "subnet", Want: Want{Outcome: passed, First: 0, Triplet: trip(0, Delay)}}},
	)},
	{"a second key equal to the chosen key is the chosen key", []Step{
		{At: 0, Triplet: "k", Alt: "k", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: Delay, Triplet: "k", Alt: "k", Want: Want{Outcome: firstPass, Waited: Delay}},
	}},
	{"dry run writes nothing", concat(
		[]Step{
			{At: 0, Client: "c", Triplet: "t", DryRun: true, Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
			{At: 10, Client: "c", Triplet: "t", Want: Want{Outcome: greylisted, First: 10, Missing: Delay, New: true, Triplet: none}},
			{At: 10 + Delay, Client: "c", Triplet: "t", DryRun: true, Want: Want{Outcome: firstPass, First: 10, Waited: Delay}},
			{At: 11 + Delay, Client: "c", Triplet: "t", DryRun: true, Want: Want{Outcome: firstPass, First: 10, Waited: Delay + 1, Client: noClient, Triplet: trip(10, 10)}},
			{At: 12 + Delay, Client: "c", Triplet: "t", Want: Want{Outcome: firstPass, First: 10, Waited: Delay + 2, Client: noClient}},
			{At: 13 + Delay, Client: "c", Triplet: "t", DryRun: true, Want: Want{Outcome: passed, First: 10, Client: client(1, 12+Delay), Triplet: trip(10, 12+Delay)}},
		},
		passes("", "subnet", 10000),
		[]Step{
			{At: 11000, Triplet: "org", Alt: "subnet", DryRun: true, Want: Want{Outcome: passed, First: 10000, ViaAlt: true}},
			{At: 11001, Triplet: "org", Want: Want{Outcome: greylisted, First: 11001, Missing: Delay, New: true, Triplet: none}},
		},
	)},
	{"dry run of an auto-whitelisted client writes nothing", concat(
		[]Step{
			{At: 0, Client: "c", Triplet: "t1", AWL: 1, Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
			{At: Delay, Client: "c", Triplet: "t1", AWL: 1, Want: Want{Outcome: firstPass, Waited: Delay, NewlyWhitelisted: true}},
			{At: Delay + 7200, Client: "c", Triplet: "t2", AWL: 1, DryRun: true, Want: Want{Outcome: awl, First: Delay + 7200, Client: client(1, Delay)}},
			{At: Delay + 7201, Client: "c", Triplet: "t2", AWL: 1, Want: Want{Outcome: awl, First: Delay + 7201, Client: client(1, Delay)}},
			{At: Delay + 7202, Client: "c", Triplet: "t2", AWL: 1, Want: Want{Outcome: awl, First: Delay + 7202, Client: client(2, Delay+7201)}},
		},
	)},
	// Selective greylisting steps with Hold: a request the state would
	// greylist leaves nothing behind (the score may let it through); one
	// the state passes writes as usual.
	{"hold writes nothing for a greylisted request", []Step{
		{At: 0, Client: "c", Triplet: "t", Hold: true, Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: Delay, Client: "c", Triplet: "t", Hold: true, Want: Want{Outcome: greylisted, First: Delay, Missing: Delay, New: true, Triplet: none}},
		{At: Delay + 1, Client: "c", Triplet: "t", Want: Want{Outcome: greylisted, First: Delay + 1, Missing: Delay, New: true, Triplet: none}},
		// An early retry under Hold: greylisted, first-seen unchanged.
		{At: Delay + 2, Client: "c", Triplet: "t", Hold: true, Want: Want{Outcome: greylisted, First: Delay + 1, Missing: Delay - 1, Triplet: trip(Delay+1, Delay+1)}},
		// Past the delay, Hold writes the first pass and counts the client.
		{At: 2*Delay + 1, Client: "c", Triplet: "t", Hold: true, Want: Want{Outcome: firstPass, First: Delay + 1, Waited: Delay, Client: noClient}},
		{At: 2*Delay + 2, Client: "c", Triplet: "t", Hold: true, Want: Want{Outcome: passed, First: Delay + 1, Client: client(1, 2*Delay+1), Triplet: trip(Delay+1, 2*Delay+1)}},
	}},
	{"hold leaves a stale pending entry as it was", []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: RetryWindow + 1, Triplet: "t", Hold: true, Want: Want{Outcome: greylisted, First: RetryWindow + 1, Missing: Delay, New: true, Triplet: trip(0, 0)}},
		{At: RetryWindow + 2, Triplet: "t", Want: Want{Outcome: greylisted, First: RetryWindow + 2, Missing: Delay, New: true, Triplet: trip(0, 0)}},
	}},
	{"keys with odd bytes", []Step{
		{At: 0, Client: "2001:db8::1", Triplet: "192.0.2.0/a+b=c@ex ample.net/\"q\"@x", Want: Want{Outcome: greylisted, Missing: Delay, New: true}},
		{At: Delay, Client: "2001:db8::1", Triplet: "192.0.2.0/a+b=c@ex ample.net/\"q\"@x", Want: Want{Outcome: firstPass, Waited: Delay}},
		{At: Delay + 1, Client: "2001:db8::1", Triplet: "{tag}/ünïcode/%s\\n", Want: Want{Outcome: greylisted, First: Delay + 1, Missing: Delay, New: true, Client: client(1, Delay)}},
	}},
}
