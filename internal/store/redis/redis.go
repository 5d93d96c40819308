// Package redis is the store.Store of several MX hosts sharing one
// greylist: a Redis server (or Valkey, KeyDB), standalone, behind
// Sentinel, or a Cluster. Each request is one Lua script call (step.lua,
// a line-by-line translation of store.Transition) that reads, decides and
// writes atomically, with Redis's clock.
//
// It owns the connection and what happens when Redis fails: Open never
// waits for Redis, every Step has its own deadline, and a circuit breaker
// makes a dead Redis cost nothing per request while a background loop
// reconnects. greyd fails open meanwhile (the store returns errors, the
// engine answers them).
package redis

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"greyd/internal/store"
)

// Keys. Every key of a site starts with one Cluster hash tag made of the
// key prefix, "{greyd:}t:<triplet>", "{greyd:}c:<client>",
// "{greyd:}x:<client>" (greytraps), "{greyd:}p:<client>" (tarpit marks)
// and "{greyd:}schema" (and store.Admin's "{greyd:}n", "{greyd:}wl" and
// "{greyd:}wlver", admin.go), so that a Cluster keeps them in one slot.
// A tag per request is not possible: the script reads the client's
// auto-whitelist entry (one per client address, read by requests for
// every sender and recipient) with the triplet entry (one per network,
// sender and recipient, read by requests of every address of the
// network, and under lookup_by "auto" next to the organisation's key),
// and under privacy both are opaque hashes. Any tag shared by the keys of
// every request would have to be shared by all of them.
const (
	nsTriplet = "t:"
	nsClient  = "c:"
	nsTrap    = "x:"
	nsTarpit  = "p:"
	schemaNS  = "schema"
	// countsNS is the hash of count buckets that step.lua and admin.lua
	// keep for store.Admin.Counts (admin.go).
	countsNS = "n"

	// schemaVersion is what the schema key holds: the layout of keys and
	// values above. A greyd that finds another value refuses to use the
	// Redis rather than misread it. Keep step.lua's SCHEMA equal.
	schemaVersion = "1"

	// DefaultKeyPrefix is used when Options.KeyPrefix is "".
	DefaultKeyPrefix = "greyd:"
	// DefaultTimeout is a Step's deadline when Options.Timeout is 0: a
	// Redis on the LAN answers within a millisecond or two; one that has
	// not answered after 250 ms is not going to help this request.
	DefaultTimeout = 250 * time.Millisecond
)

// Circuit breaker and reconnection. Five consecutive failed steps open
// the breaker (a single lost connection costs one or two); while it is
// open every Step fails at once, and a background probe (connect if
// needed, then the schema check) runs at once, after 100 ms, then with
// doubling gaps up to 5 s, until Redis answers. Options can change the
// three (tests do, to wait for probes without waiting seconds).
const (
	DefaultBreakerThreshold = 5
	DefaultProbeMin         = 100 * time.Millisecond
	DefaultProbeMax         = 5 * time.Second
)

var (
	// openWait is how long Open waits for the first connection attempt
	// before it returns a store that fails until the background loop
	// connects: a refused connection returns at once, a black-holed host
	// would otherwise hold start-up for the dial timeout.
	openWait = time.Second
	// logEvery limits the "redis is unreachable" lines.
	logEvery = 10 * time.Second
	// dialTimeout bounds a connection attempt of the background loop (a
	// Step's reconnection is bounded by its own deadline).
	dialTimeout = 5 * time.Second
)

//go:embed step.lua
var stepScript string

// ErrSchema is returned when the Redis holds greyd data of another schema.
var ErrSchema = errors.New("redis holds greyd data of another schema")

// Options configure Open.
type Options struct {
	// Network is "tcp" (the default) or "unix".
	Network string
	// Addrs are the addresses: host:port for tcp, a socket path for
	// unix. One address is a standalone server (or any node of a Cluster:
	// the client asks); several are the nodes of a Cluster; with
	// MasterSet, they are the Sentinels.
	Addrs []string
	// DB is the database number (SELECT); a Cluster has only 0.
	DB int
	// TLS connects with TLS (rediss://), verifying the server against the
	// system's roots.
	TLS bool
	// MasterSet is the Sentinel master name; "" without Sentinel.
	MasterSet string
	// Username is the ACL user ("" is the default user); Password
	// authenticates it to Redis (not to the Sentinels). The caller reads
	// the password from the password file.
	Username, Password string
	// KeyPrefix starts every key, inside the hash tag: several sites can
	// share one Redis with different prefixes. "" is DefaultKeyPrefix. It
	// must not contain '{' or '}'.
	KeyPrefix string
	// Timeout is each Step's deadline (limits.store_timeout); 0 is
	// DefaultTimeout.
	Timeout time.Duration
	// Logger receives the lines about Redis going away and coming back;
	// nil discards them.
	Logger *slog.Logger

	// BreakerThreshold is the number of consecutive failed steps that
	// opens the circuit breaker; 0 is DefaultBreakerThreshold.
	BreakerThreshold int
	// ProbeMin and ProbeMax bound the gaps between reconnection probes
	// while the breaker is open, which double from ProbeMin up to
	// ProbeMax; 0 is DefaultProbeMin, DefaultProbeMax.
	ProbeMin, ProbeMax time.Duration
}

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	opts      Options
	log       *slog.Logger
	where     string // what Status and the log lines call the server
	tripletNS string // "{prefix}t:"
	clientNS  string // "{prefix}c:"
	trapNS    string // "{prefix}x:"
	tarpitNS  string // "{prefix}p:"
	schemaKey string // "{prefix}schema"
	countsKey string // "{prefix}n"
	script    *rueidis.Lua
	timeout   atomic.Int64 // a Step's deadline, ns

	client atomic.Pointer[rueidisClient] // nil until the first connection
	fails  atomic.Int32                  // consecutive failed steps
	probes atomic.Int64                  // probes that failed, for tests to wait on
	down   atomic.Pointer[outage]        // nil while the breaker is closed
	wake   chan struct{}                 // the breaker opened: probe
	closed atomic.Bool
	counts atomic.Pointer[[2]int] // the last Counts answer (admin.go)

	// The background loop's life: ctx ends at Close; clientMu orders
	// Close against a client the loop is about to store.
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	clientMu sync.Mutex

	logMu      sync.Mutex
	lastLogged time.Time // last "unreachable" line
	unlogged   int       // outages since then that were not logged
}

type rueidisClient struct{ c rueidis.Client }

// outage is one period of the breaker being open.
type outage struct {
	since  time.Time
	err    error        // what every Step returns meanwhile
	failed atomic.Int64 // steps that failed fast
	logged atomic.Bool  // the outage's start was logged (so its end is)
	first  bool         // still connecting after Open, not yet lost
	cause  atomic.Pointer[error]
}

// Open returns a Store for the Redis of opts. It never waits for Redis
// beyond a second: when Redis cannot be reached, the store fails every
// Step at once and connects in the background. It fails only for invalid
// options, or when the Redis it reached holds another schema (ErrSchema).
func Open(opts Options) (*Store, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.BreakerThreshold <= 0 {
		opts.BreakerThreshold = DefaultBreakerThreshold
	}
	if opts.ProbeMin <= 0 {
		opts.ProbeMin = DefaultProbeMin
	}
	if opts.ProbeMax <= 0 {
		opts.ProbeMax = DefaultProbeMax
	}
	opts.ProbeMax = max(opts.ProbeMax, opts.ProbeMin)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tag := "{" + opts.KeyPrefix + "}"
	s := &Store{
		opts:      opts,
		log:       log,
		where:     opts.describe(),
		tripletNS: tag + nsTriplet,
		clientNS:  tag + nsClient,
		trapNS:    tag + nsTrap,
		tarpitNS:  tag + nsTarpit,
		schemaKey: tag + schemaNS,
		countsKey: tag + countsNS,
		script:    rueidis.NewLuaScript(stepScript),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	s.timeout.Store(int64(opts.Timeout))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.down.Store(s.newOutage(errors.New("not connected yet"), true))
	first := make(chan error, 1)
	go func() { first <- s.probe() }()
	t := time.NewTimer(openWait)
	defer t.Stop()
	select {
	case err := <-first:
		if errors.Is(err, ErrSchema) {
			s.cancel()
			if c := s.client.Load(); c != nil {
				c.c.Close()
			}
			return nil, err
		}
		if err == nil {
			// Connected: Open returns a working store (status, runtime
			// whitelist at start), not one that waits for the loop.
			s.up()
		}
		first <- err // for the loop
	case <-t.C:
		// The loop takes the result when the attempt ends.
	}
	go s.run(first)
	return s, nil
}

func (o *Options) check() error {
	switch o.Network {
	case "", "tcp":
		o.Network = "tcp"
	case "unix":
		if len(o.Addrs) != 1 || o.MasterSet != "" || o.TLS {
			return errors.New("redis: a unix socket is one standalone server, without TLS or Sentinel")
		}
	default:
		return fmt.Errorf("redis: network %q: want tcp or unix", o.Network)
	}
	if len(o.Addrs) == 0 {
		return errors.New("redis: no address")
	}
	for _, a := range o.Addrs {
		if o.Network == "unix" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("redis: address %q: %v", a, err)
		}
	}
	if o.DB < 0 {
		return fmt.Errorf("redis: database %d: must be 0 or more", o.DB)
	}
	if o.DB != 0 && len(o.Addrs) > 1 && o.MasterSet == "" {
		return fmt.Errorf("redis: database %d: a Cluster has only database 0", o.DB)
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		// The prefix is the hash tag: a brace in it would end the tag
		// early or leave it empty, scattering a site's keys over slots.
		return fmt.Errorf("redis: key prefix %q: must not contain { or }", o.KeyPrefix)
	}
	return nil
}

func (o *Options) describe() string {
	switch {
	case o.MasterSet != "":
		return fmt.Sprintf("master %s via sentinels %s", o.MasterSet, strings.Join(o.Addrs, ","))
	case len(o.Addrs) > 1:
		return "cluster " + strings.Join(o.Addrs, ",")
	case o.Network == "unix":
		return "unix:" + o.Addrs[0]
	}
	return o.Addrs[0]
}

// clientOption is rueidis's configuration for opts.
func (o *Options) clientOption() rueidis.ClientOption {
	co := rueidis.ClientOption{
		InitAddress: o.Addrs,
		SelectDB:    o.DB,
		Username:    o.Username,
		Password:    o.Password,
		ClientName:  "greyd",
		// No client-side caching: every step runs on the server.
		DisableCache: true,
		// A step is not idempotent: never resend one.
		DisableRetry: true,
		Dialer:       net.Dialer{Timeout: dialTimeout},
		// A connection that has not answered for 3 s is dropped and
		// redialled (the default is 10 s): a Redis host that vanished
		// without a reset is then noticed by the connection too, not only
		// by the steps' deadlines.
		ConnWriteTimeout: 3 * time.Second,
	}
	if o.TLS {
		// ServerName comes from each address (tls.Dialer), roots from the
		// system.
		co.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.Network == "unix" {
		co.ForceSingleClient = true
		co.DialCtxFn = func(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return d.DialContext(ctx, "unix", addr)
		}
	}
	if o.MasterSet != "" {
		co.Sentinel = rueidis.SentinelOption{
			MasterSet: o.MasterSet,
			Dialer:    net.Dialer{Timeout: dialTimeout},
			TLSConfig: co.TLSConfig,
			// Besides following +switch-master, ask the Sentinels every
			// few seconds: a missed event would otherwise bind greyd to a
			// demoted master until restart.
			TopologyRefreshInterval: 5 * time.Second,
		}
	}
	return co
}

// run connects and reconnects: while the breaker is open it probes with
// back-off, and when a probe succeeds it closes the breaker and waits for
// it to open again. first delivers the result of Open's attempt.
func (s *Store) run(first <-chan error) {
	defer close(s.done)
	for {
		gap := s.opts.ProbeMin
		for {
			var err error
			if first != nil {
				err, first = <-first, nil
			} else {
				err = s.probe()
			}
			if err == nil {
				s.up()
				break
			}
			s.stillDown(err)
			s.probes.Add(1)
			t := time.NewTimer(gap)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			gap = min(2*gap, s.opts.ProbeMax)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
	}
}

// probe connects if there is no client yet, then checks the schema key
// (setting it if absent): a write, so a demoted master or a read-only
// replica does not pass for a working Redis.
func (s *Store) probe() error {
	c := s.client.Load()
	if c == nil {
		rc, err := rueidis.NewClient(s.opts.clientOption())
		if err != nil {
			return err
		}
		s.clientMu.Lock()
		if s.ctx.Err() != nil { // Close ran meanwhile and did not see it
			s.clientMu.Unlock()
			rc.Close()
			return store.ErrClosed
		}
		c = &rueidisClient{c: rc}
		s.client.Store(c)
		s.clientMu.Unlock()
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.deadline())
	defer cancel()
	return checkSchema(ctx, c.c, s.schemaKey)
}

// checkSchema sets the schema key if it is absent and refuses another
// value.
func checkSchema(ctx context.Context, c rueidis.Client, key string) error {
	if err := c.Do(ctx, c.B().Set().Key(key).Value(schemaVersion).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
		return err
	}
	v, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString()
	switch {
	case rueidis.IsRedisNil(err):
		return fmt.Errorf("schema key %s vanished after it was set (is the Redis evicting keys without a TTL? use maxmemory-policy volatile-ttl)", key)
	case err != nil:
		return err
	case v != schemaVersion:
		return fmt.Errorf("%w: %s is %q, this greyd uses %q; use another key_prefix, or delete the keys %s* if their data is no longer needed",
			ErrSchema, key, v, schemaVersion, strings.TrimSuffix(key, schemaNS))
	}
	return nil
}

// newOutage returns the state of an open breaker.
func (s *Store) newOutage(cause error, first bool) *outage {
	o := &outage{since: time.Now(), first: first}
	verb := "unreachable"
	if first {
		verb = "not connected"
	}
	// One error value for the whole outage: failing fast allocates nothing.
	o.err = fmt.Errorf("redis: %s %s since %s", s.where, verb, o.since.Format("15:04:05"))
	o.cause.Store(&cause)
	return o
}

// failed counts a failed step; the threshold opens the breaker.
func (s *Store) failed(err error) {
	if int(s.fails.Add(1)) < s.opts.BreakerThreshold {
		return
	}
	o := s.newOutage(err, false)
	if !s.down.CompareAndSwap(nil, o) {
		return // another step opened it
	}
	s.fails.Store(0)
	s.logDown(o, err)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// succeeded resets the count of consecutive failures.
func (s *Store) succeeded() {
	if s.fails.Load() != 0 {
		s.fails.Store(0)
	}
}

// stillDown records a failed probe.
func (s *Store) stillDown(err error) {
	o := s.down.Load()
	if o == nil {
		return
	}
	o.cause.Store(&err)
	if o.first && !o.logged.Load() {
		// Nothing worked since Open: say so once.
		s.logDown(o, err)
	}
	if errors.Is(err, ErrSchema) {
		s.logSchema(err)
	}
}

// up closes the breaker after a successful probe.
func (s *Store) up() {
	o := s.down.Load()
	s.fails.Store(0)
	s.down.Store(nil)
	if o == nil {
		return
	}
	switch {
	case o.first && !o.logged.Load():
		s.log.Info(fmt.Sprintf("redis: connected to %s", s.where))
	case o.logged.Load():
		s.log.Warn(fmt.Sprintf("redis works again: %s was unreachable for %v since %s, %d request(s) failed meanwhile; greylisting resumed",
			s.where, time.Since(o.since).Round(time.Millisecond), o.since.Format("15:04:05"), o.failed.Load()))
	}
}

// logDown logs the start of an outage, at most once per logEvery.
func (s *Store) logDown(o *outage, err error) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	now := time.Now()
	if !s.lastLogged.IsZero() && now.Sub(s.lastLogged) < logEvery {
		s.unlogged++
		return
	}
	more := ""
	if s.unlogged > 0 {
		more = fmt.Sprintf(" (%d shorter outage(s) since the last report)", s.unlogged)
	}
	s.lastLogged, s.unlogged = now, 0
	o.logged.Store(true)
	what := "is unreachable"
	switch {
	case errors.Is(err, ErrSchema):
		what = "is refused"
	case o.first:
		what = "cannot be reached"
	}
	s.log.Error(fmt.Sprintf("redis: %s %s: %v; greylisting is suspended (requests are answered as store failures) and greyd reconnects in the background%s",
		s.where, what, err, more))
}

func (s *Store) logSchema(err error) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	// Shares logDown's limit: the one line that matters is this one.
	if now := time.Now(); s.lastLogged.IsZero() || now.Sub(s.lastLogged) >= logEvery {
		s.lastLogged = now
		s.log.Error(fmt.Sprintf("redis: %s: %v", s.where, err))
	}
}

// SetTimeout changes each Step's deadline (limits.store_timeout after a
// reload); 0 is DefaultTimeout.
func (s *Store) SetTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultTimeout
	}
	s.timeout.Store(int64(d))
}

func (s *Store) deadline() time.Duration { return time.Duration(s.timeout.Load()) }

// Status is one line for systemd's STATUS=: where greyd's Redis is, and
// whether it answers.
func (s *Store) Status() string {
	if s.closed.Load() {
		return "redis: closed"
	}
	o := s.down.Load()
	if o == nil {
		where := s.where
		if c := s.client.Load(); c != nil && s.opts.MasterSet != "" {
			for addr := range c.c.Nodes() { // the current master
				where = fmt.Sprintf("master %s at %s (sentinel)", s.opts.MasterSet, addr)
			}
		}
		return "redis: connected to " + where
	}
	cause := *o.cause.Load()
	if errors.Is(cause, ErrSchema) {
		return fmt.Sprintf("redis: REFUSED since %s (%v); greylisting suspended", o.since.Format("2006-01-02 15:04:05"), cause)
	}
	if o.first {
		return fmt.Sprintf("redis: NOT CONNECTED to %s since %s (%v); greylisting suspended", s.where, o.since.Format("2006-01-02 15:04:05"), cause)
	}
	return fmt.Sprintf("redis: UNREACHABLE since %s (%v); greylisting suspended", o.since.Format("2006-01-02 15:04:05"), cause)
}

// Healthy implements store.Store: nil until Close, whether or not Redis
// answers. Restarting greyd cannot bring Redis back, and greyd fails open
// and reconnects by itself meanwhile; the watchdog is for greyd's own
// health.
func (s *Store) Healthy(context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Close stops the background loop and closes the connections. Steps
// still running fail. It does not wait for a connection attempt in
// progress (up to the dial timeout per address): that one closes its
// client itself.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.clientMu.Lock()
	s.cancel()
	c := s.client.Load()
	s.clientMu.Unlock()
	if c != nil {
		c.c.Close()
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
	}
	return nil
}

var _ store.Store = (*Store)(nil)
