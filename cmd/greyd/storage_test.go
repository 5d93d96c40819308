package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"greyd/internal/store/buntdb"
)

// Every way the database's storage can fail must leave a daemon that runs,
// answers, and says in its log what went wrong; none may lead to a crash
// loop.

// startOnTmpfs starts greyd in its own user and mount namespace (no root
// needed, nothing mounted on the host) with a tmpfs mounted with opts on
// dir/state, its state directory. The test reaches the tmpfs through
// /proc/PID/root (see inside). The namespace and its tmpfs go away with
// the process.
func startOnTmpfs(t *testing.T, dir, opts string) *proc {
	t.Helper()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &proc{t: t, dir: dir, sock: filepath.Join(dir, "greyd.sock"), logs: &syncBuf{}, done: make(chan error, 1)}
	script := fmt.Sprintf("mount -t tmpfs -o %s tmpfs %s && exec %s -config %s", opts, state, binary, filepath.Join(dir, "greyd.hcl"))
	d.cmd = exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script)
	startProc(t, d)
	return d
}

// inside returns path as the process sees it, in its mount namespace.
func (d *proc) inside(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", d.cmd.Process.Pid, path)
}

// alive fails the test if the daemon exited.
func (d *proc) alive() {
	d.t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		d.t.Fatalf("greyd exited: %v\n%s", err, d.logs)
	default:
	}
}

// TestDatabaseTruncatedMidRecord: a crash in the middle of a write leaves a
// torn last record. greyd drops that record only, says so, and keeps the
// rest.
func TestDatabaseTruncatedMidRecord(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "auto_whitelist {\n  clients = 0\n}\n")
	now := time.Now().Unix()
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	for _, sender := range []string{"kept@a.example", "torn@a.example"} {
		if got := c.ask(rcpt("198.51.100.60", "x", sender, "b@example.org", now)...); got != greylisted {
			t.Fatalf("%s: got %q", sender, got)
		}
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "state", "greyd.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndex(b, []byte("torn@a.example")); i < 0 {
		t.Fatalf("database does not hold the second triplet last:\n%q", b)
	} else if err := os.Truncate(db, int64(i+4)); err != nil { // inside the key
		t.Fatal(err)
	}

	d = startDaemon(t, dir)
	d.waitLog("warning: database file ends with an incomplete record (crash during a write?); dropping it")
	c = dial(t, "unix", sock)
	if got := c.ask(rcpt("198.51.100.60", "x", "kept@a.example", "b@example.org", now+301)...); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 301 seconds") {
		t.Errorf("complete record before the torn one: got %q, want it remembered", got)
	}
	if got := c.ask(rcpt("198.51.100.60", "x", "torn@a.example", "b@example.org", now+301)...); got != greylisted {
		t.Errorf("torn record: got %q, want it forgotten (greylisted anew)", got)
	}
	if m, _ := filepath.Glob(db + ".corrupt-*"); len(m) > 0 {
		t.Errorf("a torn tail quarantined the whole file: %v", m)
	}
}

// TestDatabaseGarbageNoCrashLoop: a file with garbage in the middle is
// moved aside once; greyd starts on an empty database, and the next start
// uses that database without touching it again.
func TestDatabaseGarbageNoCrashLoop(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	db := filepath.Join(dir, "state", "greyd.db")
	os.MkdirAll(filepath.Dir(db), 0o700)
	os.WriteFile(db, []byte("*3\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\nb\r\n\x00\xff garbage \r\n*3\r\n$3\r\nset\r\n$1\r\nc\r\n$1\r\nd\r\n"), 0o600)
	now := time.Now().Unix()
	d := startDaemon(t, dir)
	d.waitLog("error: database file is corrupt: moved it aside and started an empty database; greylisting state was reset")
	if got := dial(t, "unix", sock).ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", now)...); got != greylisted {
		t.Errorf("after quarantine: got %q", got)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.logs)
	}
	d = startDaemon(t, dir)
	if got := dial(t, "unix", sock).ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", now+301)...); !strings.HasPrefix(got, "PREPEND X-Greylist") {
		t.Errorf("second start: got %q, want the triplet from after the quarantine", got)
	}
	if strings.Contains(d.logs.String(), "corrupt") {
		t.Errorf("second start quarantined again:\n%s", d.logs)
	}
	if m, _ := filepath.Glob(db + ".corrupt-*"); len(m) != 1 {
		t.Errorf("quarantined files: %v, want exactly 1", m)
	}
}

// TestUnwritableStateDir: the state directory is on a read-only file
// system (a permission problem looks the same to greyd, but root ignores
// permissions). greyd serves from memory and says loudly why.
func TestUnwritableStateDir(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	d := startOnTmpfs(t, dir, "ro,size=1m")
	d.waitLog("SERVING WITH AN IN-MEMORY DATABASE; greylisting state will be lost at the next restart. Fix the state directory (owner, permissions, free space) and restart greyd")
	d.waitLog("read-only file system")
	now := time.Now().Unix()
	c := dial(t, "unix", sock)
	if got := c.ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", now)...); got != greylisted {
		t.Errorf("in-memory database: got %q", got)
	}
	if got := c.ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", now+301)...); !strings.HasPrefix(got, "PREPEND X-Greylist") {
		t.Errorf("in-memory database keeps state while running: got %q", got)
	}
	time.Sleep(1500 * time.Millisecond) // a background sync and sweep
	d.alive()
}

// TestDiskFull fills the file system of the database while greyd serves.
// Requests that need a write are answered DUNNO and the write error is
// logged, a line per 10 s however many fail; the file stays valid (buntdb
// cuts a failed write off and rolls it back); when space is back, greyd
// greylists again and says so.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "auto_whitelist {\n  clients = 0\n}\n")
	d := startOnTmpfs(t, dir, "size=1m")
	now := time.Now().Unix()
	c := dial(t, "unix", sock)
	if got := c.ask(rcpt("198.51.100.60", "x", "before@a.example", "b@example.org", now)...); got != greylisted {
		t.Fatalf("before the disk is full: got %q", got)
	}

	filler := d.inside(filepath.Join(dir, "state", "filler"))
	fill(t, filler)
	// The database file's last page still has room for a few records.
	for i := 0; ; i++ {
		got := c.ask(rcpt("198.51.100.61", "x", fmt.Sprintf("page%d@a.example", i), "b@example.org", now)...)
		if got == "DUNNO" {
			break
		}
		if got != greylisted || i == 100 {
			t.Fatalf("disk full, new triplet %d: got %q, want greylisted until the file's last page is used, then DUNNO", i, got)
		}
	}
	const n = 200
	for i := 0; i < n; i++ {
		sender := fmt.Sprintf("full%d@a.example", i)
		if got := c.ask(rcpt("198.51.100.61", "x", sender, "b@example.org", now)...); got != "DUNNO" {
			t.Fatalf("disk full, new triplet %s: got %q, want DUNNO", sender, got)
		}
	}
	// A known triplet: passing needs a write too; DUNNO or the right answer.
	if got := c.ask(rcpt("198.51.100.60", "x", "before@a.example", "b@example.org", now+301)...); got != "DUNNO" && !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 301") {
		t.Errorf("disk full, known triplet: got %q", got)
	}
	d.waitLog("error: store failed, answering DUNNO (mail is not greylisted meanwhile): store: put: write ")
	d.waitLog("no space left on device")
	if k := strings.Count(d.logs.String(), "store failed"); k > 2 {
		t.Errorf("%d store failure lines for %d failed requests within seconds; want them rate-limited:\n%s", k, n+1, d.logs)
	}

	// The file is still valid: a copy opens without quarantine and holds
	// the triplet written before the disk filled up.
	copyDB := filepath.Join(t.TempDir(), "copy.db")
	b, err := os.ReadFile(d.inside(filepath.Join(dir, "state", "greyd.db")))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(copyDB, b, 0o600)
	st, err := buntdb.Open(copyDB, buntdb.Options{})
	if err != nil {
		t.Fatalf("database written while the disk was full does not open: %v", err)
	}
	if _, found, err := st.Triplet(context.Background(), "198.51.100.0/before@a.example/b@example.org"); !found || err != nil {
		t.Errorf("triplet from before the disk filled up: found %v, %v", found, err)
	}
	st.Close()
	if m, _ := filepath.Glob(copyDB + ".corrupt-*"); len(m) > 0 {
		t.Errorf("database written while the disk was full was quarantined")
	}

	// Space is back: greylisting resumes, and the log says so.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if got := c.ask(rcpt("198.51.100.62", "x", "after@a.example", "b@example.org", now)...); got != greylisted {
		t.Errorf("after freeing space: got %q, want greylisted", got)
	}
	d.waitLog("warning: store works again: ")
	d.alive()
}

// fill writes to name until the file system is full.
func fill(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}
