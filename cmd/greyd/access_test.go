package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAllowList: a TCP listener accepts only the clients of its allow
// list; others are disconnected before a byte is read, and logged. Here
// 127.0.0.2, another address of the loopback interface, stands in for a
// host outside the list.
func TestAllowList(t *testing.T) {
	dir := t.TempDir()
	inet := freePort(t)
	testConfig(t, dir, fmt.Sprintf("listen {\n  inet  = %q\n  allow = [\"127.0.0.1\"]\n}\n", inet))
	d := startDaemon(t, dir)
	d.waitLog("started: listening on")

	out := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	c, err := out.Dial("tcp", inet)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, strings.Join(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", time.Now().Unix()), "\n")+"\n\n")
	if b, err := io.ReadAll(c); len(b) > 0 {
		t.Errorf("client outside the allow list got an answer: %q, %v", b, err)
	}
	c.Close()
	d.waitLog("warning: refused connection from 127.0.0.2:")

	if got := dial(t, "tcp", inet).ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", time.Now().Unix())...); got != greylisted {
		t.Errorf("client in the allow list: got %q", got)
	}
}

// TestNonLoopbackNeedsAllow: listening beyond loopback without an allow
// list is a configuration error, reported with its position, before any
// socket is bound.
func TestNonLoopbackNeedsAllow(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "greyd.hcl")
	os.WriteFile(cfg, []byte("listen {\n  inet = \"0.0.0.0:10023\"\n}\n"), 0o644)
	cmd := exec.Command(binary, "-config", cfg)
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("exit %d, want 2 (configuration error)\n%s", code, out)
	}
	if want := cfg + `:2:10: Listening beyond this host: inet = "0.0.0.0:10023" accepts connections from other hosts`; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}
