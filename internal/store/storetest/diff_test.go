package storetest_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/store"
	"greyd/internal/store/buntdb"
	"greyd/internal/store/redis"
	"greyd/internal/store/redis/redistest"
)

// FuzzBackendsAgree runs random step sequences against buntdb and a real
// redis-server and compares every result: the clock going backwards,
// second keys, dry runs, greytraps, every outcome, stored values that are malformed
// or at the edges of what a number may be, and steps at Redis's own clock
// (buntdb is then given the time Redis decided with). store.Transition is
// the one description of the rules: a disagreement is a bug in the
// backend that deviates from it. One redis-server per fuzz process, not
// per input: an input starts with FLUSHALL.
func FuzzBackendsAgree(f *testing.F) {
	srv := redistest.Start(f)
	conn := srv.Dial()
	rs, err := redis.Open(redis.Options{
		Network: srv.Network(), Addrs: []string{srv.Addr()}, KeyPrefix: diffPrefix,
		Timeout: 10 * time.Second, // a loaded machine under -race is no outage
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { rs.Close() })
	probe := &store.StepInput{TripletKey: "probe", DryRun: true, FixedNow: true, Now: 1}
	redistest.WaitFor(f, 10*time.Second, "redis store connected", func() bool {
		_, err := rs.Step(context.Background(), probe)
		return err == nil
	})
	dir := f.TempDir()
	var n int

	f.Fuzz(func(t *testing.T, data []byte) {
		n++
		p := decode(data, time.Now().Unix())
		if _, err := conn.Do("FLUSHALL"); err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
		for _, v := range p.stored {
			if _, err := conn.Do("SET", redisKey(v.kind, v.key), v.value); err != nil {
				t.Fatalf("SET: %v", err)
			}
		}
		bd := openBuntdb(t, filepath.Join(dir, strconv.Itoa(n)), p.stored)
		defer bd.Close()

		ctx := context.Background()
		start := time.Now()
		// Both backends expire entries by the wall clock, the shortest
		// after a second: past that, one backend may have dropped an
		// entry the other still had when it was asked a moment earlier.
		// An input takes milliseconds; a slower one (a starved worker)
		// is compared only up to there.
		expiryFree := func(what string) bool {
			if d := time.Since(start); d >= wallClockMargin {
				t.Logf("input ran %v: %s not compared (an entry may have expired in between)", d, what)
				return false
			}
			return true
		}
		for i, in := range p.steps {
			rr, err := rs.Step(ctx, &in)
			if err != nil {
				t.Fatalf("%s\nstep %d on redis: %v", p, i, err)
			}
			bin := in
			bin.Now = rr.Now // Redis's clock when not FixedNow; the same otherwise
			br, err := bd.Step(ctx, &bin)
			if err != nil {
				t.Fatalf("%s\nstep %d on buntdb: %v", p, i, err)
			}
			if in.FixedNow && rr.Now != in.Now {
				t.Fatalf("%s\nstep %d: redis decided at %d, want the fixed time %d", p, i, rr.Now, in.Now)
			}
			if !expiryFree(fmt.Sprintf("step %d and later", i)) {
				return
			}
			if rr != br {
				t.Fatalf("%s\nstep %d: the backends disagree:\n redis:  %+v\n buntdb: %+v\n Transition on buntdb's state: %+v",
					p, i, rr, br, transitionOf(&bin, br))
			}
		}
		// What is left must agree too: a write that no step read back.
		re, be := scan(t, rs), scan(t, bd)
		if !expiryFree("the stored entries") {
			return
		}
		if !slices.EqualFunc(re, be, sameEntry) {
			t.Fatalf("%s\nstored entries differ:\n redis:  %+v\n buntdb: %+v", p, re, be)
		}
	})
}

// wallClockMargin is how long an input may run and still be compared:
// less than the shortest time to live a step writes (one second).
const wallClockMargin = 900 * time.Millisecond

// diffPrefix is the Redis key prefix of the fuzz target: keys are
// "{diff:}t:<key>", "{diff:}c:<key>" and "{diff:}x:<key>" (store/redis).
const diffPrefix = "diff:"

func redisKey(k store.Kind, key string) string {
	return "{" + diffPrefix + "}" + namespace(k) + key
}

// namespace is the key prefix of kind k in both backends.
func namespace(k store.Kind) string {
	switch k {
	case store.KindClient:
		return "c:"
	case store.KindTrap:
		return "x:"
	case store.KindTarpit:
		return "p:"
	}
	return "t:"
}

// openBuntdb opens a buntdb store holding stored: in memory when there is
// nothing, else in a file written by buntdb itself, as another program
// (or a crash) could have left it, and loaded by Open.
func openBuntdb(t *testing.T, dir string, stored []rawValue) *buntdb.DB {
	t.Helper()
	path := buntdb.Memory
	if len(stored) > 0 {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		path = filepath.Join(dir, "greyd.db")
		raw, err := bunt.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		err = raw.Update(func(tx *bunt.Tx) error {
			for _, v := range stored {
				if _, _, err := tx.Set(namespace(v.kind)+v.key, v.value, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err := errors.Join(err, raw.Close()); err != nil {
			t.Fatal(err)
		}
	}
	d, err := buntdb.Open(path, buntdb.Options{Sync: buntdb.SyncNever, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// transitionOf is what store.Transition says for in on the state a
// result reports, for the failure message.
func transitionOf(in *store.StepInput, r store.StepResult) store.StepResult {
	got, _ := store.Transition(in, r.Now, r.Before)
	return got
}

func scan(t *testing.T, a store.Admin) []store.Entry {
	t.Helper()
	var out []store.Entry
	if err := a.Scan(context.Background(), nil, func(e store.Entry) bool {
		out = append(out, e)
		return true
	}); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	slices.SortFunc(out, func(a, b store.Entry) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// sameEntry compares entries, deadlines within two seconds: the backends
// take their deadlines from two clocks a moment apart and round them up
// to the second.
func sameEntry(a, b store.Entry) bool {
	x, y := a, b
	x.Expires, y.Expires = 0, 0
	if x != y || (a.Expires == 0) != (b.Expires == 0) {
		return false
	}
	return a.Expires-b.Expires <= 2 && b.Expires-a.Expires <= 2
}

// A program is what the fuzzer's bytes say: rules, values stored before
// the first step, and the steps.
type program struct {
	stored []rawValue
	steps  []store.StepInput
	desc   []string // one line per stored value and step, for failures
}

type rawValue struct {
	kind       store.Kind
	key, value string
}

func (p *program) String() string { return "program:\n  " + strings.Join(p.desc, "\n  ") }

// The rules and keys a program picks from. Few keys, so that steps meet.
var (
	delays   = []int64{0, 1, 60, 300, 3600}
	retries  = []int64{0, 1, 300, 3600, 2 * 86400}
	maxAges  = []int64{0, 1, 60, 3600, 35 * 86400}
	awls     = []int64{0, 1, 2, 5}
	triplets = []string{"t0", "t1", "t2", "t3"}
	clients  = []string{"", "c0", "c1", "c0"}
	// With traps on, the recipient of triplet baitTriplet is a trap, and
	// a trap holds for one of trapFors.
	baitTriplet = "t3"
	trapFors    = []int64{1, 300, 86400}
)

// bytesReader yields the fuzzer's bytes, then zeros.
type bytesReader struct{ b []byte }

func (r *bytesReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// decode reads a program:
//
//	rules   2 bytes: delay and retry window; max_age and auto-whitelist
//	stored  1 byte: n%6 values, traps (b/12%4: off, or on with a
//	        trap's duration) and tarpits (b >= 192); then n values: 1
//	        byte kind and key, then a value
//	steps   3 bytes each, at most 48: keys and flags, time, rule changes
//
// Times are base plus an offset that steps move forwards and backwards;
// a step at Redis's clock decides at Redis's TIME instead. With traps on,
// every step has a trap key (its client's, or "c1" for none), and a step
// of baitTriplet is a trap hit. (Traps are off for a stored byte below
// 12, so the seeds written before traps existed mean what they meant.)
// With tarpits on, every step has a tarpit key too, and its time byte
// also chooses the operation and one of three sessions.
func decode(data []byte, base int64) *program {
	r := &bytesReader{data}
	p := &program{}
	b := r.next()
	delay, retry := delays[b%5], retries[b/5%5]
	b = r.next()
	maxAge, awl := maxAges[b%5], awls[b/5%4]
	b = r.next()
	trapFor := int64(0)
	if m := b / 12 % 4; m > 0 {
		trapFor = trapFors[m-1]
	}
	tarpits := b >= 192
	p.desc = append(p.desc, fmt.Sprintf("rules: delay %d, retry %d, max_age %d, awl %d, traps for %d (0: off), tarpits %v; base %d", delay, retry, maxAge, awl, trapFor, tarpits, base))
	for range int(b % 6) {
		k := r.next()
		v := rawValue{kind: store.KindTriplet, key: triplets[k>>1%4]}
		switch {
		case tarpits && k&16 != 0:
			v.kind, v.key = store.KindTarpit, clients[1+k>>1%2]
		case trapFor > 0 && k&8 != 0:
			v.kind, v.key = store.KindTrap, clients[1+k>>1%2]
		case k&1 == 1:
			v.kind, v.key = store.KindClient, clients[1+k>>1%2]
		}
		v.value = decodeValue(r, base, delay, maxAge)
		p.stored = append(p.stored, v)
		p.desc = append(p.desc, fmt.Sprintf("stored %s %s = %q", v.kind, v.key, v.value))
	}
	off := int64(0)
	for i := 0; i < 48 && len(r.b) > 0; i++ {
		op, dt, rules := r.next(), r.next(), r.next()
		in := store.StepInput{
			TripletKey: triplets[op&3],
			ClientKey:  clients[op>>2&3],
			DryRun:     op&0x40 != 0 && rules&0x80 == 0,
			Hold:       op&0x40 != 0 && rules&0x80 != 0,
			FixedNow:   op&0x80 == 0,
			Delay:      delay, RetryWindow: retry, MaxAge: maxAge, AWLClients: awl,
		}
		switch op >> 4 & 3 {
		case 1:
			in.AltKey = "t0"
		case 2:
			in.AltKey = "t1"
		case 3:
			in.AltKey = in.TripletKey
		}
		// A reload between two steps changes the rules.
		if rules&7 != 0 {
			in.Delay = delays[rules&7%5]
		}
		if rules>>3&3 != 0 {
			in.AWLClients = awls[rules>>3&3]
		}
		if rules>>5&1 != 0 {
			in.MaxAge = maxAges[rules>>6%5]
		}
		if trapFor > 0 {
			in.TrapKey, in.TrapFor = in.ClientKey, trapFor
			if in.TrapKey == "" {
				in.TrapKey = "c1"
			}
			in.TrapHit = in.TripletKey == baitTriplet
		}
		if tarpits {
			in.TarpitKey = cmp.Or(in.ClientKey, "c1")
			in.TarpitOp, in.TarpitSession = store.TarpitOp(dt%3), int64(dt/3%3)
			in.TarpitKeep, in.AbandonDelay = dt&0x40 != 0, 4*in.Delay
			if in.TarpitOp == store.TarpitData && dt&0x80 != 0 {
				in.TripletKey, in.AltKey = "", "" // a DATA after a restart, its triplets lost
			}
		}
		off += decodeDelta(dt, in.Delay, in.RetryWindow, in.MaxAge, trapFor)
		in.Now = base + off
		p.steps = append(p.steps, in)
		clock := fmt.Sprintf("at base%+d", off)
		if !in.FixedNow {
			clock = "at redis's clock"
		}
		p.desc = append(p.desc, fmt.Sprintf("step %d %s: client %q triplet %q alt %q trap %q hit %v tarpit %q op %d session %d keep %v dry %v hold %v delay %d retry %d max_age %d awl %d",
			i, clock, in.ClientKey, in.TripletKey, in.AltKey, in.TrapKey, in.TrapHit, in.TarpitKey, in.TarpitOp, in.TarpitSession, in.TarpitKeep,
			in.DryRun, in.Hold, in.Delay, in.RetryWindow, in.MaxAge, in.AWLClients))
	}
	return p
}

// decodeDelta is how far a step moves the clock: a few seconds, one of
// the rules' boundaries forwards or backwards (a trap's end too, with
// traps on), or a few seconds back.
func decodeDelta(b byte, delay, retry, maxAge, trapFor int64) int64 {
	edges := []int64{
		delay - 1, delay, delay + 1, retry, retry + 1, maxAge, maxAge + 1,
		store.RefreshInterval - 1, store.RefreshInterval, store.RefreshInterval + 1,
		store.AWLInterval - 1, store.AWLInterval, store.AWLInterval + 1,
		86400, 2*maxAge + 2, 365 * 86400,
	}
	if trapFor > 0 {
		edges = append(edges, trapFor-1, trapFor, trapFor+1, trapFor+retry+1)
	}
	n := int64(b & 63)
	switch b >> 6 {
	case 0:
		return n
	case 1:
		return edges[n%int64(len(edges))]
	case 2:
		return -edges[n%int64(len(edges))]
	}
	return -n
}

// decodeValue reads a stored value: raw bytes, or "a,b" of numbers near
// the program's times or at the edges of what a stored number may be,
// some with leading zeros up to and past 19 digits.
func decodeValue(r *bytesReader, base, delay, maxAge int64) string {
	b := r.next()
	if b%4 == 0 {
		n := int(r.next() % 24)
		v := make([]byte, 0, n)
		for range n {
			v = append(v, r.next())
		}
		return string(v)
	}
	return decodeNumber(r, base, delay, maxAge) + "," + decodeNumber(r, base, delay, maxAge)
}

func decodeNumber(r *bytesReader, base, delay, maxAge int64) string {
	b := r.next()
	var s string
	switch b % 16 {
	case 0:
		s = strconv.FormatInt(base+int64(int8(r.next())), 10)
	case 1:
		s = strconv.FormatInt(base-int64(r.next())*60, 10)
	case 2:
		s = strconv.FormatInt(int64(r.next()), 10) // a count
	case 3:
		s = strconv.FormatInt(store.MaxValue, 10)
	case 4:
		s = strconv.FormatInt(store.MaxValue+1, 10)
	case 5:
		s = strconv.FormatInt(-store.MaxValue, 10)
	case 6:
		s = strconv.FormatInt(-store.MaxValue-1, 10)
	case 7:
		s = strconv.FormatInt(store.MaxValue+2, 10)
	case 8:
		s = strconv.FormatInt(math.MaxInt64, 10)
	case 9:
		s = strconv.FormatInt(math.MinInt64, 10)
	case 10:
		s = "99999999999999999999"
	case 11:
		s = "0"
	case 12:
		s = "-0"
	case 13:
		s = strconv.FormatInt(base-maxAge-1, 10)
	case 14:
		s = strconv.FormatInt(base+delay, 10)
	default:
		s = strconv.FormatInt(base-delay, 10)
	}
	// Leading zeros: to 19 digits (allowed), to 20 (too many), or one.
	neg := strings.HasPrefix(s, "-")
	digits := strings.TrimPrefix(s, "-")
	switch b >> 4 % 4 {
	case 1:
		digits = strings.Repeat("0", max(0, 19-len(digits))) + digits
	case 2:
		digits = strings.Repeat("0", max(0, 20-len(digits))) + digits
	case 3:
		digits = "0" + digits
	}
	if neg {
		return "-" + digits
	}
	return digits
}
