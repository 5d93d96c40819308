package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// expectEOF reads from c and wants the end of the connection, as Exim's
// ${readsocket} waits for it after the reply.
func (c *client) expectEOF(what string) {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		c.t.Errorf("%s: after the reply, read %q, %v; want EOF (greyd closing the connection)", what, b, err)
	}
}

// TestEximListen: a listen block with exim = true answers one request per
// connection and then closes it, like Postgrey's --exim; the other
// listeners keep their connections open for the next request.
func TestEximListen(t *testing.T) {
	dir := t.TempDir()
	eximSock, eximInet := filepath.Join(dir, "exim.sock"), freePort(t)
	sock, inet := testConfig(t, dir, fmt.Sprintf("listen {\n  unix = %q\n  exim = true\n}\nlisten {\n  inet = %q\n  exim = true\n}\n", eximSock, eximInet))
	d := startDaemon(t, dir)
	d.waitLog(fmt.Sprintf("unix:%s (exim: one request per connection), tcp:%s (exim: one request per connection)", eximSock, eximInet))
	now := time.Now().Unix()

	for _, l := range [][2]string{{"unix", eximSock}, {"tcp", eximInet}} {
		sender := "exim-" + l[0] + "@foo.example"
		c := dial(t, l[0], l[1])
		if got := c.ask(rcpt("198.51.100.70", "mx.foo.example", sender, "bob@example.org", now)...); got != greylisted {
			t.Errorf("exim %s: got %q, want %q", l[0], got, greylisted)
		}
		c.expectEOF("exim " + l[0])

		// The next request needs a new connection; a second request
		// on the first one is not answered.
		c = dial(t, l[0], l[1])
		req := strings.Join(rcpt("198.51.100.70", "mx.foo.example", sender, "bob@example.org", now+301), "\n") + "\n\n"
		io.WriteString(c.c, req+req)
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c.r)
		if n := strings.Count(string(b), "action="); n != 1 || !strings.HasPrefix(string(b), "action=PREPEND X-Greylist: delayed 301 seconds") {
			t.Errorf("exim %s, two requests on one connection: got %q, want the first one's reply only", l[0], b)
		}
	}

	for _, l := range [][2]string{{"unix", sock}, {"tcp", inet}} {
		sender := "postfix-" + l[0] + "@foo.example"
		c := dial(t, l[0], l[1])
		if got := c.ask(rcpt("198.51.100.70", "mx.foo.example", sender, "bob@example.org", now)...); got != greylisted {
			t.Errorf("%s without exim: got %q, want %q", l[0], got, greylisted)
		}
		if got := c.ask(rcpt("198.51.100.70", "mx.foo.example", sender, "bob@example.org", now+301)...); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 301 seconds") {
			t.Errorf("%s without exim, second request on the connection: got %q", l[0], got)
		}
	}
	if err := d.stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.logs)
	}
	for _, bad := range []string{"writing reply", "closing connection", "connection from", "error:"} {
		if strings.Contains(d.logs.String(), bad) {
			t.Errorf("closing connections after the reply logged %q:\n%s", bad, d.logs)
		}
	}
}

// TestEximSocketActivated: with sockets passed by systemd, the listen
// block with a socket's address says whether it is Exim's: a unix socket
// by its path, a TCP socket by its inet.
func TestEximSocketActivated(t *testing.T) {
	dir := t.TempDir()
	eximSock, inet := filepath.Join(dir, "exim.sock"), freePort(t)
	testConfig(t, dir, fmt.Sprintf("listen_reset = true\nlisten {\n  unix = %q\n  exim = true\n}\nlisten {\n  inet = %q\n}\n", eximSock, inet))
	var files []*os.File
	for _, a := range [][2]string{{"unix", eximSock}, {"tcp", inet}} {
		l, err := net.Listen(a[0], a[1])
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		f, err := l.(interface{ File() (*os.File, error) }).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	d := &proc{t: t, dir: dir, sock: eximSock, logs: &syncBuf{}, done: make(chan error, 1)}
	// LISTEN_PID must be greyd's own: the shell execs it.
	d.cmd = exec.Command("sh", "-c", `export LISTEN_PID=$$ LISTEN_FDS=2; exec "$0" "$@"`, binary, "-config", filepath.Join(dir, "greyd.hcl"))
	d.cmd.ExtraFiles = files
	startProc(t, d)
	d.waitLog(fmt.Sprintf("listening on unix:%s (exim: one request per connection), tcp:%s;", eximSock, inet))

	now := time.Now().Unix()
	c := dial(t, "unix", eximSock)
	if got := c.ask(rcpt("198.51.100.71", "mx.foo.example", "a@foo.example", "bob@example.org", now)...); got != greylisted {
		t.Errorf("activated exim socket: got %q, want %q", got, greylisted)
	}
	c.expectEOF("activated exim socket")
	c = dial(t, "tcp", inet)
	for i := 0; i < 2; i++ {
		if got := c.ask(rcpt("198.51.100.71", "mx.foo.example", "b@foo.example", "bob@example.org", now)...); got != greylisted {
			t.Errorf("activated TCP socket without exim, request %d: got %q, want %q", i, got, greylisted)
		}
	}
}

// eximConf is a minimal Exim configuration around the ACL the README
// shows. GREYD (the socket) and OPTIONS (readsocket's timeout and
// options) are macros given with -D.
const eximConf = `primary_hostname = mx.example.org
domainlist local_domains = example.org
spool_directory = SPOOL
log_file_path = SPOOL/%slog
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  # The README's ACL, with the socket and readsocket's options as macros.
  defer log_message = greylisted host $sender_host_address
        set acl_m0  = request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=${uc:$received_protocol}\nhelo_name=$sender_helo_name\nclient_address=$sender_host_address\nclient_name=$sender_host_name\nsender=$sender_address\nrecipient=$local_part@$domain\n\n
        set acl_m0  = ${sg{${readsocket{GREYD}{$acl_m0}{OPTIONS}{}{action=DUNNO}}}{^action=|\n}{}}
        message     = ${sg{$acl_m0}{^\\w+\\s*}{}}
        condition   = ${if eq{${uc:${substr{0}{5}{$acl_m0}}}}{DEFER}}
  warn  condition   = ${if eq{${uc:${substr{0}{7}{$acl_m0}}}}{PREPEND}}
        add_header  = ${sg{$acl_m0}{^\\w+\\s*}{}}
  accept
`

// exim runs the real Exim in host-checking mode (-bh): an SMTP session on
// its standard input and output, as if from 192.0.2.1, that runs the ACLs
// and delivers nothing. It returns the reply to RCPT TO.
type exim struct {
	t         *testing.T
	bin, conf string
}

var replyLine = regexp.MustCompile(`^([2-5][0-9][0-9])([ -])(.*)$`)

func (e exim) rcpt(greyd, options, sender string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, "-C", e.conf, "-DGREYD="+greyd, "-DOPTIONS="+options,
		"-bh", "192.0.2.1", "-oMs", "mx.foo.example") // -oMs: the client's name, without a DNS lookup
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("exim4: %v", err)
	}
	defer cmd.Wait()
	defer in.Close()
	r := bufio.NewReader(out)
	var transcript []string
	fail := func(format string, a ...any) {
		e.t.Helper()
		e.t.Fatalf("%s\nsession:\n%s\nexim's stderr:\n%s", fmt.Sprintf(format, a...), strings.Join(transcript, "\n"), stderr.String())
	}
	// reply reads a reply, skipping -bh's banner, and returns its last line.
	reply := func() string {
		e.t.Helper()
		for {
			l, err := r.ReadString('\n')
			l = strings.TrimRight(l, "\r\n")
			transcript = append(transcript, "<<< "+l)
			if err != nil {
				fail("reading Exim's reply: %v", err)
			}
			if m := replyLine.FindStringSubmatch(l); m != nil && m[2] == " " {
				return l
			}
		}
	}
	send := func(cmd string) string {
		e.t.Helper()
		transcript = append(transcript, ">>> "+cmd)
		io.WriteString(in, cmd+"\r\n")
		return reply()
	}
	if l := reply(); !strings.HasPrefix(l, "220 ") {
		fail("greeting %q", l)
	}
	for _, c := range []string{"HELO mx.foo.example", "MAIL FROM:<" + sender + ">"} {
		if l := send(c); !strings.HasPrefix(l, "250 ") {
			fail("%s: %q", c, l)
		}
	}
	got := send("RCPT TO:<bob@example.org>")
	send("QUIT")
	return got
}

// TestEximReadsocket: the real Exim asks greyd from its RCPT ACL, the one
// the README shows, with ${readsocket} over TCP: the first attempt is
// deferred with greyd's text, retries before the delay too, and a retry
// after it is accepted. With readsocket's shutdown=no Exim waits for greyd
// to close the connection: exim = true does, a listener without it does
// not (Exim times out and its fail string lets the mail through).
func TestEximReadsocket(t *testing.T) {
	bin, err := exec.LookPath("exim4")
	if err != nil {
		bin = "/usr/sbin/exim4" // not in a user's PATH on Debian
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("exim4 is not installed (dist/install-deps.sh installs exim4-daemon-light): %v", err)
		}
	}
	dir := t.TempDir()
	eximInet := freePort(t)
	_, inet := testConfig(t, dir, fmt.Sprintf("greylist {\n  delay = \"2s\"\n  policy_test_time = false\n}\nlisten {\n  inet = %q\n  exim = true\n}\n", eximInet))
	d := startDaemon(t, dir)
	// Exim started by root runs the session as its own user, which must
	// reach its configuration and spool; a user's Exim runs as that user.
	spool := filepath.Join(dir, "exim")
	for _, p := range []string{filepath.Dir(dir), dir} {
		os.Chmod(p, 0o711)
	}
	if err := os.Mkdir(spool, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(spool, 0o777) // not the umask's
	conf := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(eximConf, "SPOOL", spool)), 0o644); err != nil {
		t.Fatal(err)
	}
	const deferred = "451 Greylisted, see http://postgrey.schweikert.ch/help/example.org.html"

	for _, tc := range []struct{ name, options, sender string }{
		{"README", "5s", "readme@foo.example"},
		{"shutdown=no", "5s:shutdown=no", "noshutdown@foo.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := exim{t: t, bin: bin, conf: conf}
			start := time.Now()
			if got := e.rcpt("inet:"+eximInet, tc.options, tc.sender); got != deferred {
				t.Fatalf("first attempt: RCPT got %q, want %q", got, deferred)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("first session took %v: Exim waited for its readsocket timeout", took)
			}
			// Poll: deferred until the delay has passed (greyd counts
			// whole seconds, so "2s" may pass after just over 1s).
			for {
				got := e.rcpt("inet:"+eximInet, tc.options, tc.sender)
				elapsed := time.Since(start)
				if strings.HasPrefix(got, "250 ") {
					if elapsed < time.Second {
						t.Fatalf("accepted %v after the first attempt, before the 2s delay", elapsed)
					}
					break
				}
				if got != deferred {
					t.Fatalf("retry after %v: RCPT got %q, want %q or 250", elapsed, got, deferred)
				}
				if elapsed > 10*time.Second {
					t.Fatalf("still deferred %v after the first attempt, with a delay of 2s", elapsed)
				}
				time.Sleep(200 * time.Millisecond)
			}
			d.waitLog("action=greylist, reason=new, client_name=mx.foo.example, client_address=192.0.2.1, sender=" + tc.sender + ", recipient=bob@example.org")
			if !regexp.MustCompile(`action=pass, reason=triplet found, delay=[1-9][0-9]*, client_name=mx\.foo\.example, client_address=192\.0\.2\.1, sender=` + regexp.QuoteMeta(tc.sender)).MatchString(d.logs.String()) {
				t.Errorf("no pass logged for %s:\n%s", tc.sender, d.logs)
			}
		})
	}

	t.Run("shutdown=no without exim", func(t *testing.T) {
		e := exim{t: t, bin: bin, conf: conf}
		start := time.Now()
		if got := e.rcpt("inet:"+inet, "1s:shutdown=no", "control@foo.example"); !strings.HasPrefix(got, "250 ") {
			t.Errorf("RCPT got %q, want 250: Exim's fail string after its timeout", got)
		}
		if took := time.Since(start); took < time.Second {
			t.Errorf("session took %v, less than readsocket's timeout: greyd closed a connection of a listener without exim", took)
		}
		d.waitLog("sender=control@foo.example") // greyd answered; Exim did not wait for it
	})
}
