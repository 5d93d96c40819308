package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// target is where the generator connects or the null server listens. It is
// always local: a unix socket or a loopback TCP address. Nothing else can be
// constructed, so no code path can dial or bind anything else.
type target struct {
	network string // "unix" or "tcp"
	address string // socket path or literal "IP:port"
}

func (t target) String() string { return t.network + ":" + t.address }

var errNotLoopback = errors.New("only loopback targets are allowed (127.0.0.0/8, ::1, localhost) or a unix socket")

// parseTarget validates -unix / -tcp. It never resolves names: "localhost"
// is mapped to 127.0.0.1 and any other host name is refused, so a refusal
// never causes network traffic.
func parseTarget(unixPath, tcpAddr string) (target, error) {
	switch {
	case unixPath != "" && tcpAddr != "":
		return target{}, errors.New("give either -unix or -tcp, not both")
	case unixPath != "":
		return target{network: "unix", address: unixPath}, nil
	case tcpAddr != "":
		addr, err := loopbackTCP(tcpAddr)
		if err != nil {
			return target{}, err
		}
		return target{network: "tcp", address: addr}, nil
	}
	return target{}, errors.New("no target: give -unix PATH or -tcp HOST:PORT")
}

// loopbackTCP checks that hostport names a loopback address and returns it
// as a literal "IP:port".
func loopbackTCP(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("-tcp %q: %w (want HOST:PORT)", hostport, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("-tcp %q: bad port %q (want a number)", hostport, port)
	}
	var ip netip.Addr
	switch {
	case strings.EqualFold(host, "localhost"):
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		ip, err = netip.ParseAddr(host)
		if err != nil {
			return "", fmt.Errorf("-tcp %q: refused: %q is not an IP literal; %w", hostport, host, errNotLoopback)
		}
	}
	if !ip.Unmap().IsLoopback() {
		return "", fmt.Errorf("-tcp %q: refused: %s is not loopback; %w", hostport, ip, errNotLoopback)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// dial connects to t and double-checks that a TCP peer is loopback.
func (t target) dial(timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout(t.network, t.address, timeout)
	if err != nil {
		return nil, err
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		c.Close()
		return nil, fmt.Errorf("dial %s: connected to %s: %w", t, a, errNotLoopback)
	}
	return c, nil
}

// listen binds t (for the null server).
func (t target) listen() (net.Listener, error) {
	return net.Listen(t.network, t.address)
}
