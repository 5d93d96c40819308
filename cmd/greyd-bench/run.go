package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxRun is the hard cap on one run, whatever -d and -n say.
const maxRun = 10 * time.Minute

// runConfig is everything one benchmark run needs.
type runConfig struct {
	target   target
	conns    int
	pipeline int
	count    uint64        // requests to send; 0 = until duration
	duration time.Duration // measured phase length; capped by maxRun
	timeout  time.Duration // per request
	gen      *generator
	prime    bool // send each pool triplet once before measuring
}

// result is what a run measured.
type result struct {
	elapsed    time.Duration
	sent       uint64 // requests handed to a connection
	ok         uint64 // replies with an action
	errors     uint64 // connection failures, missing action, ...
	timeouts   uint64 // no reply within the per-request timeout
	connErrors uint64 // failed dials and broken connections
	connsUp    int    // connections alive at the end
	hist       histogram
	actions    actionTable
	errSamples []string // first few distinct error messages

	primed      uint64 // pool requests answered before measuring
	primeErrors uint64
	primeTime   time.Duration
}

// phase hands out request numbers to the connections.
type phase struct {
	next   atomic.Uint64
	limit  uint64 // exclusive upper bound of request numbers
	stop   atomic.Bool
	build  func(b []byte, i uint64) []byte
	record bool // record latencies and actions
}

// claim returns the next request number, or false when the phase is over.
func (p *phase) claim() (uint64, bool) {
	if p.stop.Load() {
		return 0, false
	}
	i := p.next.Add(1) - 1
	if i >= p.limit {
		return 0, false
	}
	return i, true
}

// run executes a benchmark: dial all connections, optionally prime the
// repeat pool, then measure. It returns an error only when no connection
// works; individual failures are counted in the result.
func run(cfg runConfig) (*result, error) {
	if cfg.conns < 1 || cfg.pipeline < 1 {
		return nil, errors.New("need at least one connection and a pipeline depth of at least 1")
	}
	deadline := time.Now().Add(maxRun)
	res := &result{}
	errs := &errorLog{}

	workers := make([]*worker, cfg.conns)
	var wg sync.WaitGroup
	for n := range workers {
		w := &worker{cfg: &cfg, errs: errs}
		workers[n] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.connect(); err != nil {
				w.dead = true
			}
		}()
	}
	wg.Wait()
	if alive(workers) == 0 {
		collect(res, workers, errs)
		return res, fmt.Errorf("all %d connections to %s failed: %s", cfg.conns, cfg.target, errs.first())
	}

	if cfg.prime && cfg.gen.needsPrime() {
		p := &phase{limit: cfg.gen.poolSize, build: cfg.gen.appendPrime}
		start := time.Now()
		runPhase(p, workers, deadline)
		res.primeTime = time.Since(start)
		for _, w := range workers {
			res.primed += w.ok
			res.primeErrors += w.errors + w.timeouts
			w.resetCounters()
		}
	}

	p := &phase{limit: ^uint64(0), build: cfg.gen.appendRequest, record: true}
	if cfg.count > 0 {
		p.limit = cfg.count
	}
	end := deadline
	if d := time.Now().Add(cfg.duration); cfg.duration > 0 && d.Before(end) {
		end = d
	}
	start := time.Now()
	runPhase(p, workers, end)
	res.elapsed = time.Since(start)
	collect(res, workers, errs)
	if res.connsUp == 0 {
		return res, fmt.Errorf("all connections to %s failed, run cut short: %s", cfg.target, errs.first())
	}
	return res, nil
}

// runPhase runs p on every live worker until it is exhausted or end passes.
func runPhase(p *phase, workers []*worker, end time.Time) {
	t := time.AfterFunc(time.Until(end), func() { p.stop.Store(true) })
	defer t.Stop()
	var wg sync.WaitGroup
	for _, w := range workers {
		if w.dead {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(p)
		}()
	}
	wg.Wait()
}

func alive(workers []*worker) int {
	n := 0
	for _, w := range workers {
		if !w.dead {
			n++
		}
	}
	return n
}

func collect(res *result, workers []*worker, errs *errorLog) {
	for _, w := range workers {
		res.sent += w.sent
		res.ok += w.ok
		res.errors += w.errors
		res.timeouts += w.timeouts
		res.connErrors += w.connErrors
		if !w.dead {
			res.connsUp++
		}
		res.hist.merge(&w.hist)
		res.actions.merge(&w.actions)
		w.close()
	}
	res.errSamples = errs.samples()
}

// worker drives one persistent connection.
type worker struct {
	cfg  *runConfig
	errs *errorLog
	conn net.Conn
	r    *bufio.Reader
	wbuf []byte
	// in-flight requests' send times, oldest first (at most pipeline).
	inflight []time.Time
	action   [maxActionLen]byte
	dead     bool

	sent, ok, errors, timeouts, connErrors uint64
	hist                                   histogram
	actions                                actionTable
}

func (w *worker) resetCounters() {
	w.sent, w.ok, w.errors, w.timeouts = 0, 0, 0, 0
	w.hist = histogram{}
	w.actions = actionTable{}
}

// connect dials, retrying a few times with backoff.
func (w *worker) connect() error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
		}
		var c net.Conn
		c, err = w.cfg.target.dial(w.cfg.timeout)
		if err == nil {
			w.conn = c
			if w.r == nil {
				w.r = bufio.NewReaderSize(c, 16<<10)
			} else {
				w.r.Reset(c)
			}
			return nil
		}
		w.connErrors++
		w.errs.add(err)
	}
	return err
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// fail drops the connection and counts every in-flight request as lost.
func (w *worker) fail(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		w.timeouts += uint64(len(w.inflight))
	} else {
		w.errors += uint64(len(w.inflight))
		w.connErrors++
	}
	w.errs.add(err)
	w.inflight = w.inflight[:0]
	w.close()
}

// run sends requests of p, keeping up to pipeline of them in flight, and
// reads the replies in order.
func (w *worker) run(p *phase) {
	depth := w.cfg.pipeline
	timeout := w.cfg.timeout
	if cap(w.inflight) < depth {
		w.inflight = make([]time.Time, 0, depth)
	}
	for {
		if w.conn == nil {
			if p.stop.Load() {
				return
			}
			if err := w.connect(); err != nil {
				w.dead = true
				return
			}
		}
		w.wbuf = w.wbuf[:0]
		batch := 0
		for len(w.inflight)+batch < depth {
			i, ok := p.claim()
			if !ok {
				break
			}
			w.wbuf = p.build(w.wbuf, i)
			batch++
		}
		if batch > 0 {
			now := time.Now()
			for range batch {
				w.inflight = append(w.inflight, now)
			}
			w.sent += uint64(batch)
			w.conn.SetWriteDeadline(now.Add(timeout))
			if _, err := w.conn.Write(w.wbuf); err != nil {
				w.fail(fmt.Errorf("write: %w", err))
				continue
			}
		}
		if len(w.inflight) == 0 {
			return
		}
		w.conn.SetReadDeadline(w.inflight[0].Add(timeout))
		act, err := w.readReply()
		if err != nil {
			w.fail(err)
			continue
		}
		lat := time.Since(w.inflight[0])
		copy(w.inflight, w.inflight[1:])
		w.inflight = w.inflight[:len(w.inflight)-1]
		if act == nil {
			w.errors++
			w.errs.add(errors.New("reply without action= attribute"))
			continue
		}
		w.ok++
		if p.record {
			w.hist.record(lat)
			w.actions.add(act)
		}
	}
}

const maxActionLen = 40

var errLongLine = errors.New("reply line longer than the read buffer")

// readReply reads one reply (attribute lines up to an empty line) and
// returns the first word of its action, or nil if it had none. The slice
// points into the worker and is valid until the next call.
func (w *worker) readReply() ([]byte, error) {
	var act []byte
	for {
		line, err := w.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errLongLine
			}
			return nil, fmt.Errorf("read reply: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return act, nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("action=")); ok && act == nil {
			if sp := bytes.IndexAny(v, " \t"); sp >= 0 {
				v = v[:sp]
			}
			if len(v) == 0 {
				v = []byte("(empty)")
			}
			n := copy(w.action[:], v)
			act = w.action[:n]
		}
	}
}

// actionTable counts replies by first word of the action. A short slice
// with linear search: there are only a handful of distinct actions, and
// comparing string(b) == s does not allocate.
type actionTable struct {
	names  []string
	counts []uint64
}

const maxDistinctActions = 32

func (t *actionTable) add(act []byte) {
	for i, n := range t.names {
		if n == string(act) {
			t.counts[i]++
			return
		}
	}
	name := string(act)
	if len(t.names) >= maxDistinctActions {
		name = "(other)"
		for i, n := range t.names {
			if n == name {
				t.counts[i]++
				return
			}
		}
	}
	t.names = append(t.names, name)
	t.counts = append(t.counts, 1)
}

func (t *actionTable) addN(name string, c uint64) {
	for i, n := range t.names {
		if n == name {
			t.counts[i] += c
			return
		}
	}
	t.names = append(t.names, name)
	t.counts = append(t.counts, c)
}

func (t *actionTable) merge(o *actionTable) {
	for i, n := range o.names {
		t.addN(n, o.counts[i])
	}
}

// get returns the count for name (0 if never seen).
func (t *actionTable) get(name string) uint64 {
	for i, n := range t.names {
		if n == name {
			return t.counts[i]
		}
	}
	return 0
}

// errorLog keeps the first few distinct error messages for the report.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

const maxErrorSamples = 5

func (l *errorLog) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.msgs) >= maxErrorSamples {
		return
	}
	msg := err.Error()
	for _, m := range l.msgs {
		if m == msg {
			return
		}
	}
	l.msgs = append(l.msgs, msg)
}

func (l *errorLog) samples() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

func (l *errorLog) first() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.msgs) == 0 {
		return "no error recorded"
	}
	return l.msgs[0]
}
