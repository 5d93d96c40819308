// Command sdtest checks greyd's systemd integration without systemd as PID 1:
// it starts greyd under systemd-socket-activate with a fake NOTIFY_SOCKET,
// asks policy questions over the activated socket, and checks the sd_notify
// states around start, reload (SIGHUP) and stop (SIGTERM).
//
// Usage (as root for -user):
//
//	go run ./dist/sdtest -bin /usr/sbin/greyd -config /etc/greyd -user greyd
//	go run ./dist/sdtest -bin build/greyd    # a throwaway config in a temp dir
//
// It prints each check and exits 1 on the first failure, with greyd's
// output and every notification received.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	bin      = flag.String("bin", "build/greyd", "greyd binary to run")
	config   = flag.String("config", "", "greyd -config path; empty writes a throwaway config with its database in a temp dir")
	user     = flag.String("user", "", "run greyd as this user (via setpriv), e.g. greyd; needs root")
	activate = flag.String("activate", "systemd-socket-activate", "systemd-socket-activate binary")
	inet     = flag.Bool("inet", true, "also pass a TCP socket on 127.0.0.1 and ask over it")
	watchdog = flag.Duration("watchdog", 2*time.Second, "WATCHDOG_USEC to pass; greyd must ping WATCHDOG=1 within it (0: don't check)")
	want     = flag.String("want", `^action=DEFER_IF_PERMIT .*Greylisted`, "regexp the reply to a new triplet must match")
	timeout  = flag.Duration("timeout", 20*time.Second, "time allowed for each step")
)

func main() {
	flag.Parse()
	t := &test{}
	defer t.cleanup()
	if err := t.run(); err != nil {
		t.dump()
		fmt.Fprintf(os.Stderr, "sdtest: FAIL: %v\n", err)
		t.cleanup()
		os.Exit(1)
	}
	fmt.Println("sdtest: PASS")
}

type test struct {
	dir    string
	cmd    *exec.Cmd
	out    syncBuffer
	exited chan error
	notes  *notifier
}

func (t *test) run() error {
	dir, err := os.MkdirTemp("", "greyd-sdtest-")
	if err != nil {
		return err
	}
	t.dir = dir
	// greyd may run as another user: it must reach the notify socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	cfg := *config
	if cfg == "" {
		if cfg, err = writeConfig(dir); err != nil {
			return err
		}
	}
	if t.notes, err = listenNotify(filepath.Join(dir, "notify")); err != nil {
		return err
	}

	unixPath := filepath.Join(dir, "policy.sock")
	args := []string{"-l", unixPath}
	names := "policy"
	tcpAddr := ""
	if *inet {
		if tcpAddr, err = freePort(); err != nil {
			return err
		}
		args = append(args, "-l", tcpAddr)
		names += ":policy-tcp"
	}
	args = append(args, "--fdname="+names, "-E", "NOTIFY_SOCKET="+t.notes.path)
	if *watchdog > 0 {
		args = append(args, "-E", fmt.Sprintf("WATCHDOG_USEC=%d", watchdog.Microseconds()))
	}
	if *user != "" {
		// setpriv execs greyd, so LISTEN_PID (the PID systemd-socket-activate
		// had) stays right.
		args = append(args, "setpriv", "--reuid="+*user, "--regid="+*user, "--init-groups", "--")
	}
	args = append(args, *bin, "-config", cfg)

	// As greyd.service's UMask=0027: the database is not world-readable.
	syscall.Umask(0o027)
	t.cmd = exec.Command(*activate, args...)
	t.cmd.Stdout, t.cmd.Stderr = &t.out, &t.out
	fmt.Printf("sdtest: starting %s\n", strings.Join(t.cmd.Args, " "))
	if err := t.cmd.Start(); err != nil {
		return err
	}
	t.exited = make(chan error, 1)
	go func() { t.exited <- t.cmd.Wait() }()

	// systemd-socket-activate starts greyd on the first connection.
	c, err := dialWhenBound("unix", unixPath, t.exited)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := ask(c, r, "192.0.2.10", "bob@example.net", *want, "new triplet over the unix socket"); err != nil {
		return err
	}
	if err := t.notes.waitFor("READY=1", *timeout); err != nil {
		return err
	}
	ok("READY=1 after start")
	if err := ask(c, r, "192.0.2.10", "postmaster@example.net", `^action=DUNNO$`, "whitelisted recipient, same connection"); err != nil {
		return err
	}
	if tcpAddr != "" {
		tc, err := net.DialTimeout("tcp", tcpAddr, *timeout)
		if err != nil {
			return fmt.Errorf("connect to the activated TCP socket %s: %w", tcpAddr, err)
		}
		defer tc.Close()
		if err := ask(tc, bufio.NewReader(tc), "198.51.100.7", "carol@example.net", *want, "new triplet over the TCP socket"); err != nil {
			return err
		}
	}
	if *watchdog > 0 {
		if err := t.notes.waitFor("WATCHDOG=1", *watchdog); err != nil {
			return err
		}
		ok("WATCHDOG=1 within WATCHDOG_USEC")
	}

	if err := t.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	if err := t.notes.waitFor("RELOADING=1", *timeout); err != nil {
		return err
	}
	if err := t.notes.waitFor("READY=1", *timeout); err != nil {
		return err
	}
	ok("SIGHUP: RELOADING=1 then READY=1")
	if err := ask(c, r, "203.0.113.5", "dave@example.net", *want, "new triplet after the reload"); err != nil {
		return err
	}
	if !t.notes.seen("STATUS=") {
		return errors.New("no STATUS= line received")
	}
	ok("STATUS= line received")

	if err := t.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := t.notes.waitFor("STOPPING=1", *timeout); err != nil {
		return err
	}
	ok("SIGTERM: STOPPING=1")
	select {
	case err := <-t.exited:
		t.cmd = nil
		if err != nil {
			return fmt.Errorf("greyd did not exit cleanly after SIGTERM: %v", err)
		}
	case <-time.After(*timeout):
		return fmt.Errorf("greyd still running %v after SIGTERM", *timeout)
	}
	ok("clean exit (status 0)")
	return nil
}

// ask sends one policy request and checks the reply line against pattern.
func ask(c net.Conn, r *bufio.Reader, client, recipient, pattern, what string) error {
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=" + client + "\nclient_name=unknown\nreverse_client_name=unknown\n" +
		"helo_name=mx.example.org\nsender=alice@example.org\nrecipient=" + recipient + "\n" +
		"recipient_count=0\nqueue_id=\ninstance=sdtest." + client + "\nsize=0\netrn_domain=\n\n"
	c.SetDeadline(time.Now().Add(*timeout))
	if _, err := c.Write([]byte(req)); err != nil {
		return fmt.Errorf("%s: send: %w", what, err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("%s: sent\n%s\nread: %w (got %q)", what, req, err, line)
	}
	empty, err := r.ReadString('\n')
	if err != nil || empty != "\n" {
		return fmt.Errorf("%s: reply %q not ended by an empty line (got %q, %v)", what, line, empty, err)
	}
	reply := strings.TrimSuffix(line, "\n")
	if !regexp.MustCompile(pattern).MatchString(reply) {
		return fmt.Errorf("%s: sent\n%s\ngot %q, want a match for %q", what, req, reply, pattern)
	}
	ok(fmt.Sprintf("%s: %s", what, reply))
	return nil
}

// dialWhenBound connects once systemd-socket-activate has bound path.
func dialWhenBound(network, path string, exited <-chan error) (net.Conn, error) {
	deadline := time.Now().Add(*timeout)
	for {
		c, err := net.Dial(network, path)
		if err == nil {
			return c, nil
		}
		select {
		case e := <-exited:
			return nil, fmt.Errorf("systemd-socket-activate exited before listening: %v", e)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a 127.0.0.1 address that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// writeConfig writes a configuration that keeps all state in dir, for
// running a freshly built greyd from the source tree.
func writeConfig(dir string) (string, error) {
	files := map[string]string{
		"greyd.hcl": fmt.Sprintf(`database {
  path = %q
}
whitelist {
  clients    = []
  recipients = ["whitelist_recipients"]
}
`, filepath.Join(dir, "state", "greyd.db")),
		"whitelist_recipients": "postmaster@\n",
	}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o777); err != nil {
		return "", err
	}
	// The database directory must be writable for -user too.
	if err := os.Chmod(filepath.Join(dir, "state"), 0o777); err != nil {
		return "", err
	}
	cfg := filepath.Join(dir, "etc")
	if err := os.Mkdir(cfg, 0o755); err != nil {
		return "", err
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	return cfg, nil
}

func ok(what string) { fmt.Printf("sdtest: ok: %s\n", what) }

func (t *test) dump() {
	fmt.Fprintf(os.Stderr, "--- greyd output:\n%s", t.out.String())
	if t.notes != nil {
		fmt.Fprintf(os.Stderr, "--- notifications received: %q\n", t.notes.all())
	}
}

func (t *test) cleanup() {
	if t.cmd != nil && t.cmd.Process != nil {
		t.cmd.Process.Kill()
		<-t.exited
		t.cmd = nil
	}
	if t.notes != nil {
		t.notes.conn.Close()
	}
	if t.dir != "" {
		os.RemoveAll(t.dir)
		t.dir = ""
	}
}

// notifier is a fake NOTIFY_SOCKET: it records every line greyd sends.
type notifier struct {
	path  string
	conn  *net.UnixConn
	lines chan string

	mu   sync.Mutex
	got  []string
	next int // index in got of the first line waitFor has not looked at
}

func listenNotify(path string) (*notifier, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		return nil, err
	}
	n := &notifier{path: path, conn: conn, lines: make(chan string, 1)}
	go n.read()
	return n, nil
}

func (n *notifier) read() {
	buf := make([]byte, 4096)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			return
		}
		n.mu.Lock()
		n.got = append(n.got, strings.Split(strings.TrimRight(string(buf[:k]), "\n"), "\n")...)
		n.mu.Unlock()
		select {
		case n.lines <- "":
		default:
		}
	}
}

// waitFor consumes lines until one equals line.
func (n *notifier) waitFor(line string, d time.Duration) error {
	deadline := time.After(d)
	for {
		n.mu.Lock()
		for n.next < len(n.got) {
			l := n.got[n.next]
			n.next++
			if l == line {
				n.mu.Unlock()
				return nil
			}
		}
		n.mu.Unlock()
		select {
		case <-n.lines:
		case <-deadline:
			return fmt.Errorf("no %s within %v", line, d)
		}
	}
}

func (n *notifier) seen(prefix string) bool {
	for _, l := range n.all() {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func (n *notifier) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.got...)
}

// syncBuffer collects greyd's output from two pipes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
