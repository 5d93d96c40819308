// Package listen opens the policy sockets: those systemd passes (socket
// activation, fetched once) or, without systemd, the unix and TCP sockets
// of the configuration's listen blocks; it keeps TCP sockets to the
// clients of their allow lists, and marks those of exim blocks as
// one request per connection (policy.OneRequestListener).
package listen

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"greyd/internal/config"
)

// Activated returns the stream sockets systemd passed. It consumes the
// LISTEN_* environment, so it must be called once, at start; reloads keep
// the returned listeners. ignored counts passed descriptors that are not
// listening stream sockets.
func Activated() (ls []net.Listener, ignored int, err error) {
	all, err := activation.Listeners()
	if err != nil {
		return nil, 0, fmt.Errorf("socket activation: %w", err)
	}
	for _, l := range all {
		if l == nil {
			ignored++
			continue
		}
		ls = append(ls, l)
	}
	return ls, ignored, nil
}

// Open binds every configured socket. TCP sockets accept only the clients
// of their block's allow list (loopback when it is empty); refused ones
// are logged to log. The sockets of a block with exim = true serve one
// request per connection. On error, the sockets already bound are closed.
func Open(blocks []config.Listen, log *slog.Logger) ([]net.Listener, error) {
	var ls []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	for _, b := range blocks {
		if b.Unix != "" {
			l, err := openUnix(b)
			if err != nil {
				return fail(err)
			}
			ls = append(ls, exim(l, b.Exim))
		}
		if b.Inet != "" {
			l, err := net.Listen("tcp", b.Inet)
			if err != nil {
				return fail(fmt.Errorf("listen on %s: %w", b.Inet, err))
			}
			ls = append(ls, exim(guard(l, b.Allow, log), b.Exim))
		}
	}
	return ls, nil
}

// eximListener serves one request per connection, for Exim's
// ${readsocket}: the policy server closes the connection after the reply.
type eximListener struct{ net.Listener }

// OneRequest makes eximListener a policy.OneRequestListener.
func (eximListener) OneRequest() bool { return true }

func exim(l net.Listener, on bool) net.Listener {
	if !on {
		return l
	}
	return eximListener{l}
}

func openUnix(b config.Listen) (net.Listener, error) {
	path := b.Unix
	if err := removeStale(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen on unix socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on unix socket %s: %w", path, err)
	}
	mode := b.SocketMode
	if mode == 0 {
		mode = config.DefaultSocketMode
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("set mode %#o on %s: %w", mode, path, err)
	}
	if b.SocketGroup != "" {
		g, err := user.LookupGroup(b.SocketGroup)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("socket_group of %s: %w", path, err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("set group %s on %s: %w", b.SocketGroup, path, err)
		}
	}
	return l, nil
}

// removeStale removes a socket file left by a process that died, but
// refuses to steal the socket of a server that still answers.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen on unix socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("listen on unix socket %s: the path exists and is not a socket; remove it or choose another path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("listen on unix socket %s: another server is answering on it (is greyd already running?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("listen on unix socket %s: checking the existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}
