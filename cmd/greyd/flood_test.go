package main

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConnectionFlood holds thousands of idle connections and more
// slow-drip (slowloris) connections than the limit open against greyd's
// TCP listener,
// with the default limits (1000 connections, 10 s per request), and shows
// that normal clients, each on a new connection as Postfix opens them, are
// served meanwhile: greyd makes room by closing the longest-idle
// connection, or else the one that has been dripping its request for the
// longest, never one being answered. Each normal request must be answered
// within 5 s, half the request timeout, so that it cannot have been
// waiting for the slow clients to be timed out.
func TestConnectionFlood(t *testing.T) {
	const (
		idle     = 3000
		slow     = 1200
		normal   = 50
		promptly = 5 * time.Second
	)
	dir := t.TempDir()
	_, inet := testConfig(t, dir, "")
	d := startDaemon(t, dir)
	d.waitLog("started: listening on") // the TCP socket too
	now := time.Now().Unix()

	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	open := func() net.Conn {
		c, err := net.DialTimeout("tcp", inet, 10*time.Second)
		if err != nil {
			t.Fatalf("opening flood connection %d: %v", len(conns), err)
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return c
	}
	for i := 0; i < idle; i++ {
		open()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < slow; i++ {
		c := open()
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := strings.Join(rcpt("203.0.113.9", "slow.example", "s@slow.example", "b@example.org", now), "\n") + "\n\n"
			for j := 0; j < len(req); j++ {
				if _, err := c.Write([]byte{req[j]}); err != nil {
					return // evicted
				}
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // every slow client has started dripping

	for i := 0; i < normal; i++ {
		start := time.Now()
		c, err := net.DialTimeout("tcp", inet, promptly)
		if err != nil {
			t.Fatalf("normal client %d: %v", i, err)
		}
		c.SetDeadline(start.Add(promptly))
		sender := "n" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + "@normal.example"
		io.WriteString(c, strings.Join(rcpt("198.51.100.60", "mx.normal.example", sender, "b@example.org", now+int64(i)), "\n")+"\n\n")
		reply := make([]byte, 256)
		n, err := io.ReadAtLeast(c, reply, 8)
		c.Close()
		got := string(reply[:n])
		if err != nil || !strings.HasPrefix(got, "action=DEFER_IF_PERMIT 4.2.0 Greylisted") && !strings.HasPrefix(got, "action=PREPEND X-Greylist") && !strings.HasPrefix(got, "action=DUNNO") {
			t.Fatalf("normal client %d during the flood: got %q, %v after %v; want an answer within %v\n%s", i, got, err, time.Since(start), promptly, tail(d.logs.String(), 20))
		}
	}
	close(stop)
	wg.Wait()
	d.alive()

	logs := d.logs.String()
	if !strings.Contains(logs, "connection limit of 1000 reached: closed the connection from") {
		t.Errorf("no eviction logged:\n%s", tail(logs, 20))
	}
	if n := strings.Count(logs, "connection limit of 1000 reached"); n > 3 {
		t.Errorf("%d connection-limit lines for thousands of events; want them rate-limited", n)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
