package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// report is the outcome of a run in the shape both outputs share. Field
// names are the JSON keys; bench/run.sh reads rps, p99_us and errors.
type report struct {
	Target      string            `json:"target"`
	Workload    string            `json:"workload"`
	Mix         string            `json:"mix"`
	Seed        uint64            `json:"seed"`
	Conns       int               `json:"conns"`
	Pipeline    int               `json:"pipeline"`
	Pool        int               `json:"pool"`
	Clients     int               `json:"clients,omitempty"`
	DurationS   float64           `json:"duration_s"`
	Sent        uint64            `json:"sent"`
	OK          uint64            `json:"ok"`
	Errors      uint64            `json:"errors"`
	Timeouts    uint64            `json:"timeouts"`
	ConnErrors  uint64            `json:"conn_errors"`
	ConnsUp     int               `json:"conns_up"`
	RPS         float64           `json:"rps"`
	P50us       float64           `json:"p50_us"`
	P99us       float64           `json:"p99_us"`
	P999us      float64           `json:"p999_us"`
	MaxUs       float64           `json:"max_us"`
	MeanUs      float64           `json:"mean_us"`
	Actions     map[string]uint64 `json:"actions"`
	Primed      uint64            `json:"primed"`
	PrimeErrors uint64            `json:"prime_errors"`
	PrimeS      float64           `json:"prime_s"`
	ErrSamples  []string          `json:"error_samples"`

	actionOrder []string
	p50, p99    time.Duration
	p999, max   time.Duration
	mean        time.Duration
}

func newReport(o *options, t target, gen *generator, res *result) *report {
	r := &report{
		Target:      t.String(),
		Workload:    gen.kind.String(),
		Mix:         gen.describe(),
		Seed:        o.seed,
		Conns:       o.conns,
		Pipeline:    o.pipeline,
		Pool:        o.pool,
		Clients:     o.clients,
		DurationS:   round(res.elapsed.Seconds(), 3),
		Sent:        res.sent,
		OK:          res.ok,
		Errors:      res.errors,
		Timeouts:    res.timeouts,
		ConnErrors:  res.connErrors,
		ConnsUp:     res.connsUp,
		Actions:     make(map[string]uint64),
		Primed:      res.primed,
		PrimeErrors: res.primeErrors,
		PrimeS:      round(res.primeTime.Seconds(), 3),
		ErrSamples:  res.errSamples,
		actionOrder: sortedActions(&res.actions),
		p50:         res.hist.quantile(0.50),
		p99:         res.hist.quantile(0.99),
		p999:        res.hist.quantile(0.999),
		max:         time.Duration(res.hist.max),
		mean:        res.hist.mean(),
	}
	if r.ErrSamples == nil {
		r.ErrSamples = []string{}
	}
	if res.elapsed > 0 {
		r.RPS = round(float64(res.ok)/res.elapsed.Seconds(), 1)
	}
	for _, n := range r.actionOrder {
		r.Actions[n] = res.actions.get(n)
	}
	r.P50us = us(r.p50)
	r.P99us = us(r.p99)
	r.P999us = us(r.p999)
	r.MaxUs = us(r.max)
	r.MeanUs = us(r.mean)
	return r
}

func (r *report) writeJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func (r *report) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "workload     %s, seed %d\n", r.Mix, r.Seed)
	fmt.Fprintf(&b, "target       %s, %d connections, pipeline %d\n", r.Target, r.Conns, r.Pipeline)
	if r.Primed > 0 || r.PrimeErrors > 0 {
		fmt.Fprintf(&b, "primed       %d pool triplets in %.2fs (%d errors), not measured\n", r.Primed, r.PrimeS, r.PrimeErrors)
	}
	fmt.Fprintf(&b, "requests     %d ok, %d errors, %d timeouts in %.2fs (%d/%d connections up, %d connection errors)\n",
		r.OK, r.Errors, r.Timeouts, r.DurationS, r.ConnsUp, r.Conns, r.ConnErrors)
	fmt.Fprintf(&b, "throughput   %.1f req/s\n", r.RPS)
	fmt.Fprintf(&b, "latency      p50 %s  p99 %s  p99.9 %s  max %s  mean %s\n",
		fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.p999), fmtDur(r.max), fmtDur(r.mean))
	b.WriteString("actions     ")
	if len(r.actionOrder) == 0 {
		b.WriteString(" (none)")
	}
	for _, n := range r.actionOrder {
		c := r.Actions[n]
		fmt.Fprintf(&b, " %s %d (%.1f%%)", n, c, 100*float64(c)/float64(max(r.OK, 1)))
	}
	b.WriteByte('\n')
	for _, e := range r.ErrSamples {
		fmt.Fprintf(&b, "error        %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func us(d time.Duration) float64 { return round(float64(d)/1e3, 1) }

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// fmtDur prints a latency with about three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
