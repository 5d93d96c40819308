package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestListenersGone: a listening socket that stops listening for good
// (here shut down through the test's copy of a socket passed as by
// systemd, which makes accept fail with EINVAL) is dropped, and greyd
// serves on; once none is left, greyd exits with status 1, for systemd
// to restart it, rather than run on answering no one.
func TestListenersGone(t *testing.T) {
	dir := t.TempDir()
	a, b := freePort(t), freePort(t)
	testConfig(t, dir, fmt.Sprintf("listen_reset = true\nlisten {\n  inet = %q\n}\nlisten {\n  inet = %q\n}\n", a, b))
	var files []*os.File
	for _, addr := range []string{a, b} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	d := &proc{t: t, dir: dir, sock: filepath.Join(dir, "control.sock"), logs: &syncBuf{}, done: make(chan error, 1)}
	d.cmd = exec.Command("sh", "-c", `export LISTEN_PID=$$ LISTEN_FDS=2; exec "$0" "$@"`, binary, "-config", filepath.Join(dir, "greyd.hcl"))
	d.cmd.ExtraFiles = files
	startProc(t, d)
	d.waitLog(fmt.Sprintf("listening on tcp:%s, tcp:%s;", a, b))
	now := time.Now().Unix()
	ask := func(addr, sender string) string {
		return dial(t, "tcp", addr).ask(rcpt("198.51.100.90", "mx.foo.example", sender, "bob@example.org", now)...)
	}
	if got := ask(a, "a@foo.example"); got != greylisted {
		t.Fatalf("on %s: %q, want %q", a, got, greylisted)
	}

	if err := syscall.Shutdown(int(files[0].Fd()), syscall.SHUT_RD); err != nil {
		t.Fatal(err)
	}
	d.waitLog("accept on tcp:" + a + ": ")
	d.waitLog("no longer listening on it")
	if got := ask(b, "b@foo.example"); got != greylisted {
		t.Fatalf("on %s after %s went: %q, want %q", b, a, got, greylisted)
	}
	if strings.Contains(d.logs.String(), "no listener is left") {
		t.Fatalf("greyd gave up with a listener left:\n%s", d.logs)
	}

	if err := syscall.Shutdown(int(files[1].Fd()), syscall.SHUT_RD); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("greyd exited with %v, want status 1 (systemd's Restart=on-failure restarts it)", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("greyd still runs 15s after its last listener went:\n%s", d.logs)
	}
	for _, want := range []string{"no listener is left: exiting", "no listener left: stopping", "stopped after 2 requests"} {
		if !strings.Contains(d.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, d.logs)
		}
	}
}
