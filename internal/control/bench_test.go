package control

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/store"
	"greyd/internal/store/buntdb"
)

// The admin API's costs at scale: explain, list and stats against a store
// of a million triplets, through the real socket and the CLI's client
// (JSON decoded, not printed). go test -run '^$' -bench . ./internal/control

var (
	bigOnce sync.Once
	bigDB   *buntdb.DB
)

const bigN = 1_000_000

// big is a store of bigN triplets (in 4096 /24 networks) and 10,000
// clients, shared by the benchmarks; the keys are built by the snapshot
// the benchmarks use.
func big(b *testing.B) *buntdb.DB {
	bigOnce.Do(func() {
		db, err := buntdb.Open(buntdb.Memory, buntdb.Options{})
		if err != nil {
			b.Fatal(err)
		}
		snap := testSnap(b, false)
		now := time.Now().Unix()
		entries := make([]store.Entry, 0, 10000)
		flush := func() {
			if _, _, err := db.Import(context.Background(), entries, 300); err != nil {
				b.Fatal(err)
			}
			entries = entries[:0]
		}
		for i := 0; i < bigN; i++ {
			ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8 & 15), byte(i)})
			first := now - int64(i%86400)
			entries = append(entries, store.Entry{Kind: store.KindTriplet, Key: snap.TripletKey(ip, fmt.Sprintf("user%d@sender%d.example", i, i%1000), "rcpt@example.org"),
				First: first, Last: first + int64(i%600), Expires: now + 86400})
			if i%100 == 0 {
				entries = append(entries, store.Entry{Kind: store.KindClient, Key: snap.ClientKey(ip), Count: int64(i % 7), Last: now, Expires: now + 86400})
			}
			if len(entries) >= 10000 {
				flush()
			}
		}
		flush()
		bigDB = db
	})
	return bigDB
}

func BenchmarkExplain(b *testing.B) {
	for _, size := range []string{"empty", "1M"} {
		b.Run(size, func(b *testing.B) {
			var db *buntdb.DB
			if size == "1M" {
				db = big(b)
			}
			d := startServer(b, testSnap(b, false), db)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := d.client.Explain(ctx, fmt.Sprintf("10.0.%d.%d", i>>8&15, i&255), "unknown", fmt.Sprintf("user%d@sender%d.example", i&4095, i&4095%1000), "rcpt@example.org"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkList1M lists every entry (or those of one /24) while another
// goroutine keeps stepping; it reports entries listed per second and the
// slowest step seen meanwhile (the listing must not stall requests).
func BenchmarkList1M(b *testing.B) {
	db := big(b)
	for _, tc := range []struct {
		name string
		q    url.Values
	}{
		{"all", nil},
		{"client=/24", url.Values{"client": {"10.0.3.0/24"}}},
		{"sender", url.Values{"sender": {"user77@sender77.example"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			d := startServer(b, testSnap(b, false), db)
			ctx := context.Background()
			var stop atomic.Bool
			var worst atomic.Int64
			var wg sync.WaitGroup
			var steps []time.Duration
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					in := &store.StepInput{TripletKey: fmt.Sprintf("bench/%d/x", i%5000), Now: time.Now().Unix(), Delay: 300, RetryWindow: 86400, MaxAge: 86400}
					s := time.Now()
					db.Step(ctx, in)
					el := time.Since(s)
					steps = append(steps, el)
					if int64(el) > worst.Load() {
						worst.Store(int64(el))
					}
					time.Sleep(100 * time.Microsecond)
				}
			})
			n := 0
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := d.client.Entries(ctx, tc.q, func(Record) error { n++; return nil }); err != nil {
					b.Fatal(err)
				}
			}
			el, cpu := time.Since(start), cpuTime()-cpu0
			b.StopTimer()
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			stop.Store(true)
			wg.Wait()
			slices.Sort(steps)
			b.ReportMetric(float64(n)/float64(b.N), "entries/op")
			b.ReportMetric(float64(n)/el.Seconds(), "entries/s")
			if len(steps) > 0 {
				b.ReportMetric(float64(steps[len(steps)*99/100].Microseconds()), "step-p99-µs")
			}
			b.ReportMetric(float64(time.Duration(worst.Load()).Microseconds()), "step-max-µs")
		})
	}
}

func BenchmarkStats1M(b *testing.B) {
	d := startServer(b, testSnap(b, false), big(b))
	ctx := context.Background()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := d.client.Stats(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is the CPU time the process used so far: on a machine shared
// with other work, wall times say more about the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardWriter is an http.ResponseWriter that throws the body away.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkListHandler is the daemon's side of listing a million
// entries alone: the scan and the encoding, no socket, no client.
func BenchmarkListHandler(b *testing.B) {
	db := big(b)
	e := greylist.NewEngine(db, testSnap(b, false), time.Now, nil)
	s := NewServer(Options{Engine: e, Admin: db})
	req := httptest.NewRequest("GET", "/v1/entries", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.list(&discardWriter{h: http.Header{}}, req)
	}
}
