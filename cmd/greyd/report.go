package main

// greyd report: postgreyreport's fatal triplets, from a mail log and the
// running daemon (package report; the daemon through the control socket).

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"greyd/internal/config"
	"greyd/internal/control"
	"greyd/internal/report"
	"greyd/internal/whitelist"
)

// reportBatch is how many triplets one request to the daemon asks about.
const reportBatch = 1000

// fileList is a flag that may be given several times.
type fileList []string

func (l *fileList) String() string     { return strings.Join(*l, ",") }
func (l *fileList) Set(s string) error { *l = append(*l, s); return nil }

func reportCmd(args []string, stdout, stderr io.Writer) int {
	a := newAdminFlags("report", "report [-config PATH] [-delay D] [-show-tries] [-show-time] [-tab] [-single-line=false] [-separate-by-subnet TEXT] [-separate-by-ip TEXT] [-skip-pool] [-skip-clients FILE] [-match-clients FILE] [-greylist-text TEXT] [FILE...] < maillog\n\n"+
		"Lists the fatal triplets of a mail log, as postgreyreport: greylisted and never retried after the delay,\n"+
		"by client address, one a line. FILEs (default, or \"-\": standard input) may be gzip-compressed. The\n"+
		"running greyd says what it holds for each triplet (read-only). The summary goes to standard error.", stderr)
	fs := a.fs
	delay := fs.String("delay", "", "a triplet retried `D` (seconds, or a duration such as 5m) after its first attempt passed (default: the configured delay)")
	text := fs.String("greylist-text", "", "the `TEXT` that tells Postfix's greylisting rejects from others (default: from the configured text, \"Greylisted\")")
	var f report.Format
	fs.BoolVar(&f.ShowTries, "show-tries", false, "show the number of greylisted attempts first")
	fs.BoolVar(&f.ShowTime, "show-time", false, "show the time of the last attempt, as logged, first (single lines)")
	fs.BoolVar(&f.Tab, "tab", false, "separate the columns with tabs (single lines)")
	fs.BoolVar(&f.SingleLine, "single-line", true, "one line per triplet; false: senders and recipients under each client")
	fs.StringVar(&f.SeparateBySubnet, "separate-by-subnet", "", "write `TEXT` before each new network (ipv4_prefix, ipv6_prefix); \\n is a newline")
	fs.StringVar(&f.SeparateByIP, "separate-by-ip", "", "write `TEXT` before each new client address; \\n is a newline")
	var filter report.Filter
	fs.BoolVar(&filter.SkipPool, "skip-pool", false, "leave out IPv4 clients whose name holds the last two numbers of their address (dial-up pools)")
	var skip, match fileList
	fs.Var(&skip, "skip-clients", "leave out the clients of `FILE` (client whitelist format; may be repeated)")
	fs.Var(&match, "match-clients", "report only the clients of `FILE` (client whitelist format; may be repeated)")
	if st := a.parse(args); st >= 0 {
		return st
	}
	name := fs.Name()

	// The configuration gives the delay, the greylist text, the networks
	// and the control socket; with -socket and -delay it is not needed.
	delaySet := false
	fs.Visit(func(fl *flag.Flag) { delaySet = delaySet || fl.Name == "delay" })
	cfg, probs := config.Load(*a.config)
	if len(probs) > 0 {
		if *a.socket == "" || !delaySet {
			for _, p := range probs {
				fmt.Fprintln(stderr, p.Error())
			}
			fmt.Fprintf(stderr, "%s: %d problem(s) in %s (with -socket and -delay, the configuration is not read)\n", name, len(probs), *a.config)
			return exitConfig
		}
		cfg = nil
	}
	var delaySecs int64
	if delaySet {
		d, err := parseDelay(*delay)
		if err != nil {
			return a.usage(stderr, "-delay %q: %v", *delay, err)
		}
		delaySecs = d
	} else {
		delaySecs = int64(cfg.Greylist.Delay / time.Second)
	}
	p := report.Parser{Text: *text}
	if cfg != nil {
		f.V4Prefix, f.V6Prefix = cfg.Greylist.IPv4Prefix, cfg.Greylist.IPv6Prefix
		if *text == "" {
			p.Text = report.TextOf(cfg.Greylist.Text)
		}
	}
	for _, l := range []struct {
		flag  string
		files fileList
		to    **whitelist.Clients
	}{{"-skip-clients", skip, &filter.Skip}, {"-match-clients", match, &filter.Match}} {
		if len(l.files) == 0 {
			continue
		}
		c, probs := whitelist.LoadClients(l.files)
		if len(probs) > 0 {
			for _, p := range probs {
				fmt.Fprintf(stderr, "%s: %s: %v\n", name, l.flag, p)
			}
			return exitConfig
		}
		*l.to = c
	}

	log := report.NewLog(p, filter)
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, file := range files {
		if file == "-" {
			if err := log.Read(os.Stdin); err != nil {
				fmt.Fprintf(stderr, "%s: standard input: %v\n", name, err)
				return exitFailure
			}
			continue
		}
		in, err := os.Open(file)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return exitConfig
		}
		err = log.Read(in)
		in.Close()
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s: %v\n", name, file, err)
			return exitFailure
		}
	}

	if len(log.Triplets()) > 0 {
		c, st := a.client(stderr)
		if c == nil {
			return st
		}
		warned := false
		lookup := func(ctx context.Context, qs []report.Query) ([]report.Answer, error) {
			cq := make([]control.TripletQuery, len(qs))
			for i, q := range qs {
				cq[i] = control.TripletQuery{ClientAddress: q.Addr, ClientName: q.Name, Sender: q.Sender, Recipient: q.Recipient}
			}
			as, perTriplet, err := c.Triplets(ctx, cq)
			if err != nil {
				return nil, err
			}
			if perTriplet && !warned {
				warned = true
				fmt.Fprintf(stderr, "%s: the running greyd is older than this command (no POST /v1/triplets): asking triplet by triplet\n", name)
			}
			out := make([]report.Answer, len(as))
			for i, a := range as {
				out[i].Err = a.Error
				for t := a.Triplet; t != nil; t = t.Subnet {
					out[i].Keys = append(out[i].Keys, report.Stored{Found: t.Found, First: t.First, Last: t.Last})
				}
			}
			return out, nil
		}
		if err := log.Judge(context.Background(), lookup, delaySecs, reportBatch); err != nil {
			return failed(stderr, name, err)
		}
	}
	if err := f.Write(stdout, log.Fatal()); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "%s: %s\n", name, log.Summary())
	for _, t := range log.Triplets() {
		if t.Unjudged != "" {
			fmt.Fprintf(stderr, "%s: not looked up: %s %q %q: %q\n", name, t.Addr, t.LogSender, t.LogRecipient, t.Unjudged)
		}
	}
	return exitOK
}

// parseDelay reads -delay: seconds, as postgreyreport's --delay, or a
// duration.
func parseDelay(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative")
		}
		return n, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("want whole seconds")
	}
	return int64(d / time.Second), nil
}
