package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"greyd/internal/dns/dnstest"
	"greyd/internal/p0f"
	"greyd/internal/p0f/p0ftest"
)

// The pictures shipped in dist/: the Grafana dashboard and the alerting
// rules, checked against the real Prometheus scraping the real greyd.

const (
	dashboardFile = "../../dist/grafana/greyd.json"
	rulesFile     = "../../dist/prometheus/greyd-rules.yml"
)

// dashboardMetrics are the metrics greyd exports; each must be on the
// dashboard, and its panels must show data.
var dashboardMetrics = []string{
	"greyd_requests_total",
	"greyd_decisions_total",
	"greyd_request_duration_seconds",
	"greyd_retry_delay_seconds",
	"greyd_store_entries",
	"greyd_store_errors_total",
	"greyd_store_operation_duration_seconds",
	"greyd_store_persistent",
	"greyd_connections",
	"greyd_config_reloads_total",
	"greyd_config_last_reload_success_timestamp_seconds",
	"greyd_log_dropped_total",
	"greyd_dry_run",
	"greyd_build_info",
	"greyd_tarpits_total",
	"greyd_tarpits_active",
	"greyd_traps_set_total",
	"greyd_trap_held_total",
}

// scoreMetrics count only while selective greylisting scores requests:
// TestPrometheus runs greyd in mode score with a DNS list on the fake
// DNS server and a p0f block on the fake p0f, so the panels that read
// them have data too.
var scoreMetrics = []string{
	"greyd_selective_decisions_total",
	"greyd_dns_lookups_total",
	"greyd_dns_lookup_seconds",
	"greyd_dns_cache_hits_total",
	"greyd_p0f_lookups_total",
}

// p0fFailed is the selector of GreydP0fUnavailable's failed lookups.
var p0fFailed = regexp.MustCompile(`^greyd_p0f_lookups_total\{result=~"([a-z_|]+)"\}$`)

// unhealthyOnly reports the selectors of series that a healthy run never
// has, so that none matches: a DNS list refusing greyd's queries
// (GreydDNSListRefusing) and p0f lookups that failed
// (GreydP0fUnavailable).
func unhealthyOnly(sel string) bool {
	return strings.Contains(sel, `result="refused"`) || p0fFailed.MatchString(sel)
}

// dashboardQuery is one PromQL expression of the dashboard and where it is.
type dashboardQuery struct {
	where, expr string
}

// dashboardQueries returns every "expr" of the dashboard: panels and
// annotations.
func dashboardQueries(t *testing.T, dash any) []dashboardQuery {
	t.Helper()
	var out []dashboardQuery
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["title"].(string); ok {
				where = s
			} else if s, ok := v["name"].(string); ok {
				where = s
			}
			if e, ok := v["expr"].(string); ok {
				out = append(out, dashboardQuery{where, e})
			}
			for _, c := range v {
				walk(c, where)
			}
		case []any:
			for _, c := range v {
				walk(c, where)
			}
		}
	}
	walk(dash, "dashboard")
	slices.SortFunc(out, func(a, b dashboardQuery) int { return strings.Compare(a.where+a.expr, b.where+b.expr) })
	return out
}

// grafanaVars stands for what Grafana puts in for its variables.
func grafanaVars(expr, job, instance string) string {
	return strings.NewReplacer(
		"$__rate_interval", "30s",
		"$__range", "1h",
		"$job", job,
		"$instance", instance,
	).Replace(expr)
}

func loadDashboard(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return dash
}

// TestGrafanaDashboard: the dashboard is a Grafana JSON model with a
// Prometheus data source variable and no data source of its own, its
// panels do not overlap, every metric greyd exports has a panel, and every
// query parses (promtool check rules on the queries as recording rules).
func TestGrafanaDashboard(t *testing.T) {
	dash := loadDashboard(t)
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion = %v, want 36 or later (Grafana 9+)", dash["schemaVersion"])
	}
	if dash["title"] != "greyd" || dash["uid"] != "greyd" {
		t.Errorf("title %v, uid %v: want greyd, greyd", dash["title"], dash["uid"])
	}
	vars := map[string]map[string]any{}
	tmpl, _ := dash["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	for _, v := range list {
		v := v.(map[string]any)
		vars[v["name"].(string)] = v
	}
	if v := vars["datasource"]; v == nil || v["type"] != "datasource" || v["query"] != "prometheus" {
		t.Errorf("no datasource variable of type datasource for prometheus: %v", v)
	}
	for _, name := range []string{"job", "instance"} {
		if v := vars[name]; v == nil || v["type"] != "query" || !strings.Contains(fmt.Sprint(v["definition"]), "label_values(greyd_build_info") {
			t.Errorf("no %s variable from label_values(greyd_build_info...): %v", name, v)
		}
	}

	// Every data source reference is the variable: no UID of one
	// Grafana's data source.
	var refs int
	var checkDS func(v any, where string)
	checkDS = func(v any, where string) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["title"].(string); ok {
				where = s
			}
			if ds, ok := v["datasource"]; ok {
				refs++
				m, _ := ds.(map[string]any)
				if m["type"] != "prometheus" || m["uid"] != "${datasource}" {
					t.Errorf("%s: datasource %v, want {type: prometheus, uid: ${datasource}}", where, ds)
				}
			}
			for _, c := range v {
				checkDS(c, where)
			}
		case []any:
			for _, c := range v {
				checkDS(c, where)
			}
		}
	}
	checkDS(dash, "dashboard")

	// Panels: unique ids, inside the 24 columns, no overlap; each with a
	// description and its queries.
	type rect struct{ x, y, w, h int }
	var placed []rect
	ids := map[float64]string{}
	panels, _ := dash["panels"].([]any)
	for _, p := range panels {
		p := p.(map[string]any)
		title, _ := p["title"].(string)
		id, _ := p["id"].(float64)
		if other, ok := ids[id]; ok || id == 0 {
			t.Errorf("panel %q: id %v (also %q)", title, id, other)
		}
		ids[id] = title
		g, _ := p["gridPos"].(map[string]any)
		r := rect{int(g["x"].(float64)), int(g["y"].(float64)), int(g["w"].(float64)), int(g["h"].(float64))}
		if r.w <= 0 || r.h <= 0 || r.x < 0 || r.x+r.w > 24 {
			t.Errorf("panel %q: gridPos %v outside the 24 columns", title, g)
		}
		for _, o := range placed {
			if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
				t.Errorf("panel %q at %v overlaps another at %v", title, r, o)
			}
		}
		placed = append(placed, r)
		if p["type"] == "row" {
			continue
		}
		if d, _ := p["description"].(string); d == "" {
			t.Errorf("panel %q has no description", title)
		}
		if ts, _ := p["targets"].([]any); len(ts) == 0 {
			t.Errorf("panel %q has no query", title)
		}
	}
	if refs < len(panels) {
		t.Errorf("%d data source references for %d panels", refs, len(panels))
	}

	queries := dashboardQueries(t, dash)
	all := ""
	for _, q := range queries {
		all += q.expr + "\n"
	}
	for _, m := range append(slices.Clone(dashboardMetrics), scoreMetrics...) {
		if !strings.Contains(all, m) {
			t.Errorf("no panel shows %s", m)
		}
	}

	// The queries as recording rules: promtool parses each one.
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range queries {
		e, _ := json.Marshal(grafanaVars(q.expr, "greyd", "127.0.0.1:9386"))
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, e)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtoolPath(t), "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s\n%s", err, out, rules.String())
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(queries)); !bytes.Contains(out, []byte(want)) {
		t.Errorf("promtool check rules: %q lacks %q", out, want)
	}
}

func promtoolPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not installed (Debian: apt install prometheus; make deps installs it)")
	}
	return p
}

// promServer is a real Prometheus on loopback.
type promServer struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
	logs *syncBuf
	done chan error
}

// startPrometheus runs Prometheus scraping target every second as job
// "greyd", evaluating the shipped rules every second, with its data in a
// temporary directory.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not installed (Debian: apt install prometheus; make deps installs it)")
	}
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: greyd
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &promServer{t: t, addr: freePort(t), logs: &syncBuf{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.addr,
		"--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(p.stop)
	p.waitFor("Prometheus to be ready", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + p.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

func (p *promServer) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// poll polls cond until it holds or within has passed, and says which;
// Prometheus exiting fails the test.
func (p *promServer) poll(within time.Duration, cond func() bool) bool {
	p.t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-p.done:
			p.done <- err
			p.t.Fatalf("prometheus exited: %v\n%s", err, p.logs)
		default:
		}
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// waitFor polls cond and fails the test if it does not hold within.
func (p *promServer) waitFor(what string, within time.Duration, cond func() bool) {
	p.t.Helper()
	if !p.poll(within, cond) {
		p.t.Fatalf("waited %v for %s\nprometheus:\n%s", within, what, p.logs)
	}
}

// api GETs an API path and decodes its data into v.
func (p *promServer) api(path string, params url.Values, v any) error {
	resp, err := http.Get("http://" + p.addr + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %v: %s", path, err, b)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s %v: %s: %s", path, params, r.Status, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query; a result that is not a vector is an error.
func (p *promServer) query(expr string) ([]promSample, error) {
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {expr}}, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector: %s", d.ResultType, d.Result)
	}
	var s []promSample
	return s, json.Unmarshal(d.Result, &s)
}

// value is the single sample of expr, or -1 without exactly one.
func (p *promServer) value(expr string) float64 {
	s, err := p.query(expr)
	if err != nil || len(s) != 1 {
		return -1
	}
	v, _ := strconv.ParseFloat(fmt.Sprint(s[0].Value[1]), 64)
	return v
}

type promRule struct {
	Name           string `json:"name"`
	Query          string `json:"query"`
	Health         string `json:"health"`
	LastError      string `json:"lastError"`
	Type           string `json:"type"`
	State          string `json:"state"`
	LastEvaluation string `json:"lastEvaluation"`
}

func (p *promServer) rules() []promRule {
	p.t.Helper()
	var d struct {
		Groups []struct {
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("/api/v1/rules", nil, &d); err != nil {
		p.t.Fatal(err)
	}
	var out []promRule
	for _, g := range d.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// alerts returns the pending and firing alerts: name -> state.
func (p *promServer) alerts() map[string]string {
	p.t.Helper()
	var d struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", nil, &d); err != nil {
		p.t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range d.Alerts {
		out[a.Labels["alertname"]] = a.State
	}
	return out
}

// promConfig is selective greylisting in mode score with a DNS list on
// dnsAddr and p0f on p0fSocket, a tarpit and a greytrap. A client p0f
// does not know scores 3 (p0f.windows at its worst): greylisted, as
// the triplet load wants; one that p0f knows as Linux and that says
// HELO x scores 1: tarpitted.
func promConfig(maddr, dnsAddr, p0fSocket string) string {
	return fmt.Sprintf(`metrics {
  listen = %q
}
selective {
  mode        = "score"
  tarpit_at   = 1
  greylist_at = 3
}
signals {
  rdns_missing = 3
  helo_invalid = 1
}
dnsbl "bl.example" {
  weight = 3
}
dns {
  servers = [%q]
}
p0f {
  socket  = %q
  timeout = "500ms"
  os "windows" {
    name   = "^Windows"
    weight = 3
  }
}
tarpit {
  duration = "65s"
}
trap {
  recipients = ["trap_recipients"]
}
`, maddr, dnsAddr, p0fSocket)
}

// TestPrometheus: the real Prometheus scrapes greyd while it answers
// requests of every kind and reloads (one good reload, one bad). Every
// dashboard query then returns data (selective greylisting in mode
// score, with a DNS list on the fake DNS server, p0f on the fake p0f, a
// tarpit and a greytrap, feeds the score, tarpit and trap panels), every
// metric greyd exports is on the dashboard, every rule evaluates without
// error, every metric a rule selects exists with the labels it names,
// the bad reload fires GreydReloadFailed and nothing else, and stopping
// greyd makes GreydDown pending.
func TestPrometheus(t *testing.T) {
	dash := loadDashboard(t)
	dir := t.TempDir()
	maddr := freePort(t)
	dnsSrv := dnstest.Start(t) // every name: NXDOMAIN, so not listed
	p0fSrv := p0ftest.Start(t) // no_match but for the tarpit's clients
	writeFile(t, filepath.Join(dir, "trap_recipients"), "spamtrap@example.org\n")
	sock, _ := testConfig(t, dir, promConfig(maddr, dnsSrv.Addr, p0fSrv.Path))
	d := startDaemon(t, dir)
	d.waitLog("metrics on http://" + maddr + "/metrics")
	p := startPrometheus(t, maddr)
	p.waitFor("the first scrape of greyd", 20*time.Second, func() bool { return p.value(`up{job="greyd"}`) == 1 })

	// Load: each round a new triplet, an early retry, the pass after a
	// delay that varies and a later pass, over two connections; now and
	// then a whitelisted client or recipient, a malformed request, a
	// tarpitted session that reaches DATA (an hour apart: none capped),
	// and a client that writes to the trap and is held by it. These
	// clients are each in a /24 of their own: triplets, auto-whitelist
	// and traps go by /24.
	conns := []*client{dial(t, "unix", sock), dial(t, "unix", sock)}
	now := time.Now().Unix()
	delays := []int64{310, 420, 700, 1300, 4000, 30000}
	sent, tarpits, traps := 0, 0, 0
	ask := func(lines ...string) string { sent++; return conns[sent%2].ask(lines...) }
	reloaded := false
	start := time.Now()
	for i := 0; time.Since(start) < 4*time.Second; i++ {
		addr := fmt.Sprintf("198.51.%d.%d", 100+i/250%50, 1+i%250)
		sender := fmt.Sprintf("s%d@sender.example", i)
		delay := delays[i%len(delays)]
		ask(rcpt(addr, "mx.sender.example", sender, "rcpt@example.org", now)...)
		ask(rcpt(addr, "mx.sender.example", sender, "rcpt@example.org", now+60)...)
		ask(rcpt(addr, "mx.sender.example", sender, "rcpt@example.org", now+delay)...)
		ask(rcpt(addr, "mx.sender.example", sender, "rcpt@example.org", now+delay+10)...)
		if i%10 == 0 {
			ask(rcpt("2001:db8::25", "mail-am6eur05.outbound.protection.outlook.com", sender, "c@example.org", now)...)
			ask(rcpt(addr, "unknown", sender, "postmaster@example.org", now)...)
			ask("request=smtpd_access_policy", "client_name=x", "sender=", "recipient=a@b")

			ta := fmt.Sprintf("203.%d.%d.1", tarpits/256%256, tarpits%256)
			p0fSrv.Set(netip.MustParseAddr(ta), p0f.Answer{OSName: "Linux", OSFlavor: "3.11 and newer", Distance: 1})
			inst, at := fmt.Sprint("P", tarpits), now+3600*int64(1+tarpits)
			if got := ask(tarpitReq("RCPT", inst, ta, "rcpt@example.org", at)...); got != "SLEEP 65" {
				t.Fatalf("tarpit %d of %s: %q, want SLEEP 65", tarpits, ta, got)
			}
			if got := ask(tarpitReq("DATA", inst, ta, "rcpt@example.org", at+65, "recipient_count=1")...); got != "DUNNO" {
				t.Fatalf("DATA of tarpit %d: %q, want DUNNO", tarpits, got)
			}
			tarpits++

			trapped := fmt.Sprintf("198.%d.%d.1", 18+traps/256%2, traps%256)
			ask(rcpt(trapped, "unknown", sender, "spamtrap@example.org", now)...)
			ask(rcpt(trapped, "unknown", sender, "rcpt@example.org", now+400)...)
			traps++
		}
		if !reloaded && time.Since(start) > time.Second {
			d.cmd.Process.Signal(syscall.SIGHUP)
			reloaded = true
		}
	}
	d.waitLog("reload (SIGHUP): ok")
	// A broken edit: the reload fails, greyd keeps its configuration.
	if err := os.WriteFile(filepath.Join(dir, "greyd.hcl"), []byte("greylist {\n  dealy = \"1m\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog("still running the previous configuration")
	t.Logf("%d requests in %v, %d tarpits, %d clients trapped", sent, time.Since(start).Round(time.Millisecond), tarpits, traps)

	p.waitFor(fmt.Sprintf("greyd_requests_total = %d and a failed reload in Prometheus", sent), 20*time.Second, func() bool {
		return p.value(`greyd_requests_total{job="greyd"}`) == float64(sent) &&
			p.value(`greyd_config_reloads_total{job="greyd", result="failed"}`) >= 1
	})

	// The tarpits, traps and p0f lookups the panels below show.
	for _, c := range []struct {
		expr string
		min  float64
	}{
		{`greyd_tarpits_total{job="greyd", result="issued"}`, float64(tarpits)},
		{`greyd_tarpits_total{job="greyd", result="passed"}`, float64(tarpits)},
		{`greyd_traps_set_total{job="greyd"}`, float64(traps)},
		{`greyd_trap_held_total{job="greyd"}`, float64(traps)},
		{`greyd_p0f_lookups_total{job="greyd", result="ok"}`, float64(tarpits)},
		{`greyd_p0f_lookups_total{job="greyd", result="no_match"}`, 1},
	} {
		if v := p.value(c.expr); v < c.min || c.min == 0 {
			t.Errorf("%s = %v, want at least %v (and more than 0)", c.expr, v, c.min)
		}
	}

	// Grafana's variables: the job and the instance are offered.
	for _, c := range []struct{ label, match, want string }{
		{"job", "greyd_build_info", "greyd"},
		{"instance", `greyd_build_info{job=~"greyd"}`, maddr},
	} {
		var values []string
		if err := p.api("/api/v1/label/"+c.label+"/values", url.Values{"match[]": {c.match}}, &values); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(values, c.want) {
			t.Errorf("variable %s: label_values(%s, %s) = %v, want %s in it", c.label, c.match, c.label, values, c.want)
		}
	}

	// Every query of the dashboard.
	queries := dashboardQueries(t, dash)
	withData := 0
	for _, q := range queries {
		expr := grafanaVars(q.expr, "greyd", maddr)
		s, err := p.query(expr)
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", q.where, expr, err)
		case len(s) == 0:
			t.Errorf("%s: no data: %s", q.where, expr)
		default:
			withData++
			t.Logf("%s: %d series: %s", q.where, len(s), expr)
		}
	}
	for _, m := range dashboardMetrics {
		if !slices.ContainsFunc(queries, func(q dashboardQuery) bool { return strings.Contains(q.expr, m) }) {
			t.Errorf("no dashboard query reads %s", m)
		}
	}
	// Every metric this greyd exported: on the dashboard and in the
	// lists above, so that a new metric cannot be left out of both.
	var names []string
	if err := p.api("/api/v1/label/__name__/values", url.Values{"match[]": {`{job="greyd", __name__=~"greyd_.+"}`}}, &names); err != nil {
		t.Fatal(err)
	}
	listed := append(slices.Clone(dashboardMetrics), scoreMetrics...)
	for _, name := range names {
		if !slices.ContainsFunc(listed, func(m string) bool {
			return name == m || strings.HasPrefix(name, m+"_") && slices.Contains([]string{"_bucket", "_sum", "_count"}, name[len(m):])
		}) {
			t.Errorf("greyd exports %s: not in dashboardMetrics or scoreMetrics, and so maybe on no panel", name)
		}
	}
	if len(names) < len(listed) {
		t.Errorf("greyd exported %d greyd_ metrics, fewer than the %d listed: %v", len(names), len(listed), names)
	}
	if withData < 40 {
		t.Errorf("only %d of %d dashboard queries have data", withData, len(queries))
	}

	// The rules: each evaluated, none in error; the bad reload fired
	// GreydReloadFailed, and a healthy greyd fires nothing else.
	var rules []promRule
	evaluated := p.poll(20*time.Second, func() bool {
		rules = p.rules()
		for _, r := range rules {
			if r.Health != "ok" {
				return false
			}
		}
		return len(rules) > 0
	})
	if len(rules) != 11 {
		t.Errorf("%d rules loaded from %s, want 11", len(rules), rulesFile)
	}
	for _, r := range rules {
		if r.Health != "ok" || r.LastError != "" || r.Type != "alerting" {
			t.Errorf("rule %s: %s, health %s (evaluated %s): %q", r.Name, r.Type, r.Health, r.LastEvaluation, r.LastError)
		}
	}
	if !evaluated {
		t.Fatalf("the rules were not all evaluated within 20s\nprometheus:\n%s", p.logs)
	}
	var alerts map[string]string
	p.poll(10*time.Second, func() bool {
		alerts = p.alerts()
		return alerts["GreydReloadFailed"] == "firing"
	})
	if len(alerts) != 1 || alerts["GreydReloadFailed"] != "firing" {
		t.Errorf("alerts %v, want only GreydReloadFailed firing", alerts)
	}
	// Each selector of a rule matches series: a label value the metric
	// does not have (result="failure") would leave an alert that never
	// fires.
	selector := regexp.MustCompile(`\b(?:up|greyd_[a-z0-9_]+)(?:\{[^}]*\})?`)
	for _, r := range rules {
		for _, sel := range selector.FindAllString(r.Query, -1) {
			if m := p0fFailed.FindStringSubmatch(sel); m != nil {
				checkP0fFailed(t, r.Name, m[1])
			}
			if unhealthyOnly(sel) {
				continue
			}
			var series []map[string]string
			if err := p.api("/api/v1/series", url.Values{"match[]": {sel}}, &series); err != nil {
				t.Errorf("rule %s: %v", r.Name, err)
			} else if len(series) == 0 {
				t.Errorf("rule %s: %s matches no series", r.Name, sel)
			}
		}
	}

	// greyd stops: GreydDown waits for its 5 minutes.
	d.stop()
	p.waitFor("GreydDown pending after greyd stopped", 20*time.Second, func() bool {
		return p.alerts()["GreydDown"] == "pending"
	})
}

// checkP0fFailed: the results a rule counts as p0f's failures are every
// result of package p0f but ok and no_match, so that a result added
// later is not silently left out, nor a misspelt one counted.
func checkP0fFailed(t *testing.T, rule, alternatives string) {
	t.Helper()
	got := strings.Split(alternatives, "|")
	var want []string
	for _, r := range p0f.Results {
		if r != p0f.ResultOK && r != p0f.ResultNoMatch {
			want = append(want, r)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("rule %s counts p0f results %v as failed, want %v", rule, got, want)
	}
}
