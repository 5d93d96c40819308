package main

// The admin subcommands: thin clients of the daemon's control socket
// (package control). They never open the database: buntdb allows one
// process, and on Redis the daemon holds the connection already.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"greyd/internal/config"
	"greyd/internal/control"
)

// exitUnreachable: the daemon cannot be reached or refused this user.
const exitUnreachable = 3

// adminCommands are the subcommands that talk to the daemon.
var adminCommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"explain":   explainCmd,
	"list":      listCmd,
	"delete":    deleteCmd,
	"whitelist": whitelistCmd,
	"stats":     statsCmd,
	"export":    exportCmd,
	"import":    importCmd,
	"report":    reportCmd,
}

// adminFlags are the flags every admin subcommand has.
type adminFlags struct {
	fs     *flag.FlagSet
	config *string
	socket *string
}

func newAdminFlags(name, synopsis string, stderr io.Writer) *adminFlags {
	fs := flag.NewFlagSet("greyd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := &adminFlags{
		fs:     fs,
		config: fs.String("config", defaultConfig, "configuration `path` that names the control socket"),
		socket: fs.String("socket", "", "control socket `path` (default: the configuration's control.socket)"),
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: greyd %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return a
}

// parse parses args; it returns an exit status to stop with, or -1.
func (a *adminFlags) parse(args []string) int {
	if err := a.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	return -1
}

// usage reports a usage error.
func (a *adminFlags) usage(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", a.fs.Name(), fmt.Sprintf(format, args...))
	a.fs.Usage()
	return exitConfig
}

// client finds the control socket in the configuration.
func (a *adminFlags) client(stderr io.Writer) (*control.Client, int) {
	if *a.socket != "" {
		return control.NewClient(*a.socket), -1
	}
	cfg, probs := config.Load(*a.config)
	if len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintln(stderr, p.Error())
		}
		fmt.Fprintf(stderr, "%s: cannot find the control socket: %d problem(s) in %s\n", a.fs.Name(), len(probs), *a.config)
		return nil, exitConfig
	}
	if cfg.Control.Socket == "" {
		fmt.Fprintf(stderr, "%s: the control socket is off in %s (control { socket = \"\" }); set it and restart greyd\n", a.fs.Name(), *a.config)
		return nil, exitConfig
	}
	return control.NewClient(cfg.Control.Socket), -1
}

// failed prints err and returns its exit status: 3 when the daemon is
// out of reach (or refused this user), 2 for a request it called wrong,
// else 1.
func failed(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	var ae *control.APIError
	switch {
	case control.IsUnreachable(err):
		return exitUnreachable
	case errors.As(err, &ae) && ae.Status == 400:
		return exitConfig
	}
	return exitFailure
}

// timeText formats a Unix time for people; 0 is "never".
func timeText(t int64) string {
	if t == 0 {
		return "never"
	}
	return time.Unix(t, 0).Format(time.RFC3339)
}

func explainCmd(args []string, stdout, stderr io.Writer) int {
	a := newAdminFlags("explain", "explain [-config PATH] [-json] CLIENT_ADDRESS CLIENT_NAME SENDER RECIPIENT", stderr)
	asJSON := a.fs.Bool("json", false, "print one JSON object")
	helo := a.fs.String("helo", "", "the client's HELO `NAME` for selective greylisting's signals (default: CLIENT_NAME, none for \"unknown\")")
	if st := a.parse(args); st >= 0 {
		return st
	}
	if a.fs.NArg() != 4 {
		return a.usage(stderr, "want 4 arguments (client address, client name or \"unknown\", sender or \"<>\", recipient), got %d", a.fs.NArg())
	}
	c, st := a.client(stderr)
	if c == nil {
		return st
	}
	p := a.fs.Args()
	var x *control.Explanation
	var err error
	if heloGiven(a.fs) {
		x, err = c.ExplainHELO(context.Background(), p[0], p[1], *helo, p[2], p[3])
	} else {
		x, err = c.Explain(context.Background(), p[0], p[1], p[2], p[3])
	}
	if err != nil {
		return failed(stderr, a.fs.Name(), err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(x)
	} else {
		printExplanation(stdout, x)
	}
	if x.Greylisted {
		return exitFailure
	}
	return exitOK
}

func printExplanation(w io.Writer, x *control.Explanation) {
	line := func(step, format string, args ...any) {
		fmt.Fprintf(w, "%-20s %s\n", step, fmt.Sprintf(format, args...))
	}
	wl := func(step string, c control.WhitelistCheck) {
		switch {
		case !c.Reached:
			line(step, "not reached")
		case c.Matched && c.File != "":
			line(step, "MATCH %s (%s:%d)", c.Entry, c.File, c.Line)
		case c.Matched && c.Entry != "":
			extra := ""
			if c.Comment != "" {
				extra += ", " + c.Comment
			}
			if c.Expires != 0 {
				extra += ", expires " + timeText(c.Expires)
			}
			line(step, "MATCH %s (runtime entry%s)", c.Entry, extra)
		case c.Matched:
			line(step, "MATCH (the files changed since greyd loaded them)")
		default:
			line(step, "no match (%d entries)", c.Entries)
		}
	}
	if x.Warning != "" {
		line("request", "not judged: %s", x.Warning)
	} else {
		wl("client whitelist", x.ClientWhitelist)
		wl("recipient whitelist", x.RecipientWhitelist)
		wl("runtime whitelist", x.RuntimeWhitelist)
	}
	if a := x.AutoWhitelist; a != nil {
		switch {
		case !a.Enabled:
			line("auto-whitelist", "off")
		case a.Found:
			line("auto-whitelist", "%s: %d passed triplet(s), last %s, expires %s (%d whitelist a client)", a.Key, a.Count, timeText(a.Last), timeText(a.Expires), a.Threshold)
		default:
			line("auto-whitelist", "%s: not seen (%d passed triplets whitelist a client)", a.Key, a.Threshold)
		}
	}
	if t := x.Trap; t != nil {
		switch {
		case t.Trapped:
			line("greytrap", "trapped until %s (set %s)", timeText(t.Until), timeText(t.Since))
		case t.Found:
			line("greytrap", "released %s (set %s; triplets pending before then are forgotten)", timeText(t.Until), timeText(t.Since))
		default:
			line("greytrap", "not trapped")
		}
		if t.Recipient {
			line("", "the recipient is a trap address")
		}
	}
	if t := x.Tarpit; t != nil {
		switch {
		case t.Found:
			line("tarpit", "mark set %s: the client left during its wait, greylisted with abandon_delay %ds", timeText(t.Since), t.AbandonDelaySeconds)
		case t.Key != "":
			line("tarpit", "no mark")
		}
		line("", "%ds; %d of max_concurrent %d active, %d session(s) waiting for DATA", t.DurationSeconds, t.Active, t.MaxConcurrent, t.Sessions)
		if t.MissedData > 0 {
			warn := ""
			if t.Warned {
				warn = ": smtpd_data_restrictions probably lacks check_policy_service for greyd"
			}
			line("", "%d tarpitted session(s) in a row never reached DATA%s", t.MissedData, warn)
		}
	}
	if t := x.Triplet; t != nil {
		by := ""
		if t.Identity != "" {
			by = " (lookup_by auto: " + t.Identity + ")"
		}
		line("triplet", "%s / %s / %s%s", t.Network, orNull(t.Sender), t.Recipient, by)
		stored(line, "stored", t)
		if s := t.Subnet; s != nil {
			line("subnet key", "%s / %s / %s, read alongside", s.Network, orNull(s.Sender), s.Recipient)
			stored(line, "stored", s)
		}
	}
	if x.StoreError != "" {
		line("store", "FAILED: %s", x.StoreError)
	}
	printSelective(line, x.Selective)
	reason := x.Reason
	switch {
	case x.MissingSeconds > 0 && x.Reason == "early-retry":
		reason += fmt.Sprintf(" (%ds missing)", x.MissingSeconds)
	case x.MissingSeconds > 0:
		reason += fmt.Sprintf(" (retry in %ds)", x.MissingSeconds)
	case x.WaitedSeconds > 0:
		reason += fmt.Sprintf(" (waited %ds)", x.WaitedSeconds)
	}
	line("decision", "%s, reason=%s", x.Decision, reason)
	line("reply", "%s", x.Action)
	if x.DryRun && x.EnforcedAction != x.Action {
		line("", "(dry run: once enforced, greyd answers %s)", x.EnforcedAction)
	}
}

// heloGiven reports whether explain's -helo flag was given.
func heloGiven(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "helo" })
	return given
}

// printSelective prints selective greylisting's steps: the mode and
// recipient policy, then one line per signal (its weight, result,
// answer, cached or asked, time), the score and the class.
func printSelective(line func(step, format string, args ...any), s *control.SelectiveState) {
	if s == nil {
		return
	}
	mode := "mode " + s.Mode
	if s.RecipientPolicy != "" {
		mode += " (recipient_policy " + s.RecipientPolicy + ")"
	}
	if s.Shadow {
		mode += ", shadow: the class is computed, every request greylisted"
	}
	line("selective", "%s", mode)
	if !s.Scored {
		switch s.Mode {
		case "score":
			line("score", "not computed: the store's state decides (no lookup for clients already known)")
		}
		return
	}
	for _, g := range s.Signals {
		src := "asked"
		switch {
		case g.Cached:
			src = "cached"
		case g.TookMS == 0:
			src = "local"
		}
		unknown := ""
		if g.Unknown {
			unknown = ", unknown: counted at its worst"
		}
		answer := ""
		if g.Answer != "" {
			answer = " (" + g.Answer + ")"
		}
		line("  "+g.Name, "%+d %s%s, %s %.1fms%s", g.Weight, g.Result, answer, src, g.TookMS, unknown)
	}
	if p := s.P0f; p != nil {
		switch p.Result {
		case "ok":
			line("p0f", "os_name %q, os_flavor %q, distance %d, match quality %d, in %.1fms", p.OSName, p.OSFlavor, p.Distance, p.MatchQ, p.TookMS)
		case "no_match":
			line("p0f", "no match: p0f saw no SYN of this client, in %.1fms", p.TookMS)
		default:
			line("p0f", "%s: %s, in %.1fms", p.Result, p.Error, p.TookMS)
		}
	}
	if s.TarpitAt != nil {
		line("score", "%d (tarpit_at %d, greylist_at %d): class %s, in %.1fms", s.Score, *s.TarpitAt, s.GreylistAt, s.Class, s.TookMS)
		return
	}
	line("score", "%d (greylist_at %d): class %s, in %.1fms", s.Score, s.GreylistAt, s.Class, s.TookMS)
}

// stored prints what the database holds for a triplet.
func stored(line func(step, format string, args ...any), step string, t *control.TripletState) {
	if !t.Found {
		line(step, "nothing (never seen, or forgotten)")
		return
	}
	state := "pending"
	if t.Passed {
		state = "passed"
	}
	line(step, "first seen %s, last seen %s, expires %s (%s)", timeText(t.First), timeText(t.Last), timeText(t.Expires), state)
}

func orNull(sender string) string {
	if sender == "" {
		return "<>"
	}
	return sender
}

// filterFlags are list's and delete's filters.
type filterFlags struct {
	client, sender, recipient, state, kind *string
}

func addFilterFlags(fs *flag.FlagSet, withKind bool) *filterFlags {
	f := &filterFlags{
		client:    fs.String("client", "", "only entries of clients in `CIDR` (an address, or a network such as 192.0.2.0/24)"),
		sender:    fs.String("sender", "", "only triplets of sender `ADDR` (normalised as greyd keys it; \"<>\" is the null sender)"),
		recipient: fs.String("recipient", "", "only triplets of recipient `ADDR`"),
		state:     fs.String("state", "", "only entries in `STATE`: pending or passed (traps: trapped or released)"),
	}
	if withKind {
		f.kind = fs.String("kind", "", "only entries of kind `triplet`, client (auto-whitelist), trap or tarpit")
	}
	return f
}

func (f *filterFlags) query(fs *flag.FlagSet) url.Values {
	q := url.Values{}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "client", "sender", "recipient", "state", "kind":
			q.Set(fl.Name, fl.Value.String())
		}
	})
	return q
}

func listCmd(args []string, stdout, stderr io.Writer) int {
	a := newAdminFlags("list", "list [-config PATH] [-json] [-client CIDR] [-sender ADDR] [-recipient ADDR] [-state pending|passed|trapped|released] [-kind triplet|client|trap|tarpit]", stderr)
	asJSON := a.fs.Bool("json", false, "print one JSON object per line (NDJSON)")
	ff := addFilterFlags(a.fs, true)
	if st := a.parse(args); st >= 0 {
		return st
	}
	if a.fs.NArg() > 0 {
		return a.usage(stderr, "unexpected argument %q (flags come before words)", a.fs.Arg(0))
	}
	c, st := a.client(stderr)
	if c == nil {
		return st
	}
	bw := bufio.NewWriterSize(stdout, 64<<10)
	if *asJSON {
		// The daemon's lines as they are: nothing to decode.
		_, warning, err := c.EntriesRaw(context.Background(), ff.query(a.fs), bw)
		bw.Flush()
		if warning != "" {
			fmt.Fprintf(stderr, "%s: warning: %s\n", a.fs.Name(), warning)
		}
		if err != nil {
			return failed(stderr, a.fs.Name(), err)
		}
		return exitOK
	}
	fmt.Fprintf(bw, "%-7s %-7s %-25s %-25s %-25s %5s %s\n", "KIND", "STATE", "FIRST_SEEN", "LAST_SEEN", "EXPIRES", "COUNT", "CLIENT SENDER RECIPIENT")
	n := 0
	warning, err := c.Entries(context.Background(), ff.query(a.fs), func(r control.Record) error {
		n++
		switch r.Kind {
		case "client":
			_, err := fmt.Fprintf(bw, "%-7s %-7s %-25s %-25s %-25s %5d %s - -\n", r.Kind, r.State, "-", timeText(r.Last), timeText(r.Expires), r.Count, r.Client)
			return err
		case "trap":
			// Set at FIRST_SEEN; the client is held until the last field.
			_, err := fmt.Fprintf(bw, "%-7s %-7s %-25s %-25s %-25s %5s %s until=%s\n", r.Kind, r.State, timeText(r.First), "-", timeText(r.Expires), "-", r.Client, timeText(r.Until))
			return err
		case "tarpit":
			// Made to wait at FIRST_SEEN, in a session that has not
			// reached DATA (yet, or ever: then it left).
			_, err := fmt.Fprintf(bw, "%-7s %-7s %-25s %-25s %-25s %5s %s session=%d\n", r.Kind, r.State, timeText(r.First), "-", timeText(r.Expires), "-", r.Client, r.Session)
			return err
		}
		_, err := fmt.Fprintf(bw, "%-7s %-7s %-25s %-25s %-25s %5s %s %s %s\n", r.Kind, r.State, timeText(r.First), timeText(r.Last), timeText(r.Expires), "-", r.Client, orNull(r.Sender), r.Recipient)
		return err
	})
	bw.Flush()
	if warning != "" {
		fmt.Fprintf(stderr, "%s: warning: %s\n", a.fs.Name(), warning)
	}
	if err != nil {
		return failed(stderr, a.fs.Name(), err)
	}
	fmt.Fprintf(stderr, "%d entries\n", n)
	return exitOK
}

func deleteCmd(args []string, stdout, stderr io.Writer) int {
	a := newAdminFlags("delete", "delete [-config PATH] [-dry-run] [-client CIDR] [-sender ADDR] [-recipient ADDR]\n       greyd delete [-config PATH] [-dry-run] -trap CIDR", stderr)
	dry := a.fs.Bool("dry-run", false, "count what would be deleted, delete nothing")
	trap := a.fs.String("trap", "", "release the greytrap of the client `CIDR` (an address, or a network), and nothing else")
	ff := addFilterFlags(a.fs, false)
	if st := a.parse(args); st >= 0 {
		return st
	}
	if a.fs.NArg() > 0 {
		return a.usage(stderr, "unexpected argument %q (flags come before words)", a.fs.Arg(0))
	}
	q := ff.query(a.fs)
	if *trap != "" {
		if len(q) > 0 {
			return a.usage(stderr, "-trap takes no other filter")
		}
		q.Set("kind", "trap")
		q.Set("client", *trap)
	}
	if q.Get("client") == "" && !q.Has("sender") && !q.Has("recipient") {
		return a.usage(stderr, "at least one of -client, -sender, -recipient, -trap is required")
	}
	if *dry {
		q.Set("dry_run", "1")
	}
	c, st := a.client(stderr)
	if c == nil {
		return st
	}
	res, err := c.Delete(context.Background(), q)
	if err != nil {
		return failed(stderr, a.fs.Name(), err)
	}
	verb := "deleted"
	if res.DryRun {
		verb = "would delete"
	}
	switch {
	case *trap != "":
		fmt.Fprintf(stdout, "%s %d trap(s)\n", verb, res.Traps)
	case res.Tarpits > 0:
		fmt.Fprintf(stdout, "%s %d triplet(s), %d auto-whitelist entr(ies), %d trap(s) and %d tarpit mark(s)\n", verb, res.Triplets, res.Clients, res.Traps, res.Tarpits)
	case res.Traps > 0:
		fmt.Fprintf(stdout, "%s %d triplet(s), %d auto-whitelist entr(ies) and %d trap(s)\n", verb, res.Triplets, res.Clients, res.Traps)
	default:
		fmt.Fprintf(stdout, "%s %d triplet(s) and %d auto-whitelist entr(ies)\n", verb, res.Triplets, res.Clients)
	}
	if res.Warning != "" {
		fmt.Fprintf(stderr, "%s: warning: %s\n", a.fs.Name(), res.Warning)
	}
	return exitOK
}

func whitelistCmd(args []string, stdout, stderr io.Writer) int {
	const synopsis = "whitelist add [-config PATH] [-ttl DUR] [-comment TEXT] client|recipient ENTRY\n       greyd whitelist remove [-config PATH] client|recipient ENTRY\n       greyd whitelist list [-config PATH] [-json]"
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage: greyd %s\n", synopsis)
		return exitConfig
	}
	verb := args[0]
	a := newAdminFlags("whitelist "+verb, synopsis, stderr)
	ttl := a.fs.String("ttl", "", "add: the entry expires after `DUR` (e.g. 12h, 7d; default: never)")
	comment := a.fs.String("comment", "", "add: a `TEXT` kept with the entry (who, why)")
	asJSON := a.fs.Bool("json", false, "list: print JSON")
	switch verb {
	case "add", "remove", "list":
	default:
		return a.usage(stderr, "unknown verb %q: want add, remove or list", verb)
	}
	if st := a.parse(args[1:]); st >= 0 {
		return st
	}
	if verb == "list" {
		if a.fs.NArg() > 0 {
			return a.usage(stderr, "unexpected argument %q", a.fs.Arg(0))
		}
		c, st := a.client(stderr)
		if c == nil {
			return st
		}
		l, err := c.Whitelist(context.Background())
		if err != nil {
			return failed(stderr, a.fs.Name(), err)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(l)
			return exitOK
		}
		for _, e := range l.Runtime {
			fmt.Fprintf(stdout, "%-9s %-40s runtime, added %s, expires %s", e.Kind, e.Value, timeText(e.Added), timeText(e.Expires))
			if e.Comment != "" {
				fmt.Fprintf(stdout, " # %s", e.Comment)
			}
			fmt.Fprintln(stdout)
		}
		for _, e := range l.Files {
			fmt.Fprintf(stdout, "%-9s %-40s %s:%d\n", e.Kind, e.Value, e.File, e.Line)
		}
		for _, p := range l.Problems {
			fmt.Fprintf(stderr, "%s: ignored: %s\n", a.fs.Name(), p)
		}
		return exitOK
	}
	if a.fs.NArg() < 2 {
		return a.usage(stderr, "want client or recipient, then the entry")
	}
	kind, entry := a.fs.Arg(0), strings.Join(a.fs.Args()[1:], " ")
	if kind != "client" && kind != "recipient" {
		return a.usage(stderr, "%q: want client or recipient", kind)
	}
	if verb == "remove" {
		if *ttl != "" || *comment != "" {
			return a.usage(stderr, "-ttl and -comment belong to add")
		}
		c, st := a.client(stderr)
		if c == nil {
			return st
		}
		if err := c.RemoveWhitelist(context.Background(), kind, entry); err != nil {
			return failed(stderr, a.fs.Name(), err)
		}
		fmt.Fprintf(stdout, "removed %s %s\n", kind, entry)
		return exitOK
	}
	in := control.WhitelistAdd{Kind: kind, Value: entry, Comment: *comment}
	if *ttl != "" {
		d, err := config.ParseDuration(*ttl)
		if err != nil || d < time.Second {
			return a.usage(stderr, "-ttl %q: want a duration of at least 1s such as 12h or 7d", *ttl)
		}
		in.TTLSeconds = int64(d / time.Second)
	}
	c, st := a.client(stderr)
	if c == nil {
		return st
	}
	res, err := c.AddWhitelist(context.Background(), in)
	if err != nil {
		return failed(stderr, a.fs.Name(), err)
	}
	verbDone := "added"
	if res.Replaced {
		verbDone = "replaced"
	}
	fmt.Fprintf(stdout, "%s %s %s, expires %s (effective for the next request)\n", verbDone, res.Entry.Kind, res.Entry.Value, timeText(res.Entry.Expires))
	return exitOK
}

func statsCmd(args []string, stdout, stderr io.Writer) int {
	a := newAdminFlags("stats", "stats [-config PATH] [-json]", stderr)
	asJSON := a.fs.Bool("json", false, "print one JSON object")
	if st := a.parse(args); st >= 0 {
		return st
	}
	if a.fs.NArg() > 0 {
		return a.usage(stderr, "unexpected argument %q", a.fs.Arg(0))
	}
	c, st := a.client(stderr)
	if c == nil {
		return st
	}
	s, err := c.Stats(context.Background())
	if err != nil {
		return failed(stderr, a.fs.Name(), err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(s)
		return exitOK
	}
	line := func(what, format string, args ...any) {
		fmt.Fprintf(stdout, "%-18s %s\n", what, fmt.Sprintf(format, args...))
	}
	line("greyd", "%s, up %v (since %s)", s.Version, time.Duration(s.UptimeSeconds)*time.Second, timeText(s.Started))
	if s.DryRun {
		line("dry run", "YES: greylisting is not enforced, every request is answered DUNNO")
	}
	line("requests", "%d answered, %d connection(s) open", s.Requests, s.Connections)
	for _, d := range s.Decisions {
		line("  "+d.Action, "%-20s %d", d.Reason, d.Count)
	}
	if sel := s.Selective; sel != nil {
		mode := sel.Mode
		if sel.Shadow {
			mode += ", shadow: every class greylisted"
		}
		classes := make([]string, len(sel.Classes))
		for i, c := range sel.Classes {
			classes[i] = fmt.Sprintf("%s %d", c.Class, c.Count)
		}
		line("selective", "mode %s; scored: %s", mode, strings.Join(classes, ", "))
		line("dns", "%d lookups, %d answered by the cache", sel.DNSLookups, sel.DNSCacheHits)
	}
	if e := s.Entries; e.Error != "" {
		line("entries", "%d triplets, %d clients; by state: FAILED: %s", e.Triplets, e.Clients, e.Error)
	} else {
		line("entries", "%d triplets (%d pending, %d passed), %d clients (%d auto-whitelisted)",
			e.Triplets, e.TripletsPending, e.TripletsPassed, e.Clients, e.ClientsWhitelisted)
	}
	health := "healthy"
	if !s.Store.Healthy {
		health = "FAILING: " + s.Store.Error
	}
	line("store", "%s (check took %v); %d steps, mean %v; %d failed", health,
		secs(s.Store.CheckSeconds), s.Store.Steps, secs(s.Store.StepMeanSeconds), s.Store.Errors)
	if s.Store.Status != "" {
		line("backend", "%s", s.Store.Status)
	}
	switch {
	case s.Reload.Last == 0:
		line("reload", "none since start (%d ok, %d failed)", s.Reload.OK, s.Reload.Failed)
	case s.Reload.LastOK:
		line("reload", "last %s: ok (%d ok, %d failed)", timeText(s.Reload.Last), s.Reload.OK, s.Reload.Failed)
	default:
		line("reload", "last %s: FAILED, the previous configuration runs (%d ok, %d failed)", timeText(s.Reload.Last), s.Reload.OK, s.Reload.Failed)
	}
	line("runtime whitelist", "%d entries", s.RuntimeWhitelist)
	line("log", "%d line(s) dropped (greyd never waits for its log)", s.LogDropped)
	if s.Privacy {
		line("privacy", "on: keys are hashes")
	}
	return exitOK
}

func secs(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}

func exportCmd(args []string, stdout, stderr io.Writer) int {
	a := newAdminFlags("export", "export [-config PATH] [-format ndjson|postgrey-dump] [-options-file FILE] [-clients FILE] > FILE", stderr)
	format := a.fs.String("format", "ndjson", "what to write: ndjson (greyd's own, for greyd import) or postgrey-dump (db_dump -p text of postgrey.db for db_load: the way back to Postgrey)")
	optsFile := a.fs.String("options-file", "", "postgrey-dump: the options Postgrey will run with (`file` such as /etc/default/postgrey): key the entries as it will")
	clients := a.fs.String("clients", "", "postgrey-dump: also write the auto-whitelist, for postgrey_clients.db, to `file`")
	if st := a.parse(args); st >= 0 {
		return st
	}
	if a.fs.NArg() > 0 {
		return a.usage(stderr, "unexpected argument %q (the export goes to standard output)", a.fs.Arg(0))
	}
	switch *format {
	case "ndjson":
		if *optsFile != "" || *clients != "" {
			return a.usage(stderr, "-options-file and -clients belong to -format postgrey-dump")
		}
	case "postgrey-dump":
		// Turning greyd's keys into Postgrey's needs greyd's prefixes
		// and expiry rules: the configuration is read even when
		// -socket names the socket.
		cfg, probs := config.Load(*a.config)
		if len(probs) > 0 {
			for _, p := range probs {
				fmt.Fprintln(stderr, p.Error())
			}
			fmt.Fprintf(stderr, "%s: %d problem(s) in %s\n", a.fs.Name(), len(probs), *a.config)
			return exitConfig
		}
		c, st := a.client(stderr)
		if c == nil {
			return st
		}
		return exportPostgreyDump(c, cfg, *optsFile, *clients, stdout, stderr)
	default:
		return a.usage(stderr, "-format %q: want ndjson or postgrey-dump", *format)
	}
	c, st := a.client(stderr)
	if c == nil {
		return st
	}
	bw := bufio.NewWriterSize(stdout, 64<<10)
	err := c.Export(context.Background(), bw)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return failed(stderr, a.fs.Name(), err)
	}
	return exitOK
}

func importCmd(args []string, stdout, stderr io.Writer) int {
	a := newAdminFlags("import", "import [-config PATH] [FILE]   (FILE: NDJSON from greyd export; default or \"-\": standard input)", stderr)
	if st := a.parse(args); st >= 0 {
		return st
	}
	if a.fs.NArg() > 1 {
		return a.usage(stderr, "one file at most")
	}
	var in io.Reader = os.Stdin
	if name := a.fs.Arg(0); name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", a.fs.Name(), err)
			return exitConfig
		}
		defer f.Close()
		in = f
	}
	c, st := a.client(stderr)
	if c == nil {
		return st
	}
	res, err := c.Import(context.Background(), in)
	if err != nil {
		return failed(stderr, a.fs.Name(), err)
	}
	fmt.Fprintf(stdout, "read %d, imported %d, merged %d, expired %d, runtime whitelist %d, skipped %d\n",
		res.Read, res.Imported, res.Merged, res.Expired, res.Whitelist, res.Skipped)
	for _, e := range res.Errors {
		fmt.Fprintf(stderr, "%s: %s\n", a.fs.Name(), e)
	}
	if res.Skipped > 0 {
		return exitFailure
	}
	return exitOK
}
