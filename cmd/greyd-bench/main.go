// Command greyd-bench is a load generator for Postfix policy servers (greyd,
// Postgrey, ...). It speaks the policy delegation protocol with the full
// attribute set Postfix 3.7 sends at the RCPT stage, over persistent
// connections, and reports throughput, latency percentiles and a histogram
// of the actions it got back. With -serve-null it is instead a policy server
// that answers DUNNO to everything: the ceiling to compare a real server to.
// With -serve-dns it is a DNS server answering from a zone file, for
// benchmarks and end-to-end tests of greyd's selective greylisting.
//
// It only ever talks to the local machine: unix sockets and loopback TCP
// addresses (127.0.0.0/8, ::1, localhost); anything else is refused before
// any network activity. Every run stops by itself (-d, -n, at most 10 min).
//
// See README.md in this directory for the workloads and the output.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command line.
type options struct {
	unix, tcp string
	conns     int
	duration  time.Duration
	count     uint64
	pipeline  int
	workload  string
	pool      int
	clients   int
	seed      uint64
	timeout   time.Duration
	prime     bool
	json      bool
	serveNull bool
	serveDNS  bool
	zone      string
	dnsLog    bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("greyd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.unix, "unix", "", "policy server unix socket `PATH`")
	fs.StringVar(&o.tcp, "tcp", "", "policy server loopback TCP `HOST:PORT` (127.0.0.0/8, ::1 or localhost only)")
	fs.IntVar(&o.conns, "c", 8, "persistent connections")
	fs.DurationVar(&o.duration, "d", 0, "measure for `DURATION` (default 10s unless -n is given; at most 10m)")
	fs.Uint64Var(&o.count, "n", 0, "send exactly `COUNT` requests (with -d: whichever comes first)")
	fs.IntVar(&o.pipeline, "pipeline", 1, "requests in flight per connection (1 = request/response like Postfix)")
	fs.StringVar(&o.workload, "w", "mixed", "workload: new, repeat, mixed or whitelisted")
	fs.IntVar(&o.pool, "k", 1000, "triplets in the repeat pool (repeat and mixed)")
	fs.IntVar(&o.clients, "clients", 0, "new triplets come from `N` clients, the same whatever the seed (0: a new client nearly every time)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed; the same seed sends the same requests")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout (counted as an error)")
	fs.BoolVar(&o.prime, "prime", true, "send every pool triplet once before measuring (repeat and mixed)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of text")
	fs.BoolVar(&o.serveNull, "serve-null", false, "run the null policy server (answers DUNNO) on -unix or -tcp; -d limits its lifetime")
	fs.BoolVar(&o.serveDNS, "serve-dns", false, "run a DNS server (UDP and TCP) on -tcp answering from -zone; -d limits its lifetime")
	fs.StringVar(&o.zone, "zone", "", "with -serve-dns: the zone `FILE` (NAME [TTL] TYPE DATA lines)")
	fs.BoolVar(&o.dnsLog, "dns-log", false, "with -serve-dns: log every query to stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: greyd-bench (-unix PATH | -tcp HOST:PORT) [flags]\n"+
			"       greyd-bench -serve-null (-unix PATH | -tcp HOST:PORT) [-d DURATION]\n"+
			"       greyd-bench -serve-dns -tcp HOST:PORT -zone FILE [-dns-log] [-d DURATION]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case o.conns < 1 || o.conns > 4096:
		return nil, fmt.Errorf("-c %d: want 1..4096", o.conns)
	case o.pipeline < 1 || o.pipeline > 1024:
		return nil, fmt.Errorf("-pipeline %d: want 1..1024", o.pipeline)
	case o.clients < 0:
		return nil, fmt.Errorf("-clients %d: want 0 or more", o.clients)
	case o.pool < 1:
		return nil, fmt.Errorf("-k %d: want at least 1", o.pool)
	case o.duration < 0 || o.duration > maxRun:
		return nil, fmt.Errorf("-d %v: want 0..%v", o.duration, maxRun)
	case o.timeout <= 0:
		return nil, fmt.Errorf("-timeout %v: must be positive", o.timeout)
	}
	if _, ok := workloadNames[o.workload]; !ok {
		return nil, fmt.Errorf("-w %q: want new, repeat, mixed or whitelisted", o.workload)
	}
	switch {
	case o.serveNull && o.serveDNS:
		return nil, errors.New("give either -serve-null or -serve-dns, not both")
	case o.serveDNS && o.unix != "":
		return nil, errors.New("-serve-dns listens on -tcp HOST:PORT (UDP and TCP), not on a unix socket")
	case o.serveDNS != (o.zone != ""):
		return nil, errors.New("-serve-dns and -zone FILE go together")
	case o.dnsLog && !o.serveDNS:
		return nil, errors.New("-dns-log needs -serve-dns")
	}
	if !o.serveNull && !o.serveDNS && o.duration == 0 && o.count == 0 {
		o.duration = 10 * time.Second
	}
	return o, nil
}

func realMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "greyd-bench: %v\n", err)
		return 2
	}
	t, err := parseTarget(o.unix, o.tcp)
	if err != nil {
		fmt.Fprintf(stderr, "greyd-bench: %v\n", err)
		return 2
	}
	if o.serveDNS {
		if err := serveDNS(t.address, o.zone, o.dnsLog, o.duration, stderr); err != nil {
			fmt.Fprintf(stderr, "greyd-bench: DNS server: %v\n", err)
			return 1
		}
		return 0
	}
	if o.serveNull {
		if err := serveNull(t, o.duration, stderr); err != nil {
			fmt.Fprintf(stderr, "greyd-bench: null server: %v\n", err)
			return 1
		}
		return 0
	}

	gen := newGenerator(workloadNames[o.workload], o.seed, o.pool)
	gen.clients = uint64(o.clients)
	res, runErr := run(runConfig{
		target:   t,
		conns:    o.conns,
		pipeline: o.pipeline,
		count:    o.count,
		duration: o.duration,
		timeout:  o.timeout,
		gen:      gen,
		prime:    o.prime,
	})
	rep := newReport(o, t, gen, res)
	if o.json {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "greyd-bench: %v\n", err)
		return 1
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "greyd-bench: %v\n", runErr)
		return 1
	}
	return 0
}

// serveNull runs the null server until SIGINT/SIGTERM or, if lifetime > 0,
// until lifetime has passed.
func serveNull(t target, lifetime time.Duration, stderr io.Writer) error {
	ln, err := t.listen()
	if err != nil {
		return err
	}
	s := newNullServer(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var expire <-chan time.Time
	if lifetime > 0 {
		expire = time.After(lifetime)
	}
	go func() {
		select {
		case <-sig:
		case <-expire:
		}
		s.close()
	}()
	fmt.Fprintf(stderr, "greyd-bench: null policy server listening on %s\n", t)
	err = s.serve()
	s.close()
	return err
}

// sortedActions returns action names by descending count, then by name.
func sortedActions(t *actionTable) []string {
	names := append([]string(nil), t.names...)
	sort.Slice(names, func(i, j int) bool {
		ci, cj := t.get(names[i]), t.get(names[j])
		if ci != cj {
			return ci > cj
		}
		return strings.Compare(names[i], names[j]) < 0
	})
	return names
}
