package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics fetches the daemon's metrics.
func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// metricValues returns the samples of the exposition whose line starts
// with prefix, by their label part.
func metricValues(t *testing.T, exposition, prefix string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, l := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		out[l[len(prefix):i]] = v
	}
	return out
}

// TestMetrics: after N requests of every kind (greylisted, passed,
// whitelisted, malformed, failed by a full disk), greyd_decisions_total
// adds up to N, each kind under its label, and promtool accepts the
// exposition.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	maddr := freePort(t)
	sock, _ := testConfig(t, dir, fmt.Sprintf("metrics {\n  listen = %q\n}\nauto_whitelist {\n  clients = 0\n}\n", maddr))
	d := startOnTmpfs(t, dir, "size=1m")
	d.waitLog("metrics on http://" + maddr + "/metrics")
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	n := 0
	ask := func(lines ...string) string { n++; return c.ask(lines...) }
	want := map[string]float64{}
	count := func(action, reason string) { want[`{action="`+action+`",reason="`+reason+`"}`]++ }

	for i := 0; i < 5; i++ {
		ask(rcpt("198.51.100.60", "x", fmt.Sprintf("s%d@a.example", i), "b@example.org", now)...)
		count("greylist", "new")
	}
	for i := 0; i < 2; i++ {
		ask(rcpt("198.51.100.60", "x", fmt.Sprintf("s%d@a.example", i), "b@example.org", now+100)...)
		count("greylist", "early-retry")
		ask(rcpt("198.51.100.60", "x", fmt.Sprintf("s%d@a.example", i), "b@example.org", now+301)...)
		count("pass", "triplet found")
	}
	ask(rcpt("198.51.100.60", "x", "s0@a.example", "b@example.org", now+400)...)
	count("pass", "triplet found")
	ask(rcpt("2001:db8::25", "mail-am6eur05.outbound.protection.outlook.com", "a@b.example", "c@example.org", now)...)
	count("pass", "client whitelist")
	ask(rcpt("198.51.100.9", "unknown", "a@b.example", "postmaster@example.org", now)...)
	count("pass", "recipient whitelist")
	ask("request=smtpd_access_policy", "client_address=not-an-ip", "client_name=x", "sender=", "recipient=a@b")
	ask("request=smtpd_access_policy", "client_name=x", "sender=", "recipient=a@b")
	ask("request=junk")
	for i := 0; i < 3; i++ {
		count("skip", "malformed")
	}

	// A full disk: new triplets fail once the file's last page is used.
	filler := d.inside(filepath.Join(dir, "state", "filler"))
	fill(t, filler)
	failed := 0
	for i := 0; failed < 10; i++ {
		if i == 200 {
			t.Fatal("the store never failed on a full disk")
		}
		got := ask(rcpt("198.51.100.61", "x", fmt.Sprintf("full%d@a.example", i), "b@example.org", now)...)
		switch got {
		case greylisted:
			count("greylist", "new")
		case "DUNNO":
			count("error", "store error")
			failed++
		default:
			t.Fatalf("disk full: %q", got)
		}
	}
	os.Remove(filler)

	m := scrapeMetrics(t, maddr)
	got := metricValues(t, m, "greyd_decisions_total")
	var sum float64
	for _, v := range got {
		sum += v
	}
	if sum != float64(n) {
		t.Errorf("sum of greyd_decisions_total = %v, want %d (every request once)\n%v", sum, n, got)
	}
	for labels, w := range want {
		if got[labels] != w {
			t.Errorf("greyd_decisions_total%s = %v, want %v", labels, got[labels], w)
		}
	}
	for name, w := range map[string]float64{
		"greyd_requests_total":                    float64(n),
		"greyd_store_errors_total":                float64(failed),
		"greyd_request_duration_seconds_count":    float64(n),
		"greyd_retry_delay_seconds_count":         2,
		`greyd_config_reloads_total{result="ok"}`: 0,
		"greyd_dry_run":                           0,
	} {
		if v, ok := metricValues(t, m, name)[""]; !ok || v != w {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, w)
		}
	}
	if v := metricValues(t, m, "greyd_store_entries")[`{kind="triplet"}`]; v < 5 {
		t.Errorf(`greyd_store_entries{kind="triplet"} = %v`, v)
	}
	for _, name := range []string{"greyd_connections ", "greyd_store_operation_duration_seconds_bucket", "greyd_build_info{", "greyd_config_last_reload_success_timestamp_seconds "} {
		if !strings.Contains(m, name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, "greyd_") && (strings.Contains(l, "198.51") || strings.Contains(l, "example")) {
			t.Errorf("a label carries client data: %s", l)
		}
	}
	promtoolCheck(t, m)
}

// promtoolCheck runs "promtool check metrics" on an exposition.
func promtoolCheck(t *testing.T, exposition string) {
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

// TestMetricsDryRun: a dry run answers DUNNO, logs and counts what it
// would have done, and warns; log { decisions = "greylist" } leaves out
// the pass lines.
func TestMetricsDryRun(t *testing.T) {
	dir := t.TempDir()
	maddr := freePort(t)
	sock, _ := testConfig(t, dir, fmt.Sprintf("metrics {\n  listen = %q\n}\ngreylist {\n  dry_run = true\n}\nlog {\n  decisions = \"greylist\"\n}\n", maddr))
	d := startDaemon(t, dir)
	d.waitLog("warning: DRY RUN: greylisting is NOT enforced")
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	if got := c.ask(rcpt("198.51.100.60", "mx.foo.example", "a@b.example", "c@example.org", now)...); got != "DUNNO" {
		t.Errorf("dry run: %q, want DUNNO", got)
	}
	if got := c.ask(rcpt("198.51.100.60", "x", "a@b.example", "postmaster@example.org", now)...); got != "DUNNO" {
		t.Errorf("dry run, whitelisted: %q", got)
	}
	if got := c.ask(rcpt("198.51.100.60", "mx.foo.example", "a@b.example", "c@example.org", now+301)...); got != "DUNNO" {
		t.Errorf("dry run, first pass: %q, want DUNNO without a header", got)
	}
	d.waitLog("action=greylist, reason=new, client_name=mx.foo.example, client_address=198.51.100.60, sender=a@b.example, recipient=c@example.org (dry run)")
	m := scrapeMetrics(t, maddr)
	got := metricValues(t, m, "greyd_decisions_total")
	if got[`{action="greylist",reason="new"}`] != 1 || got[`{action="pass",reason="triplet found"}`] != 1 || got[`{action="pass",reason="recipient whitelist"}`] != 1 {
		t.Errorf("dry run counts: %v", got)
	}
	if v := metricValues(t, m, "greyd_dry_run")[""]; v != 1 {
		t.Errorf("greyd_dry_run = %v", v)
	}
	d.stop()
	if logs := d.logs.String(); strings.Contains(logs, "action=pass") {
		t.Errorf("decisions = \"greylist\" logged a pass:\n%s", logs)
	}
}
