package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"greyd/internal/p0f"
	"greyd/internal/p0f/p0ftest"
)

// p0f as a signal through the binary (issue 24), with the fake p0f of
// p0ftest; p0freal_test.go has the real one.

// p0fConfig is mode score with only p0f signals: Windows 3, Linux -1.
func p0fConfig(socket, maddr string) string {
	return fmt.Sprintf(`selective {
  mode        = "score"
  greylist_at = 3
}
p0f {
  socket  = %q
  timeout = "200ms"
  os "windows" {
    name   = "^Windows"
    weight = 3
  }
  os "unix" {
    name   = "^(Linux|FreeBSD)"
    weight = -1
  }
}
metrics {
  listen = %q
}
`, socket, maddr)
}

func TestP0fSignal(t *testing.T) {
	srv := p0ftest.Start(t)
	const winAddr, linuxAddr, unseen = "192.0.2.10", "192.0.2.20", "192.0.2.30"
	setAnswers := func(s *p0ftest.Server) {
		s.Set(netip.MustParseAddr(winAddr), p0f.Answer{OSName: "Windows", OSFlavor: "7 or 8", Distance: 8})
		s.Set(netip.MustParseAddr(linuxAddr), p0f.Answer{OSName: "Linux", OSFlavor: "3.11 and newer", Distance: 1})
	}
	setAnswers(srv)
	dir := t.TempDir()
	maddr := freePort(t)
	sock, _ := testConfig(t, dir, p0fConfig(srv.Path, maddr))
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	cfg := filepath.Join(dir, "greyd.hcl")
	now := time.Now().Unix()
	ask := func(addr string, when int64) string {
		return c.ask(selRcpt(addr, "mx.example.net", "mx.example.net", "x@example.net", "bob@example.org", when)...)
	}

	t.Run("windows is greylisted, linux passes, unseen counts at worst", func(t *testing.T) {
		if got := ask(winAddr, now); got != greylisted {
			t.Errorf("windows: got %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, score=3, signals=p0f.windows:3, client_name=mx.example.net, client_address=192.0.2.10")
		if got := ask(linuxAddr, now); got != "DUNNO" {
			t.Errorf("linux: got %q, want DUNNO", got)
		}
		d.waitLog("action=pass, reason=score, score=-1, signals=p0f.unix:-1, client_name=mx.example.net, client_address=192.0.2.20")
		if got := ask(unseen, now); got != greylisted {
			t.Errorf("unseen: got %q, want %q", got, greylisted)
		}
		d.waitLog("action=greylist, reason=new, score=3, signals=p0f.windows:3?, client_name=mx.example.net, client_address=192.0.2.30")
	})
	t.Run("no p0f query for a triplet that passes", func(t *testing.T) {
		n := srv.Queries()
		if got := ask(winAddr, now+310); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 310 seconds") {
			t.Fatalf("retry: got %q", got)
		}
		if m := srv.Queries(); m != n {
			t.Errorf("the retry of a known triplet asked p0f %d times", m-n)
		}
	})
	t.Run("explain shows p0f's answer", func(t *testing.T) {
		x := explainJSON(t, cfg, 1, winAddr, "mx.example.net", "y@example.net", "carol@example.org")
		s := x.Selective
		if s == nil || s.P0f == nil || s.P0f.Result != "ok" || s.P0f.OSName != "Windows" || s.P0f.OSFlavor != "7 or 8" || s.P0f.Distance != 8 {
			t.Fatalf("explain: %+v", s)
		}
		if len(s.Signals) != 2 || s.Signals[0].Name != "p0f.windows" || s.Signals[0].Result != "match" || s.Signals[0].Weight != 3 {
			t.Errorf("signals: %+v", s.Signals)
		}
		out := cliOK(t, 0, "explain", "-config", cfg, linuxAddr, "mx.example.net", "y@example.net", "carol@example.org")
		for _, want := range []string{
			`  p0f.unix           -1 match (os_name="Linux" os_flavor="3.11 and newer" distance=1), asked `,
			`p0f                  os_name "Linux", os_flavor "3.11 and newer", distance 1, match quality 0, in `,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("explain lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("p0f gone: unknown at worst, one warning; back: one line", func(t *testing.T) {
		srv.Stop()
		for i := range 5 {
			start := time.Now()
			if got := ask(linuxAddr, now+int64(i)); got != greylisted {
				t.Fatalf("linux with p0f gone: got %q, want %q", got, greylisted)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("answered after %v with p0f gone", took)
			}
		}
		d.waitLog("p0f: cannot query " + srv.Path)
		if n := strings.Count(d.logs.String(), "p0f: cannot query"); n != 1 {
			t.Errorf("%d warnings that p0f went away, want 1", n)
		}
		if err := srv.Listen(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if ask(linuxAddr, now+100) == "DUNNO" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("p0f is back, linux still greylisted:\n%s", d.logs)
			}
		}
		d.waitLog("answers again after")
	})
	t.Run("metrics", func(t *testing.T) {
		got := metricValues(t, scrapeMetrics(t, maddr), "greyd_p0f_lookups_total")
		if got[`{result="ok"}`] < 3 || got[`{result="no_match"}`] != 1 || got[`{result="down"}`] < 5 {
			t.Errorf("greyd_p0f_lookups_total: %v", got)
		}
	})
	t.Run("a reload moves the socket", func(t *testing.T) {
		other := p0ftest.Start(t)
		setAnswers(other)
		text, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, []byte(strings.Replace(string(text), srv.Path, other.Path, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		d.cmd.Process.Signal(syscall.SIGHUP)
		for deadline := time.Now().Add(10 * time.Second); other.Queries() == 0; time.Sleep(50 * time.Millisecond) {
			ask(linuxAddr, now+200)
			if time.Now().After(deadline) {
				t.Fatalf("after the reload, p0f at the new socket was never asked:\n%s", d.logs)
			}
		}
		if strings.Contains(d.logs.String(), "p0f.socket changed") {
			t.Errorf("the socket is reloadable, yet:\n%s", d.logs)
		}
	})
}
