package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Configuration layers through the real binary: greyd -config DIR reads
// DIR/*.hcl, then DIR/conf.d/*.hcl, later files overriding earlier ones;
// drop-ins that appear, change or vanish are reloaded like any file.

// startDaemonDir runs greyd on the configuration directory dir (testConfig
// wrote dir/greyd.hcl), so that conf.d is read too.
func startDaemonDir(t *testing.T, dir string) *proc {
	t.Helper()
	d := &proc{t: t, dir: dir, sock: filepath.Join(dir, "greyd.sock"), logs: &syncBuf{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binary, "-config", dir)
	startProc(t, d)
	return d
}

var confdSender atomic.Int64

// retryAfter61s sends a new triplet and its retry 61 s later (by
// policy_test_time) and returns the answer to the retry: it passes with
// delay = "1m" and is greylisted with the default "5m". Each call is
// another client network, so that none is auto-whitelisted.
func retryAfter61s(c *client) string {
	n := confdSender.Add(1)
	addr := fmt.Sprintf("100.%d.%d.25", 64+n/250, n%250)
	sender := fmt.Sprintf("confd-%d@sender.example", n)
	const t0 = 1700000000
	c.ask(rcpt(addr, "mx.sender.example", sender, "rcpt@example.org", t0)...)
	return c.ask(rcpt(addr, "mx.sender.example", sender, "rcpt@example.org", t0+61)...)
}

const passedAfter61s = "PREPEND X-Greylist: delayed 61 seconds by greyd-test at "

func wantPassAfter61s(t *testing.T, d *proc, c *client, pass bool, what string) {
	t.Helper()
	got := retryAfter61s(c)
	if strings.HasPrefix(got, passedAfter61s) != pass {
		want := "greylisted (the delay is over a minute)"
		if pass {
			want = passedAfter61s + "... (delay 1m)"
		}
		t.Fatalf("%s: a retry after 61s got %q, want %s\n%s", what, got, want, d.logs)
	}
}

func writeDropIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "conf.d", name)
	// Write and rename, as an editor or a configuration manager does.
	writeFile(t, path+".tmp", content)
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

const delay1m = "greylist {\n  delay = \"1m\"\n}\n"

func TestConfdAtStart(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	writeDropIn(t, dir, "50-local.hcl", delay1m)
	d := startDaemonDir(t, dir)
	wantPassAfter61s(t, d, dial(t, "unix", sock), true, "drop-in present at start")

	// check-config shows where the value comes from.
	out, err := exec.Command(binary, "check-config", "-config", dir).Output()
	if err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	for _, re := range []string{
		`(?m)^  delay += "1m" +# conf\.d/50-local\.hcl:2$`,
		`(?m)^  path += "` + regexp.QuoteMeta(filepath.Join(dir, "state", "greyd.db")) + `" +# greyd\.hcl:\d+$`,
		`(?m)^  max_age += "35d"$`, // a default: no origin
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("check-config output does not match %s:\n%s", re, out)
		}
	}
}

func TestConfdAddedLater(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	d := startDaemonDir(t, dir) // no conf.d yet
	c := dial(t, "unix", sock)
	wantPassAfter61s(t, d, c, false, "before the drop-in")

	// conf.d appears, with a drop-in.
	local := writeDropIn(t, dir, "50-local.hcl", delay1m)
	waitReloads(t, d, 1)
	d.waitLog("reload (changed: " + local + "): ok")
	wantPassAfter61s(t, d, c, true, "drop-in added")

	// The drop-in goes away: the default is back.
	os.Remove(local)
	waitReloads(t, d, 2)
	wantPassAfter61s(t, d, c, false, "drop-in removed")

	// Again, then conf.d itself is removed.
	writeDropIn(t, dir, "60-again.hcl", delay1m)
	waitReloads(t, d, 3)
	wantPassAfter61s(t, d, c, true, "second drop-in added")
	if err := os.RemoveAll(filepath.Join(dir, "conf.d")); err != nil {
		t.Fatal(err)
	}
	waitReloads(t, d, 4)
	wantPassAfter61s(t, d, c, false, "conf.d removed")
	if n := strings.Count(d.logs.String(), "reload ("); n != 4 {
		t.Errorf("%d reloads for 4 changes:\n%s", n, d.logs)
	}
}

// waitReloads waits until the log shows n successful reloads.
func waitReloads(t *testing.T, d *proc, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Count(d.logs.String(), "): ok, ") >= n {
			return
		}
	}
	t.Fatalf("fewer than %d successful reloads:\n%s", n, d.logs)
}

func TestConfdTypoKeepsSnapshot(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	writeDropIn(t, dir, "50-local.hcl", delay1m)
	d := startDaemonDir(t, dir)
	c := dial(t, "unix", sock)
	wantPassAfter61s(t, d, c, true, "at start")

	// A typo in a new drop-in: reported at its line, nothing applied (not
	// even the valid settings of the same load).
	typo := writeDropIn(t, dir, "60-typo.hcl", "greylist {\n  text  = \"Come back later\"\n  dealy = \"2m\"\n}\n")
	d.waitLog(typo + `:3:3: Unsupported argument: An argument named "dealy" is not expected here. Did you mean "delay"?`)
	d.waitLog("still running the previous configuration")
	wantPassAfter61s(t, d, c, true, "after the typo")
	if got := c.ask(rcpt("198.51.100.121", "x", "a@b.example", "c@example.org", 1700000000)...); got != greylisted {
		t.Fatalf("after the typo: got %q, want %q (text of the rejected load not applied)", got, greylisted)
	}

	// check-config says the same, with exit status 2.
	cmd := exec.Command(binary, "check-config", "-config", dir)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), typo+":3:3: Unsupported argument") {
		t.Errorf("check-config with the typo: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}

	// Fixing the typo applies both files.
	writeDropIn(t, dir, "60-typo.hcl", "greylist {\n  text  = \"Come back later\"\n  delay = \"2m\"\n}\n")
	d.waitLog("reload (changed: " + typo + "): ok")
	wantPassAfter61s(t, d, c, false, "delay 2m from the fixed drop-in")
}
