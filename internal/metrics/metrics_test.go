package metrics

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"greyd/internal/dns"
	"greyd/internal/p0f"
	"greyd/internal/signals"
	"greyd/internal/store/buntdb"
)

func testSources() Sources {
	return Sources{
		Version:     "test",
		Requests:    func() uint64 { return 42 },
		Connections: func() int64 { return 3 },
		Decisions: func(add func(action, reason string, n uint64)) {
			add("pass", "triplet found", 30)
			add("greylist", "new", 10)
			add("skip", "malformed", 2)
		},
		StoreErrors:       func() uint64 { return 1 },
		Entries:           func() (int, int) { return 1000, 7 },
		Reloads:           func() (uint64, uint64) { return 2, 1 },
		LastReloadSuccess: func() time.Time { return time.Unix(1763812800, 500e6) },
		DryRun:            func() bool { return false },
		StorePersistent:   func() bool { return true },
		LogDropped:        func() uint64 { return 5 },
		Selective: func(add func(class string, n uint64)) {
			add("pass", 6)
			add("greylist", 4)
		},
		Traps:         func() (uint64, uint64) { return 4, 9 },
		Tarpits:       func() (uint64, uint64, uint64, uint64) { return 11, 7, 3, 2 },
		TarpitsActive: func() int { return 5 },
	}
}

func scrape(t testing.TB, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestExposition(t *testing.T) {
	m := New(testSources())
	m.Request(300 * time.Microsecond)
	m.StoreStep(80 * time.Microsecond)
	m.RetryDelay(420)
	m.DNSLookup("zen.spamhaus.org", dns.TypeA, dns.Found, 30*time.Millisecond, false)
	m.DNSLookup("zen.spamhaus.org", dns.TypeA, dns.Found, 0, true)
	m.DNSLookup("spf", dns.TypeTXT, dns.Timeout, 800*time.Millisecond, false)
	m.Scored(&signals.Score{Signals: []signals.Signal{
		{Name: "rdns_missing", Result: signals.Yes},
		{Name: "dnsbl.zen.spamhaus.org", Result: signals.Listed},
		{Name: "dnswl.list.dnswl.org", Result: signals.Refused},
	}})
	out := scrape(t, m)
	for _, want := range []string{
		`greyd_requests_total 42`,
		`greyd_connections 3`,
		`greyd_decisions_total{action="pass",reason="triplet found"} 30`,
		`greyd_decisions_total{action="greylist",reason="new"} 10`,
		`greyd_store_entries{kind="triplet"} 1000`,
		`greyd_store_entries{kind="client"} 7`,
		`greyd_store_errors_total 1`,
		`greyd_config_reloads_total{result="ok"} 2`,
		`greyd_config_reloads_total{result="failed"} 1`,
		`greyd_config_last_reload_success_timestamp_seconds 1.7638128005e+09`,
		`greyd_build_info{goversion="go`,
		`greyd_request_duration_seconds_bucket{le="0.0005"} 1`,
		`greyd_store_operation_duration_seconds_count 1`,
		`greyd_retry_delay_seconds_bucket{le="420"} 1`,
		`greyd_dry_run 0`,
		`greyd_store_persistent 1`,
		`greyd_log_dropped_total 5`,
		`greyd_selective_decisions_total{class="pass"} 6`,
		`greyd_selective_decisions_total{class="greylist"} 4`,
		`greyd_dns_lookup_seconds_bucket{zone="zen.spamhaus.org",le="0.05"} 1`,
		`greyd_dns_lookup_seconds_count{zone="spf"} 1`,
		`greyd_dns_cache_hits_total 1`,
		`greyd_dns_lookups_total{result="listed",zone="zen.spamhaus.org"} 1`,
		`greyd_dns_lookups_total{result="refused",zone="list.dnswl.org"} 1`,
		`greyd_traps_set_total 4`,
		`greyd_trap_held_total 9`,
		`greyd_tarpits_total{result="issued"} 11`,
		`greyd_tarpits_total{result="passed"} 7`,
		`greyd_tarpits_total{result="abandoned"} 3`,
		`greyd_tarpits_total{result="capped"} 2`,
		`greyd_tarpits_active 5`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
		`go_memory_classes_heap_objects_bytes `,
		`go_memory_classes_heap_unused_bytes `,
		`go_memory_classes_heap_free_bytes `,
		`go_memory_classes_heap_released_bytes `,
		`go_memory_classes_metadata_other_bytes `,
		`go_memory_classes_os_stacks_bytes `,
		`go_memory_classes_total_bytes `,
		`go_cpu_classes_gc_total_cpu_seconds_total `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if n, mean := m.StoreLatency(); n != 1 || mean != 80*time.Microsecond {
		t.Errorf("StoreLatency() = %d, %v", n, mean)
	}
	promtool(t, out)
}

// promtool runs "promtool check metrics" (Debian package prometheus) on
// an exposition: the linter Prometheus' own CI uses.
func promtool(t *testing.T, exposition string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not installed (Debian: apt install prometheus; make deps installs it)")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestObserverAllocs: the request path's three calls allocate nothing.
func TestObserverAllocs(t *testing.T) {
	m := New(Sources{})
	if n := testing.AllocsPerRun(1000, func() {
		m.Request(time.Millisecond)
		m.StoreStep(time.Microsecond)
		m.RetryDelay(600)
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// TestREADME: every greyd_ metric is documented in README.md.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	out := scrape(t, New(testSources()))
	for _, line := range strings.Split(out, "\n") {
		name, ok := strings.CutPrefix(line, "# TYPE greyd_")
		if !ok {
			continue
		}
		name = "greyd_" + strings.Fields(name)[0]
		if !bytes.Contains(readme, []byte("`"+name+"`")) {
			t.Errorf("README.md does not document %s", name)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	m := New(Sources{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request(time.Millisecond)
			m.StoreStep(time.Microsecond)
		}
	})
}

// BenchmarkScrape scrapes a registry whose entry gauges come from a real
// buntdb store: the cost must not grow with the number of entries.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			db, err := buntdb.Open(buntdb.Memory, buntdb.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			for i := 0; i < n; i++ {
				db.PutTriplet(ctx, fmt.Sprintf("198.%d.%d.0/s%d@example.org/r@example.net", i>>16&255, i>>8&255, i), buntdb.Triplet{First: 1, Last: 2}, time.Hour)
			}
			src := testSources()
			src.Entries = db.Counts
			m := New(src)
			h := m.Handler()
			req := httptest.NewRequest("GET", "/metrics", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				io.Copy(io.Discard, rec.Body)
			}
		})
	}
}

func TestP0fLookups(t *testing.T) {
	m := New(testSources())
	m.Scored(&signals.Score{P0f: signals.P0fLookup{Asked: true, Result: p0f.ResultOK}})
	m.Scored(&signals.Score{P0f: signals.P0fLookup{Asked: true, Result: p0f.ResultOK}})
	m.Scored(&signals.Score{P0f: signals.P0fLookup{Asked: true, Result: p0f.ResultTimeout}})
	m.Scored(&signals.Score{}) // no p0f block: no lookup
	out := scrape(t, m)
	for _, want := range []string{
		`greyd_p0f_lookups_total{result="ok"} 2`,
		`greyd_p0f_lookups_total{result="timeout"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if n := strings.Count(out, "greyd_p0f_lookups_total{"); n != 2 {
		t.Errorf("%d p0f series, want 2", n)
	}
}
