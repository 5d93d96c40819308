package p0f

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"greyd/internal/logging"
)

// Defaults of a Client.
const (
	// DefaultConns: p0f serves at most 20 API connections (its -S) to
	// every client on the host together, and answers from memory in
	// microseconds; a few are plenty.
	DefaultConns = 4
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 10 * time.Second
	// downWarnEvery bounds the "p0f is gone" warnings of a p0f that
	// comes and goes.
	downWarnEvery = time.Minute
	// silentAfter is how many queries in a row without an answer in
	// time make a p0f that accepts queries but never answers (stopped,
	// wedged) worth the same warning as one that is gone. Each still
	// costs at most its timeout, so nothing else changes.
	silentAfter = 5
)

// More errors of Query.
var (
	// ErrTimeout: no answer before the context ended.
	ErrTimeout = errors.New("p0f: no answer in time")
	// ErrDown: p0f's socket refused us; Query does not ask again
	// before the back-off ends.
	ErrDown = errors.New("p0f: not reachable")
	// ErrClosed: the Client is closed.
	ErrClosed = errors.New("p0f: client closed")
)

// The results of a query: a fixed vocabulary, fit for a metric label.
const (
	ResultOK       = "ok"        // p0f knows the host
	ResultNoMatch  = "no_match"  // p0f has no fingerprint of the host
	ResultTimeout  = "timeout"   // no answer in time
	ResultDown     = "down"      // p0f's socket cannot be reached
	ResultBadQuery = "bad_query" // p0f could not read the query
	ResultGarbage  = "garbage"   // the answer is malformed
	ResultError    = "error"     // anything else
)

// Results lists every result, for metrics that start at zero.
var Results = []string{ResultOK, ResultNoMatch, ResultTimeout, ResultDown, ResultBadQuery, ResultGarbage, ResultError}

// ResultOf names the outcome of a Query.
func ResultOf(a Answer, err error) string {
	switch {
	case err == nil && a.Status == StatusNoMatch:
		return ResultNoMatch
	case err == nil:
		return ResultOK
	case errors.Is(err, ErrTimeout):
		return ResultTimeout
	case errors.Is(err, ErrDown):
		return ResultDown
	case errors.Is(err, ErrBadQuery):
		return ResultBadQuery
	case errors.Is(err, ErrGarbage):
		return ResultGarbage
	}
	return ResultError
}

// Options configure a Client.
type Options struct {
	Conns int          // connections at most; 0: DefaultConns
	Log   *slog.Logger // nil: no warnings
	Now   func() time.Time
}

// Client asks p0f. It keeps up to Conns connections open between
// queries (p0f answers any number of queries on one, in order) and runs
// one query per connection at a time. It is safe for concurrent use and
// meant to live as long as the daemon: the socket is an argument of each
// query, so a reload that moves it needs no new Client.
type Client struct {
	slots chan struct{} // one per query in flight
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	closed  bool
	idle    []*conn
	down    bool      // the last attempt to reach p0f failed
	since   time.Time // when it went down
	failed  int       // queries that found it down since
	retryAt time.Time // no dial before this while down
	backoff time.Duration
	warned  bool // the going-down warning was logged
	silent  int  // queries in a row that timed out, since the last answer
	hushed  bool // the silence warning was logged
	limit   logging.Limiter
}

type conn struct {
	net.Conn
	socket string
	buf    [AnswerSize]byte
}

// New returns a Client.
func New(o Options) *Client {
	if o.Conns <= 0 {
		o.Conns = DefaultConns
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Client{slots: make(chan struct{}, o.Conns), log: o.Log, now: o.Now,
		limit: logging.Limiter{Interval: downWarnEvery}}
}

// Query asks the p0f listening on socket about addr. It returns when p0f
// answers, fails, or ctx ends (ErrTimeout): the caller's deadline is the
// whole cost. A "no match" answer is not an error (Answer.Status says
// it); see ResultOf for the rest.
func (c *Client) Query(ctx context.Context, socket string, addr netip.Addr) (Answer, error) {
	a, err := c.query(ctx, socket, addr)
	if errors.Is(err, ErrTimeout) {
		c.timedOut(socket)
	}
	return a, err
}

func (c *Client) query(ctx context.Context, socket string, addr netip.Addr) (Answer, error) {
	var q [QuerySize]byte
	if _, err := AppendQuery(q[:0], addr); err != nil {
		return Answer{}, err
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return Answer{}, ErrTimeout
	}
	defer func() { <-c.slots }()

	cn, reused, err := c.get(ctx, socket)
	if err != nil {
		return Answer{}, err
	}
	a, err := cn.ask(ctx, q[:])
	if err != nil && reused && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrGarbage) && !errors.Is(err, ErrBadQuery) {
		// An idle connection to a p0f that restarted since: the old
		// one's socket is gone. Ask once more on a new connection.
		cn.Close()
		if cn, err = c.dial(ctx, socket); err != nil {
			return Answer{}, err
		}
		a, err = cn.ask(ctx, q[:])
	}
	if err != nil {
		cn.Close() // out of step with p0f's answers, or dead
		if errors.Is(err, ErrTimeout) {
			return Answer{}, err
		}
		if errors.Is(err, ErrGarbage) || errors.Is(err, ErrBadQuery) {
			c.up(socket) // p0f is there, it answered
			return a, err
		}
		c.fail(socket, err)
		return Answer{}, fmt.Errorf("%w: %s: %v", ErrDown, socket, err)
	}
	c.up(socket)
	c.put(cn)
	return a, nil
}

// get returns an idle connection to socket, or a new one.
func (c *Client) get(ctx context.Context, socket string) (*conn, bool, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	for len(c.idle) > 0 {
		cn := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		if cn.socket == socket {
			c.mu.Unlock()
			return cn, true, nil
		}
		cn.Close() // the configuration moved the socket
	}
	if c.down && c.now().Before(c.retryAt) {
		c.failed++
		c.mu.Unlock()
		return nil, false, fmt.Errorf("%w: %s (retrying in %v)", ErrDown, socket, c.retryAt.Sub(c.now()).Round(time.Millisecond))
	}
	c.mu.Unlock()
	cn, err := c.dial(ctx, socket)
	return cn, false, err
}

func (c *Client) dial(ctx context.Context, socket string) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ErrTimeout
		}
		c.fail(socket, err)
		return nil, fmt.Errorf("%w: %v", ErrDown, err)
	}
	return &conn{Conn: nc, socket: socket}, nil
}

// ask sends q and reads the answer, within ctx.
func (cn *conn) ask(ctx context.Context, q []byte) (Answer, error) {
	if dl, ok := ctx.Deadline(); ok {
		cn.SetDeadline(dl)
	} else {
		cn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { cn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	timedOut := func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil }
	if _, err := cn.Write(q); err != nil {
		if timedOut(err) {
			return Answer{}, ErrTimeout
		}
		return Answer{}, fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(cn, cn.buf[:]); err != nil {
		switch {
		case timedOut(err):
			return Answer{}, ErrTimeout
		case errors.Is(err, io.ErrUnexpectedEOF):
			return Answer{}, fmt.Errorf("%w: the answer was cut short", ErrGarbage)
		}
		return Answer{}, fmt.Errorf("read: %w", err)
	}
	return ParseAnswer(cn.buf[:])
}

func (c *Client) put(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cn.Close()
		return
	}
	c.idle = append(c.idle, cn)
}

// fail records that p0f could not be reached and warns the first time.
func (c *Client) fail(socket string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.down {
		c.down, c.since, c.failed, c.backoff = true, now, 0, minBackoff
		c.warned = false
		if ok, _ := c.limit.Allow(now); ok && c.log != nil {
			c.warned = true
			c.log.Warn(fmt.Sprintf("p0f: cannot query %s: %v; its signals count at their worst until it answers", socket, err))
		}
	} else {
		c.backoff = min(2*c.backoff, maxBackoff)
	}
	c.failed++
	c.retryAt = now.Add(c.backoff)
	for _, cn := range c.idle {
		cn.Close()
	}
	c.idle = c.idle[:0]
}

// timedOut counts a query p0f did not answer in time, and warns once
// when silentAfter came in a row.
func (c *Client) timedOut(socket string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.silent++; c.silent != silentAfter {
		return
	}
	if ok, _ := c.limit.Allow(c.now()); ok && c.log != nil {
		c.hushed = true
		c.log.Warn(fmt.Sprintf("p0f: %s accepts queries but answered none of the last %d in time; its signals count at their worst until it answers", socket, silentAfter))
	}
}

// up records an answer, and says p0f is back if it was down or silent.
func (c *Client) up(socket string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hushed && c.log != nil {
		c.log.Warn(fmt.Sprintf("p0f: %s answers again after %d queries without an answer in time", socket, c.silent))
	}
	c.silent, c.hushed = 0, false
	if !c.down {
		return
	}
	c.down = false
	if c.warned && c.log != nil {
		c.log.Warn(fmt.Sprintf("p0f: %s answers again after %v; %d queries went unanswered",
			socket, c.now().Sub(c.since).Round(time.Millisecond), c.failed))
	}
}

// Close closes the idle connections; queries after it fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, cn := range c.idle {
		cn.Close()
	}
	c.idle = nil
	return nil
}
