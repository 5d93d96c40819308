package listen

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"greyd/internal/config"
	"greyd/internal/logging"
)

// refusalEvery is how often refused connections are logged: a scan or a
// misconfigured neighbour must not flood the journal.
const refusalEvery = 10 * time.Second

// allowListener accepts connections only from its networks. Others are
// closed at once, before a byte is read, and logged.
type allowListener struct {
	net.Listener
	allow []netip.Prefix
	log   *slog.Logger
	limit logging.Limiter
}

func guard(l net.Listener, allow []netip.Prefix, log *slog.Logger) net.Listener {
	if len(allow) == 0 {
		allow = config.LoopbackNets
	}
	return &allowListener{Listener: l, allow: allow, log: log, limit: logging.Limiter{Interval: refusalEvery}}
}

// Accept returns the next connection from an allowed client.
func (l *allowListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if allowed(c.RemoteAddr(), l.allow) {
			return c, nil
		}
		c.Close()
		if ok, dropped := l.limit.Allow(time.Now()); ok {
			msg := fmt.Sprintf("refused connection from %v to %v: not in the allow list of this listen block (add the client's network to allow)", c.RemoteAddr(), l.Addr())
			if dropped > 0 {
				msg += fmt.Sprintf(" [%d more refused since the previous line]", dropped)
			}
			l.log.Warn(msg)
		}
	}
}

func allowed(a net.Addr, allow []netip.Prefix) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Guard fits the sockets systemd passed, which the listen blocks did not
// bind, to the configuration: a TCP socket accepts only the clients of
// the allow list of the listen block whose inet is its address, or
// loopback; a socket serves one request per connection if the listen
// block with its address (inet, or unix for a unix socket) has exim =
// true. A unix socket is otherwise returned as it is (its mode and group
// guard it). It logs a warning for a socket on a non-loopback address
// that no listen block covers, since only loopback clients will get
// through.
func Guard(ls []net.Listener, blocks []config.Listen, log *slog.Logger) []net.Listener {
	out := make([]net.Listener, len(ls))
	for i, l := range ls {
		out[i] = l
		switch a := l.Addr().(type) {
		case *net.TCPAddr:
			out[i] = guardTCP(l, a, blocks, log)
		case *net.UnixAddr:
			for _, b := range blocks {
				if b.Unix != "" && filepath.Clean(b.Unix) == filepath.Clean(a.Name) {
					out[i] = exim(l, b.Exim)
					break
				}
			}
		}
	}
	return out
}

func guardTCP(l net.Listener, ta *net.TCPAddr, blocks []config.Listen, log *slog.Logger) net.Listener {
	addr := ta.AddrPort()
	var allow []netip.Prefix
	var once bool
	for _, b := range blocks {
		if ap, err := netip.ParseAddrPort(b.Inet); err == nil && ap.Port() == addr.Port() && ap.Addr().Unmap() == addr.Addr().Unmap() {
			allow, once = b.Allow, b.Exim
			break
		}
	}
	if allow == nil {
		if a := addr.Addr().Unmap(); !a.IsLoopback() {
			log.Warn(fmt.Sprintf("socket %v passed by systemd listens beyond this host, but no listen block has inet = %q with an allow list: only loopback clients are accepted", ta, addr.String()))
		}
		allow = slices.Clone(config.LoopbackNets)
	}
	return exim(guard(l, allow, log), once)
}
