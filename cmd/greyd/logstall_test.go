package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStalledStderr: with stderr on a pipe that nobody reads (journald
// stalled), every request is answered, at no less than half the rate of
// the same load on a greyd whose stderr is read, run at the same time
// (the machine's load changes the rates, not their ratio); the lines that
// did not fit are counted in greyd_log_dropped_total, and a line says how
// many once stderr is read again.
func TestStalledStderr(t *testing.T) {
	free, stalled := startWithStderr(t, false), startWithStderr(t, true)
	var nFree, nStalled int64
	var wg sync.WaitGroup
	wg.Go(func() { nFree = mixedLoad(t, free.sock, false) })
	wg.Go(func() { nStalled = mixedLoad(t, stalled.sock, true) })
	wg.Wait()
	t.Logf("requests answered in %v: %d with stderr read, %d with stderr stalled", loadFor, nFree, nStalled)
	if nStalled < nFree/2 {
		t.Errorf("stderr stalled: %d requests answered, want at least half of the %d with stderr read", nStalled, nFree)
	}

	var dropped float64
	pollUntil(t, func() bool {
		dropped = metricValues(t, scrapeMetrics(t, stalled.maddr), "greyd_log_dropped_total")[""]
		return dropped > 0
	}, "greyd_log_dropped_total to count the dropped lines")
	var st struct {
		LogDropped uint64 `json:"log_dropped"`
	}
	out := cliOK(t, 0, "stats", "-json", "-config", filepath.Join(stalled.dir, "greyd.hcl"))
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.LogDropped == 0 {
		t.Errorf("greyd stats -json: log_dropped %d (%v), want the dropped lines counted\n%s", st.LogDropped, err, out)
	}
	go io.Copy(stalled.logs, stalled.r) // journald is back
	stalled.waitLog(" log line(s) dropped: the log output did not keep up")
	if v := metricValues(t, scrapeMetrics(t, free.maddr), "greyd_log_dropped_total")[""]; v != 0 {
		t.Errorf("greyd_log_dropped_total = %v with stderr read, want 0", v)
	}
}

// pollUntil polls cond until it holds, for at most 10 s.
func pollUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// loadFor is how long stderrLoad sends requests.
const loadFor = 3 * time.Second

type stallProc struct {
	*proc
	r     *os.File // the read end of stderr; not read while stalled
	maddr string
}

// startWithStderr starts greyd with a metrics listener and its stderr on
// a pipe that is read, or not.
func startWithStderr(t *testing.T, stall bool) *stallProc {
	dir := t.TempDir()
	maddr := freePort(t)
	ctl := filepath.Join(dir, "control.sock")
	sock, _ := testConfig(t, dir, fmt.Sprintf("metrics {\n  listen = %q\n}\ncontrol {\n  socket = %q\n}\n", maddr, ctl))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	d := &stallProc{proc: &proc{t: t, dir: dir, sock: sock, logs: &syncBuf{}, done: make(chan error, 1)}, r: r, maddr: maddr}
	d.cmd = exec.Command(binary, "-config", filepath.Join(dir, "greyd.hcl"))
	d.cmd.Stderr = w
	if !stall {
		go io.Copy(d.logs, r)
	}
	startProc(t, d.proc)
	w.Close() // the daemon holds its own copy
	// The metrics listener is up once the policy socket serves.
	pollUntil(t, func() bool {
		resp, err := http.Get("http://" + maddr + "/metrics")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, "the metrics listener")
	return d
}

// mixedLoad sends greyd new triplets, retries, requests of whitelisted
// clients and malformed ones (logged as warnings) on 16 connections for
// loadFor. Every request must be answered within 5 s. It returns the
// number of requests answered.
func mixedLoad(t *testing.T, sock string, stall bool) int64 {
	now := time.Now().Unix()
	// Long senders make long log lines: the stalled greyd's queue fills
	// within the run, however slow the machine.
	pad := strings.Repeat("x", 400)
	var answered atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(loadFor)
	for conn := range 16 {
		wg.Go(func() {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for i := 0; time.Now().Before(end); i++ {
				var req []string
				switch i % 8 {
				case 0: // a warning
					req = rcpt("not-an-ip", "x", pad+"@b.example", "c@example.org", now)
				case 1: // whitelisted
					req = rcpt("2001:db8::25", "mail-am6eur05.outbound.protection.outlook.com", pad+"@b.example", "c@example.org", now)
				case 2, 3: // a retry
					req = rcpt(fmt.Sprintf("198.51.%d.1", conn), "x", pad+"@b.example", "c@example.org", now+int64(i))
				default: // new
					req = rcpt(fmt.Sprintf("198.51.%d.1", conn), "x", fmt.Sprintf("s%d%s@b.example", i, pad), "c@example.org", now)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c, strings.Join(req, "\n")+"\n\n"); err != nil {
					t.Errorf("stderr stalled %v, connection %d, request %d: sending: %v", stall, conn, i, err)
					return
				}
				line, err := br.ReadString('\n')
				if err == nil {
					_, err = br.ReadString('\n')
				}
				if err != nil || !strings.HasPrefix(line, "action=") {
					t.Errorf("stderr stalled %v, connection %d, request %d: reply %q, %v", stall, conn, i, line, err)
					return
				}
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	return answered.Load()
}
