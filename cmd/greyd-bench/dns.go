package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"greyd/internal/dns/dnstest"
)

// startDNS starts the DNS server of -serve-dns on addr (loopback, already
// checked), answering from the zone file at zonePath; with log, one line
// per query goes to logw.
func startDNS(addr, zonePath string, log bool, logw io.Writer) (*dnstest.Server, error) {
	f, err := os.Open(zonePath)
	if err != nil {
		return nil, fmt.Errorf("zone: %w", err)
	}
	defer f.Close()
	// The zone is loaded before the port opens: a client waiting for the
	// port (bench/run.sh, the e2e test) must not be answered NXDOMAIN by a
	// half-loaded zone (TestServeDNS saw that once in CI).
	s, err := dnstest.ListenZone(addr, f, zonePath)
	if err != nil {
		return nil, err
	}
	if log {
		s.LogQueries(logw)
	}
	return s, nil
}

// serveDNS runs the DNS server until SIGINT/SIGTERM or, if lifetime > 0,
// until lifetime has passed.
func serveDNS(addr, zonePath string, log bool, lifetime time.Duration, stderr io.Writer) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	s, err := startDNS(addr, zonePath, log, stderr)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stderr, "greyd-bench: DNS server listening on %s (UDP and TCP), zone %s\n", s.Addr, zonePath)
	var expire <-chan time.Time
	if lifetime > 0 {
		expire = time.After(lifetime)
	}
	select {
	case <-sig:
	case <-expire:
	}
	return nil
}
