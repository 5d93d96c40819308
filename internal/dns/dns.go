// Package dns is greyd's one DNS resolver: a small stub client (UDP, TCP
// when truncated, EDNS0) in front of the configured recursive servers,
// with a cache that clamps TTLs, caches negative answers, shares one query
// among concurrent callers and lets a lookup outlive a caller's budget to
// fill the cache for the retry.
//
// It owns every DNS query greyd makes. A Result keeps what a score needs
// and Go's net.Resolver hides: NXDOMAIN apart from SERVFAIL apart from a
// timeout, the TTL, whether the answer came from the cache. NetResolver
// adapts it to the net.Resolver-shaped interface of SPF libraries.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Type is a query type; the values are the wire values.
type Type uint16

// The query types greyd asks for.
const (
	TypeA    Type = 1
	TypePTR  Type = 12
	TypeMX   Type = 15
	TypeTXT  Type = 16
	TypeAAAA Type = 28
)

func (t Type) String() string {
	switch t {
	case TypeA:
		return "A"
	case TypePTR:
		return "PTR"
	case TypeMX:
		return "MX"
	case TypeTXT:
		return "TXT"
	case TypeAAAA:
		return "AAAA"
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// Status is the outcome of a lookup. Its String is a fixed vocabulary,
// fit for a metric label.
type Status uint8

// The zero Status is Error, so that a zero Result never reads as an
// answer.
const (
	Error    Status = iota // anything else: a malformed name, a network error, an odd RCODE
	Found                  // NOERROR with records of the type asked for
	NXDomain               // the name does not exist
	NoData                 // the name exists, without records of that type
	ServFail               // the servers answered SERVFAIL
	Refused                // the servers refused the query
	Timeout                // no answer in time: the lookup's or the caller's
)

var statusNames = [...]string{"error", "found", "nxdomain", "nodata", "servfail", "refused", "timeout"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status" + strconv.Itoa(int(s))
}

// NotFound reports an authoritative negative answer: NXDOMAIN or NODATA.
func (s Status) NotFound() bool { return s == NXDomain || s == NoData }

// Temporary reports an outcome that says nothing about the name: asking
// again later may give an answer.
func (s Status) Temporary() bool { return s >= ServFail || s == Error }

// MX is one mail exchanger.
type MX struct {
	Host string // without the trailing dot
	Pref uint16
}

// Result is the outcome of one lookup. The slices of a cached Result are
// shared by every caller: read them, never modify them.
type Result struct {
	Status Status
	Addrs  []netip.Addr // A, AAAA
	Names  []string     // PTR, without the trailing dot
	Texts  []string     // TXT: one string per record, its strings concatenated
	MX     []MX         // MX, in the order received
	// TTL is as received: the minimum over the answer's records and the
	// CNAMEs that led to them; for NXDOMAIN and NODATA the SOA's negative
	// TTL (RFC 2308) when the authority section has one, else 0. How long
	// the cache keeps the answer is a clamped version of it.
	TTL    time.Duration
	Cached bool          // answered from the cache, without a query
	Took   time.Duration // how long the caller waited
	Err    error         // the detail of Error, ServFail, Refused and Timeout
}

// Config configures a Resolver; the zero value of each field means its
// default.
type Config struct {
	// Servers are the recursive servers, "ip:port" or "ip" (port 53),
	// IPv6 as "[2001:db8::1]:53". Empty: the nameservers of ResolvConf.
	Servers []string
	// ResolvConf is read when Servers is empty; default /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds one query to one server; default 1s.
	Timeout time.Duration
	// Attempts is how many times each server is tried; default 2.
	Attempts int
	// LookupTimeout bounds a whole lookup, servers and attempts included,
	// also when it finishes in the background; default 5s.
	LookupTimeout time.Duration
	// MaxBackground bounds the lookups left running after every caller
	// waiting for them gave up; default 100. Past it they are cancelled.
	MaxBackground int
	// MaxEntries bounds the cache; default 100000.
	MaxEntries int
	// MinTTL and MaxTTL clamp how long an answer with records is cached;
	// default 1m and 1h.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long NXDOMAIN and NODATA are cached; default 5m.
	NegativeTTL time.Duration
	// Now is the clock of the cache and of Result.Took; default time.Now.
	Now func() time.Time
	// Observe, if set, is called once per Lookup, cache hits included,
	// with the label of the caller's context (WithLabel), the query type,
	// the status, the time the caller waited and whether the cache
	// answered. It runs on the caller's goroutine: keep it short.
	Observe func(label string, t Type, s Status, took time.Duration, cached bool)
}

// Defaults.
const (
	DefaultTimeout       = time.Second
	DefaultAttempts      = 2
	DefaultLookupTimeout = 5 * time.Second
	DefaultMaxBackground = 100
	DefaultMaxEntries    = 100_000
	DefaultMinTTL        = time.Minute
	DefaultMaxTTL        = time.Hour
	DefaultNegativeTTL   = 5 * time.Minute
)

// ErrInvalidName is the Err of a lookup of a name that cannot be asked
// (empty, an empty label, a label over 63 bytes, over 255 bytes).
var ErrInvalidName = errors.New("invalid domain name")

var errClosed = errors.New("resolver closed")

// Resolver is a caching stub resolver. It is safe for concurrent use.
type Resolver struct {
	cfg     Config
	servers []string
	prefer  atomic.Uint32 // index of the server to ask first: the last that answered

	mu         sync.Mutex
	cache      map[key]entry
	flights    map[key]*flight
	background int
	lastSweep  time.Time
	closed     bool

	base context.Context // parent of every query; cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup
}

type key struct {
	name string // lower case, without the trailing dot
	t    Type
}

type entry struct {
	res     Result
	expires time.Time
}

// flight is one query in progress, shared by every caller asking the
// same question meanwhile.
type flight struct {
	done       chan struct{}
	res        Result // set before done is closed
	cancel     context.CancelFunc
	waiters    int  // callers waiting; under Resolver.mu
	background bool // counted in Resolver.background; under Resolver.mu
	finished   bool // under Resolver.mu
}

// New returns a Resolver for c.
func New(c Config) (*Resolver, error) {
	servers := make([]string, 0, len(c.Servers))
	for _, s := range c.Servers {
		n, err := CheckServer(s)
		if err != nil {
			return nil, err
		}
		servers = append(servers, n)
	}
	if len(servers) == 0 {
		path := c.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		var err error
		if servers, err = ReadResolvConf(path); err != nil {
			return nil, err
		}
	}
	setDefault(&c.Timeout, DefaultTimeout)
	setDefault(&c.Attempts, DefaultAttempts)
	setDefault(&c.LookupTimeout, DefaultLookupTimeout)
	setDefault(&c.MaxBackground, DefaultMaxBackground)
	setDefault(&c.MaxEntries, DefaultMaxEntries)
	setDefault(&c.MinTTL, DefaultMinTTL)
	setDefault(&c.MaxTTL, DefaultMaxTTL)
	setDefault(&c.NegativeTTL, DefaultNegativeTTL)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MinTTL > c.MaxTTL {
		return nil, fmt.Errorf("dns: min TTL %v above max TTL %v", c.MinTTL, c.MaxTTL)
	}
	r := &Resolver{
		cfg:     c,
		servers: servers,
		cache:   make(map[key]entry),
		flights: make(map[key]*flight),
	}
	r.base, r.stop = context.WithCancel(context.Background())
	return r, nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Servers returns the servers asked, as "ip:port".
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

// Close cancels the lookups in progress, waits for them to end, and makes
// every later lookup that the cache cannot answer fail.
func (r *Resolver) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stop()
	r.wg.Wait()
}

// Lookup asks for the records of type t of name (with or without the
// trailing dot, any case). It returns when the answer is there or when
// ctx ends, whichever is first; in the second case the Status is Timeout
// and the query goes on in the background (within LookupTimeout and
// MaxBackground) to fill the cache.
func (r *Resolver) Lookup(ctx context.Context, name string, t Type) Result {
	start := r.cfg.Now()
	k := key{canonical(name), t}
	r.mu.Lock()
	if e, ok := r.cache[k]; ok {
		if start.Before(e.expires) {
			r.mu.Unlock()
			res := e.res
			res.Cached = true
			res.Took = r.cfg.Now().Sub(start)
			r.observe(ctx, t, &res)
			return res
		}
		delete(r.cache, k)
	}
	if r.closed {
		r.mu.Unlock()
		return r.finish(ctx, t, Result{Status: Error, Err: errClosed}, start)
	}
	f := r.flights[k]
	if f == nil {
		f = r.startLocked(k)
	}
	f.waiters++
	r.mu.Unlock()

	select {
	case <-f.done:
		return r.finish(ctx, t, f.res, start)
	case <-ctx.Done():
		select {
		case <-f.done: // both ready: the answer is worth more
			return r.finish(ctx, t, f.res, start)
		default:
		}
		r.leave(k, f)
		return r.finish(ctx, t, Result{
			Status: Timeout,
			Err:    fmt.Errorf("lookup %s %s: %w", t, k.name, context.Cause(ctx)),
		}, start)
	}
}

func (r *Resolver) finish(ctx context.Context, t Type, res Result, start time.Time) Result {
	res.Took = r.cfg.Now().Sub(start)
	r.observe(ctx, t, &res)
	return res
}

func (r *Resolver) observe(ctx context.Context, t Type, res *Result) {
	if r.cfg.Observe != nil {
		r.cfg.Observe(Label(ctx), t, res.Status, res.Took, res.Cached)
	}
}

type labelKey struct{}

// WithLabel returns a context whose lookups Observe sees under label, for
// example the DNSBL zone or "spf". Labels are metric labels: use a fixed
// vocabulary, never a client's data.
func WithLabel(ctx context.Context, label string) context.Context {
	return context.WithValue(ctx, labelKey{}, label)
}

// Label returns the label WithLabel put in ctx, or "".
func Label(ctx context.Context) string {
	l, _ := ctx.Value(labelKey{}).(string)
	return l
}

// canonical is the cache's form of a name: lower case, without the
// trailing dot. It allocates only for a name with upper case.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
