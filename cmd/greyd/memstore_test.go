package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// notifySocket is a fake systemd notify socket; it keeps every state
// greyd sends.
type notifySocket struct {
	path string
	mu   sync.Mutex
	got  []string
}

func newNotifySocket(t *testing.T, dir string) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(dir, "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.got = append(n.got, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

// wait returns the first state sent that contains every one of want.
func (n *notifySocket) wait(t *testing.T, want ...string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		n.mu.Lock()
		for _, s := range n.got {
			all := true
			for _, w := range want {
				all = all && strings.Contains(s, w)
			}
			if all {
				n.mu.Unlock()
				return s
			}
		}
		n.mu.Unlock()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	t.Fatalf("no state with %q sent to the notify socket; got %q", want, n.got)
	return ""
}

// TestInMemoryStoreVisible: when the database cannot be opened (here a
// directory stands where the file should be, which fails for root too)
// greyd serves from memory, and says so for as long as it lasts: in the
// start-up line, in greyd stats, in the metrics and in systemd's STATUS.
// With the database opened, none of it says "in memory".
func TestInMemoryStoreVisible(t *testing.T) {
	for _, memory := range []bool{true, false} {
		t.Run(fmt.Sprintf("memory=%v", memory), func(t *testing.T) {
			dir := t.TempDir()
			maddr := freePort(t)
			sock, _ := testConfig(t, dir, fmt.Sprintf("metrics {\n  listen = %q\n}\n", maddr))
			db := filepath.Join(dir, "state", "greyd.db")
			if memory {
				if err := os.MkdirAll(db, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			ns := newNotifySocket(t, dir)
			t.Setenv("NOTIFY_SOCKET", ns.path) // startProc passes the environment on
			d := startDaemon(t, dir)
			d.waitLog("metrics on http://" + maddr)

			if got := dial(t, "unix", sock).ask(rcpt("198.51.100.63", "x", "a@b.example", "c@example.org", time.Now().Unix())...); got != greylisted {
				t.Errorf("first attempt: got %q, want it greylisted", got)
			}
			const inMemory = "in-memory database: state is lost at restart"
			if memory {
				d.waitLog("started: listening on ")
				d.waitLog("; " + inMemory)
			} else {
				d.waitLog("; database " + db + ";")
				if strings.Contains(d.logs.String(), inMemory) {
					t.Errorf("database opened, but the log says %q:\n%s", inMemory, d.logs)
				}
			}

			persistent := 1.0
			if memory {
				persistent = 0
			}
			if got := metricValues(t, scrapeMetrics(t, maddr), "greyd_store_persistent"); got[""] != persistent || len(got) != 1 {
				t.Errorf("greyd_store_persistent = %v, want %v", got, persistent)
			}

			stats := cliOK(t, 0, "stats", "-config", filepath.Join(dir, "greyd.hcl"))
			backend := ""
			for _, l := range strings.Split(stats, "\n") {
				if strings.HasPrefix(l, "backend ") {
					backend = l
				}
			}
			if memory && !strings.Contains(backend, "IN MEMORY") {
				t.Errorf("greyd stats, in memory: backend line %q\n%s", backend, stats)
			}
			if !memory && strings.Contains(stats, "IN MEMORY") {
				t.Errorf("greyd stats, database opened, says IN MEMORY:\n%s", stats)
			}

			status := ns.wait(t, "READY=1", "STATUS=")
			if got := strings.Contains(status, "IN MEMORY"); got != memory {
				t.Errorf("memory %v: systemd status %q", memory, status)
			}
		})
	}
}

// TestInMemoryReminder: the in-memory warning repeats, so that every
// excerpt of the log shows it, and stops with greyd.
func TestInMemoryReminder(t *testing.T) {
	var logs syncBuf
	log := slog.New(slog.NewTextHandler(&logs, nil))
	m := &memoryStore{cause: fmt.Errorf("open /var/lib/greyd/greyd.db: is a directory"), since: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.remind(ctx, log, 10*time.Millisecond); close(done) }()
	const warning = "STILL SERVING WITH AN IN-MEMORY DATABASE"
	for deadline := time.Now().Add(5 * time.Second); strings.Count(logs.String(), warning) < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the warning was not repeated:\n%s", logs.String())
		}
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "open /var/lib/greyd/greyd.db: is a directory") {
		t.Errorf("the reminder does not say why:\n%s", logs.String())
	}
}
