// Package redistest starts real Redis servers for tests: standalone on a
// unix socket or a loopback port, a Sentinel set (master, replica, three
// sentinels) and a Cluster of masters. Every process is started by the
// test, in its t.TempDir(), and killed by pid at cleanup; every wait is
// bounded. It talks to the servers with its own few lines of RESP, not
// with the client under test.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server or redis-sentinel process.
type Server struct {
	t      testing.TB
	bin    string
	args   []string
	Dir    string
	Socket string // unix socket path, "" if none
	Port   int    // 127.0.0.1 port, 0 if none
	cmd    *exec.Cmd
	exited chan struct{}
}

// Need fails t when the Redis binaries are not installed: make deps
// installs them, and a skipped test would hide the missing dependency.
func Need(t testing.TB) {
	t.Helper()
	for _, b := range []string{"redis-server", "redis-sentinel", "redis-cli"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not installed (make deps installs redis-server, redis-sentinel and redis-tools): %v", b, err)
		}
	}
}

// Start starts a standalone redis-server listening only on a unix socket.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	Need(t)
	dir := t.TempDir()
	s := &Server{t: t, bin: "redis-server", Dir: dir, Socket: filepath.Join(dir, "redis.sock")}
	s.args = append(baseArgs(dir), "--port", "0", "--unixsocket", s.Socket, "--unixsocketperm", "700")
	s.args = append(s.args, extra...)
	s.start()
	return s
}

// StartTCP starts a standalone redis-server on a free 127.0.0.1 port.
func StartTCP(t testing.TB, extra ...string) *Server {
	t.Helper()
	Need(t)
	return startOnPort(t, "redis-server", false, func(dir string, port int) []string {
		return append(append(baseArgs(dir), "--port", strconv.Itoa(port)), extra...)
	})
}

func baseArgs(dir string) []string {
	return []string{
		"--bind", "127.0.0.1", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--save", "", "--appendonly", "no", "--daemonize", "no",
	}
}

// startOnPort starts a server on a free port, trying another if the port
// was taken meanwhile (other tests pick ports too). bus also needs port +
// 10000 free (the Cluster bus).
func startOnPort(t testing.TB, bin string, bus bool, args func(dir string, port int) []string) *Server {
	t.Helper()
	var lastErr error
	for range 8 {
		port := freePort(t, bus)
		dir := t.TempDir()
		s := &Server{t: t, bin: bin, Dir: dir, Port: port, args: args(dir, port)}
		if lastErr = s.tryStart(); lastErr == nil {
			t.Cleanup(s.kill)
			return s
		}
		s.kill()
	}
	t.Fatalf("%s: could not start on a free port: %v", bin, lastErr)
	return nil
}

// freePort returns a 127.0.0.1 port that was free a moment ago (and port +
// 10000 too, with bus). Ports come from 20000–29999, below Linux's
// ephemeral range, so that port + 10000 is a valid port.
func freePort(t testing.TB, bus bool) int {
	t.Helper()
	for range 1000 {
		p := 20000 + rand.IntN(10000)
		if !portFree(p) || bus && !portFree(p+10000) {
			continue
		}
		return p
	}
	t.Fatal("no free loopback port")
	return 0
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func (s *Server) start() {
	s.t.Helper()
	if err := s.tryStart(); err != nil {
		s.kill()
		s.t.Fatal(err)
	}
	s.t.Cleanup(s.kill)
}

// tryStart starts the process and waits until it answers PING.
func (s *Server) tryStart() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	// Own process group, so that cleanup also gets a replication child
	// (a fork for the initial sync); killed with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := os.Create(filepath.Join(s.Dir, "stdout.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", s.bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(s.exited)
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := s.Do("PING"); err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s %s exited at start: %s", s.bin, strings.Join(s.args, " "), s.logTail())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer PING within %v: %s", s.bin, startTimeout, s.logTail())
		}
	}
}

// logTail returns the end of the server's log files, for failure messages.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, f := range []string{"stdout.log", "redis.log", "sentinel.log"} {
		data, err := os.ReadFile(filepath.Join(s.Dir, f))
		if err != nil || len(data) == 0 {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "\n--- %s:\n%s", f, data)
	}
	return b.String()
}

// Addr is the server's address for a client: host:port, else the socket.
func (s *Server) Addr() string {
	if s.Port != 0 {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	}
	return s.Socket
}

// Network is "tcp" or "unix", for Addr.
func (s *Server) Network() string {
	if s.Port != 0 {
		return "tcp"
	}
	return "unix"
}

// Pid is the process id, 0 once the process is gone.
func (s *Server) Pid() int {
	if s.cmd == nil || s.gone() {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) gone() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// Kill kills the server with SIGKILL (a crash: nothing is saved) and
// waits for it to be gone.
func (s *Server) Kill() {
	s.t.Helper()
	s.kill()
}

func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	// The group: the server and any child it forked. SIGKILL also ends a
	// stopped process.
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("%s (pid %d) still running 10 s after SIGKILL", s.bin, s.cmd.Process.Pid)
	}
}

// Freeze stops the server with SIGSTOP: its sockets stay open and
// connections are accepted by the kernel, but nothing is answered.
func (s *Server) Freeze() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
}

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatal(err)
	}
}

// Restart starts a killed server again, on the same address and with the
// same arguments (and so empty: nothing was saved).
func (s *Server) Restart() {
	s.t.Helper()
	if !s.gone() {
		s.t.Fatal("Restart: the server is still running")
	}
	if err := s.tryStart(); err != nil {
		s.kill()
		s.t.Fatal(err)
	}
}

// Do sends one command on a new connection and returns the reply as text
// (arrays one element a line); a Redis error reply is an error.
func (s *Server) Do(args ...string) (string, error) {
	network, addr := s.Network(), s.Addr()
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return do(c, bufio.NewReader(c), args)
}

// do sends one command on c and reads its reply from r.
func do(c net.Conn, r *bufio.Reader, args []string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(r)
}

// Conn is one connection kept for many commands: Do dials for each,
// which a fuzz target running thousands of inputs cannot afford.
type Conn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// Dial opens a Conn, closed at t's cleanup.
func (s *Server) Dial() *Conn {
	s.t.Helper()
	c, err := net.DialTimeout(s.Network(), s.Addr(), time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return &Conn{t: s.t, c: c, r: bufio.NewReader(c)}
}

// Do sends one command and returns the reply as Server.Do does. After an
// error other than a Redis error reply the connection is unusable.
func (c *Conn) Do(args ...string) (string, error) { return do(c.c, c.r, args) }

// Must is Do that fails the test on an error.
func (c *Conn) Must(args ...string) string {
	c.t.Helper()
	r, err := c.Do(args...)
	if err != nil {
		c.t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return r
}

// Must is Do that fails the test on an error.
func (s *Server) Must(args ...string) string {
	s.t.Helper()
	r, err := s.Do(args...)
	if err != nil {
		s.t.Fatalf("%s: %s: %v", s.Addr(), strings.Join(args, " "), err)
	}
	return r
}

// Info returns the fields of INFO section.
func (s *Server) Info(section string) map[string]string {
	s.t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(s.Must("INFO", section), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err // nil bulk: "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		parts := make([]string, n)
		for i := range parts {
			if parts[i], err = readReply(r); err != nil {
				return "", err
			}
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// WaitFor polls cond every 20 ms until it holds, failing t after limit.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Monitor collects what MONITOR shows until Stop.
type Monitor struct {
	s     *Server
	conn  net.Conn
	lines chan string
}

// Monitor starts watching every command the server runs.
func (s *Server) Monitor() *Monitor {
	s.t.Helper()
	c, err := net.DialTimeout(s.Network(), s.Addr(), time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("*1\r\n$7\r\nMONITOR\r\n")); err != nil {
		s.t.Fatal(err)
	}
	if ok, err := readReply(r); err != nil || ok != "OK" {
		s.t.Fatalf("MONITOR: %q, %v", ok, err)
	}
	m := &Monitor{s: s, conn: c, lines: make(chan string, 1<<16)}
	go func() {
		defer close(m.lines)
		for {
			line, err := readReply(r)
			if err != nil {
				return
			}
			m.lines <- line
		}
	}()
	return m
}

// Stop returns the lines seen so far: every command up to a marker sent
// after the caller's last command. A line is MONITOR's
// `<time> [<db> <client>] "CMD" "arg"...`, with "lua" as the client of a
// script's commands.
func (m *Monitor) Stop() []string {
	m.s.t.Helper()
	defer m.conn.Close()
	const marker = "redistest-monitor-end"
	m.s.Must("ECHO", marker)
	var lines []string
	for line := range m.lines {
		if strings.Contains(line, marker) {
			return lines
		}
		lines = append(lines, line)
	}
	m.s.t.Fatal("MONITOR ended before its marker")
	return nil
}
