package logging

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// stuckWriter blocks every Write until release is closed, and records
// what was written; entered is closed at the first Write.
type stuckWriter struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
	out     syncBuffer
}

func newStuckWriter() *stuckWriter {
	return &stuckWriter{release: make(chan struct{}), entered: make(chan struct{})}
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.out.Write(p)
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestQueueNeverBlocks: with a writer that never returns, logging returns
// at once and counts what it drops; once the writer works again every line
// is either written or counted, and one line says how many were dropped.
func TestQueueNeverBlocks(t *testing.T) {
	w := newStuckWriter()
	h := New(w, Options{Journal: true, FlushAfter: 100 * time.Millisecond, Queue: 4096})
	l := slog.New(h)
	const lines = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range lines {
			if i%10 == 0 {
				l.Warn(fmt.Sprintf("w%d", i))
			} else {
				h.Line(slog.Level(2), fmt.Appendf(nil, "action=pass, n=%d", i))
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocked on a writer that does not return")
	}
	<-w.entered
	dropped := h.Dropped()
	if dropped == 0 || dropped >= lines {
		t.Fatalf("Dropped() = %d of %d lines through a 4 KiB queue", dropped, lines)
	}
	close(w.release)
	note := fmt.Sprintf("<4>warning: %d log line(s) dropped: the log output did not keep up\n", dropped)
	waitUntil(t, func() bool { return strings.Contains(w.out.String(), note) }, "the line about dropped lines "+note)
	h.Flush()
	written := strings.Count(w.out.String(), "\n") - 1
	if uint64(written)+dropped != lines {
		t.Errorf("%d lines written and %d dropped, want %d in all", written, dropped, lines)
	}
	if n := strings.Count(w.out.String(), "dropped"); n != 1 {
		t.Errorf("%d lines about dropped lines, want 1:\n%s", n, w.out.String())
	}
}

// TestQueueDropOrder: a full queue drops decision lines first, evicting
// the oldest to make room for a warning, and drops warnings only when
// nothing else is left.
func TestQueueDropOrder(t *testing.T) {
	w := newStuckWriter()
	// "<5>d00\n" is 7 bytes, "<4>warning: w00\n" 16: ten decision lines fit.
	h := New(w, Options{Journal: true, Queue: 70})
	l := slog.New(h.WithAttrs(nil))
	d := func(i int) { l.Log(t.Context(), slog.Level(2), fmt.Sprintf("d%02d", i)) }
	warn := func(i int) { l.Warn(fmt.Sprintf("w%02d", i)) }
	l.Error("first") // run takes it and is stuck writing it
	<-w.entered
	steps := []struct {
		log     func(int)
		i       int
		dropped uint64
	}{
		{d, 0, 0}, {d, 1, 0}, {d, 2, 0}, {d, 3, 0}, {d, 4, 0}, {d, 5, 0}, {d, 6, 0}, {d, 7, 0}, {d, 8, 0}, {d, 9, 0},
		{d, 10, 1},    // full: a decision line is dropped
		{warn, 0, 4},  // a warning evicts the oldest three (d00..d02)
		{warn, 1, 6},  // d03, d04
		{warn, 2, 8},  // d05, d06
		{warn, 3, 11}, // d07..d09: only warnings left
		{warn, 4, 12}, // dropped itself
		{d, 11, 13},
	}
	for _, s := range steps {
		s.log(s.i)
		if got := h.Dropped(); got != s.dropped {
			t.Fatalf("after line %d: Dropped() = %d, want %d", s.i, got, s.dropped)
		}
	}
	close(w.release)
	h.Flush()
	want := "<3>error: first\n" +
		"<4>warning: 13 log line(s) dropped: the log output did not keep up\n" +
		"<4>warning: w00\n<4>warning: w01\n<4>warning: w02\n<4>warning: w03\n"
	if got := w.out.String(); got != want {
		t.Errorf("written:\n%s\nwant:\n%s", got, want)
	}
}

// TestQueueOrder: a warning is written at once, after the decision lines
// that wait for FlushAfter, in order; Flush writes what waits.
func TestQueueOrder(t *testing.T) {
	var buf syncBuffer
	h := New(&buf, Options{Journal: true, FlushAfter: time.Hour, Queue: 1 << 20})
	l := slog.New(h)
	l.Log(t.Context(), slog.Level(2), "action=pass")
	l.Warn("disk trouble")
	want := "<5>action=pass\n<4>warning: disk trouble\n"
	waitUntil(t, func() bool { return buf.String() == want }, "the warning and the line before it: "+want)
	l.Info("later")
	h.Flush()
	if got := buf.String(); got != want+"<6>later\n" {
		t.Errorf("after Flush: got %q", got)
	}
	if h.Dropped() != 0 {
		t.Errorf("Dropped() = %d with a writer that keeps up", h.Dropped())
	}
}

// TestQueueFlushBounded: Flush gives up on a writer that never returns.
func TestQueueFlushBounded(t *testing.T) {
	w := newStuckWriter()
	defer close(w.release)
	h := New(w, Options{Journal: true, Queue: 4096})
	slog.New(h).Warn("stuck")
	<-w.entered
	start := time.Now()
	h.out.flush(50 * time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("flush took %v on a stuck writer, want about 50ms", d)
	}
}

// TestDroppedShared: handlers derived with WithAttrs and WithGroup count
// into the same Dropped.
func TestDroppedShared(t *testing.T) {
	w := newStuckWriter()
	defer close(w.release)
	h := New(w, Options{Journal: true, Queue: 20})
	a := h.WithAttrs([]slog.Attr{slog.Int("a", 1)}).(*Handler)
	g := h.WithGroup("g").(*Handler)
	slog.New(h).Warn("x") // taken by the writer
	<-w.entered
	for _, l := range []*slog.Logger{slog.New(a), slog.New(g), slog.New(h)} {
		l.Info("a line longer than the queue")
	}
	for i, d := range []*Handler{h, a, g} {
		if n := d.Dropped(); n != 3 {
			t.Errorf("handler %d: Dropped() = %d, want 3", i, n)
		}
	}
}
