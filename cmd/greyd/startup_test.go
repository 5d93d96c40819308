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
// it waits and is answered once the database is read (issue 14; a big
// file is then still loading in buntdb, see the next test).
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

// TestAnswersDuringBackgroundLoad: a big database is answered from what
// greyd read of it while buntdb still loads it (issue 14): a triplet seen
// before the restart passes, a new one is greylisted and its entry, taken
// by the boot file meanwhile, is in the database once the load is over
// and after the next restart.
func TestAnswersDuringBackgroundLoad(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	now := time.Now().Unix()
	a := startDaemon(t, dir)
	ask := func(sender string, when int64) string {
		c := dial(t, "unix", sock)
		defer c.c.Close()
		return c.ask(rcpt("198.51.100.60", "unknown", sender, "bob@example.org", when)...)
	}
	if got := ask("before@foo.example", now); got != greylisted {
		t.Fatalf("first sighting: %q", got)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	// Make the file big enough to be loaded in the background (8 MiB):
	// 150 000 more triplets, appended as buntdb writes them.
	path := filepath.Join(dir, "state", "greyd.db")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	exp := fmt.Sprint(now + 86400)
	for i := 0; i < 150_000; i++ {
		k := fmt.Sprintf("t:10.%d.%d/filler%d@example.net/rcpt@example.org", i>>16&255, i>>8&255, i)
		v := fmt.Sprintf("%d,%d", now-100, now-100)
		fmt.Fprintf(w, "*5\r\n$3\r\nset\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nae\r\n$%d\r\n%s\r\n", len(k), k, len(v), v, len(exp), exp)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	b := startDaemon(t, dir)
	if got := ask("before@foo.example", now+400); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 400 seconds") {
		t.Errorf("triplet from before the restart, during the load: %q", got)
	}
	if got := ask("during@foo.example", now+400); got != greylisted {
		t.Errorf("new triplet during the load: %q", got)
	}
	b.waitLog("database loaded in the background")
	logs := b.logs.String()
	answered := strings.Index(logs, "sender=during@foo.example")
	loaded := strings.Index(logs, "database loaded in the background")
	if !strings.Contains(logs, "answering while buntdb loads it in the background") || answered < 0 || answered > loaded {
		t.Errorf("the requests were not answered during the background load (decision at %d, loaded at %d):\n%s", answered, loaded, logs)
	}
	if got := ask("during@foo.example", now+800); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 400 seconds") {
		t.Errorf("retry of the triplet first seen during the load, after it: %q", got)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".boot"); !os.IsNotExist(err) {
		t.Errorf("%s.boot after the load and a clean stop: %v; want it gone", path, err)
	}

	c := startDaemon(t, dir)
	if got := ask("during@foo.example", now+1200); got == greylisted {
		t.Errorf("after another restart, the triplet passed during the load is greylisted again")
	}
	// Killed right after a write during the load: the write survives.
	if got := ask("crash@foo.example", now+1200); got != greylisted {
		t.Errorf("new triplet during the load: %q", got)
	}
	c.kill()
	loadedFirst := strings.Contains(c.logs.String(), "database loaded in the background")
	_, err = os.Stat(path + ".boot")
	if !loadedFirst && err != nil {
		t.Fatalf("killed during the load: %s.boot: %v; want it kept", path, err)
	}
	e := startDaemon(t, dir)
	if got := ask("crash@foo.example", now+1600); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 400 seconds") {
		t.Errorf("triplet first seen just before a kill -9 during the load, after the restart: %q", got)
	}
	e.waitLog("database loaded in the background")
	if merged := strings.Contains(e.logs.String(), "merging the writes it took meanwhile"); merged == loadedFirst {
		t.Errorf("killed with the load finished: %v; the restart merged a boot file: %v", loadedFirst, merged)
	}
	t.Logf("kill -9 came before the load had finished: %v", !loadedFirst)
}
