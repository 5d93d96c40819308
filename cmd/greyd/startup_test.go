package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"greyd/internal/store"
	"greyd/internal/store/buntdb"
)

// TestAnswersDuringStartup: greyd listens before its database loads, so a
// client that connects while a big database is loading is not refused:
// it waits and is answered once the database is ready (issue 14).
func TestAnswersDuringStartup(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	path := filepath.Join(dir, "state", "greyd.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	// Enough triplets that loading takes a good part of a second.
	db, err := buntdb.Open(path, buntdb.Options{Sync: buntdb.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	for i := 0; i < 100_000; i++ {
		k := fmt.Sprintf("10.%d.%d.0/sender%d@example.net/rcpt@example.org", i>>16&255, i>>8&255, i)
		if err := db.PutTriplet(context.Background(), k, store.Triplet{First: now - 400, Last: now}, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// greyd tells systemd READY=1 once the database is loaded: a fake
	// notify socket says when that was.
	ns := filepath.Join(dir, "notify.sock")
	notifyConn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notifyConn.Close()
	ready := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := notifyConn.Read(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				ready <- time.Now()
				return
			}
		}
	}()

	d := &proc{t: t, dir: dir, sock: sock, logs: &syncBuf{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binary, "-config", filepath.Join(dir, "greyd.hcl"))
	d.cmd.Stderr = d.logs
	d.cmd.Env = append(os.Environ(), "JOURNAL_STREAM=", "NOTIFY_SOCKET="+ns)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop() })

	var c net.Conn
	for deadline := time.Now().Add(10 * time.Second); c == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never connected:\n%s", d.logs)
		}
		c, _ = net.Dial("unix", sock)
	}
	connected := time.Now()
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	got := cl.ask(rcpt("198.51.100.60", "mx.foo.example", "early@foo.example", "bob@example.org", now)...)
	if got != greylisted {
		t.Errorf("request sent during start-up: %q, want %q", got, greylisted)
	}
	var readyAt time.Time
	select {
	case readyAt = <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("no READY=1:\n%s", d.logs)
	}
	// Bound only after loading, the socket would accept a client at most
	// a moment before READY=1; bound first, it accepts it while the
	// database still loads.
	if wait := readyAt.Sub(connected); wait < 100*time.Millisecond {
		t.Fatalf("connected only %v before the database was ready: the socket was not open during the load\n%s", wait, d.logs)
	} else {
		t.Logf("connected %v before the database was ready; answered after it", wait)
	}
}
