package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lineOf returns the line number of the first line of file containing s.
func lineOf(t *testing.T, file, s string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line with %q", file, s)
	return 0
}

// TestReloadKeepsDatabaseAndKey: with privacy on, greyd.hcl is saved with
// another database.path, meant for the next restart. The reload keeps
// the running database and its privacy key: known triplets still pass,
// no key is created next to the new path, and the log says what waits
// for a restart.
func TestReloadKeepsDatabaseAndKey(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "greylist {\n  privacy = true\n}\n")
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	req := func(at int64) []string {
		return rcpt("198.51.100.61", "mx.keep.example", "a@keep.example", "c@example.org", at)
	}
	if got := c.ask(req(now)...); got != greylisted {
		t.Fatalf("first attempt: got %q", got)
	}
	if got := c.ask(req(now + 301)...); strings.HasPrefix(got, "DEFER") {
		t.Fatalf("retry after the delay: got %q", got)
	}

	hcl := filepath.Join(dir, "greyd.hcl")
	running, next := filepath.Join(dir, "state", "greyd.db"), filepath.Join(dir, "next", "greyd.db")
	cfg, _ := os.ReadFile(hcl)
	writeFile(t, hcl, strings.Replace(string(cfg), running, next, 1))
	waitReloads(t, d, 1)
	if got := c.ask(req(now + 302)...); strings.HasPrefix(got, "DEFER") {
		t.Errorf("known triplet after the reload: got %q, want it to pass (the privacy key changed?)", got)
	}
	if _, err := os.Stat(filepath.Dir(next)); err == nil {
		t.Errorf("the reload created %s (a privacy key next to the new path?)", filepath.Dir(next))
	}
	d.waitLog(fmt.Sprintf("warning: database.path changed in greyd.hcl:%d: restart greyd to apply it (running with %s)", lineOf(t, hcl, next), running))
	// And so does every further reload, once each.
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitReloads(t, d, 2)
	if n := strings.Count(d.logs.String(), "warning: database.path changed"); n != 2 {
		t.Errorf("%d database.path warnings after 2 reloads, want 2:\n%s", n, d.logs)
	}
}

// TestReloadListenWaitsForRestart: a changed listen address is not
// applied by a reload (the sockets are bound once), and the log says so,
// naming the setting and what greyd keeps running with.
func TestReloadListenWaitsForRestart(t *testing.T) {
	dir := t.TempDir()
	sock, inet := testConfig(t, dir, "")
	d := startDaemon(t, dir)
	hcl := filepath.Join(dir, "greyd.hcl")
	other := freePort(t)
	cfg, _ := os.ReadFile(hcl)
	writeFile(t, hcl, strings.Replace(string(cfg), inet, other, 1))
	waitReloads(t, d, 1)
	d.waitLog(fmt.Sprintf("warning: listen.1.inet changed in greyd.hcl:%d: restart greyd to apply it (running with %s)", lineOf(t, hcl, other), inet))
	if got := dial(t, "tcp", inet).ask(rcpt("198.51.100.62", "x", "a@b.example", "c@example.org", time.Now().Unix())...); got != greylisted {
		t.Errorf("running address after the reload: got %q", got)
	}
	if c, err := net.Dial("tcp", other); err == nil {
		c.Close()
		t.Errorf("greyd listens on %s, changed by a reload", other)
	}
	if got := dial(t, "unix", sock).ask(rcpt("198.51.100.62", "x", "a@b.example", "c@example.org", time.Now().Unix())...); got != greylisted {
		t.Errorf("unix socket after the reload: got %q", got)
	}
}
