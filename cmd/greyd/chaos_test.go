package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// kill sends SIGKILL and waits until the process is gone.
func (d *proc) kill() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case err := <-d.done:
		d.done <- err
	case <-time.After(10 * time.Second):
		d.t.Fatalf("greyd survived SIGKILL for 10s")
	}
}

// chaosCycles is how many times TestChaosKill kills greyd under load.
const chaosCycles = 50

// TestChaosKill runs greyd under continuous load, kills it with SIGKILL at
// a random moment, restarts it, and checks after every restart that it
// starts, opens the file without quarantining it, answers, and forgot no
// triplet whose greylisting answer had reached a client before the kill.
// The sync policy changes from cycle to cycle (never, everysecond,
// always).
//
// What this proves: a write is acknowledged (the reply is sent) only after
// buntdb's write(2) returned, so it is in the kernel's page cache, which a
// process crash does not lose, whatever the sync policy; the file a crash
// leaves always opens, without being quarantined. What it cannot prove is
// the bound for a power loss or kernel crash, where the sync policy
// decides (everysecond: the writes of the last second at most): that
// needs the page cache to vanish, which no test on a live kernel can do.
func TestChaosKill(t *testing.T) {
	dir := t.TempDir()
	syncs := []string{"never", "everysecond", "always"}
	config := func(cycle int) (sync, sock string) {
		sync = syncs[cycle%len(syncs)]
		sock, _ = testConfig(t, dir, fmt.Sprintf("database {\n  sync = %q\n}\nauto_whitelist {\n  clients = 0\n}\n", sync))
		return sync, sock
	}
	base := time.Now().Unix()
	_, sock := config(0)
	d := startDaemon(t, dir)
	var slowest time.Duration
	total, checked := 0, 0
	for cycle := 0; cycle < chaosCycles; cycle++ {
		acked := loadUntilKilled(t, d, sock, cycle, base)
		if len(acked) == 0 {
			t.Fatalf("cycle %d: no request was answered before the kill:\n%s", cycle, d.logs)
		}
		total += len(acked)

		sync, _ := config(cycle + 1)
		start := time.Now()
		d = startDaemon(t, dir)
		slowest = max(slowest, time.Since(start))
		if logs := d.logs.String(); strings.Contains(logs, "corrupt") || strings.Contains(logs, "IN-MEMORY") {
			t.Fatalf("cycle %d: the file left by SIGKILL did not open cleanly:\n%s", cycle, logs)
		}
		checked += verify(t, d, sock, cycle, sync, base, acked)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "state", "*.corrupt-*")); len(m) > 0 {
		t.Errorf("database quarantined during the test: %v", m)
	}
	t.Logf("%d kills under load; %d triplets acknowledged before a kill, %d of them checked after the restart; slowest restart %v",
		chaosCycles, total, checked, slowest)
}

// loadUntilKilled runs four clients with new triplets against d and kills
// d with SIGKILL at a random moment; it returns the triplets (senders)
// whose greylisting reply arrived before the kill.
func loadUntilKilled(t *testing.T, d *proc, sock string, cycle int, base int64) []string {
	t.Helper()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	var answered atomic.Int64
	for w := 0; w < 4; w++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 4096)
			for i := 0; ; i++ {
				sender := fmt.Sprintf("c%dw%dn%d@load.example", cycle, w, i)
				req := strings.Join(rcpt(fmt.Sprintf("198.51.100.%d", w+1), "mx.load.example", sender, "rcpt@example.org", base), "\n") + "\n\n"
				if _, err := io.WriteString(c, req); err != nil {
					return
				}
				n, err := io.ReadAtLeast(c, buf, 2)
				if err != nil {
					return // killed
				}
				reply := string(buf[:n])
				for !strings.HasSuffix(reply, "\n\n") {
					m, err := c.Read(buf)
					if err != nil {
						return
					}
					reply += string(buf[:m])
				}
				if reply != "action="+greylisted+"\n\n" {
					t.Errorf("cycle %d: new triplet %s: got %q, want greylisted", cycle, sender, reply)
					return
				}
				mu.Lock()
				acked = append(acked, sender)
				mu.Unlock()
				answered.Add(1)
			}
		}()
	}
	// Kill at a random moment once load runs.
	for answered.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
	d.kill()
	wg.Wait()
	return acked
}

// verify asks about acknowledged triplets of the cycle 301 s after they
// were first seen: each must pass with the X-Greylist header of a 301 s
// delay; a forgotten one would be greylisted again. It checks the last 20
// of each client, the most recent writes before the kill, and 20 more at
// random, and returns how many it checked.
func verify(t *testing.T, d *proc, sock string, cycle int, sync string, base int64, acked []string) int {
	t.Helper()
	last := map[int][]string{}
	for _, sender := range acked {
		w := workerOf(sender)
		last[w] = append(last[w], sender)
	}
	var check []string
	for _, ss := range last {
		check = append(check, ss[max(0, len(ss)-20):]...)
	}
	for i := 0; i < 20; i++ {
		check = append(check, acked[rand.IntN(len(acked))])
	}
	c := dial(t, "unix", sock)
	seen := map[string]bool{}
	lost := 0
	for _, sender := range check {
		if seen[sender] {
			continue
		}
		seen[sender] = true
		got := c.ask(rcpt(fmt.Sprintf("198.51.100.%d", workerOf(sender)+1), "mx.load.example", sender, "rcpt@example.org", base+301)...)
		if !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 301 seconds by greyd-test at ") {
			lost++
			if lost <= 5 {
				t.Errorf("cycle %d (restarted with sync=%s): triplet of %s was acknowledged before SIGKILL, then lost: got %q", cycle, sync, sender, got)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("cycle %d: %d of %d checked triplets lost\n%s", cycle, lost, len(seen), d.logs)
	}
	return len(seen)
}

// workerOf returns w of a sender "c<cycle>w<w>n<i>@load.example".
func workerOf(sender string) int {
	var w int
	fmt.Sscanf(sender[strings.IndexByte(sender, 'w')+1:], "%d", &w)
	return w
}
