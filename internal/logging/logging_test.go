package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHandlerLines(t *testing.T) {
	tests := []struct {
		journal bool
		level   slog.Level
		msg     string
		attrs   []any
		want    string
	}{
		{true, slog.Level(2), "action=greylist, reason=new, client_address=192.0.2.1", nil, "<5>action=greylist, reason=new, client_address=192.0.2.1\n"},
		{true, slog.LevelWarn, "attribute missing: sender", nil, "<4>warning: attribute missing: sender\n"},
		{true, slog.LevelError, "store failed", []any{"path", "/var/lib/greyd/greyd.db"}, "<3>error: store failed path=/var/lib/greyd/greyd.db\n"},
		{true, slog.LevelInfo, "started", []any{"version", "1.0 beta"}, "<6>started version=\"1.0 beta\"\n"},
		{true, slog.LevelDebug, "x", nil, ""},
		{true, slog.LevelInfo, "forged\nline", nil, "<6>forged?line\n"},
	}
	for i, tc := range tests {
		var buf bytes.Buffer
		l := slog.New(New(&buf, Options{Journal: tc.journal}))
		l.Log(t.Context(), tc.level, tc.msg, tc.attrs...)
		if got := buf.String(); got != tc.want {
			t.Errorf("%d: got %q, want %q", i, got, tc.want)
		}
	}
}

// TestLine: Line writes what Handle writes for a record without attributes.
func TestLine(t *testing.T) {
	for _, journal := range []bool{true, false} {
		for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.Level(2), slog.LevelWarn, slog.LevelError} {
			for _, msg := range []string{"action=greylist, reason=new, client_address=192.0.2.1", "forged\nline", ""} {
				var viaSlog, viaLine bytes.Buffer
				h := New(&viaLine, Options{Journal: journal, Level: slog.LevelDebug})
				slog.New(New(&viaSlog, Options{Journal: journal, Level: slog.LevelDebug}).WithAttrs([]slog.Attr{slog.Int("a", 1)})).Log(t.Context(), level, msg)
				h.WithAttrs([]slog.Attr{slog.Int("a", 1)}).(*Handler).Line(level, []byte(msg))
				got, want := viaLine.String(), viaSlog.String()
				if !journal { // different timestamps
					got, want = got[strings.IndexByte(got, ' '):], want[strings.IndexByte(want, ' '):]
				}
				if got != want {
					t.Errorf("journal=%v level=%v %q: Line wrote %q, Handle %q", journal, level, msg, got, want)
				}
			}
		}
	}
}

func TestHandlerTimestampWithoutJournal(t *testing.T) {
	var buf bytes.Buffer
	slog.New(New(&buf, Options{})).Warn("hello")
	// "2006-01-02T15:04:05.000Z07:00 warning: hello\n"
	got := buf.String()
	if len(got) < 30 || got[4] != '-' || !bytes.HasSuffix(buf.Bytes(), []byte(" warning: hello\n")) {
		t.Errorf("got %q, want a timestamp then \"warning: hello\"", got)
	}
}

func TestWithAttrsAndGroup(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(New(&buf, Options{Journal: true})).With("a", 1).WithGroup("g")
	l.Info("m", "b", 2)
	if got, want := buf.String(), "<6>m a=1 g.b=2\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestBufferedFlush(t *testing.T) {
	var buf syncBuffer
	h := New(&buf, Options{Journal: true, FlushAfter: time.Hour})
	l := slog.New(h)
	l.Log(t.Context(), slog.Level(2), "action=pass")
	if got := buf.String(); got != "" {
		t.Fatalf("notice written at once with buffering on: %q", got)
	}
	l.Warn("disk trouble")
	if got, want := buf.String(), "<5>action=pass\n<4>warning: disk trouble\n"; got != want {
		t.Fatalf("a warning must flush what waits, in order: got %q, want %q", got, want)
	}
	l.Info("later")
	h.Flush()
	if got := buf.String(); !strings.HasSuffix(got, "<6>later\n") {
		t.Fatalf("Flush: got %q", got)
	}
	// The timer flushes too.
	h2 := New(&buf, Options{Journal: true, FlushAfter: 10 * time.Millisecond})
	slog.New(h2).Info("timed")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasSuffix(buf.String(), "<6>timed\n") {
		if time.Now().After(deadline) {
			t.Fatalf("buffered line never flushed: %q", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
