package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"greyd/internal/dns/dnstest"
)

// Selective greylisting through the binary (issue 21): the DNS lists are
// dnstest on loopback, never the network.

// selRcpt is rcpt with its own HELO.
func selRcpt(addr, name, helo, sender, recipient string, when int64) []string {
	r := rcpt(addr, name, sender, recipient, when)
	for i, l := range r {
		if strings.HasPrefix(l, "helo_name=") {
			r[i] = "helo_name=" + helo
		}
	}
	return r
}

// selectiveConfig is mode score with rdns_missing 3, helo_invalid 1, a
// DNSBL (3) and a DNSWL (-3) served by srv, a 500 ms budget, and extra.
func selectiveConfig(srv *dnstest.Server, maddr, extra string) string {
	return fmt.Sprintf(`selective {
  mode        = "score"
  greylist_at = 3
%s}
signals {
  rdns_missing = 3
  helo_invalid = 1
}
dnsbl "bl.test.example" {
  weight = 3
}
dnswl "wl.test.example" {
  weight = -3
}
recipient_policy "billing" {
  recipients = ["billing@example.org"]
  mode       = "always"
  delay      = "1m"
}
dns {
  servers = [%q]
  budget  = "500ms"
}
metrics {
  listen = %q
}
`, extra, srv.Addr, maddr)
}

func TestSelective(t *testing.T) {
	srv := dnstest.Start(t)
	srv.A("3.100.51.198.bl.test.example", 300, "127.0.0.2")  // listed
	srv.A("4.100.51.198.wl.test.example", 300, "127.0.10.2") // on the white list
	srv.Set("5.100.51.198.bl.test.example", dnstest.Drop)    // the list never answers
	dir := t.TempDir()
	maddr := freePort(t)
	sock, _ := testConfig(t, dir, selectiveConfig(srv, maddr, ""))
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()

	t.Run("a verified client passes at first sight", func(t *testing.T) {
		if got := c.ask(selRcpt("198.51.100.1", "mx.a.example", "mx.a.example", "x@a.example", "bob@example.org", now)...); got != "DUNNO" {
			t.Fatalf("got %q, want DUNNO", got)
		}
		d.waitLog("action=pass, reason=score, score=0, client_name=mx.a.example, client_address=198.51.100.1, sender=x@a.example, recipient=bob@example.org")
		// Nothing was written: the same mail is scored again, from the cache.
		name := "1.100.51.198.bl.test.example"
		if n := srv.Queries(name); n != 1 {
			t.Fatalf("%d queries for %s, want 1", n, name)
		}
		if got := c.ask(selRcpt("198.51.100.1", "mx.a.example", "mx.a.example", "x@a.example", "bob@example.org", now+10)...); got != "DUNNO" {
			t.Fatalf("second request: got %q, want DUNNO", got)
		}
		if n := srv.Queries(name); n != 1 {
			t.Errorf("a second request within the TTL made a query: %d for %s, want 1", n, name)
		}
	})
	t.Run("an unverified client is greylisted", func(t *testing.T) {
		if got := c.ask(selRcpt("198.51.100.2", "unknown", "mx.b.example", "x@b.example", "bob@example.org", now)...); got != greylisted {
			t.Fatalf("got %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, score=3, signals=rdns_missing:3, client_name=unknown, client_address=198.51.100.2")
	})
	t.Run("a listed client is greylisted and passes after the delay", func(t *testing.T) {
		if got := c.ask(selRcpt("198.51.100.3", "mx.c.example", "mx.c.example", "x@c.example", "bob@example.org", now)...); got != greylisted {
			t.Fatalf("got %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, score=3, signals=dnsbl.bl.test.example:3, client_name=mx.c.example")
		got := c.ask(selRcpt("198.51.100.3", "mx.c.example", "mx.c.example", "x@c.example", "bob@example.org", now+310)...)
		if !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 310 seconds") {
			t.Fatalf("retry after the delay: got %q, want the X-Greylist header", got)
		}
	})
	t.Run("a white-listed client without reverse DNS passes", func(t *testing.T) {
		if got := c.ask(selRcpt("198.51.100.4", "unknown", "mx.d.example", "x@d.example", "bob@example.org", now)...); got != "DUNNO" {
			t.Fatalf("got %q, want DUNNO", got)
		}
		d.waitLog("action=pass, reason=score, score=0, signals=rdns_missing:3,dnswl.wl.test.example:-3, client_name=unknown, client_address=198.51.100.4")
	})
	t.Run("a list that never answers costs the budget and greylists", func(t *testing.T) {
		start := time.Now()
		if got := c.ask(selRcpt("198.51.100.5", "mx.e.example", "mx.e.example", "x@e.example", "bob@example.org", now)...); got != greylisted {
			t.Fatalf("got %q, want %q", got, greylisted)
		}
		if took := time.Since(start); took < 500*time.Millisecond || took > 1500*time.Millisecond {
			t.Errorf("answered after %v, want the budget of 500ms (and little more)", took)
		}
		d.waitLog("action=greylist, reason=new, score=3, signals=dnsbl.bl.test.example:3?, client_name=mx.e.example")
	})
	t.Run("a recipient policy overrides", func(t *testing.T) {
		if got := c.ask(selRcpt("198.51.100.1", "mx.a.example", "mx.a.example", "x@a.example", "billing@example.org", now)...); got != greylisted {
			t.Fatalf("got %q, want %q (mode always for billing@)", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, policy=billing, client_name=mx.a.example")
	})
	t.Run("explain judges a triplet with the recipient policy's delay", func(t *testing.T) {
		if got := c.ask(selRcpt("198.51.100.9", "mx.h.example", "mx.h.example", "x@h.example", "billing@example.org", now-200)...); got != greylisted {
			t.Fatalf("got %q, want %q", got, greylisted)
		}
		got := c.ask(selRcpt("198.51.100.9", "mx.h.example", "mx.h.example", "x@h.example", "billing@example.org", now-130)...)
		if !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 70 seconds") {
			t.Fatalf("retry after the policy's 1m: got %q, want the X-Greylist header", got)
		}
		x := explainJSON(t, filepath.Join(dir, "greyd.hcl"), 0, "198.51.100.9", "mx.h.example", "x@h.example", "billing@example.org")
		if tr := x.Triplet; tr == nil || !tr.Found || !tr.Passed || tr.Last != now-130 {
			t.Errorf("explain's triplet: %+v, want found and passed (70 s >= the policy's 60 s)", tr)
		}
	})
	t.Run("explain shows the signals and writes nothing", func(t *testing.T) {
		cfg := filepath.Join(dir, "greyd.hcl")
		x := explainJSON(t, cfg, 1, "198.51.100.3", "mx.f.example", "x@f.example", "carol@example.org")
		s := x.Selective
		if s == nil || !s.Scored || s.Mode != "score" || s.Score != 3 || s.Class != "greylist" || s.GreylistAt != 3 || len(s.Signals) != 4 {
			t.Fatalf("explain: %+v", s)
		}
		if g := s.Signals[2]; g.Name != "dnsbl.bl.test.example" || g.Result != "listed" || g.Answer != "127.0.0.2" || !g.Cached || g.Weight != 3 {
			t.Errorf("the dnsbl signal: %+v", g)
		}
		out := cliOK(t, 0, "explain", "-config", cfg, "-helo", "localhost", "198.51.100.7", "mx.g.example", "x@g.example", "bob@example.org")
		for _, want := range []string{
			"selective            mode score\n",
			"  helo_invalid       +1 yes (",
			"  dnsbl.bl.test.example +0 not_listed (nxdomain), asked ",
			"score                1 (greylist_at 3): class pass, in ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("explain lacks %q:\n%s", want, out)
			}
		}
		pol := explainJSON(t, cfg, 1, "198.51.100.1", "mx.a.example", "x@a.example", "billing@example.org")
		if s := pol.Selective; s == nil || s.Mode != "always" || s.RecipientPolicy != "billing" || s.Scored {
			t.Errorf("explain for billing@: %+v", s)
		}
		// Explain wrote nothing: the mail is new to greyd.
		if got := c.ask(selRcpt("198.51.100.3", "mx.f.example", "mx.f.example", "x@f.example", "carol@example.org", now)...); got != greylisted {
			t.Fatalf("got %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, score=3, signals=dnsbl.bl.test.example:3, client_name=mx.f.example")
	})
	t.Run("metrics", func(t *testing.T) {
		out := scrapeMetrics(t, maddr)
		want := map[string]map[string]float64{
			"greyd_selective_decisions_total": {`{class="pass"}`: 3, `{class="greylist"}`: 4},
			"greyd_dns_lookups_total": {
				`{result="listed",zone="bl.test.example"}`:  2,
				`{result="timeout",zone="bl.test.example"}`: 1,
				`{result="listed",zone="wl.test.example"}`:  1,
			},
			"greyd_decisions_total": {`{action="pass",reason="score"}`: 3},
		}
		for metric, samples := range want {
			got := metricValues(t, out, metric)
			for labels, v := range samples {
				if got[labels] != v {
					t.Errorf("%s%s = %v, want %v", metric, labels, got[labels], v)
				}
			}
		}
		if v := metricValues(t, out, "greyd_dns_cache_hits_total")[""]; v < 2 {
			t.Errorf("greyd_dns_cache_hits_total = %v, want at least 2 (the second request's lookups)", v)
		}
		if v := metricValues(t, out, "greyd_dns_lookup_seconds_count")[`{zone="bl.test.example"}`]; v < 5 {
			t.Errorf("greyd_dns_lookup_seconds_count{zone=bl.test.example} = %v, want 5 or more", v)
		}
	})
	t.Run("stats", func(t *testing.T) {
		out := cliOK(t, 0, "stats", "-config", filepath.Join(dir, "greyd.hcl"))
		if want := "selective          mode score; scored: pass 3, greylist 4\n"; !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
		// Lookups and cache hits are the metrics' own numbers.
		m := scrapeMetrics(t, maddr)
		var lookups float64
		for _, v := range metricValues(t, m, "greyd_dns_lookup_seconds_count") {
			lookups += v
		}
		hits := metricValues(t, m, "greyd_dns_cache_hits_total")[""]
		if want := fmt.Sprintf("dns                %.0f lookups, %.0f answered by the cache\n", lookups+hits, hits); !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	})
}

// Shadow mode greylists everyone and logs the class it computed.
func TestSelectiveShadow(t *testing.T) {
	srv := dnstest.Start(t)
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, selectiveConfig(srv, freePort(t), "  shadow = true\n"))
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	if got := c.ask(selRcpt("198.51.100.1", "mx.a.example", "mx.a.example", "x@a.example", "bob@example.org", now)...); got != greylisted {
		t.Errorf("clean client: got %q, want %q", got, greylisted)
	}
	if got := c.ask(selRcpt("198.51.100.2", "unknown", "x", "x@b.example", "bob@example.org", now)...); got != greylisted {
		t.Errorf("unverified client: got %q, want %q", got, greylisted)
	}
	d.waitLog("action=greylist, reason=new, class=pass, score=0, client_name=mx.a.example")
	d.waitLog("action=greylist, reason=new, class=greylist, score=4, signals=rdns_missing:3,helo_invalid:1, client_name=unknown")
	out := cliOK(t, 0, "stats", "-config", filepath.Join(dir, "greyd.hcl"))
	if want := "selective          mode score, shadow: every class greylisted; scored: pass 1, greylist 1\n"; !strings.Contains(out, want) {
		t.Errorf("stats lacks %q:\n%s", want, out)
	}
}

// Mode always (the default) asks DNS nothing, even with lists configured.
func TestSelectiveAlwaysNoQuery(t *testing.T) {
	srv := dnstest.Start(t)
	dir := t.TempDir()
	cfg := strings.Replace(selectiveConfig(srv, freePort(t), ""), `mode        = "score"`, `mode        = "always"`, 1)
	sock, _ := testConfig(t, dir, cfg)
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	for i, name := range []string{"mx.a.example", "unknown"} {
		addr := fmt.Sprintf("198.51.100.%d", i+1)
		if got := c.ask(selRcpt(addr, name, name, "x@a.example", "bob@example.org", now)...); got != greylisted {
			t.Errorf("%s: got %q, want %q", name, got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, client_name=" + name + ", client_address=" + addr)
	}
	if n := srv.Total(); n != 0 {
		t.Errorf("mode always made %d DNS queries, want none", n)
	}
	if strings.Contains(d.logs.String(), "score=") {
		t.Errorf("mode always logged a score:\n%s", d.logs)
	}
}
