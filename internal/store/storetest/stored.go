package storetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"greyd/internal/store"
)

// Stored is a raw value under a key before a case's first step, as an
// older greyd, another program or a damaged file may have left it.
type Stored struct {
	Kind  store.Kind
	Key   string
	Value string
}

// StoredOpener returns a store that holds exactly stored, for one case;
// the suite closes it.
type StoredOpener func(t *testing.T, stored []Stored) store.Store

// StoredCase is a sequence of steps on a store holding Stored.
type StoredCase struct {
	Name   string
	Stored []Stored
	Steps  []Step
}

// RunStored runs every case of StoredCases against the stores open
// returns: every backend reads a stored value as store.ParseValue does.
func RunStored(t *testing.T, open StoredOpener) {
	for _, c := range StoredCases {
		t.Run(c.Name, func(t *testing.T) {
			st := open(t, c.Stored)
			defer st.Close()
			for i, s := range c.Steps {
				r, err := st.Step(context.Background(), s.Input())
				if err != nil {
					t.Fatalf("step %d (at +%d, triplet %q): %v", i, s.At, s.Triplet, err)
				}
				if d := s.Want.Check(r); d != "" {
					t.Errorf("step %d (at +%d, client %q, triplet %q):%s", i, s.At, s.Client, s.Triplet, d)
				}
			}
		})
	}
}

// digits writes T0+at with leading zeros to n digits.
func digits(at int64, n int) string {
	s := strconv.FormatInt(T0+at, 10)
	return strings.Repeat("0", max(0, n-len(s))) + s
}

func triplet(key, value string) Stored { return Stored{store.KindTriplet, key, value} }
func clientValue(key, value string) Stored {
	return Stored{store.KindClient, key, value}
}

// isNew is the result of a step on a key that holds nothing valid.
func isNew(at int64) Want {
	return Want{Outcome: greylisted, First: at, Missing: Delay, New: true, Triplet: none}
}

// StoredCases are the stored values every backend must read alike: a
// number is an optional '-' and at most 19 digits of magnitude at most
// store.MaxValue (what a double, and so Lua, holds exactly); anything
// else is no entry, and the next write replaces it.
var StoredCases = []StoredCase{
	{"numbers of up to 19 digits are read", []Stored{
		triplet("t", digits(-600, 19)+","+digits(-600, 19)),
		clientValue("c", "0000000000000000005,"+digits(-10, 19)),
	}, []Step{
		{At: 0, Triplet: "t", Want: Want{Outcome: firstPass, First: -600, Waited: 600, Triplet: trip(-600, -600)}},
		{At: 0, Client: "c", Triplet: "x", Want: Want{Outcome: awl, First: 0, Client: client(5, -10)}},
	}},
	{"more than 19 digits is malformed", []Stored{
		triplet("t", digits(-600, 20)+","+digits(-600, 20)),
		triplet("u", digits(-600, 19)+","+digits(-600, 20)),
		clientValue("c", "00000000000000000005,"+digits(-10, 19)),
	}, []Step{
		{At: 0, Triplet: "t", Want: isNew(0)},
		{At: 0, Triplet: "u", Want: isNew(0)},
		{At: 0, Client: "c", Triplet: "x", Want: Want{Outcome: greylisted, First: 0, Missing: Delay, New: true, Client: noClient}},
	}},
	{"numbers up to 2^53-1 are read exactly", []Stored{
		triplet("t", fmt.Sprintf("%d,%d", store.MaxValue, store.MaxValue)),
		triplet("u", fmt.Sprintf("%d,%d", -store.MaxValue, T0-10)),
	}, []Step{
		// In the future: corrected.
		{At: 0, Triplet: "t", Want: Want{Outcome: greylisted, First: 0, Missing: Delay, New: true, FutureCorrected: true,
			Triplet: trip(store.MaxValue-T0, store.MaxValue-T0)}},
		// Passed long ago, seen 10 s ago.
		{At: 0, Triplet: "u", Want: Want{Outcome: passed, First: -store.MaxValue - T0, Triplet: trip(-store.MaxValue-T0, -10)}},
	}},
	{"numbers past 2^53-1 are malformed", []Stored{
		triplet("t", fmt.Sprintf("%d,%d", store.MaxValue+1, store.MaxValue+1)),
		triplet("u", fmt.Sprintf("%d,%d", -store.MaxValue-1, T0-10)),
		triplet("v", "9223372036854775807,9223372036854775807"),
		triplet("w", "-9223372036854775808,-9223372036854775808"),
		clientValue("c", fmt.Sprintf("%d,%d", store.MaxValue+2, T0-10)),
	}, []Step{
		{At: 0, Triplet: "t", Want: isNew(0)},
		{At: 0, Triplet: "u", Want: isNew(0)},
		{At: 0, Triplet: "v", Want: isNew(0)},
		{At: 0, Triplet: "w", Want: isNew(0)},
		{At: 0, Client: "c", Triplet: "x", Want: Want{Outcome: greylisted, First: 0, Missing: Delay, New: true, Client: noClient}},
	}},
	// A count never grows past what can be stored: it would read back
	// as no entry.
	{"a count at the limit stays there", []Stored{
		clientValue("c", fmt.Sprintf("%d,%d", store.MaxValue, T0-7200)),
		clientValue("d", fmt.Sprintf("%d,%d", store.MaxValue, T0-7200)),
	}, []Step{
		// Keep-alive of an auto-whitelisted client.
		{At: 0, Client: "c", Triplet: "x", Want: Want{Outcome: awl, First: 0, Client: client(store.MaxValue, -7200)}},
		{At: 1, Client: "c", Triplet: "x", Want: Want{Outcome: awl, First: 1, Client: client(store.MaxValue, 0)}},
		// A first pass counted for a client below the threshold.
		{At: 0, Client: "d", Triplet: "y", AWL: -1, Want: Want{Outcome: greylisted, First: 0, Missing: Delay, New: true}},
		{At: Delay, Client: "d", Triplet: "y", AWL: store.MaxValue + 1, Want: Want{Outcome: firstPass, First: 0, Waited: Delay, Client: client(store.MaxValue, -7200)}},
		{At: Delay + 1, Client: "d", Triplet: "z", AWL: store.MaxValue + 1, Want: Want{Outcome: greylisted, First: Delay + 1, Missing: Delay, New: true, Client: client(store.MaxValue, Delay)}},
	}},
	{"other malformed values are no entry", []Stored{
		triplet("plus", "+"+digits(-600, 0)+","+digits(-600, 0)),
		triplet("space", " "+digits(-600, 0)+","+digits(-600, 0)),
		triplet("three", digits(-600, 0)+","+digits(-600, 0)+",1"),
		triplet("one", digits(-600, 0)),
		triplet("empty", ""),
		triplet("dot", digits(-600, 0)+".0,"+digits(-600, 0)),
		triplet("minus", "-,"+digits(-600, 0)),
		clientValue("c", "5,x"),
	}, []Step{
		{At: 0, Triplet: "plus", Want: isNew(0)},
		{At: 0, Triplet: "space", Want: isNew(0)},
		{At: 0, Triplet: "three", Want: isNew(0)},
		{At: 0, Triplet: "one", Want: isNew(0)},
		{At: 0, Triplet: "empty", Want: isNew(0)},
		{At: 0, Triplet: "dot", Want: isNew(0)},
		{At: 0, Triplet: "minus", Want: isNew(0)},
		{At: 0, Client: "c", Triplet: "x", Want: Want{Outcome: greylisted, First: 0, Missing: Delay, New: true, Client: noClient}},
	}},
	{"a malformed value is replaced by the next write", []Stored{
		triplet("t", "garbage"),
		clientValue("c", "99999999999999999999,1"),
	}, []Step{
		{At: 0, Client: "c", Triplet: "t", AWL: 1, Want: isNew(0)},
		{At: Delay, Client: "c", Triplet: "t", AWL: 1, Want: Want{Outcome: firstPass, Waited: Delay, NewlyWhitelisted: true, Triplet: trip(0, 0), Client: noClient}},
		{At: Delay + 1, Client: "c", Triplet: "u", AWL: 1, Want: Want{Outcome: awl, First: Delay + 1, Client: client(1, Delay)}},
	}},
}
