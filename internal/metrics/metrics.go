// Package metrics owns greyd's Prometheus metrics (README.md lists them):
// a registry of its own, the histograms the request path feeds through
// greylist.Observer, and collectors that read the daemon's counters at
// scrape time. Nothing here scans the store or takes a label from what a
// client sent: a scrape costs the same with a million entries as with
// none, and no address, domain or sender ever becomes a time series.
package metrics

import (
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"time"

	"greyd/internal/dns"
	"greyd/internal/signals"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Sources are the daemon's counters, read at every scrape. Every function
// must be cheap (no scan) and safe for concurrent use; a nil one leaves its
// metric out.
type Sources struct {
	Version string
	// Requests and Connections: the policy server's answered requests
	// and open connections.
	Requests    func() uint64
	Connections func() int64
	// Decisions calls add for every action/reason pair (all of them,
	// zeros included, so that rates exist from the first scrape).
	Decisions func(add func(action, reason string, n uint64))
	// StoreErrors counts requests whose store step failed or timed out.
	StoreErrors func() uint64
	// Entries counts the store's entries without scanning.
	Entries func() (triplets, clients int)
	// Reloads counts configuration reloads by outcome; LastReloadSuccess
	// is when the running configuration was loaded (start or reload).
	Reloads           func() (ok, failed uint64)
	LastReloadSuccess func() time.Time
	// DryRun reports greylist { dry_run = true }.
	DryRun func() bool
	// StorePersistent is false while greyd serves from memory because
	// its database could not be opened.
	StorePersistent func() bool
	// LogDropped counts log lines dropped because the log output did
	// not keep up.
	LogDropped func() uint64
	// Selective calls add for every class of selective greylisting
	// (pass, tarpit, greylist), zeros included: scored requests, shadow ones too.
	Selective func(add func(class string, n uint64))
	// Traps counts requests that set a greytrap and requests a trap
	// held.
	Traps func() (set, held uint64)
	// Tarpits counts tarpits issued, clients that waited through theirs
	// (their session reached DATA), requests greylisted because their
	// client left one, and requests of class tarpit greylisted instead
	// (max_concurrent, stress); TarpitsActive is the number issued
	// within the last tarpit duration.
	Tarpits       func() (issued, passed, abandoned, capped uint64)
	TarpitsActive func() int
}

// Metrics is greyd's registry. Its Request, StoreStep and RetryDelay
// methods implement greylist.Observer: they do not allocate (the
// histograms have no labels) and do not block.
type Metrics struct {
	reg        *prometheus.Registry
	requestDur prometheus.Histogram
	stepDur    prometheus.Histogram
	retryDelay prometheus.Histogram

	// Selective greylisting (DNSLookup, Scored).
	dnsSeconds   *prometheus.HistogramVec
	dnsLookups   *prometheus.CounterVec
	dnsCacheHits prometheus.Counter
	p0fLookups   *prometheus.CounterVec
}

// Bucket bounds. Requests and store steps take microseconds when all is
// well and up to the store timeout (2 s by default) when it is not;
// senders retry from the greylisting delay (5 min) to the retry window
// (2 days).
var (
	durationBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 250e-3, 1, 2.5, 10}
	// DNS: a local resolver answers in a millisecond, a recursion in
	// tens, and the budget (800 ms by default, at most 10 s) ends it.
	dnsBuckets   = []float64{1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 800e-3, 1, 2.5, 5, 10}
	retryBuckets = []float64{300, 330, 360, 420, 600, 900, 1200, 1800, 3600, 7200, 14400, 28800, 86400, 172800}
)

// New returns the registry for src, with Go runtime and process metrics.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requestDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "greyd_request_duration_seconds",
			Help:    "Time from a parsed policy request to its reply: decision, store step and log line.",
			Buckets: durationBuckets,
		}),
		stepDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "greyd_store_operation_duration_seconds",
			Help:    "Duration of the store step of a request (the one read-decide-write of a triplet), failed ones included.",
			Buckets: durationBuckets,
		}),
		retryDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "greyd_retry_delay_seconds",
			Help:    "Time from a triplet's first attempt to its first pass: how long senders that retry take.",
			Buckets: retryBuckets,
		}),
	}
	m.dnsSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "greyd_dns_lookup_seconds",
		Help:    "Duration of the DNS lookups of selective greylisting that the cache could not answer, by zone (a dnsbl or dnswl zone, or spf).",
		Buckets: dnsBuckets,
	}, []string{"zone"})
	m.dnsLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "greyd_dns_lookups_total",
		Help: "DNS list signals computed for scored requests, cache answers included, by zone and result (listed, not_listed, timeout, refused, error).",
	}, []string{"zone", "result"})
	m.dnsCacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "greyd_dns_cache_hits_total",
		Help: "DNS lookups of selective greylisting answered by greyd's cache.",
	})
	m.p0fLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "greyd_p0f_lookups_total",
		Help: "p0f queries of scored requests, by result (ok, no_match, timeout, down, bad_query, garbage, error).",
	}, []string{"result"})
	m.reg.MustRegister(m.dnsSeconds, m.dnsLookups, m.dnsCacheHits, m.p0fLookups)
	m.reg.MustRegister(m.requestDur, m.stepDur, m.retryDelay,
		// The runtime's memory classes besides go_memstats_*: they say
		// where resident memory above the live heap goes (fragmentation,
		// free but not yet returned, stacks, GC metadata); and the GC's
		// CPU time, what a smaller headroom costs (gcpace).
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/(memory/classes|cpu/classes/gc)/`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&collector{src: src},
	)
	if src.Requests != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "greyd_requests_total",
			Help: "Policy requests answered.",
		}, func() float64 { return float64(src.Requests()) }))
	}
	if src.Connections != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "greyd_connections",
			Help: "Open policy connections.",
		}, func() float64 { return float64(src.Connections()) }))
	}
	if src.StoreErrors != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "greyd_store_errors_total",
			Help: "Requests whose store step failed or did not finish within the store timeout (answered as on_store_error says).",
		}, func() float64 { return float64(src.StoreErrors()) }))
	}
	if src.LogDropped != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "greyd_log_dropped_total",
			Help: "Log lines dropped because the log output (stderr, the journal) did not keep up; decision lines go first.",
		}, func() float64 { return float64(src.LogDropped()) }))
	}
	if src.Traps != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "greyd_traps_set_total",
			Help: "Requests to a trap address that trapped their client (greylisted, reason greytrap).",
		}, func() float64 { set, _ := src.Traps(); return float64(set) }))
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "greyd_trap_held_total",
			Help: "Requests greylisted because a trap holds their client (reason trapped).",
		}, func() float64 { _, held := src.Traps(); return float64(held) }))
	}
	if src.Tarpits != nil {
		for i, result := range []string{"issued", "passed", "abandoned", "capped"} {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "greyd_tarpits_total",
				Help:        "Tarpits by result: issued (SLEEP at RCPT), passed (the session reached DATA), abandoned (a later request of a client that left during its wait, greylisted with abandon_delay), capped (class tarpit greylisted instead: max_concurrent or stress).",
				ConstLabels: prometheus.Labels{"result": result},
			}, func() float64 {
				issued, passed, abandoned, capped := src.Tarpits()
				return float64([4]uint64{issued, passed, abandoned, capped}[i])
			}))
		}
	}
	if src.TarpitsActive != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "greyd_tarpits_active",
			Help: "Tarpits issued on this host within the last tarpit duration (what max_concurrent counts).",
		}, func() float64 { return float64(src.TarpitsActive()) }))
	}
	if src.LastReloadSuccess != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "greyd_config_last_reload_success_timestamp_seconds",
			Help: "When the running configuration was loaded (at start or by a reload), in Unix seconds.",
		}, func() float64 { return float64(src.LastReloadSuccess().UnixNano()) / 1e9 }))
	}
	if src.DryRun != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "greyd_dry_run",
			Help: "1 while greylist { dry_run = true }: decisions are made and learned but every reply is DUNNO.",
		}, func() float64 {
			if src.DryRun() {
				return 1
			}
			return 0
		}))
	}
	if src.StorePersistent != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "greyd_store_persistent",
			Help: "1 when the store keeps its state across restarts; 0 while greyd serves from memory because the database could not be opened.",
		}, func() float64 {
			if src.StorePersistent() {
				return 1
			}
			return 0
		}))
	}
	return m
}

var (
	descDecisions = prometheus.NewDesc("greyd_decisions_total",
		"Requests answered, by the log's action and reason (skip: not judged, malformed; error: the store failed). Each answered request is counted once.",
		[]string{"action", "reason"}, nil)
	descEntries = prometheus.NewDesc("greyd_store_entries",
		"Entries in the store by kind (triplet, client), counted without a scan; expired ones not yet removed included.",
		[]string{"kind"}, nil)
	descReloads = prometheus.NewDesc("greyd_config_reloads_total",
		"Configuration reloads by result (ok, failed: the running configuration stayed).",
		[]string{"result"}, nil)
	descSelective = prometheus.NewDesc("greyd_selective_decisions_total",
		"Requests scored by selective greylisting, by class (pass: no delay; greylist); in shadow mode the class computed, not the one acted on.",
		[]string{"class"}, nil)
	descBuild = prometheus.NewDesc("greyd_build_info",
		"Always 1; the labels say which greyd runs.",
		[]string{"version", "goversion"}, nil)
)

// collector reads the labelled counters from Sources at scrape time.
type collector struct{ src Sources }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBuild
	if c.src.Decisions != nil {
		ch <- descDecisions
	}
	if c.src.Entries != nil {
		ch <- descEntries
	}
	if c.src.Reloads != nil {
		ch <- descReloads
	}
	if c.src.Selective != nil {
		ch <- descSelective
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, c.src.Version, runtime.Version())
	if c.src.Decisions != nil {
		c.src.Decisions(func(action, reason string, n uint64) {
			ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(n), action, reason)
		})
	}
	if c.src.Entries != nil {
		t, cl := c.src.Entries()
		ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(t), "triplet")
		ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(cl), "client")
	}
	if c.src.Reloads != nil {
		ok, failed := c.src.Reloads()
		ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(ok), "ok")
		ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(failed), "failed")
	}
	if c.src.Selective != nil {
		c.src.Selective(func(class string, n uint64) {
			ch <- prometheus.MustNewConstMetric(descSelective, prometheus.CounterValue, float64(n), class)
		})
	}
}

// DNSLookup implements greylist.DNSObserver: the resolver's hook
// (dns.Config.Observe). label is a zone or "spf", from the configuration.
func (m *Metrics) DNSLookup(label string, _ dns.Type, _ dns.Status, took time.Duration, cached bool) {
	if cached {
		m.dnsCacheHits.Inc()
		return
	}
	if label == "" {
		label = "other"
	}
	m.dnsSeconds.WithLabelValues(label).Observe(took.Seconds())
}

// Scored implements greylist.DNSObserver: the list signals of a score
// are the lookups by zone and result; its p0f lookup, one by result.
func (m *Metrics) Scored(sc *signals.Score) {
	if r := sc.P0f.Result; r != "" {
		m.p0fLookups.WithLabelValues(r).Inc()
	}
	for i := range sc.Signals {
		s := &sc.Signals[i]
		zone, ok := strings.CutPrefix(s.Name, "dnsbl.")
		if !ok {
			if zone, ok = strings.CutPrefix(s.Name, "dnswl."); !ok {
				continue
			}
		}
		m.dnsLookups.WithLabelValues(zone, s.Result).Inc()
	}
}

// Request implements greylist.Observer.
func (m *Metrics) Request(d time.Duration) { m.requestDur.Observe(d.Seconds()) }

// StoreStep implements greylist.Observer.
func (m *Metrics) StoreStep(d time.Duration) { m.stepDur.Observe(d.Seconds()) }

// RetryDelay implements greylist.Observer.
func (m *Metrics) RetryDelay(seconds int64) { m.retryDelay.Observe(float64(seconds)) }

// StoreLatency returns how many store steps were timed and their mean
// duration, for greyd stats.
func (m *Metrics) StoreLatency() (n uint64, mean time.Duration) {
	var out dto.Metric
	if err := m.stepDur.Write(&out); err != nil || out.Histogram == nil {
		return 0, 0
	}
	n = out.Histogram.GetSampleCount()
	if n == 0 {
		return 0, 0
	}
	return n, time.Duration(out.Histogram.GetSampleSum() / float64(n) * float64(time.Second))
}

// Registry returns the registry, for tests and for a caller that adds
// its own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A failing collector costs its metric, not the whole scrape.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}
