package main

// greyd import-postgrey and greyd export-postgrey: the way from Postgrey's
// BerkeleyDB files to greyd's database, and back. The format work is in
// internal/postgrey; this file finds the BerkeleyDB tools, runs them on a
// copy of Postgrey's directory, and opens greyd's database.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/config"
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
	if cfg.Database.Redis != nil {
		return fail("the database is Redis: the import writes greyd's own buntdb file only (the control socket, which would carry it to any backend, does not exist yet)")
	}

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

	if *dryRun {
		printStats(stdout, im.Stats, true)
		fmt.Fprintln(stdout, "dry run: nothing written; entries greyd already has are merged at the real import")
		return exitOK
	}
	if err := writeImport(cfg, im, now); err != nil {
		return fail("%v", err)
	}
	printStats(stdout, im.Stats, false)
	return exitOK
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
	if errors.Is(err, store.ErrLocked) {
		// The daemon holds the database; an import through its control
		// socket is not possible yet.
		return fmt.Errorf("greyd is running (%v): stop greyd first (systemctl stop greyd), run the import, then start greyd", err)
	}
	if err != nil {
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
	to := postgrey.KeyConfig{IPv4Prefix: 24, IPv6Prefix: 64}
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
		to = postgrey.KeyConfig{LookupByHost: o.LookupByHost, IPv4Prefix: o.IPv4Prefix, IPv6Prefix: o.IPv6Prefix}
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
		return fail("the database is Redis: export-postgrey reads greyd's buntdb file only")
	}
	g := cfg.Greylist
	e := &postgrey.Exporter{
		From:  postgrey.KeyConfig{LookupByHost: g.LookupByHost, IPv4Prefix: g.IPv4Prefix, IPv6Prefix: g.IPv6Prefix},
		To:    to,
		Delay: int64(g.Delay / time.Second), RetryWindow: int64(g.RetryWindow / time.Second), MaxAge: int64(g.MaxAge / time.Second),
		Now: time.Now().Unix(),
	}
	if err := readGreydDB(cfg.Database.Path, e); err != nil {
		return fail("%v", err)
	}
	if err := writeDumpFile(fs.Arg(0), e.Triplets(), stdout); err != nil {
		return fail("%v", err)
	}
	if *clients != "" {
		if err := writeDumpFile(*clients, e.Clients(), stdout); err != nil {
			return fail("%v", err)
		}
	}
	s := e.Stats
	fmt.Fprintf(stderr, "greyd export-postgrey: read %d, exported %d, merged %d, expired %d, skipped %d\n", s.Read, s.Imported, s.Merged, s.Expired, s.Skipped)
	for _, r := range s.Reasons() {
		fmt.Fprintf(stderr, "  skipped %d %s\n", s.SkipReasons[r], r)
	}
	return exitOK
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
		return fmt.Errorf("greyd is running (%v): stop greyd first", err)
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
