package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"greyd/internal/store/redis/redistest"
)

// The tarpit through the binary (issue 22): a client of class tarpit
// (here: an invalid HELO, helo_invalid = 1 with tarpit_at = 1) waits at
// RCPT instead of being greylisted; its session's DATA proves it stayed.

// tarpitConfig is mode score with rdns_missing 3 and helo_invalid 1 (no
// DNS), tarpit_at 1, greylist_at 3, a tarpit of 65 s for at most two at
// once, and extra.
func tarpitConfig(extra string) string {
	return `selective {
  mode        = "score"
  greylist_at = 3
  tarpit_at   = 1
}
signals {
  rdns_missing = 3
  helo_invalid = 1
}
tarpit {
  duration       = "65s"
  max_concurrent = 2
  abandon_delay  = "30m"
}
` + extra
}

// tarpitReq is a request of session inst in state (RCPT or DATA), HELO
// "x" (invalid: class tarpit), at Unix time when; extra lines replace
// those of the same name.
func tarpitReq(state, inst, addr, recipient string, when int64, extra ...string) []string {
	r := rcpt(addr, "mx.tarpit.example", "s@tarpit.example", recipient, when)
	set := func(line string) {
		name := line[:strings.IndexByte(line, '=')+1]
		for i, l := range r {
			if strings.HasPrefix(l, name) {
				r[i] = line
				return
			}
		}
		r = append(r, line)
	}
	set("protocol_state=" + state)
	set("instance=" + inst)
	set("helo_name=x")
	for _, l := range extra {
		set(l)
	}
	return r
}

func TestTarpit(t *testing.T) {
	dir := t.TempDir()
	maddr := freePort(t)
	d, _ := adminDaemon(t, dir, tarpitConfig(fmt.Sprintf("metrics {\n  listen = %q\n}\n", maddr)))
	c := dial(t, "unix", d.sock)
	cfg := filepath.Join(dir, "greyd.hcl")
	now := time.Now().Unix()

	t.Run("RCPT waits; the session's next RCPT passes; DATA of two recipients passes both", func(t *testing.T) {
		const a = "198.18.1.1"
		if got := c.ask(tarpitReq("RCPT", "S1", a, "u1@example.org", now)...); got != "SLEEP 65" {
			t.Fatalf("first RCPT: %q, want SLEEP 65", got)
		}
		d.waitLog("action=tarpit, reason=tarpit, score=1, signals=helo_invalid:1, sleep=65, client_name=mx.tarpit.example, client_address=" + a + ", sender=s@tarpit.example, recipient=u1@example.org")
		if got := c.ask(tarpitReq("RCPT", "S1", a, "u2@example.org", now+65)...); got != "DUNNO" {
			t.Fatalf("second RCPT of the session: %q, want DUNNO", got)
		}
		d.waitLog("action=pass, reason=tarpit-session, client_name=mx.tarpit.example, client_address=" + a + ", sender=s@tarpit.example, recipient=u2@example.org")
		if got := c.ask(tarpitReq("DATA", "S1", a, "", now+66, "recipient_count=2")...); got != "DUNNO" {
			t.Fatalf("DATA: %q, want DUNNO", got)
		}
		d.waitLog("action=pass, reason=tarpit, waited=66, client_name=mx.tarpit.example, client_address=" + a + ", sender=s@tarpit.example, recipient_count=2")
		// The next message, in a new session, passes for both.
		for _, r := range []string{"u1@example.org", "u2@example.org"} {
			if got := c.ask(tarpitReq("RCPT", "S2", a, r, now+100)...); got != "DUNNO" {
				t.Errorf("new session to %s: %q, want DUNNO", r, got)
			}
			d.waitLog("action=pass, reason=triplet found, client_name=mx.tarpit.example, client_address=" + a + ", sender=s@tarpit.example, recipient=" + r)
		}
	})
	t.Run("a client that left is greylisted with abandon_delay, and passes after it", func(t *testing.T) {
		const a = "198.18.2.1"
		if got := c.ask(tarpitReq("RCPT", "S3", a, "u1@example.org", now)...); got != "SLEEP 65" {
			t.Fatalf("first RCPT: %q, want SLEEP 65", got)
		}
		out := cliOK(t, 0, "list", "-config", cfg, "-kind", "tarpit")
		if !strings.Contains(out, "tarpit  marked") || !strings.Contains(out, a+" session=") {
			t.Errorf("list -kind tarpit: want the mark of %s:\n%s", a, out)
		}
		if got := c.ask(tarpitReq("RCPT", "S4", a, "u1@example.org", now+600)...); got != greylisted {
			t.Fatalf("next session: %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=tarpit-abandoned, client_name=mx.tarpit.example, client_address=" + a)
		if got := c.ask(tarpitReq("RCPT", "S5", a, "u1@example.org", now+600+1799)...); got != greylisted {
			t.Fatalf("a second before abandon_delay: %q, want %q", got, greylisted)
		}
		got := c.ask(tarpitReq("RCPT", "S6", a, "u1@example.org", now+600+1800)...)
		if !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 1800 seconds") {
			t.Fatalf("after abandon_delay: %q, want the X-Greylist header", got)
		}
	})
	t.Run("beyond max_concurrent: greylisted; room again after the duration", func(t *testing.T) {
		at := now + 10000
		for i, a := range []string{"198.18.3.1", "198.18.4.1"} {
			if got := c.ask(tarpitReq("RCPT", fmt.Sprint("C", i), a, "u@example.org", at)...); got != "SLEEP 65" {
				t.Fatalf("tarpit %d: %q, want SLEEP 65", i, got)
			}
		}
		if got := c.ask(tarpitReq("RCPT", "C2", "198.18.5.1", "u@example.org", at+1)...); got != greylisted {
			t.Fatalf("third at once: %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, score=1, signals=helo_invalid:1, tarpit=max_concurrent, client_name=mx.tarpit.example, client_address=198.18.5.1")
		if got := c.ask(tarpitReq("RCPT", "C3", "198.18.6.1", "u@example.org", at+65)...); got != "SLEEP 65" {
			t.Fatalf("after the duration: %q, want SLEEP 65", got)
		}
	})
	t.Run("stress=yes: greylisted", func(t *testing.T) {
		if got := c.ask(tarpitReq("RCPT", "T1", "198.18.7.1", "u@example.org", now+20000, "stress=yes")...); got != greylisted {
			t.Fatalf("under stress: %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, score=1, signals=helo_invalid:1, tarpit=stress, client_name=mx.tarpit.example, client_address=198.18.7.1")
	})
	t.Run("a clean client passes, a bad one is greylisted", func(t *testing.T) {
		if got := c.ask(tarpitReq("RCPT", "P1", "198.18.8.1", "u@example.org", now, "helo_name=mx.tarpit.example")...); got != "DUNNO" {
			t.Fatalf("clean: %q, want DUNNO", got)
		}
		d.waitLog("action=pass, reason=score, score=0, client_name=mx.tarpit.example, client_address=198.18.8.1")
		if got := c.ask(tarpitReq("RCPT", "P2", "198.18.9.1", "u@example.org", now, "client_name=unknown")...); got != greylisted {
			t.Fatalf("no reverse DNS: %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, score=4, signals=rdns_missing:3,helo_invalid:1, client_name=unknown, client_address=198.18.9.1")
	})
	t.Run("explain shows the class and the mark", func(t *testing.T) {
		out, _, _ := cli(t, nil, "explain", "-config", cfg, "-helo", "x", "198.18.10.1", "mx.tarpit.example", "s@tarpit.example", "u@example.org")
		for _, want := range []string{"(tarpit_at 1, greylist_at 3): class tarpit", "no mark", "of max_concurrent 2 active", "SLEEP 65"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain of a tarpit-class client lacks %q:\n%s", want, out)
			}
		}
		// 198.18.2.1 left its tarpit: explain asks as another session.
		out, _, _ = cli(t, nil, "explain", "-config", cfg, "-helo", "x", "198.18.2.1", "mx.tarpit.example", "s@tarpit.example", "new@example.org")
		for _, want := range []string{"mark set ", "the client left during its wait", "reason=tarpit-abandoned"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain of a client that left lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("delete -client forgets the client's mark", func(t *testing.T) {
		out := cliOK(t, 0, "delete", "-config", cfg, "-client", "198.18.2.1")
		if !strings.Contains(out, "1 tarpit mark(s)") {
			t.Errorf("delete -client: want the mark counted:\n%s", out)
		}
		if out := cliOK(t, 0, "list", "-config", cfg, "-kind", "tarpit"); strings.Contains(out, "198.18.2.1") {
			t.Errorf("list -kind tarpit after the delete still shows it:\n%s", out)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		m := metricValues(t, scrapeMetrics(t, maddr), "greyd_tarpits")
		for name, want := range map[string]float64{
			`_total{result="issued"}`:    5,
			`_total{result="passed"}`:    1,
			`_total{result="abandoned"}`: 2,
			`_total{result="capped"}`:    2,
		} {
			if m[name] != want {
				t.Errorf("%s = %v, want %v (all: %v)", name, m[name], want, m)
			}
		}
		if _, ok := m["_active"]; !ok {
			t.Errorf("no greyd_tarpits_active: %v", m)
		}
	})
	t.Run("stats counts the class tarpit", func(t *testing.T) {
		out := cliOK(t, 0, "stats", "-config", cfg)
		if !regexp.MustCompile(`(?m)^selective +mode score; scored: pass \d+, tarpit [1-9]\d*, greylist \d+$`).MatchString(out) {
			t.Errorf("stats: want the class tarpit counted:\n%s", out)
		}
	})
}

// TestTarpitRestart: the mark is in the database file, so a session
// tarpitted before a restart passes at its DATA after it.
func TestTarpitRestart(t *testing.T) {
	dir := t.TempDir()
	testConfig(t, dir, tarpitConfig(""))
	d := startDaemon(t, dir)
	now := time.Now().Unix()
	const a, b = "198.51.100.120", "192.0.2.120"
	if got := dial(t, "unix", d.sock).ask(tarpitReq("RCPT", "R1", a, "u@example.org", now)...); got != "SLEEP 65" {
		t.Fatalf("RCPT: %q, want SLEEP 65", got)
	}
	// b's message has two recipients: its DATA will name neither.
	c0 := dial(t, "unix", d.sock)
	if got := c0.ask(tarpitReq("RCPT", "M1", b, "u@example.org", now)...); got != "SLEEP 65" {
		t.Fatalf("RCPT of b: %q, want SLEEP 65", got)
	}
	if got := c0.ask(tarpitReq("RCPT", "M1", b, "v@example.org", now)...); got != "DUNNO" {
		t.Fatalf("second RCPT of b: %q, want DUNNO", got)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.logs)
	}
	d = startDaemon(t, dir)
	c := dial(t, "unix", d.sock)
	if got := c.ask(tarpitReq("DATA", "R1", a, "u@example.org", now+65, "recipient_count=1")...); got != "DUNNO" {
		t.Fatalf("DATA after the restart: %q, want DUNNO", got)
	}
	d.waitLog("action=pass, reason=tarpit, waited=65, client_name=mx.tarpit.example, client_address=" + a)
	if got := c.ask(tarpitReq("RCPT", "R2", a, "u@example.org", now+100)...); got != "DUNNO" {
		t.Fatalf("next session: %q, want DUNNO", got)
	}
	d.waitLog("action=pass, reason=triplet found, client_name=mx.tarpit.example, client_address=" + a)

	// The restarted greyd does not know b's two triplets: DATA clears
	// the mark, and b's next session is tarpitted again, not greylisted
	// as a client that left.
	if got := c.ask(tarpitReq("DATA", "M1", b, "", now+65, "recipient_count=2")...); got != "DUNNO" {
		t.Fatalf("DATA of two recipients after the restart: %q, want DUNNO", got)
	}
	d.waitLog("action=pass, reason=tarpit, waited=65, client_name=mx.tarpit.example, client_address=" + b)
	if got := c.ask(tarpitReq("RCPT", "M2", b, "u@example.org", now+100)...); got != "SLEEP 65" {
		t.Fatalf("b's next session: %q, want SLEEP 65\n%s", got, d.logs)
	}
	if strings.Contains(d.logs.String(), "tarpit-abandoned") {
		t.Errorf("b was taken for a client that left:\n%s", d.logs)
	}
}

// TestDataWithoutTarpit: without a tarpit a DATA request is answered
// DUNNO and neither decided, logged nor stored.
func TestDataWithoutTarpit(t *testing.T) {
	dir := t.TempDir()
	testConfig(t, dir, "")
	d := startDaemon(t, dir)
	c := dial(t, "unix", d.sock)
	now := time.Now().Unix()
	if got := c.ask(tarpitReq("DATA", "D1", "198.51.100.130", "data@example.org", now)...); got != "DUNNO" {
		t.Fatalf("DATA: %q, want DUNNO", got)
	}
	if got := c.ask(tarpitReq("RCPT", "D1", "198.51.100.130", "rcpt@example.org", now)...); got != greylisted {
		t.Fatalf("RCPT: %q, want %q", got, greylisted)
	}
	d.waitLog("recipient=rcpt@example.org")
	if strings.Contains(d.logs.String(), "data@example.org") {
		t.Errorf("the DATA request was logged:\n%s", d.logs)
	}
	// Nor stored: the same triplet at RCPT is new.
	if got := c.ask(tarpitReq("RCPT", "D2", "198.51.100.130", "data@example.org", now+1)...); got != greylisted {
		t.Fatalf("RCPT: %q, want %q", got, greylisted)
	}
	d.waitLog("action=greylist, reason=new, client_name=mx.tarpit.example, client_address=198.51.100.130, sender=s@tarpit.example, recipient=data@example.org")
}

func TestTarpitCheckConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "greyd.hcl")
	writeFile(t, filepath.Join(dir, "whitelist_clients"), "")
	writeFile(t, filepath.Join(dir, "whitelist_recipients"), "")
	check := func() (string, int) {
		cmd := exec.Command(binary, "check-config", "-config", cfg)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	writeFile(t, cfg, "selective {\n  mode      = \"score\"\n  tarpit_at = 1\n}\n")
	if out, code := check(); code != 2 || !strings.Contains(out, cfg+":3:15: Missing tarpit block: selective.tarpit_at needs a tarpit block") {
		t.Errorf("tarpit_at without a tarpit block: exit %d, want 2 and the file:line:\n%s", code, out)
	}
	writeFile(t, cfg, "selective {\n  mode      = \"score\"\n  tarpit_at = 3\n}\ntarpit {\n  duration = \"300s\"\n}\n")
	out, code := check()
	if code != 2 || !strings.Contains(out, cfg+":3:15: Value out of range: selective.tarpit_at = 3 must be below greylist_at = 3") ||
		!strings.Contains(out, cfg+`:6:14: Value out of range: tarpit.duration must be at most 4m`) {
		t.Errorf("tarpit_at = greylist_at, duration 300s: exit %d, want 2 and both at file:line:\n%s", code, out)
	}
	writeFile(t, cfg, tarpitConfig(""))
	if out, code := check(); code != 0 || !strings.Contains(out, "tarpit_at") || !strings.Contains(out, `abandon_delay  = "30m"`) {
		t.Errorf("a good tarpit: exit %d, want 0 and the settings written back:\n%s", code, out)
	}
}

// TestTarpitRedisTwoHosts: two greyd hosts on one Redis share the marks
// and what a tarpit proved. A client that waited through its tarpit on A
// passes on B; a client that left A's tarpit is greylisted with
// abandon_delay when it tries B.
func TestTarpitRedisTwoHosts(t *testing.T) {
	srv := redistest.Start(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	sockA, sockB := redisConfig(t, dirA, srv, tarpitConfig("")), redisConfig(t, dirB, srv, tarpitConfig(""))
	a, b := startDaemon(t, dirA), startDaemon(t, dirB)
	a.waitLog("redis: connected to unix:" + srv.Socket)
	b.waitLog("redis: connected to unix:" + srv.Socket)
	ca, cb := dial(t, "unix", sockA), dial(t, "unix", sockB)
	now := time.Now().Unix()

	const stayed, left = "198.18.5.1", "198.18.5.2"
	if got := ca.ask(tarpitReq("RCPT", "A1", stayed, "u@example.org", now)...); got != "SLEEP 65" {
		t.Fatalf("RCPT on A: %q, want SLEEP 65", got)
	}
	if got := ca.ask(tarpitReq("DATA", "A1", stayed, "u@example.org", now+65)...); got != "DUNNO" {
		t.Fatalf("DATA on A: %q, want DUNNO", got)
	}
	a.waitLog("action=pass, reason=tarpit, waited=65, client_name=mx.tarpit.example, client_address=" + stayed)
	if got := cb.ask(tarpitReq("RCPT", "B1", stayed, "u@example.org", now+100)...); got != "DUNNO" {
		t.Errorf("the next message through B: %q, want DUNNO (the triplet passed on A)", got)
	}
	b.waitLog("action=pass, reason=triplet found, client_name=mx.tarpit.example, client_address=" + stayed)

	if got := ca.ask(tarpitReq("RCPT", "A2", left, "u@example.org", now)...); got != "SLEEP 65" {
		t.Fatalf("RCPT on A: %q, want SLEEP 65", got)
	}
	if got := cb.ask(tarpitReq("RCPT", "B2", left, "u@example.org", now+120)...); got != greylisted {
		t.Errorf("the client that left A, on B: %q, want %q", got, greylisted)
	}
	b.waitLog("action=greylist, reason=tarpit-abandoned, client_name=mx.tarpit.example, client_address=" + left)
	if out := cliOK(t, 0, "list", "-config", filepath.Join(dirB, "greyd.hcl"), "-kind", "tarpit"); !strings.Contains(out, left+" session=") {
		t.Errorf("list -kind tarpit on B: want A's mark of %s:\n%s", left, out)
	}
}
