package logging

import (
	"bytes"
	"log/slog"
	"testing"
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
