// Package logging provides the slog handler greyd logs with: one plain
// line per record in the style Postfix and Postgrey use ("warning: ...",
// "action=greylist, reason=new, ..."), so existing log tooling keeps
// working. Under systemd (JOURNAL_STREAM set) each line starts with a
// syslog priority prefix ("<4>") that journald turns into the record's
// priority, and no timestamp, since journald adds its own. With a queue
// (Options.Queue) a stalled output never delays the caller: lines it
// cannot take are dropped, decision lines first, and counted.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Handler is a slog.Handler writing one line per record.
type Handler struct {
	out     *sink
	level   slog.Leveler
	journal bool
	prefix  string // pre-rendered attributes from WithAttrs
	group   string
}

// Options select the output form.
type Options struct {
	Level slog.Leveler
	// Journal selects priority prefixes and no timestamps; Detect sets it
	// when stderr is connected to journald.
	Journal bool
	// FlushAfter, when positive, lets records below Warn wait in a buffer
	// for up to this long, so that a busy server does not pay one write
	// system call per decision line. Warnings and errors are written at
	// once, after whatever waits. Call Flush before exiting.
	FlushAfter time.Duration
	// Queue, when positive, makes writing asynchronous: a record is
	// copied into a queue of at most Queue bytes that a goroutine of the
	// handler writes out, so that a stalled writer (journald restarting,
	// a pipe nobody reads) never delays the caller. When the queue is
	// full, lines below Warn are dropped first, warnings and errors only
	// when nothing else is left to drop; Dropped counts them, and a
	// warning says how many once writing works again. The goroutine
	// lives as long as the process: one handler per daemon. 0 writes in
	// the caller.
	Queue int
}

// Detect reports whether stderr goes to journald.
func Detect() bool { return os.Getenv("JOURNAL_STREAM") != "" }

// New returns a handler writing to w.
func New(w io.Writer, o Options) *Handler {
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	return &Handler{out: newSink(w, o), level: o.Level, journal: o.Journal}
}

// Flush writes whatever waits. With a Queue it waits for the writer, at
// most a few seconds: an exiting daemon must not hang on a stuck stderr.
func (h *Handler) Flush() { h.out.flush(flushWait) }

// Dropped returns the number of lines the queue dropped (see
// Options.Queue), for all the handlers derived from this one.
func (h *Handler) Dropped() uint64 { return h.out.dropped.Load() }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	bp := bufPool.Get().(*[]byte)
	b := h.appendHeader((*bp)[:0], r.Level, r.Time)
	b = appendClean(b, r.Message)
	b = append(b, h.prefix...)
	r.Attrs(func(a slog.Attr) bool {
		b = appendAttr(b, h.group, a)
		return true
	})
	b = append(b, '\n')
	err := h.out.write(b, r.Level >= slog.LevelWarn)
	*bp = b
	if cap(b) <= 64<<10 {
		bufPool.Put(bp)
	}
	return err
}

// Line writes msg as a record at level with no attributes of its own,
// exactly as Handle would, without a slog.Record: slog computes the
// caller's PC and copies the message for every record, which for the
// decision line, written once per request, was most of its cost. The
// caller checks Enabled first.
func (h *Handler) Line(level slog.Level, msg []byte) error {
	bp := bufPool.Get().(*[]byte)
	b := h.appendHeader((*bp)[:0], level, time.Time{})
	b = appendClean(b, msg)
	b = append(b, h.prefix...)
	b = append(b, '\n')
	err := h.out.write(b, level >= slog.LevelWarn)
	*bp = b
	if cap(b) <= 64<<10 {
		bufPool.Put(bp)
	}
	return err
}

// appendHeader appends what precedes the message: the priority or the
// time, and "warning: " and the like.
func (h *Handler) appendHeader(b []byte, level slog.Level, t time.Time) []byte {
	return appendHeader(b, h.journal, level, t)
}

func appendHeader(b []byte, journal bool, level slog.Level, t time.Time) []byte {
	if journal {
		b = append(b, '<')
		b = strconv.AppendInt(b, int64(priority(level)), 10)
		b = append(b, '>')
	} else {
		if t.IsZero() {
			t = time.Now()
		}
		b = t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, ' ')
	}
	switch {
	case level >= slog.LevelError:
		b = append(b, "error: "...)
	case level >= slog.LevelWarn:
		b = append(b, "warning: "...)
	case level < slog.LevelInfo:
		b = append(b, "debug: "...)
	}
	return b
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	b := []byte(h.prefix)
	for _, a := range as {
		b = appendAttr(b, h.group, a)
	}
	h2.prefix = string(b)
	return &h2
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

func appendAttr(b []byte, group string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			b = appendAttr(b, g, ga)
		}
		return b
	}
	b = append(b, ' ')
	b = append(b, group...)
	b = append(b, a.Key...)
	b = append(b, '=')
	s := a.Value.String()
	if needsQuote(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '"' || c == '=' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// appendClean appends a message, replacing control characters (a newline
// from a request value or an error could forge a log line) with '?'.
func appendClean[T string | []byte](b []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' && c != '\t' || c == 0x7f {
			c = '?'
		}
		b = append(b, c)
	}
	return b
}

// priority maps slog levels to syslog priorities; level 2 (between Info
// and Warn) is syslog's notice, used for decision lines like Postgrey.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l > slog.LevelInfo:
		return 5
	case l == slog.LevelInfo:
		return 6
	}
	return 7
}
