package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// listenLocal binds a fresh local endpoint: a unix socket in t.TempDir()
// or 127.0.0.1:0.
func listenLocal(t *testing.T, network string) (net.Listener, target) {
	t.Helper()
	tg := target{network: "tcp", address: "127.0.0.1:0"}
	if network == "unix" {
		tg = target{network: "unix", address: filepath.Join(t.TempDir(), "policy.sock")}
	}
	ln, err := tg.listen()
	if err != nil {
		t.Fatalf("listen %v: %v", tg, err)
	}
	tg.address = ln.Addr().String()
	return ln, tg
}

func startNull(t *testing.T, network string) (*nullServer, target) {
	t.Helper()
	ln, tg := listenLocal(t, network)
	s := newNullServer(ln)
	go s.serve()
	t.Cleanup(s.close)
	return s, tg
}

func baseConfig(tg target) runConfig {
	return runConfig{
		target:   tg,
		conns:    1,
		pipeline: 1,
		timeout:  5 * time.Second,
		gen:      newGenerator(wNew, 1, 1000),
	}
}

func TestRunExactCountAgainstNull(t *testing.T) {
	tests := []struct {
		conns, pipeline int
		n               uint64
	}{
		{1, 1, 1},
		{1, 1, 500},
		{8, 1, 997},
		{4, 16, 1001},
		{64, 3, 2000},
		{16, 1, 5}, // fewer requests than connections
	}
	for _, network := range []string{"unix", "tcp"} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/c%d/p%d/n%d", network, tc.conns, tc.pipeline, tc.n), func(t *testing.T) {
				s, tg := startNull(t, network)
				cfg := baseConfig(tg)
				cfg.conns, cfg.pipeline, cfg.count = tc.conns, tc.pipeline, tc.n
				res, err := run(cfg)
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				s.close() // waits for the server side to see every connection close
				if got := s.requests.Load(); got != tc.n {
					t.Errorf("server answered %d requests, want %d", got, tc.n)
				}
				if res.sent != tc.n || res.ok != tc.n || res.hist.n != tc.n {
					t.Errorf("sent %d, ok %d, recorded %d; want %d each", res.sent, res.ok, res.hist.n, tc.n)
				}
				if res.errors+res.timeouts+res.connErrors != 0 {
					t.Errorf("errors %d, timeouts %d, conn errors %d: %v", res.errors, res.timeouts, res.connErrors, res.errSamples)
				}
				if got := res.actions.get("DUNNO"); got != tc.n || len(res.actions.names) != 1 {
					t.Errorf("actions %v %v, want DUNNO=%d only", res.actions.names, res.actions.counts, tc.n)
				}
				if res.connsUp != tc.conns {
					t.Errorf("%d connections up, want %d", res.connsUp, tc.conns)
				}
			})
		}
	}
}

func TestRunPrimesPool(t *testing.T) {
	s, tg := startNull(t, "unix")
	cfg := baseConfig(tg)
	cfg.conns, cfg.count, cfg.prime = 3, 100, true
	cfg.gen = newGenerator(wRepeat, 1, 50)
	res, err := run(cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	s.close()
	if res.primed != 50 || res.ok != 100 || s.requests.Load() != 150 {
		t.Errorf("primed %d, measured %d, server saw %d; want 50, 100, 150", res.primed, res.ok, s.requests.Load())
	}
	if got := res.actions.get("DUNNO"); got != 100 {
		t.Errorf("DUNNO %d, want 100 (priming must not be recorded)", got)
	}
}

// scriptedServer answers the k-th request of each connection with
// replies[k%len(replies)] verbatim. closeAfter > 0 closes the connection
// after that many replies; a nil reply means "never answer".
func scriptedServer(t *testing.T, network string, closeAfter int, replies ...[]byte) target {
	t.Helper()
	ln, tg := listenLocal(t, network)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for k := 0; ; {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(bytes.TrimRight(line, "\r\n")) > 0 {
						continue
					}
					reply := replies[k%len(replies)]
					k++
					if reply == nil {
						continue
					}
					if _, err := c.Write(reply); err != nil {
						return
					}
					if closeAfter > 0 && k >= closeAfter {
						return
					}
				}
			}()
		}
	}()
	return tg
}

func TestActionHistogram(t *testing.T) {
	tg := scriptedServer(t, "unix", 0,
		[]byte("action=DUNNO\n\n"),
		[]byte("action=DEFER_IF_PERMIT 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/d1.example.html\n\n"),
		[]byte("action=PREPEND X-Greylist: delayed 300 seconds by greyd at mx; Sun, 22 Nov 2026 11:02:38 UTC\n\n"),
		[]byte("action=DEFER_IF_PERMIT Greylisted\r\n\r\n"), // CRLF tolerated
		[]byte("action=451 4.7.1 try later\n\n"),
		[]byte("foo=bar\n\n"), // no action: an error, connection kept
	)
	cfg := baseConfig(tg)
	cfg.count = 60
	res, err := run(cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	want := map[string]uint64{"DUNNO": 10, "DEFER_IF_PERMIT": 20, "PREPEND": 10, "451": 10}
	for name, n := range want {
		if got := res.actions.get(name); got != n {
			t.Errorf("%s: %d, want %d", name, got, n)
		}
	}
	if len(res.actions.names) != len(want) {
		t.Errorf("actions %v, want only %v", res.actions.names, want)
	}
	if res.ok != 50 || res.errors != 10 || res.timeouts != 0 || res.connErrors != 0 {
		t.Errorf("ok %d, errors %d, timeouts %d, conn errors %d; want 50, 10, 0, 0",
			res.ok, res.errors, res.timeouts, res.connErrors)
	}
}

func TestTimeoutCounted(t *testing.T) {
	tg := scriptedServer(t, "tcp", 0, nil) // reads, never answers
	cfg := baseConfig(tg)
	cfg.count, cfg.timeout = 3, 50*time.Millisecond
	res, err := run(cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.timeouts != 3 || res.ok != 0 {
		t.Errorf("timeouts %d, ok %d; want 3, 0 (%v)", res.timeouts, res.ok, res.errSamples)
	}
}

func TestServerClosingIsNotFatal(t *testing.T) {
	// Like postgrey --exim: one reply per connection, then close.
	tg := scriptedServer(t, "unix", 1, []byte("action=DUNNO\n\n"))
	cfg := baseConfig(tg)
	cfg.count = 10
	res, err := run(cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.ok+res.errors+res.timeouts != 10 || res.ok == 0 || res.errors == 0 {
		t.Errorf("ok %d, errors %d, timeouts %d; want some ok and some errors, 10 in all", res.ok, res.errors, res.timeouts)
	}
	if len(res.errSamples) == 0 {
		t.Errorf("no error reported")
	}
}

func TestAllConnectionsFail(t *testing.T) {
	cfg := baseConfig(target{network: "unix", address: filepath.Join(t.TempDir(), "nobody.sock")})
	cfg.conns, cfg.count = 2, 10
	res, err := run(cfg)
	if err == nil {
		t.Fatalf("run against a missing socket succeeded: %+v", res)
	}
	if res.connErrors == 0 || res.ok != 0 {
		t.Errorf("conn errors %d, ok %d; want >0, 0", res.connErrors, res.ok)
	}
}

func TestRealMainJSON(t *testing.T) {
	s, tg := startNull(t, "unix")
	var out, errOut bytes.Buffer
	code := realMain([]string{"-unix", tg.address, "-n", "500", "-c", "4", "-w", "mixed", "-json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out.String())
	}
	for k, want := range map[string]float64{"ok": 500, "sent": 500, "errors": 0, "timeouts": 0, "conns": 4, "primed": 1000} {
		if got, _ := rep[k].(float64); got != want {
			t.Errorf("%s = %v, want %v", k, rep[k], want)
		}
	}
	for _, k := range []string{"rps", "p50_us", "p99_us", "p999_us", "max_us"} {
		if _, ok := rep[k].(float64); !ok {
			t.Errorf("%s missing or not a number: %v", k, rep[k])
		}
	}
	if acts, _ := rep["actions"].(map[string]any); acts["DUNNO"] != 500.0 {
		t.Errorf("actions = %v, want DUNNO 500", rep["actions"])
	}
	s.close()
	if got := s.requests.Load(); got != 1500 {
		t.Errorf("server saw %d requests, want 1500 (1000 primed + 500)", got)
	}
}

func BenchmarkRoundTripNull(b *testing.B) {
	ln, err := net.Listen("unix", filepath.Join(b.TempDir(), "null.sock"))
	if err != nil {
		b.Fatal(err)
	}
	s := newNullServer(ln)
	go s.serve()
	defer s.close()
	cfg := runConfig{
		target: target{network: "unix", address: ln.Addr().String()}, conns: 1, pipeline: 1,
		timeout: 5 * time.Second, gen: newGenerator(wMixed, 1, 1000), count: uint64(b.N),
	}
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := run(cfg); err != nil {
		b.Fatal(err)
	}
}
