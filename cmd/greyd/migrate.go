package main

// greyd import-postgrey, greyd export-postgrey and greyd export -format
// postgrey-dump: the way from Postgrey's BerkeleyDB files to greyd's
// database, and back. The format work is in internal/postgrey; this file
// finds the BerkeleyDB tools, runs them on a copy of Postgrey's
// directory, and either hands the entries to the running greyd through
// its control socket or, with greyd stopped, opens greyd's database
// itself.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/config"
	"greyd/internal/control"
	"greyd/internal/greylist"
	"greyd/internal/normalize"
	"greyd/internal/postgrey"
	"greyd/internal/reload"
	"greyd/internal/store"
	"greyd/internal/store/buntdb"
)

const installDBTools = "install the BerkeleyDB utilities: apt install db5.3-util (Debian, Ubuntu) or dnf install libdb-utils (RHEL, Fedora)"

// maxProblemsShown bounds the malformed lines printed; the count says the rest.
const maxProblemsShown = 20

func importPostgrey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("greyd import-postgrey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "greyd's configuration `path`")
	dryRun := fs.Bool("dry-run", false, "read and convert, print the counts, write nothing")
	dbdir := fs.String("dbdir", "", "Postgrey's database `directory` (postgrey.db, postgrey_clients.db), read with db_dump")
	dump := fs.String("dump", "", "`file` of db_dump -p output of postgrey.db and/or postgrey_clients.db ('-' = stdin)")
	optsFile := fs.String("options-file", "", "Postgrey's options (/etc/default/postgrey, or its argument list): print the equivalent greyd.hcl and key the import as Postgrey did")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: greyd import-postgrey [-config PATH] [-dry-run] [-options-file FILE] (-dbdir DIR | -dump FILE)\n       greyd import-postgrey -options-file FILE\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	onlyOptions := *dbdir == "" && *dump == "" && *optsFile != ""
	if fs.NArg() > 0 || (*dbdir != "" && *dump != "") || (*dbdir == "" && *dump == "" && !onlyOptions) {
		fs.Usage()
		return exitConfig
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "greyd import-postgrey: "+format+"\n", a...)
		return exitFailure
	}

	src := postgrey.DefaultSource
	if *optsFile != "" {
		f, err := os.Open(*optsFile)
		if err != nil {
			return fail("%v", err)
		}
		o, err := postgrey.ParseOptionsFile(f)
		f.Close()
		if err != nil {
			return fail("%s: %v", *optsFile, err)
		}
		fmt.Fprint(stdout, o.HCL)
		if *dbdir == "" && *dump == "" {
			return exitOK
		}
		src = o.Source
	}

	l := reload.Load(*path, reload.Options{Version: version, CreateKey: !*dryRun})
	if len(l.ConfigProblems) > 0 {
		for _, p := range l.ConfigProblems {
			fmt.Fprintln(stderr, p.Error())
		}
		fmt.Fprintf(stderr, "greyd import-postgrey: configuration %s has problems\n", *path)
		return exitConfig
	}
	cfg, snap := l.Config, l.Snapshot

	var name string
	var text []byte
	if *dbdir != "" {
		var err error
		if text, err = dumpPostgreyDir(*dbdir, stderr); err != nil {
			return fail("%v", err)
		}
		name = *dbdir
	} else {
		var err error
		if *dump == "-" {
			text, err = io.ReadAll(os.Stdin)
			name = "stdin"
		} else {
			text, err = os.ReadFile(*dump)
			name = *dump
		}
		if err != nil {
			return fail("%v", err)
		}
	}

	now := time.Now().Unix()
	im := postgrey.NewImporter(snap, src, now)
	if err := im.ReadAll(postgrey.NewDumpReader(bytes.NewReader(text))); err != nil {
		return fail("%s: %v", name, err)
	}
	for i, p := range im.Problems {
		if i == maxProblemsShown {
			fmt.Fprintf(stderr, "%s: ... and %d more problems\n", name, len(im.Problems)-i)
			break
		}
		fmt.Fprintf(stderr, "%s:%d: %s (skipped)\n", name, p.Line, p.Msg)
	}
	if im.Stats.Privacy > 0 {
		fmt.Fprintf(stderr, "greyd import-postgrey: %d of %d entries are SHA-1 hashes: Postgrey ran with --privacy, which stores only an unsalted hash of each key. "+
			"A hash cannot be turned back into the client network, sender and recipient that greyd keys by (under its own keyed hash, too), so these entries cannot be imported. "+
			"Nothing was written; start greyd with an empty database (senders are greylisted once more).\n", im.Stats.Privacy, im.Stats.Read)
		printStats(stdout, im.Stats, *dryRun)
		return exitFailure
	}

	ctx := context.Background()
	redis := cfg.Database.Redis != nil
	var c *control.Client
	if cfg.Control.Socket != "" {
		c = control.NewClient(cfg.Control.Socket)
	}
	// Is greyd running? Asked first through the control socket: with
	// buntdb only one process may open the file, and on Redis only the
	// daemon holds the connection, so a running greyd takes the entries
	// itself. The same question checks that it keys them as this
	// configuration does.
	var probeErr error
	live := false
	if c != nil {
		probeErr = checkDaemonKeys(ctx, c, snap)
		live = !control.IsUnreachable(probeErr)
		if live && !redis && !dbLocked(cfg.Database.Path) {
			// A greyd answers, but not the one that uses this
			// database (two configurations naming one socket): this
			// one is stopped, and its file is written directly.
			fmt.Fprintf(stderr, "greyd import-postgrey: warning: a greyd answers at %s, but nothing holds %s: that greyd uses another database; importing into %s directly\n",
				c.Socket, cfg.Database.Path, cfg.Database.Path)
			live, probeErr = false, nil
		}
	}

	if *dryRun {
		printStats(stdout, im.Stats, true)
		fmt.Fprintln(stdout, "dry run: nothing written; entries greyd already has are merged at the real import")
		switch {
		case live && probeErr != nil:
			fmt.Fprintf(stderr, "greyd import-postgrey: warning: the real import will fail: %v\n", probeErr)
		case live:
			fmt.Fprintf(stdout, "greyd is running: the import will go through its control socket %s\n", c.Socket)
		case redis:
			fmt.Fprintln(stdout, "the database is Redis: start greyd before the real import, which goes through its control socket")
		}
		return exitOK
	}

	switch {
	case live && probeErr != nil:
		return fail("%v", probeErr)
	case live:
		res, err := sendImport(ctx, c, im, snap, now)
		if err != nil {
			return failed(stderr, "greyd import-postgrey", err)
		}
		for _, e := range res.Errors {
			fmt.Fprintf(stderr, "greyd import-postgrey: greyd refused %s\n", e)
		}
		fmt.Fprintf(stdout, "greyd is running: entries sent through its control socket %s\n", c.Socket)
		printStats(stdout, combineStats(im.Stats, res), false)
		if res.Skipped > 0 {
			return exitFailure
		}
		return exitOK
	case redis && c == nil:
		fmt.Fprintf(stderr, "greyd import-postgrey: the database is Redis, which only the running greyd writes, through its control socket; it is off in %s (control { socket = \"\" }): set it, restart greyd and import again\n", *path)
		return exitConfig
	case redis:
		fmt.Fprintf(stderr, "greyd import-postgrey: the database is Redis, which only the running greyd writes, through its control socket: %v. Start greyd (systemctl start greyd) and import again; nothing was written\n", probeErr)
		return exitUnreachable
	}
	err := writeImport(cfg, im, now)
	if errors.Is(err, store.ErrLocked) {
		// The daemon holds the file, yet its control socket does not
		// answer: off, refused to this user, or greyd is starting.
		if c == nil {
			return fail("greyd is running (%v) and its control socket is off (control { socket = \"\" }): stop greyd first (systemctl stop greyd), run the import, then start greyd; or set the socket and restart greyd", err)
		}
		fmt.Fprintf(stderr, "greyd import-postgrey: greyd is running (%v) but its control socket does not answer: %v. Import again once it does, or stop greyd first (systemctl stop greyd); nothing was written\n", err, probeErr)
		return exitUnreachable
	}
	if err != nil {
		return fail("%v", err)
	}
	printStats(stdout, im.Stats, false)
	return exitOK
}

// dbLocked reports whether a process holds greyd's database lock (the
// daemon's flock on PATH.lock), that is whether a greyd uses the database
// at path. When it cannot tell (the lock file is not readable for this
// user) it says yes: the control socket is then the only way anyway.
func dbLocked(path string) bool {
	f, err := os.Open(path + ".lock")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// probeAddrs are the clients of the requests probeKeys asks the daemon to
// explain, one per address family: documentation addresses, which no
// whitelist should hold.
var probeAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}

const probeSender, probeRecipient = "greyd-import-probe@example.invalid", "probe@example.invalid"

// probeKeys asks the running greyd, through explain (which writes
// nothing), for the triplet and auto-whitelist keys of the probe
// requests. A family whose probe a whitelist decides has no keys: it is
// left out.
func probeKeys(ctx context.Context, c *control.Client, fn func(ip netip.Addr, x *control.Explanation) error) error {
	for _, ip := range probeAddrs {
		x, err := c.Explain(ctx, ip.String(), "unknown", probeSender, probeRecipient)
		if err != nil {
			return err
		}
		if x.Triplet == nil {
			continue
		}
		if err := fn(ip, x); err != nil {
			return err
		}
	}
	return nil
}

// checkDaemonKeys returns nil if the daemon behind c keys triplets and
// clients exactly as snap does (prefixes, lookup_by, privacy and its
// key), an error for which control.IsUnreachable is true if it does not
// run, and another error if it keys otherwise: entries keyed by another
// configuration would be stored under keys no request ever looks up.
func checkDaemonKeys(ctx context.Context, c *control.Client, snap *greylist.Snapshot) error {
	return probeKeys(ctx, c, func(ip netip.Addr, x *control.Explanation) error {
		want := snap.TripletKey(ip, probeSender, probeRecipient)
		got := x.Triplet.Key
		if got != want && x.Triplet.Subnet != nil && x.Triplet.Subnet.Key == want {
			got = want // lookup_by "auto": the subnet key is read alongside
		}
		if got != want {
			return fmt.Errorf("the greyd behind %s keys triplets otherwise than this configuration (%s key %q, here %q): "+
				"lookup_by, ipv4_prefix, ipv6_prefix, privacy or the privacy key differ. Run the import with the daemon's configuration (-config), "+
				"or reload greyd (systemctl reload greyd) if its configuration changed; nothing was written", c.Socket, ip, got, want)
		}
		if a := x.AutoWhitelist; a != nil && a.Enabled && a.Key != "" && snap.AutoWhitelistClients > 0 {
			if want := snap.ClientKey(ip); a.Key != want {
				return fmt.Errorf("the greyd behind %s keys auto-whitelist clients otherwise than this configuration (%s key %q, here %q): privacy or the privacy key differ; nothing was written", c.Socket, ip, a.Key, want)
			}
		}
		return nil
	})
}

// sendImport sends the converted entries to the running greyd as the
// NDJSON records of its import endpoint, streamed: greyd's own keys,
// absolute times, and the deadline greyd's own write would give them.
// The daemon merges each with what it holds (store.Merge), on any
// backend.
func sendImport(ctx context.Context, c *control.Client, im *postgrey.Importer, snap *greylist.Snapshot, now int64) (*control.ImportResult, error) {
	delay, retry, maxAge := int64(snap.Delay/time.Second), int64(snap.RetryWindow/time.Second), int64(snap.MaxAge/time.Second)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		bw := bufio.NewWriterSize(pw, 64<<10)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		err := func() error {
			// First: the daemon refuses entries whose hashing it cannot check.
			hdr := control.Header(snap, version, time.Unix(now, 0))
			if err := enc.Encode(&hdr); err != nil {
				return err
			}
			for _, k := range postgrey.Keys(im.Triplets) {
				t := im.Triplets[k]
				r := control.Record{Kind: "triplet", First: t.First, Last: t.Last, Expires: now + postgrey.TripletTTL(t, now, delay, retry, maxAge)}
				setKey(&r, k)
				if err := enc.Encode(&r); err != nil {
					return err
				}
			}
			for _, k := range postgrey.Keys(im.Clients) {
				cl := im.Clients[k]
				r := control.Record{Kind: "client", Count: cl.Count, Last: cl.Last, Expires: now + postgrey.ClientTTL(cl, now, maxAge)}
				setKey(&r, k)
				if err := enc.Encode(&r); err != nil {
					return err
				}
			}
			return bw.Flush()
		}()
		pw.CloseWithError(err)
	}()
	res, err := c.Import(ctx, pr)
	// The daemon may answer before it read everything (an error): the
	// writer must not stay blocked on the pipe.
	pr.Close()
	<-done
	return res, err
}

// setKey puts k into r: as it is, or in base64 when it is not valid
// UTF-8 (a sender is whatever bytes the client sent; JSON strings
// would replace them).
func setKey(r *control.Record, k string) {
	if utf8.ValidString(k) {
		r.Key = k
	} else {
		r.KeyBase64 = base64.StdEncoding.EncodeToString([]byte(k))
	}
}

// combineStats adds the daemon's answer to the converter's counts: what
// the converter imported is what it sent; of that the daemon stored some
// under free keys, merged some with what it held, and found some
// expired by the time they arrived.
func combineStats(s postgrey.Stats, res *control.ImportResult) postgrey.Stats {
	reasons := make(map[string]int, len(s.SkipReasons)+1)
	for r, n := range s.SkipReasons {
		reasons[r] = n
	}
	s.SkipReasons = reasons
	s.Imported = res.Imported
	s.Merged += res.Merged
	s.Expired += res.Expired
	if res.Skipped > 0 {
		s.Skipped += res.Skipped
		s.SkipReasons["refused by greyd (reasons above)"] += res.Skipped
	}
	return s
}

// writeImport stores the entries in greyd's database, merged with what it
// holds, under the lock the daemon takes.
func writeImport(cfg *config.Config, im *postgrey.Importer, now int64) error {
	if err := os.MkdirAll(filepath.Dir(cfg.Database.Path), 0o750); err != nil {
		return err
	}
	sync, err := buntdb.ParseSync(cfg.Database.Sync)
	if err != nil {
		return err
	}
	db, err := buntdb.Open(cfg.Database.Path, buntdb.Options{Sync: sync})
	if err != nil {
		// store.ErrLocked among them: the daemon holds the file, and
		// the caller says what to do.
		return err
	}
	ctx := context.Background()
	g := cfg.Greylist
	delay, retry, maxAge := int64(g.Delay/time.Second), int64(g.RetryWindow/time.Second), int64(g.MaxAge/time.Second)
	for _, k := range postgrey.Keys(im.Triplets) {
		t := im.Triplets[k]
		if old, ok, err := db.Triplet(ctx, k); err != nil {
			db.Close()
			return err
		} else if ok {
			t = postgrey.MergeTriplet(old, t, delay)
			im.Stats.Imported--
			im.Stats.Merged++
		}
		ttl := postgrey.TripletTTL(t, now, delay, retry, maxAge)
		if err := db.PutTriplet(ctx, k, t, time.Duration(ttl)*time.Second); err != nil {
			db.Close()
			return err
		}
	}
	for _, k := range postgrey.Keys(im.Clients) {
		c := im.Clients[k]
		if old, ok, err := db.Client(ctx, k); err != nil {
			db.Close()
			return err
		} else if ok {
			c = postgrey.MergeClient(old, c)
			im.Stats.Imported--
			im.Stats.Merged++
		}
		if err := db.PutClient(ctx, k, c, time.Duration(postgrey.ClientTTL(c, now, maxAge))*time.Second); err != nil {
			db.Close()
			return err
		}
	}
	return db.Close()
}

func printStats(w io.Writer, s postgrey.Stats, dryRun bool) {
	verb := ""
	if dryRun {
		verb = " (dry run)"
	}
	fmt.Fprintf(w, "read %d (%d triplets, %d auto-whitelist clients)\n", s.Read, s.ReadTriplets, s.ReadClients)
	fmt.Fprintf(w, "imported %d%s\n", s.Imported, verb)
	fmt.Fprintf(w, "merged %d\n", s.Merged)
	fmt.Fprintf(w, "expired %d\n", s.Expired)
	fmt.Fprintf(w, "skipped %d\n", s.Skipped)
	for _, r := range s.Reasons() {
		fmt.Fprintf(w, "  %d %s\n", s.SkipReasons[r], r)
	}
	fmt.Fprintf(w, "unparseable %d\n", s.Unparseable)
}

// dbTools are the names the BerkeleyDB utilities go by: plain on RHEL and
// with Debian's db-util, versioned with Debian's db5.3-util.
var dbTools = [][2]string{{"db_dump", "db_recover"}, {"db5.3_dump", "db5.3_recover"}}

func findDBTools() (dump, recover string, err error) {
	for _, t := range dbTools {
		d, err1 := exec.LookPath(t[0])
		r, err2 := exec.LookPath(t[1])
		if err1 == nil && err2 == nil {
			return d, r, nil
		}
	}
	return "", "", fmt.Errorf("db_dump not found: %s", installDBTools)
}

// dumpPostgreyDir returns `db_dump -p` of Postgrey's databases in dir.
// It never touches dir: the files are copied to a temporary directory,
// where db_recover first applies what is still only in the transaction
// logs (Postgrey commits every request to the log; the .db files lag
// behind until a checkpoint).
func dumpPostgreyDir(dir string, stderr io.Writer) ([]byte, error) {
	dumpTool, recoverTool, err := findDBTools()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "postgrey.db")); err != nil {
		return nil, fmt.Errorf("%s is not Postgrey's database directory: %w", dir, err)
	}
	if postgreyRunning(dir) {
		fmt.Fprintf(stderr, "greyd import-postgrey: warning: Postgrey is running on %s; what it writes from now on is not imported (stop Postgrey first)\n", dir)
	}
	tmp, err := os.MkdirTemp("", "greyd-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		n := e.Name()
		// The __db.* region files belong to the running environment;
		// db_recover builds new ones.
		if !e.Type().IsRegular() || !(strings.HasSuffix(n, ".db") || strings.HasPrefix(n, "log.")) {
			continue
		}
		if err := copyFile(filepath.Join(dir, n), filepath.Join(tmp, n)); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command(recoverTool, "-h", tmp).CombinedOutput(); err != nil {
		fmt.Fprintf(stderr, "greyd import-postgrey: warning: %s failed (%v): %s; reading the .db files as they are (the last requests may be missing)\n",
			filepath.Base(recoverTool), err, strings.TrimSpace(string(out)))
	}
	var all bytes.Buffer
	for _, db := range []string{"postgrey.db", "postgrey_clients.db"} {
		if _, err := os.Stat(filepath.Join(tmp, db)); err != nil {
			continue // no auto-whitelist (--auto-whitelist-clients=0)
		}
		cmd := exec.Command(dumpTool, "-p", "-h", tmp, db)
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &all, &errb
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s -p %s: %v: %s", filepath.Base(dumpTool), filepath.Join(dir, db), err, strings.TrimSpace(errb.String()))
		}
	}
	return all.Bytes(), nil
}

// postgreyRunning reports whether a Postgrey holds the lock of dir.
func postgreyRunning(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "postgrey.lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// exportPostgrey writes greyd's database as `db_dump -p` text for
// `db_load`: FILE for postgrey.db, -clients FILE for postgrey_clients.db.
func exportPostgrey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("greyd export-postgrey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "greyd's configuration `path`")
	clients := fs.String("clients", "", "also write the auto-whitelist, for postgrey_clients.db, to `file`")
	optsFile := fs.String("options-file", "", "the options Postgrey will run with (/etc/default/postgrey): key the entries as it will")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: greyd export-postgrey [-config PATH] [-options-file FILE] [-clients FILE] FILE\n\n"+
			"FILE ('-' = stdout) is db_dump -p text: db_load -f FILE postgrey.db\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitConfig
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "greyd export-postgrey: "+format+"\n", a...)
		return exitFailure
	}
	to, err := postgreyKeys(*optsFile)
	if err != nil {
		return fail("%v", err)
	}
	cfg, ps := config.Load(*path)
	if len(ps) > 0 {
		for _, p := range ps {
			fmt.Fprintln(stderr, p.Error())
		}
		return exitConfig
	}
	if cfg.Greylist.Privacy {
		return fail("%v", postgrey.ErrHashedKeys)
	}
	if cfg.Database.Redis != nil {
		return fail("the database is Redis: export-postgrey reads greyd's buntdb file only; with greyd running, greyd export -format postgrey-dump reads any backend")
	}
	e := newExporter(cfg, to)
	if err := readGreydDB(cfg.Database.Path, e); err != nil {
		return fail("%v", err)
	}
	if err := writeDumps(e, fs.Arg(0), *clients, stdout); err != nil {
		return fail("%v", err)
	}
	printExportStats(stderr, "greyd export-postgrey", e.Stats)
	return exitOK
}

// postgreyKeys returns how the Postgrey that will read an export keys
// its entries: its options file, or Postgrey's defaults.
func postgreyKeys(optsFile string) (postgrey.KeyConfig, error) {
	if optsFile == "" {
		return postgrey.KeyConfig{IPv4Prefix: 24, IPv6Prefix: 64}, nil
	}
	f, err := os.Open(optsFile)
	if err != nil {
		return postgrey.KeyConfig{}, err
	}
	o, err := postgrey.ParseOptionsFile(f)
	f.Close()
	if err != nil {
		return postgrey.KeyConfig{}, fmt.Errorf("%s: %w", optsFile, err)
	}
	return postgrey.KeyConfig{LookupByHost: o.LookupByHost, IPv4Prefix: o.IPv4Prefix, IPv6Prefix: o.IPv6Prefix}, nil
}

// newExporter returns an exporter from greyd's keys under cfg to
// Postgrey's keys to, judging expiry now by greyd's rules.
func newExporter(cfg *config.Config, to postgrey.KeyConfig) *postgrey.Exporter {
	g := cfg.Greylist
	return &postgrey.Exporter{
		From:  postgrey.KeyConfig{LookupByHost: g.LookupByHost, IPv4Prefix: g.IPv4Prefix, IPv6Prefix: g.IPv6Prefix},
		To:    to,
		Delay: int64(g.Delay / time.Second), RetryWindow: int64(g.RetryWindow / time.Second), MaxAge: int64(g.MaxAge / time.Second),
		Now: time.Now().Unix(),
	}
}

// writeDumps writes the postgrey.db dump to triplets ('-' = stdout) and,
// if clients is set, the postgrey_clients.db dump to clients.
func writeDumps(e *postgrey.Exporter, triplets, clients string, stdout io.Writer) error {
	if err := writeDumpFile(triplets, e.Triplets(), stdout); err != nil {
		return err
	}
	if clients != "" {
		return writeDumpFile(clients, e.Clients(), stdout)
	}
	return nil
}

func printExportStats(w io.Writer, name string, s postgrey.Stats) {
	fmt.Fprintf(w, "%s: read %d, exported %d, merged %d, expired %d, skipped %d\n", name, s.Read, s.Imported, s.Merged, s.Expired, s.Skipped)
	for _, r := range s.Reasons() {
		fmt.Fprintf(w, "  skipped %d %s\n", s.SkipReasons[r], r)
	}
}

// exportPostgreyDump is `greyd export -format postgrey-dump`: the running
// greyd's export stream, read over the control socket (so it works on
// any backend, with greyd serving), written as db_dump -p text of
// postgrey.db to stdout and, with clients set, of postgrey_clients.db to
// that file. cfg is greyd's configuration: the keys' prefixes and the
// rules that say which entries have expired. It returns the exit status.
func exportPostgreyDump(c *control.Client, cfg *config.Config, optsFile, clients string, stdout, stderr io.Writer) int {
	const name = "greyd export"
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, name+": "+format+"\n", a...)
		return exitFailure
	}
	to, err := postgreyKeys(optsFile)
	if err != nil {
		return fail("%v", err)
	}
	if cfg.Greylist.Privacy {
		return fail("%v", postgrey.ErrHashedKeys)
	}
	ctx := context.Background()
	// The keys are parsed with this configuration's prefixes: check the
	// daemon's are the same (explain writes nothing), or a subnet key
	// would be read as a host's and the other way round.
	g := cfg.Greylist
	err = probeKeys(ctx, c, func(ip netip.Addr, x *control.Explanation) error {
		if x.Privacy {
			return postgrey.ErrHashedKeys
		}
		want := string(normalize.AppendClientNet(nil, ip, g.LookupByHost, g.IPv4Prefix, g.IPv6Prefix))
		got := x.Triplet.Network
		if got != want && x.Triplet.Subnet != nil && x.Triplet.Subnet.Network == want {
			got = want
		}
		if got != want {
			return fmt.Errorf("the greyd behind %s keys %s by %q, this configuration by %q: lookup_by, ipv4_prefix or ipv6_prefix differ. Export with the daemon's configuration (-config), or reload greyd (systemctl reload greyd) if its configuration changed", c.Socket, ip, got, want)
		}
		return nil
	})
	if err != nil {
		return failed(stderr, name, err)
	}
	e := newExporter(cfg, to)
	whitelist := 0
	lines := &lineWriter{fn: func(line []byte) error {
		var r control.Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("reading the export: %w", err)
		}
		if r.KeyBase64 != "" {
			k, err := base64.StdEncoding.DecodeString(r.KeyBase64)
			if err != nil {
				return fmt.Errorf("reading the export: key_base64: %w", err)
			}
			r.Key = string(k)
		}
		switch r.Kind {
		case "header":
			if r.Privacy {
				return postgrey.ErrHashedKeys
			}
		case "triplet":
			return e.AddTriplet(r.Key, store.Triplet{First: r.First, Last: r.Last})
		case "client":
			// An unparseable client key is counted and left out, as
			// export-postgrey does.
			if err := e.AddClient(r.Key, store.Client{Count: r.Count, Last: r.Last}); errors.Is(err, postgrey.ErrHashedKeys) {
				return err
			}
		case "whitelist":
			whitelist++
		}
		return nil
	}}
	err = c.Export(ctx, lines)
	if err == nil {
		err = lines.close()
	}
	if err != nil {
		return failed(stderr, name, err)
	}
	// Postgrey's dump is sorted by key and loaded by db_load only when
	// complete, so it is written once the stream has ended: an export
	// that failed in the middle writes nothing.
	if err := writeDumps(e, "-", clients, stdout); err != nil {
		return fail("%v", err)
	}
	printExportStats(stderr, name, e.Stats)
	if whitelist > 0 {
		fmt.Fprintf(stderr, "%s: %d runtime whitelist entries are not in the dump (Postgrey has no such store): greyd whitelist list shows them; copy them into Postgrey's whitelist_clients.local or whitelist_recipients.local\n", name, whitelist)
	}
	return exitOK
}

// lineWriter calls fn with each complete line written to it, without the
// newline: control.Client.Export writes its stream line by line (a line
// longer than its buffer in pieces).
type lineWriter struct {
	buf []byte
	fn  func([]byte) error
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	start := 0
	for {
		i := bytes.IndexByte(l.buf[start:], '\n')
		if i < 0 {
			break
		}
		if line := bytes.TrimSpace(l.buf[start : start+i]); len(line) > 0 {
			if err := l.fn(line); err != nil {
				return 0, err
			}
		}
		start += i + 1
	}
	l.buf = l.buf[:copy(l.buf, l.buf[start:])]
	return len(p), nil
}

// close hands fn a last line that had no newline.
func (l *lineWriter) close() error {
	if line := bytes.TrimSpace(l.buf); len(line) > 0 {
		l.buf = l.buf[:0]
		return l.fn(line)
	}
	return nil
}

// readGreydDB reads every entry of greyd's database into e. It holds the
// daemon's lock while it copies the file (so greyd must be stopped) and
// reads the copy with buntdb itself: greyd's store has no iteration, and
// buntdb's background expiry must not write to the real file.
func readGreydDB(path string, e *postgrey.Exporter) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := buntdb.Open(path, buntdb.Options{})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("greyd is running (%v): stop greyd first, or export through it: greyd export -format postgrey-dump", err)
	}
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "greyd-export-")
	if err != nil {
		db.Close()
		return err
	}
	defer os.RemoveAll(tmp)
	cp := filepath.Join(tmp, "greyd.db")
	err = copyFile(path, cp)
	db.Close()
	if err != nil {
		return err
	}
	b, err := bunt.Open(cp)
	if err != nil {
		return err
	}
	defer b.Close()
	var addErr error
	err = b.View(func(tx *bunt.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			if len(k) < 2 || k[1] != ':' {
				return true
			}
			a, c, err := postgrey.ParseValue(v)
			if err != nil {
				return true
			}
			switch k[0] {
			case 't':
				addErr = e.AddTriplet(k[2:], store.Triplet{First: a, Last: c})
			case 'c':
				addErr = e.AddClient(k[2:], store.Client{Count: a, Last: c})
			}
			return !errors.Is(addErr, postgrey.ErrHashedKeys)
		})
	})
	if errors.Is(addErr, postgrey.ErrHashedKeys) {
		return addErr
	}
	return err
}

// writeDumpFile writes entries to name ('-' = stdout) through a temporary
// file and a rename, so an interrupted export leaves no half file.
func writeDumpFile(name string, es []postgrey.Entry, stdout io.Writer) error {
	if name == "-" {
		return postgrey.WriteDump(stdout, es)
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := postgrey.WriteDump(f, es); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
