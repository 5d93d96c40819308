package logging

import (
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// sink is the writer shared by a handler and the handlers derived from it.
// Without a queue it writes in the caller, under mu. With one (limit > 0)
// callers only append to buf, and run, the one goroutine that writes,
// takes buf as a whole and writes it outside the lock, so a caller waits
// at most for another caller's copy, never for the writer.
type sink struct {
	w       io.Writer
	after   time.Duration
	journal bool // for the line about dropped lines
	limit   int  // queue bytes; 0: write in the caller
	dropped atomic.Uint64

	mu      sync.Mutex
	buf     []byte
	pending bool // a flush is scheduled for what waits in buf

	// With a queue. marks holds, for every line in buf, its end offset
	// shifted left by one, ORed with 1 for a warning or error: the lines
	// that may be evicted are found without parsing.
	marks      []uint32
	low        int    // bytes of lines below Warn in buf
	unreported uint64 // dropped since the last line that said so
	writing    bool   // run holds a batch
	spare      []byte // run's previous batch, for reuse
	spareMarks []uint32
	kick       chan struct{}
	timer      *time.Timer
	cycle      chan struct{} // nil, or made by flush and closed when run's batch is done
}

const (
	// maxPending is how much waits before it is written without waiting
	// for FlushAfter.
	maxPending = 64 << 10
	// maxQueue bounds Options.Queue (offsets in marks are 31 bits).
	maxQueue = 1 << 30
	// flushWait bounds Flush with a queue.
	flushWait = 3 * time.Second
)

func newSink(w io.Writer, o Options) *sink {
	s := &sink{w: w, after: o.FlushAfter, journal: o.Journal, limit: min(o.Queue, maxQueue)}
	if s.limit > 0 {
		s.kick = make(chan struct{}, 1)
		s.timer = time.AfterFunc(time.Hour, s.wake)
		s.timer.Stop()
		go s.run()
	}
	return s
}

func (s *sink) write(line []byte, urgent bool) error {
	if s.limit > 0 {
		s.enqueue(line, urgent)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.after <= 0 {
		_, err := s.w.Write(line)
		return err
	}
	s.buf = append(s.buf, line...)
	if urgent || len(s.buf) >= maxPending {
		return s.flushLocked()
	}
	if !s.pending {
		s.pending = true
		time.AfterFunc(s.after, s.flushNow)
	}
	return nil
}

func (s *sink) flushNow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

func (s *sink) flushLocked() error {
	s.pending = false
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	if cap(s.buf) > 4*maxPending {
		s.buf = nil
	} else {
		s.buf = s.buf[:0]
	}
	return err
}

// enqueue appends line to the queue, making room for a warning or an error
// by evicting lines below Warn, oldest first. What does not fit is
// dropped and counted.
func (s *sink) enqueue(line []byte, urgent bool) {
	s.mu.Lock()
	if len(s.buf)+len(line) > s.limit && !s.makeRoom(len(line), urgent) {
		s.unreported++
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.buf = append(s.buf, line...)
	m := uint32(len(s.buf)) << 1
	if urgent {
		m |= 1
	} else {
		s.low += len(line)
	}
	s.marks = append(s.marks, m)
	now := urgent || s.after <= 0 || len(s.buf) >= maxPending
	if !now && !s.pending {
		s.pending = true
		s.timer.Reset(s.after)
	}
	s.mu.Unlock()
	if now {
		s.wake()
	}
}

// makeRoom evicts the oldest lines below Warn until n more bytes fit, if
// the line to come is urgent and enough of them wait. It frees a sixteenth
// of the queue at least: every eviction moves what stays, and a stalled
// writer with warnings coming must not cost a move per warning. Called
// with mu held.
func (s *sink) makeRoom(n int, urgent bool) bool {
	need := len(s.buf) + n - s.limit
	if !urgent || need > s.low {
		return false
	}
	need = min(max(need, s.limit/16), s.low)
	var w, start, j, evicted int
	for _, m := range s.marks {
		end := int(m >> 1)
		if m&1 == 0 && need > 0 {
			need -= end - start
			s.low -= end - start
			evicted++
		} else {
			w += copy(s.buf[w:], s.buf[start:end])
			s.marks[j] = uint32(w)<<1 | m&1
			j++
		}
		start = end
	}
	s.buf, s.marks = s.buf[:w], s.marks[:j]
	s.unreported += uint64(evicted)
	s.dropped.Add(uint64(evicted))
	return true
}

// wake asks run to write what waits.
func (s *sink) wake() {
	select {
	case s.kick <- struct{}{}:
	default: // run is awake or about to be
	}
}

// run writes the queue out, one batch per wake-up; while it is stuck in
// a write, the queue fills up to its limit.
func (s *sink) run() {
	for range s.kick {
		s.mu.Lock()
		b, marks := s.buf, s.marks
		s.buf, s.marks, s.spare, s.spareMarks = s.spare[:0], s.spareMarks[:0], nil, nil
		s.pending, s.low, s.writing = false, 0, true
		s.mu.Unlock()

		var err error
		if len(b) > 0 {
			_, err = s.w.Write(b)
		}

		s.mu.Lock()
		var report uint64
		if err != nil {
			s.unreported += uint64(len(marks))
			s.dropped.Add(uint64(len(marks)))
		} else if len(b) > 0 {
			report, s.unreported = s.unreported, 0
		}
		if cap(b) <= 2*s.limit {
			s.spare, s.spareMarks = b[:0], marks[:0]
		}
		s.mu.Unlock()
		if report > 0 {
			// Writing works again: say what is missing before it.
			s.w.Write(s.droppedLine(report))
		}
		s.mu.Lock()
		s.writing = false
		cycle := s.cycle
		s.cycle = nil
		s.mu.Unlock()
		if cycle != nil {
			close(cycle)
		}
	}
}

func (s *sink) droppedLine(n uint64) []byte {
	b := appendHeader(make([]byte, 0, 128), s.journal, slog.LevelWarn, time.Time{})
	b = strconv.AppendUint(b, n, 10)
	return append(b, " log line(s) dropped: the log output did not keep up\n"...)
}

// flush writes what waits; with a queue it waits for run to write it, for
// at most wait.
func (s *sink) flush(wait time.Duration) {
	if s.limit == 0 {
		s.flushNow()
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		s.mu.Lock()
		if len(s.buf) == 0 && !s.writing {
			s.mu.Unlock()
			return
		}
		if s.cycle == nil {
			s.cycle = make(chan struct{})
		}
		cycle := s.cycle
		s.mu.Unlock()
		s.wake()
		select {
		case <-cycle:
		case <-t.C:
			return
		}
	}
}
