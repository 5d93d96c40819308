package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests build the real binary and speak the policy protocol to it
// over real sockets, the way Postfix does.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "greyd-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "greyd")
	out, err := exec.Command("go", "build", "-race", "-ldflags", "-X main.version=test", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building greyd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuf collects a process's stderr.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type proc struct {
	t    *testing.T
	dir  string
	sock string
	inet string
	cmd  *exec.Cmd
	logs *syncBuf
	done chan error
}

// testConfig is a configuration in dir with a unix socket and a TCP port,
// the whitelists of the repository, policy_test_time honoured (rcpt sets
// the request's time) unless extra says otherwise, and extra settings
// appended.
func testConfig(t *testing.T, dir, extra string) (sock, inet string) {
	t.Helper()
	sock = filepath.Join(dir, "greyd.sock")
	inet = freePort(t)
	repo, _ := filepath.Abs("../../etc/greyd")
	if !strings.Contains(extra, "policy_test_time") {
		extra = "greylist {\n  policy_test_time = true\n}\n" + extra
	}
	if !strings.Contains(extra, "control {") {
		// Not the default /run/greyd/control.sock: each daemon its own.
		extra = fmt.Sprintf("control {\n  socket = %q\n}\n%s", filepath.Join(dir, "control.sock"), extra)
	}
	cfg := fmt.Sprintf(`
listen {
  unix = %q
}
listen {
  inet = %q
}
database {
  path = %q
}
whitelist {
  clients    = [%q, %q]
  recipients = [%q, %q]
}
%s
`, sock, inet, filepath.Join(dir, "state", "greyd.db"),
		filepath.Join(repo, "whitelist_clients"), filepath.Join(dir, "whitelist_clients.local"),
		filepath.Join(repo, "whitelist_recipients"), filepath.Join(dir, "whitelist_recipients.local"), extra)
	if err := os.WriteFile(filepath.Join(dir, "greyd.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return sock, inet
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startDaemon(t *testing.T, dir string) *proc {
	t.Helper()
	d := &proc{t: t, dir: dir, sock: filepath.Join(dir, "greyd.sock"), logs: &syncBuf{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binary, "-config", filepath.Join(dir, "greyd.hcl"))
	startProc(t, d)
	return d
}

// startProc starts d.cmd and waits until it listens on d.sock. Its stderr
// goes to d.logs unless d.cmd has one.
func startProc(t *testing.T, d *proc) {
	t.Helper()
	if d.cmd.Stderr == nil {
		d.cmd.Stderr = d.logs
	}
	d.cmd.Env = append(os.Environ(), "JOURNAL_STREAM=")
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", d.sock); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("greyd exited at start: %v\n%s", err, d.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("greyd did not start listening:\n%s", d.logs)
		}
	}
}

// stop sends SIGTERM and returns the exit error, once.
func (d *proc) stop() error {
	if d.cmd.ProcessState != nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		return err
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		d.t.Errorf("greyd did not stop within 15s of SIGTERM:\n%s", d.logs)
		return <-d.done
	}
}

func (d *proc) waitLog(s string) {
	d.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(d.logs.String(), s) {
			return
		}
	}
	d.t.Fatalf("log never showed %q:\n%s", s, d.logs)
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, network, addr string) *client {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// ask sends one request (attribute lines without the empty line) and
// returns the action.
func (c *client) ask(lines ...string) string {
	c.t.Helper()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	req := strings.Join(lines, "\n") + "\n\n"
	if _, err := io.WriteString(c.c, req); err != nil {
		c.t.Fatalf("sending %q: %v", req, err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("sent %q, reading reply: %v", req, err)
	}
	if empty, err := c.r.ReadString('\n'); err != nil || empty != "\n" {
		c.t.Fatalf("sent %q: reply %q not followed by an empty line (%q, %v)", req, line, empty, err)
	}
	if !strings.HasPrefix(line, "action=") {
		c.t.Fatalf("sent %q: reply %q has no action=", req, line)
	}
	return strings.TrimSuffix(strings.TrimPrefix(line, "action="), "\n")
}

// rcpt is a RCPT request as Postfix 3.7 sends it, at Unix time when.
func rcpt(addr, name, sender, recipient string, when int64) []string {
	return []string{
		"request=smtpd_access_policy", "protocol_state=RCPT", "protocol_name=ESMTP",
		"helo_name=" + name, "queue_id=", "sender=" + sender, "recipient=" + recipient, "recipient_count=0",
		"client_address=" + addr, "client_name=" + name, "reverse_client_name=" + name,
		"instance=" + sender + fmt.Sprint(when), "etrn_domain=", "stress=", "client_port=54321",
		fmt.Sprintf("policy_test_time=%d", when),
	}
}

const greylisted = "DEFER_IF_PERMIT 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/example.org.html"

func TestServesUnixAndTCP(t *testing.T) {
	dir := t.TempDir()
	sock, inet := testConfig(t, dir, "")
	d := startDaemon(t, dir)
	now := time.Now().Unix()
	for _, c := range []*client{dial(t, "unix", sock), dial(t, "tcp", inet)} {
		sender := fmt.Sprintf("alice-%s@foo.example", c.c.LocalAddr().Network())
		if got := c.ask(rcpt("198.51.100.60", "mx.foo.example", sender, "bob@example.org", now)...); got != greylisted {
			t.Errorf("first attempt: got %q, want %q", got, greylisted)
		}
		if got := c.ask(rcpt("198.51.100.60", "mx.foo.example", sender, "bob@example.org", now+120)...); got != greylisted {
			t.Errorf("early retry: got %q, want %q", got, greylisted)
		}
		got := c.ask(rcpt("198.51.100.61", "mx.foo.example", sender, "bob@example.org", now+310)...)
		if !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 310 seconds by greyd-test at ") {
			t.Errorf("retry after the delay: got %q, want the X-Greylist header", got)
		}
		if got := c.ask(rcpt("198.51.100.60", "mx.foo.example", sender, "bob@example.org", now+400)...); got != "DUNNO" {
			t.Errorf("later: got %q, want DUNNO", got)
		}
	}
	d.waitLog("action=greylist, reason=new, client_name=mx.foo.example, client_address=198.51.100.60, sender=alice-unix@foo.example, recipient=bob@example.org")
	d.waitLog("action=greylist, reason=early-retry (180s missing)")
	d.waitLog("action=pass, reason=triplet found, delay=310, client_name=mx.foo.example, client_address=198.51.100.61")
}

// TestPolicyTestTimeOff: unless the configuration asks for it, a client
// cannot move the decision's clock with policy_test_time.
func TestPolicyTestTimeOff(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "greylist {\n  policy_test_time = false\n}\n")
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	for _, when := range []int64{now, now + 310, now + 86400} {
		if got := c.ask(rcpt("198.51.100.62", "mx.foo.example", "a@foo.example", "bob@example.org", when)...); got != greylisted {
			t.Errorf("policy_test_time=now+%d: got %q, want %q (the attribute ignored)", when-now, got, greylisted)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Count(d.logs.String(), "action=greylist") < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed 3 greylist lines:\n%s", d.logs)
		}
	}
	if strings.Contains(d.logs.String(), "action=pass") || strings.Contains(d.logs.String(), "policy_test_time") {
		t.Errorf("a pass, or the ignored attribute, was logged:\n%s", d.logs)
	}
}

func TestWhitelistsAndBadRequests(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	os.WriteFile(filepath.Join(dir, "whitelist_clients.local"), []byte("# ours\nrelay.partner.example\n"), 0o644)
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	tests := []struct {
		req  []string
		want string
		log  string
	}{
		{rcpt("2001:db8::25", "mail-am6eur05.outbound.protection.outlook.com", "a@b.example", "c@example.org", now), "DUNNO", "action=pass, reason=client whitelist"},
		{rcpt("198.51.100.9", "smtp.relay.partner.example", "a@b.example", "c@example.org", now), "DUNNO", "client_name=smtp.relay.partner.example"},
		{rcpt("198.51.100.9", "unknown", "a@b.example", "Postmaster@example.org", now), "DUNNO", "action=pass, reason=recipient whitelist"},
		{[]string{"request=smtpd_access_policy", "client_address=not-an-ip", "client_name=x", "sender=", "recipient=a@b"}, "DUNNO", "warning: client_address is not an IP address: 'not-an-ip'"},
		{[]string{"request=smtpd_access_policy", "client_name=x", "sender=", "recipient=a@b"}, "DUNNO", "warning: attribute missing: client_address"},
		{[]string{"request=junk"}, "DUNNO", "warning: unrecognized request type: 'junk'"},
		{[]string{"request=smtpd_access_policy", "client_address=" + strings.Repeat("9", 5000), "client_name=x", "sender=", "recipient=a@b"}, "DUNNO", "client_address is not an IP address"},
	}
	for i, tc := range tests {
		if got := c.ask(tc.req...); got != tc.want {
			t.Errorf("%d: got %q, want %q", i, got, tc.want)
		}
		d.waitLog(tc.log)
	}
	// A line over the limit: logged and disconnected, the daemon lives on.
	big := dial(t, "unix", sock)
	io.WriteString(big.c, "request=smtpd_access_policy\nsender="+strings.Repeat("x", 10000)+"\n\n")
	big.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := big.r.ReadByte(); err == nil {
		t.Error("line of 10000 bytes: connection not closed")
	}
	d.waitLog("line longer than 8192 bytes")
	if got := c.ask(rcpt("198.51.100.9", "unknown", "a@b.example", "postmaster@example.org", now)...); got != "DUNNO" {
		t.Errorf("after a bad client: got %q", got)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	d := startDaemon(t, dir)
	now := time.Now().Unix()
	req := rcpt("198.51.100.60", "mx.foo.example", "alice@foo.example", "bob@example.org", now)
	if got := dial(t, "unix", sock).ask(req...); got != greylisted {
		t.Fatalf("first attempt: got %q", got)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("SIGTERM: exit %v\n%s", err, d.logs)
	}
	if !strings.Contains(d.logs.String(), "stopped after 1 requests") {
		t.Errorf("no clean stop in the log:\n%s", d.logs)
	}
	startDaemon(t, dir)
	got := dial(t, "unix", sock).ask(rcpt("198.51.100.60", "mx.foo.example", "alice@foo.example", "bob@example.org", now+301)...)
	if !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 301 seconds") {
		t.Errorf("retry after restart: got %q, want the first pass", got)
	}
}

func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	if got := c.ask(rcpt("198.51.100.70", "new.partner.example", "a@b.example", "c@example.org", now)...); got != greylisted {
		t.Fatalf("before: got %q", got)
	}
	os.WriteFile(filepath.Join(dir, "whitelist_clients.local"), []byte("new.partner.example\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	// The file watcher may see the edit first; then SIGHUP's reload finds
	// nothing changed. Either way the edit is loaded and SIGHUP reloads.
	d.waitLog("changed: " + filepath.Join(dir, "whitelist_clients.local") + "): ok")
	d.waitLog("reload (SIGHUP")
	if got := c.ask(rcpt("198.51.100.70", "new.partner.example", "a@b.example", "c@example.org", now)...); got != "DUNNO" {
		t.Errorf("after SIGHUP: got %q, want DUNNO", got)
	}
	// A broken edit keeps the running configuration.
	os.WriteFile(filepath.Join(dir, "greyd.hcl"), []byte("greylist {\n  dealy = \"1m\"\n}\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog("greyd.hcl:2:3: Unsupported argument")
	d.waitLog("still running the previous configuration")
	if got := c.ask(rcpt("198.51.100.70", "new.partner.example", "a@b.example", "c@example.org", now)...); got != "DUNNO" {
		t.Errorf("after a broken edit: got %q, want DUNNO (old snapshot)", got)
	}
}

func TestCheckConfig(t *testing.T) {
	repo, _ := filepath.Abs("../../etc/greyd")
	out, err := exec.Command(binary, "check-config", "-config", repo).CombinedOutput()
	if err != nil {
		t.Fatalf("check-config on the shipped etc/greyd: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("delay")) || !bytes.Contains(out, []byte("is valid")) {
		t.Errorf("check-config output lacks the effective configuration:\n%s", out)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "greyd.hcl")
	os.WriteFile(bad, []byte("greylist {\n  dealy = \"1m\"\n}\n"), 0o644)
	cmd := exec.Command(binary, "check-config", "-config", bad)
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("check-config on a typo: exit %v, want 2\n%s", err, out)
	}
	for _, want := range []string{bad + ":2:3: Unsupported argument", `Did you mean "delay"?`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("check-config on a typo: output lacks %q:\n%s", want, out)
		}
	}
	// The flag form works too, and the daemon refuses to start with exit 2.
	if err := exec.Command(binary, "-check-config", "-config", bad).Run(); err == nil {
		t.Error("-check-config on a typo: exit 0")
	}
	cmd = exec.Command(binary, "-config", bad)
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !bytes.Contains(out, []byte("not starting")) {
		t.Errorf("daemon on a typo: exit %d, want 2 and a clear message:\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "-version").Output()
	if err != nil || string(out) != "greyd test\n" {
		t.Errorf("-version: %q, %v", out, err)
	}
}

func TestCorruptDatabaseMovedAside(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	db := filepath.Join(dir, "state", "greyd.db")
	os.WriteFile(db, []byte("*3\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\nb\r\ngarbage in the middle\r\n*3\r\n$3\r\nset\r\n$1\r\nc\r\n$1\r\nd\r\n"), 0o600)
	d := startDaemon(t, dir)
	d.waitLog(".corrupt-")
	if got := dial(t, "unix", sock).ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", time.Now().Unix())...); got != greylisted {
		t.Errorf("after moving a corrupt database aside: got %q", got)
	}
	m, _ := filepath.Glob(db + ".corrupt-*")
	if len(m) != 1 {
		t.Errorf("corrupt file not kept aside: %v", m)
	}
}
