package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPrivacyNothingOnDisk: with privacy = true, no file greyd writes
// reveals a client address, network, sender or recipient, in any of the
// forms greyd builds keys from. Triplets, auto-whitelist entries and the
// expiry records of a shrink-free run are all in the file checked.
func TestPrivacyNothingOnDisk(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "greylist {\n  privacy = true\n}\nauto_whitelist {\n  clients = 1\n}\n")
	d := startDaemon(t, dir)
	now := time.Now().Unix()
	c := dial(t, "unix", sock)
	for _, addr := range []string{"198.51.100.77", "2001:db8:77::25"} {
		req := func(at int64) []string {
			return rcpt(addr, "mx.secret-client.example", "Alice.Secret+tag@Sender.Example", "bob.secret@rcpt.example", at)
		}
		if got := c.ask(req(now)...); !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.2.0 Greylisted") {
			t.Fatalf("%s: got %q", addr, got)
		}
		if got := c.ask(req(now + 301)...); strings.HasPrefix(got, "DEFER") { // DUNNO: same instance, header given already
			t.Fatalf("%s after the delay: got %q", addr, got)
		}
	}
	d.waitLog("whitelisted: mx.secret-client.example[198.51.100.77]") // a client entry exists
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}

	state := filepath.Join(dir, "state")
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{
		"198.51.100", "198.51.100.77", "2001:db8:77", "2001:0db8", "2001:db8:77::",
		"alice", "secret", "sender.example", "rcpt.example", "bob",
	}
	var db []byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(state, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "greyd.db" {
			db = b
		}
		low := bytes.ToLower(b)
		for _, s := range secrets {
			if bytes.Contains(low, []byte(s)) {
				t.Errorf("privacy = true, but %s contains %q", e.Name(), s)
			}
		}
	}
	// The check means something only if the entries are there.
	if n := bytes.Count(db, []byte("\r\nset\r\n")); n < 6 {
		t.Errorf("database holds %d records, want triplets and client entries for both clients:\n%q", n, db)
	}
}

// TestFileModes: the files greyd creates in its state directory (database,
// its lock, the privacy key) and the directory itself are not readable by
// other users, whatever the umask.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0) // greyd inherits it: the worst case
	defer syscall.Umask(old)
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "greylist {\n  privacy = true\n}\n")
	d := startDaemon(t, dir)
	if got := dial(t, "unix", sock).ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", time.Now().Unix())...); got != greylisted {
		t.Fatalf("got %q", got)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	paths := []string{state}
	for _, name := range []string{"greyd.db", "greyd.db.lock", "privacy.key"} {
		paths = append(paths, filepath.Join(state, name))
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if perm := fi.Mode().Perm(); perm&0o007 != 0 {
			t.Errorf("%s has mode %#o: other users can access it", p, perm)
		}
	}
	// The policy socket gets socket_mode (default 0660) while greyd runs.
	d = startDaemon(t, dir)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("policy socket: %v, %v; want mode 0660", fi.Mode(), err)
	}
}

// TestUnitNotRoot: the packaged service runs as its own user with a umask
// that keeps its files private.
func TestUnitNotRoot(t *testing.T) {
	unit, err := os.ReadFile("../../systemd/greyd.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			settings[k] = v
		}
	}
	if u := settings["User"]; u == "" || u == "root" || u == "0" {
		t.Errorf("greyd.service: User=%q; want greyd's own user", u)
	}
	if um := settings["UMask"]; um != "0027" && um != "0077" {
		t.Errorf("greyd.service: UMask=%q; want 0027 or 0077", um)
	}
}

// TestRootWarning: greyd needs no privileges; started as root (by hand:
// the packaged unit uses its own user) it says so. CI runs as root, a
// developer usually not: either way the log must match.
func TestRootWarning(t *testing.T) {
	dir := t.TempDir()
	testConfig(t, dir, "")
	d := startDaemon(t, dir)
	d.waitLog("started: listening on")
	const warning = "warning: running as root: greyd needs no privileges"
	if got := strings.Contains(d.logs.String(), warning); got != (os.Geteuid() == 0) {
		t.Errorf("euid %d: warning %q logged = %v\n%s", os.Geteuid(), warning, got, d.logs)
	}
}
