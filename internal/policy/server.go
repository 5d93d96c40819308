package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"greyd/internal/logging"
)

// Handler decides one request. It returns the reply's action text, e.g.
// "DUNNO" or "DEFER_IF_PERMIT Greylisted", without "action=". It must not
// retain req after returning.
type Handler interface {
	ServePolicy(ctx context.Context, req *Request) string
}

// A LateHandler is a Handler that can stand in for itself when it is slow:
// a handler blocked on a hung disk must not keep Postfix waiting (it gives
// a policy server 100 s, then fails the SMTP transaction).
//
// When ServePolicy has not returned within Limits.HandlerTimeout, the
// server calls Late on another goroutine and sends its reply instead. The
// connection goes on being served meanwhile; the late ServePolicy call's
// own reply is dropped when it returns. A handler calls Request.Claim
// before it acts on its answer (logs it, say) to learn whether it is
// still the one answering.
type LateHandler interface {
	Handler
	// Late returns the reply for req, whose ServePolicy call has run for
	// after. It must not block, and it may only read req: ServePolicy
	// is still using it.
	Late(req *Request, after time.Duration) string
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) string

// ServePolicy calls f.
func (f HandlerFunc) ServePolicy(ctx context.Context, req *Request) string { return f(ctx, req) }

// Limits protect the daemon from clients that misbehave. Changing them with
// SetLimits affects connections accepted afterwards, and timeouts of
// requests read afterwards.
type Limits struct {
	MaxLineLength  int           // bytes per line, newline included
	MaxAttributes  int           // name=value lines per request
	MaxRequestSize int           // bytes per request, all lines included
	MaxConnections int           // open connections; idle, then slow ones are evicted at the limit
	RequestTimeout time.Duration // from the first byte of a request to its empty line
	IdleTimeout    time.Duration // between requests (Postfix's max_idle is 300 s)
	// HandlerTimeout is how long a LateHandler may take before its Late
	// reply is sent instead; 0 waits as long as it takes.
	HandlerTimeout time.Duration
}

// DefaultLimits are sensible for Postfix: it sends about 30 short
// attributes per request (about 1 KiB) and keeps idle connections for
// 300 s.
var DefaultLimits = Limits{
	MaxLineLength:  8192,
	MaxAttributes:  100,
	MaxRequestSize: 64 << 10,
	MaxConnections: 1000,
	RequestTimeout: 10 * time.Second,
	IdleTimeout:    330 * time.Second,
}

// Stats are counters for status lines and metrics.
type Stats struct {
	Requests    uint64 // requests answered
	Connections int64  // open connections
	Accepted    uint64 // connections accepted
	Evicted     uint64 // idle or slow connections closed to make room
	Rejected    uint64 // connections refused at the limit
	Errors      uint64 // connections closed for protocol errors or timeouts
}

// Server serves the policy protocol on any number of listeners.
type Server struct {
	handler Handler
	lateH   LateHandler // handler, if it is one
	log     *slog.Logger
	limits  atomic.Pointer[Limits]

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  atomic.Bool
	wg        sync.WaitGroup

	requests, accepted, evicted, rejected, errs atomic.Uint64
	open                                        atomic.Int64

	// Lines a flood of misbehaving clients would repeat: one per
	// logEvery for connection-limit events and for protocol errors.
	limitLog, errLog logging.Limiter
}

// logEvery is how often the server repeats a kind of warning that a flood
// of clients can trigger (with the count of the ones left out).
const logEvery = 10 * time.Second

// NewServer returns a server that answers with h. A nil logger discards.
func NewServer(h Handler, lim Limits, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{handler: h, log: log, listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	s.lateH, _ = h.(LateHandler)
	s.limitLog.Interval, s.errLog.Interval = logEvery, logEvery
	s.SetLimits(lim)
	return s
}

// SetLimits replaces the limits; zero fields take DefaultLimits' values.
func (s *Server) SetLimits(l Limits) {
	d := DefaultLimits
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = d.MaxLineLength
	}
	if l.MaxAttributes <= 0 {
		l.MaxAttributes = d.MaxAttributes
	}
	if l.MaxRequestSize <= 0 {
		l.MaxRequestSize = d.MaxRequestSize
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = d.MaxConnections
	}
	if l.RequestTimeout <= 0 {
		l.RequestTimeout = d.RequestTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	s.limits.Store(&l)
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:    s.requests.Load(),
		Connections: s.open.Load(),
		Accepted:    s.accepted.Load(),
		Evicted:     s.evicted.Load(),
		Rejected:    s.rejected.Load(),
		Errors:      s.errs.Load(),
	}
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("policy: server closed")

// A OneRequestListener's clients send one request per connection and read
// the reply until the server closes the connection, as Exim's
// ${readsocket} does (Postgrey's --exim). Serve closes each connection
// from a listener whose OneRequest reports true after its first reply,
// without reading what else the client sent.
type OneRequestListener interface {
	net.Listener
	OneRequest() bool
}

// Serve accepts connections on l until Shutdown or a permanent error.
// See OneRequestListener for listeners of one request per connection.
func (s *Server) Serve(l net.Listener) error {
	if s.shutdown.Load() {
		return ErrServerClosed
	}
	s.mu.Lock()
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	name := listenerName(l)
	ol, once := l.(OneRequestListener)
	once = once && ol.OneRequest()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// EMFILE and friends: wait instead of spinning.
				if backoff == 0 {
					backoff = 5 * time.Millisecond
				} else if backoff < time.Second {
					backoff *= 2
				}
				s.log.Warn(fmt.Sprintf("accept on %s: %v; retrying in %v", name, err, backoff))
				time.Sleep(backoff)
				continue
			}
			// The socket is gone or is not one (EBADF, EINVAL,
			// ENOTSOCK): retrying cannot help.
			l.Close()
			return fmt.Errorf("accept on %s: %w; no longer listening on it", name, err)
		}
		backoff = 0
		c := &conn{nc: nc, peer: peerName(nc, name), once: once}
		if !s.track(c) {
			nc.Close()
			continue
		}
		s.accepted.Add(1)
		go s.serveConn(c)
	}
}

// isTemporary reports whether an Accept error may pass by itself: EMFILE,
// ENFILE, ENOBUFS, ENOMEM, ECONNABORTED and the like do; a bad descriptor,
// a socket that no longer listens or one that cannot accept do not.
func isTemporary(err error) bool {
	var se *os.SyscallError
	if !errors.As(err, &se) {
		return false
	}
	for _, errno := range []syscall.Errno{syscall.EBADF, syscall.EINVAL, syscall.ENOTSOCK, syscall.EOPNOTSUPP, syscall.EFAULT} {
		if errors.Is(se.Err, errno) {
			return false
		}
	}
	return true
}

// track registers c, making room when the limit is reached: it closes the
// longest-idle connection, or else the one that has been sending its
// current request for the longest (a slow-drip client: Postfix writes a
// request at once). Connections whose request is being answered are never
// closed. It reports false when c must be refused.
func (s *Server) track(c *conn) bool {
	lim := s.limits.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return false
	}
	if len(s.conns) >= lim.MaxConnections {
		var idle, slow *conn
		var idleSince, slowSince int64
		for o := range s.conns {
			if t := o.idleSince.Load(); t != 0 && (idle == nil || t < idleSince) {
				idle, idleSince = o, t
			}
			if t := o.readingSince.Load(); t != 0 && (slow == nil || t < slowSince) {
				slow, slowSince = o, t
			}
		}
		victim, why := idle, "idle"
		if victim == nil {
			victim, why = slow, "sending one request"
		}
		if victim == nil {
			s.rejected.Add(1)
			s.logLimit(fmt.Sprintf("connection limit of %d reached and every connection is being answered: refusing %s", lim.MaxConnections, c.peer))
			return false
		}
		// Idle connections are cheap to re-open for Postfix; a busy
		// server must keep accepting. Closing wakes its goroutine.
		since := idleSince
		if victim == slow {
			since = slowSince
		}
		delete(s.conns, victim)
		victim.nc.Close()
		s.evicted.Add(1)
		s.logLimit(fmt.Sprintf("connection limit of %d reached: closed the connection from %s, %s for %v, to accept %s",
			lim.MaxConnections, victim.peer, why, time.Since(time.Unix(0, since)).Round(time.Millisecond), c.peer))
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.open.Add(1)
	return true
}

// logLimit logs a connection-limit event, at most once per logEvery.
func (s *Server) logLimit(msg string) {
	ok, dropped := s.limitLog.Allow(time.Now())
	if !ok {
		return
	}
	if dropped > 0 {
		msg += fmt.Sprintf(" [%d more connection-limit events since the previous line]", dropped)
	}
	s.log.Warn(msg)
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.open.Add(-1)
	s.wg.Done()
}

// Shutdown stops accepting, lets requests in flight finish and get their
// reply, closes idle connections, and waits until all are gone or ctx ends
// (then it closes the rest).
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		// Wakes readers blocked between requests; a reader in the middle
		// of a request gets a grace period (see serveConn).
		c.nc.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

type conn struct {
	nc           net.Conn
	peer         string
	once         bool         // close after the first reply (OneRequestListener)
	idleSince    atomic.Int64 // unix nanoseconds while waiting for a request, else 0
	readingSince atomic.Int64 // unix nanoseconds while reading a started request, else 0

	// Owned by the goroutine serving the connection, which changes when
	// a late handler's request is answered by the timer (see late).
	rd  *Reader
	bw  *bufio.Writer
	req *Request

	// The handler deadline: state is seq<<2 | one of the request states
	// below; the goroutine that moves it out of reqRunning answers.
	state    atomic.Uint64
	seq      uint64
	timeout  time.Duration // of the current request
	deadline atomic.Int64  // unix nanoseconds when the current request is late
	timer    *time.Timer   // calls late; nil until a deadline is used
}

// Request states in conn.state.
const (
	reqIdle    = 0
	reqRunning = 1
	reqClaimed = 2 // the handler claimed it (Request.Claim)
	reqLate    = 3 // the timer answered it
	reqMask    = 3
)

func (s *Server) serveConn(c *conn) {
	lim := s.limits.Load()
	c.rd = NewReader(c.nc, lim.MaxLineLength, lim.MaxAttributes)
	c.rd.LimitSize(lim.MaxRequestSize)
	c.bw = bufio.NewWriterSize(c.nc, 4096)
	c.req = new(Request)
	s.serve(c)
}

// serve answers requests on c until it ends, then closes and forgets it;
// it returns early, without touching c again, if the handler was late and
// the connection moved to the timer's goroutine.
func (s *Server) serve(c *conn) {
	if !s.serveRequests(c) {
		return
	}
	s.close(c)
}

func (s *Server) close(c *conn) {
	c.nc.Close()
	s.untrack(c)
}

func (s *Server) serveRequests(c *conn) (owner bool) {
	rd, bw, req := c.rd, c.bw, c.req
	ctx := context.Background()
	for {
		if rd.Buffered() == 0 {
			// Idle from the moment the reply leaves: eviction at the
			// connection limit must see this connection as idle as soon
			// as its client can act on the reply.
			c.idleSince.Store(time.Now().UnixNano())
			if bw.Buffered() > 0 {
				if err := s.flush(c, bw); err != nil {
					return true
				}
			}
			if !s.waitForRequest(c, rd) {
				return true
			}
		}
		lim := s.limits.Load()
		start := time.Now()
		c.readingSince.Store(start.UnixNano())
		c.nc.SetReadDeadline(start.Add(lim.RequestTimeout))
		err := rd.Read(req)
		for err != nil && s.shutdown.Load() && isTimeout(err) && rd.InRequest() {
			// Shutdown interrupted a request being read: finish it.
			c.nc.SetReadDeadline(time.Now().Add(time.Second))
			err = rd.Read(req)
		}
		c.readingSince.Store(0)
		if err != nil {
			s.readError(c, err)
			return true
		}
		if req.Garbage > 0 {
			s.log.Warn(fmt.Sprintf("ignoring %d line(s) without '=' in request from %s", req.Garbage, c.peer))
		}
		action, ok := s.answer(ctx, c, req, lim.HandlerTimeout)
		if !ok {
			return false // answered by late, which serves c from now on
		}
		s.reply(c, action)
		if c.once || s.shutdown.Load() {
			s.flush(c, bw)
			return true
		}
	}
}

func (s *Server) reply(c *conn, action string) {
	s.requests.Add(1)
	c.bw.WriteString("action=")
	c.bw.WriteString(action)
	c.bw.WriteString("\n\n")
}

// answer calls the handler for req, under the deadline if the handler is a
// LateHandler and timeout > 0. It reports false if the deadline passed
// first: the reply was sent by late, and c belongs to late's goroutine.
//
// The deadline costs a timer reset and stop and three atomic operations
// per request, and no goroutine switch: the handler runs here, and only a
// late one involves the timer's goroutine.
func (s *Server) answer(ctx context.Context, c *conn, req *Request, timeout time.Duration) (string, bool) {
	lh := s.lateH
	if lh == nil || timeout <= 0 {
		return s.handle(ctx, c, req), true
	}
	if c.timer == nil {
		// Made before the state below is stored: late reads c only after
		// it sees that store.
		c.timer = time.AfterFunc(time.Hour, func() { s.late(c, lh) })
		c.timer.Stop()
	}
	c.seq++
	running, claimed := c.seq<<2|reqRunning, c.seq<<2|reqClaimed
	req.claim, req.claimAs = &c.state, running
	c.timeout = timeout
	c.deadline.Store(time.Now().Add(timeout).UnixNano())
	c.state.Store(running)
	c.timer.Reset(timeout)
	action := s.handle(ctx, c, req)
	if c.state.CompareAndSwap(running, reqIdle) || c.state.CompareAndSwap(claimed, reqIdle) {
		// Only the owner stops the timer: after a lost swap it is armed
		// for the connection's next request, served by late's goroutine.
		c.timer.Stop()
		return action, true
	}
	return "", false
}

// late runs on the timer's goroutine when a handler may have missed its
// deadline. If the request is still unanswered it answers it with lh.Late
// and then serves the connection itself: the handler's goroutine is stuck
// and gives c up when its call returns.
func (s *Server) late(c *conn, lh LateHandler) {
	st := c.state.Load()
	if st&reqMask != reqRunning || time.Now().UnixNano() < c.deadline.Load() {
		return // answered, or a stale firing for an earlier request
	}
	if !c.state.CompareAndSwap(st, st&^reqMask|reqLate) {
		return
	}
	old := c.req
	c.req = new(Request) // the handler still reads the old one
	s.reply(c, s.lateReply(c, lh, old))
	if c.once {
		s.flush(c, c.bw)
		s.close(c)
		return
	}
	s.serve(c)
}

// lateReply calls lh.Late; a panic is answered like one in handle.
func (s *Server) lateReply(c *conn, lh LateHandler, req *Request) (action string) {
	defer s.recoverHandler(c, &action)
	return lh.Late(req, c.timeout)
}

// waitForRequest blocks until the next request starts, the idle timeout
// passes, or shutdown begins. It reports whether to go on reading.
func (s *Server) waitForRequest(c *conn, rd *Reader) bool {
	if s.shutdown.Load() {
		return false
	}
	lim := s.limits.Load()
	c.nc.SetReadDeadline(time.Now().Add(lim.IdleTimeout))
	_, err := rd.br.Peek(1)
	c.idleSince.Store(0)
	if err == nil {
		return true
	}
	switch {
	case errors.Is(err, io.EOF), s.shutdown.Load(), errors.Is(err, net.ErrClosed):
		// Peer closed, we are stopping, or evicted at the limit.
	case isTimeout(err):
		s.log.Info(fmt.Sprintf("closing connection from %s: idle for %v", c.peer, lim.IdleTimeout))
	default:
		s.log.Info(fmt.Sprintf("connection from %s: %v", c.peer, err))
	}
	return false
}

func (s *Server) flush(c *conn, bw *bufio.Writer) error {
	c.nc.SetWriteDeadline(time.Now().Add(s.limits.Load().RequestTimeout))
	err := bw.Flush()
	if err != nil && !s.shutdown.Load() {
		s.errs.Add(1)
		s.log.Warn(fmt.Sprintf("writing reply to %s: %v", c.peer, err))
	}
	return err
}

func (s *Server) readError(c *conn, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	s.errs.Add(1)
	lim := s.limits.Load()
	var what string
	switch {
	case errors.Is(err, ErrLineTooLong):
		what = fmt.Sprintf("line longer than %d bytes", lim.MaxLineLength)
	case errors.Is(err, ErrTooManyAttributes):
		what = fmt.Sprintf("more than %d attributes in one request", lim.MaxAttributes)
	case errors.Is(err, ErrRequestTooLarge):
		what = fmt.Sprintf("request larger than %d bytes", lim.MaxRequestSize)
	case isTimeout(err):
		what = fmt.Sprintf("request not completed within %v", lim.RequestTimeout)
	default:
		what = err.Error()
	}
	msg := fmt.Sprintf("closing connection from %s: %s", c.peer, what)
	ok, dropped := s.errLog.Allow(time.Now())
	if !ok {
		return
	}
	if dropped > 0 {
		msg += fmt.Sprintf(" [%d more connections closed for protocol errors since the previous line]", dropped)
	}
	s.log.Warn(msg)
}

// handle calls the handler; a panic is logged and answered with DUNNO so
// that a bug in greyd never blocks or defers mail.
func (s *Server) handle(ctx context.Context, c *conn, req *Request) (action string) {
	defer s.recoverHandler(c, &action)
	return s.handler.ServePolicy(ctx, req)
}

// recoverHandler, deferred, turns a handler's panic into a logged DUNNO.
func (s *Server) recoverHandler(c *conn, action *string) {
	if r := recover(); r != nil {
		s.errs.Add(1)
		s.log.Error(fmt.Sprintf("internal error answering %s, replying DUNNO: %v\n%s", c.peer, r, debug.Stack()))
		*action = "DUNNO"
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func listenerName(l net.Listener) string {
	a := l.Addr()
	return a.Network() + ":" + a.String()
}

func peerName(nc net.Conn, listener string) string {
	if a := nc.RemoteAddr(); a != nil && a.Network() != "unix" && a.String() != "" {
		return a.String()
	}
	return listener
}
