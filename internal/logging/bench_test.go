package logging

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkLine is a decision line as the daemon writes it: journal form,
// batched (FlushAfter), to a writer that keeps up.
func BenchmarkLine(b *testing.B) {
	h := New(io.Discard, daemonOptions())
	defer h.Flush()
	msg := []byte("ABC123: action=greylist, reason=new, client_name=mx.foo.example, client_address=198.51.100.60, sender=alice@foo.example, recipient=bob@example.org")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Line(slog.Level(2), msg)
		}
	})
}

// BenchmarkWarn is a warning through slog, written at once.
func BenchmarkWarn(b *testing.B) {
	h := New(io.Discard, daemonOptions())
	defer h.Flush()
	l := slog.New(h)
	b.ReportAllocs()
	for b.Loop() {
		l.Warn("ignoring 1 line(s) without '=' in request from unix:/run/greyd/policy.sock")
	}
}

func daemonOptions() Options {
	return Options{Journal: true, FlushAfter: 100 * time.Millisecond, Queue: 1 << 20}
}
