package dns

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
)

// defaultServers are asked when resolv.conf names no server or does not
// exist, as the C library and Go's resolver do.
var defaultServers = []string{"127.0.0.1:53", "[::1]:53"}

// ReadResolvConf returns the nameservers of a resolv.conf file as
// "ip:port" (port 53, IPv6 in brackets), in file order. Other options are
// ignored: greyd has its own timeouts. A missing file, or one without a
// valid nameserver line, gives the local host's servers.
func ReadResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return append([]string(nil), defaultServers...), nil
	}
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	defer f.Close()
	var servers []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue // as the C library: a bad line is skipped
		}
		servers = append(servers, netip.AddrPortFrom(a, 53).String())
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("dns: read %s: %w", path, err)
	}
	if len(servers) == 0 {
		return append([]string(nil), defaultServers...), nil
	}
	return servers, nil
}

// CheckServer validates a configured server, "ip:port" or "ip", and
// returns it as "ip:port". Names are refused: resolving the resolver's
// address would need a resolver.
func CheckServer(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("dns server %q: port 0", s)
		}
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	return "", fmt.Errorf("dns server %q: want an IP address with an optional port, as \"192.0.2.53\", \"192.0.2.53:5353\" or \"[2001:db8::53]:53\"", s)
}
