package main

// greyd import-postgrey, greyd export-postgrey and greyd export -format
// postgrey-dump: flags, messages and exit statuses. The formats are
// internal/postgrey's, the BerkeleyDB tools, the daemon's control socket
// and greyd's database file internal/migrate's.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"greyd/internal/config"
	"greyd/internal/control"
	"greyd/internal/migrate"
	"greyd/internal/postgrey"
	"greyd/internal/reload"
	"greyd/internal/store"
)

// maxProblemsShown bounds the malformed lines printed; the count says the rest.
const maxProblemsShown = 20

// importFlags are greyd import-postgrey's flags.
type importFlags struct {
	fs                        *flag.FlagSet
	config, dbdir, dump, opts string
	dryRun                    bool
	stderr                    io.Writer
}

func parseImportFlags(args []string, stderr io.Writer) (*importFlags, int) {
	f := &importFlags{fs: flag.NewFlagSet("greyd import-postgrey", flag.ContinueOnError), stderr: stderr}
	fs := f.fs
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", defaultConfig, "greyd's configuration `path`")
	fs.BoolVar(&f.dryRun, "dry-run", false, "read and convert, print the counts, write nothing")
	fs.StringVar(&f.dbdir, "dbdir", "", "Postgrey's database `directory` (postgrey.db, postgrey_clients.db), read with db_dump")
	fs.StringVar(&f.dump, "dump", "", "`file` of db_dump -p output of postgrey.db and/or postgrey_clients.db ('-' = stdin)")
	fs.StringVar(&f.opts, "options-file", "", "Postgrey's options (/etc/default/postgrey, or its argument list): print the equivalent greyd.hcl and key the import as Postgrey did")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: greyd import-postgrey [-config PATH] [-dry-run] [-options-file FILE] (-dbdir DIR | -dump FILE)\n       greyd import-postgrey -options-file FILE\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK
		}
		return nil, exitConfig
	}
	if fs.NArg() > 0 || (f.dbdir != "" && f.dump != "") || (f.dbdir == "" && f.dump == "" && !f.onlyOptions()) {
		fs.Usage()
		return nil, exitConfig
	}
	return f, -1
}

// onlyOptions: translate the options file, import nothing.
func (f *importFlags) onlyOptions() bool { return f.dbdir == "" && f.dump == "" && f.opts != "" }

func (f *importFlags) fail(format string, a ...any) int {
	fmt.Fprintf(f.stderr, "greyd import-postgrey: "+format+"\n", a...)
	return exitFailure
}

func importPostgrey(args []string, stdout, stderr io.Writer) int {
	f, st := parseImportFlags(args, stderr)
	if f == nil {
		return st
	}
	src := postgrey.DefaultSource
	if f.opts != "" {
		o, err := migrate.ReadOptionsFile(f.opts)
		if err != nil {
			return f.fail("%v", err)
		}
		fmt.Fprint(stdout, o.HCL)
		if f.onlyOptions() {
			return exitOK
		}
		src = o.Source
	}

	l := reload.Load(f.config, reload.Options{Version: version, CreateKey: !f.dryRun})
	if len(l.ConfigProblems) > 0 {
		for _, p := range l.ConfigProblems {
			fmt.Fprintln(stderr, p.Error())
		}
		fmt.Fprintf(stderr, "greyd import-postgrey: configuration %s has problems\n", f.config)
		return exitConfig
	}
	im, now, st := convertPostgrey(f, l, src, stdout)
	if im == nil {
		return st
	}

	t := migrate.FindTarget(context.Background(), l.Config, l.Snapshot)
	if t.Elsewhere {
		fmt.Fprintf(stderr, "greyd import-postgrey: warning: a greyd answers at %s, but nothing holds %s: that greyd uses another database; importing into %s directly\n",
			t.Client.Socket, l.Config.Database.Path, l.Config.Database.Path)
	}
	if f.dryRun {
		return reportDryRun(t, l.Config, im.Stats, stdout, stderr)
	}
	return storeImport(f, t, l, im, now, stdout)
}

// convertPostgrey reads Postgrey's entries (-dbdir or -dump) and converts
// them to greyd's keys under l, judging expiry by the time it returns.
// It returns nil and the exit status if the import stops there.
func convertPostgrey(f *importFlags, l *reload.Loaded, src postgrey.Source, stdout io.Writer) (im *postgrey.Importer, now int64, st int) {
	text, name, err := readPostgrey(f)
	if err != nil {
		return nil, 0, f.fail("%v", err)
	}
	now = time.Now().Unix()
	im = postgrey.NewImporter(l.Snapshot, src, now)
	if err := im.ReadAll(postgrey.NewDumpReader(bytes.NewReader(text))); err != nil {
		return nil, 0, f.fail("%s: %v", name, err)
	}
	for i, p := range im.Problems {
		if i == maxProblemsShown {
			fmt.Fprintf(f.stderr, "%s: ... and %d more problems\n", name, len(im.Problems)-i)
			break
		}
		fmt.Fprintf(f.stderr, "%s:%d: %s (skipped)\n", name, p.Line, p.Msg)
	}
	if im.Stats.Privacy > 0 {
		fmt.Fprintf(f.stderr, "greyd import-postgrey: %d of %d entries are SHA-1 hashes: Postgrey ran with --privacy, which stores only an unsalted hash of each key. "+
			"A hash cannot be turned back into the client network, sender and recipient that greyd keys by (under its own keyed hash, too), so these entries cannot be imported. "+
			"Nothing was written; start greyd with an empty database (senders are greylisted once more).\n", im.Stats.Privacy, im.Stats.Read)
		printStats(stdout, im.Stats, f.dryRun)
		return nil, 0, exitFailure
	}
	return im, now, -1
}

// readPostgrey returns the db_dump text to import and the name its
// problems are reported under.
func readPostgrey(f *importFlags) (text []byte, name string, err error) {
	switch {
	case f.dbdir != "":
		text, err = migrate.DumpPostgreyDir(f.dbdir, func(w string) {
			fmt.Fprintf(f.stderr, "greyd import-postgrey: warning: %s\n", w)
		})
		return text, f.dbdir, err
	case f.dump == "-":
		text, err = io.ReadAll(os.Stdin)
		return text, "stdin", err
	}
	text, err = os.ReadFile(f.dump)
	return text, f.dump, err
}

func reportDryRun(t migrate.Target, cfg *config.Config, s postgrey.Stats, stdout, stderr io.Writer) int {
	printStats(stdout, s, true)
	fmt.Fprintln(stdout, "dry run: nothing written; entries greyd already has are merged at the real import")
	switch {
	case t.Live && t.ProbeErr != nil:
		fmt.Fprintf(stderr, "greyd import-postgrey: warning: the real import will fail: %v\n", t.ProbeErr)
	case t.Live:
		fmt.Fprintf(stdout, "greyd is running: the import will go through its control socket %s\n", t.Client.Socket)
	case cfg.Database.Redis != nil:
		fmt.Fprintln(stdout, "the database is Redis: start greyd before the real import, which goes through its control socket")
	}
	return exitOK
}

// storeImport hands the entries to the running greyd, or writes its
// database with greyd stopped.
func storeImport(f *importFlags, t migrate.Target, l *reload.Loaded, im *postgrey.Importer, now int64, stdout io.Writer) int {
	stderr, redis := f.stderr, l.Config.Database.Redis != nil
	switch {
	case t.Live && t.ProbeErr != nil:
		return f.fail("%v", t.ProbeErr)
	case t.Live:
		res, err := migrate.SendImport(context.Background(), t.Client, im, l.Snapshot, version, now)
		if err != nil {
			return failed(stderr, "greyd import-postgrey", err)
		}
		for _, e := range res.Errors {
			fmt.Fprintf(stderr, "greyd import-postgrey: greyd refused %s\n", e)
		}
		fmt.Fprintf(stdout, "greyd is running: entries sent through its control socket %s\n", t.Client.Socket)
		printStats(stdout, migrate.CombineStats(im.Stats, res), false)
		if res.Skipped > 0 {
			return exitFailure
		}
		return exitOK
	case redis && t.Client == nil:
		fmt.Fprintf(stderr, "greyd import-postgrey: the database is Redis, which only the running greyd writes, through its control socket; it is off in %s (control { socket = \"\" }): set it, restart greyd and import again\n", f.config)
		return exitConfig
	case redis:
		fmt.Fprintf(stderr, "greyd import-postgrey: the database is Redis, which only the running greyd writes, through its control socket: %v. Start greyd (systemctl start greyd) and import again; nothing was written\n", t.ProbeErr)
		return exitUnreachable
	}
	err := migrate.WriteImport(l.Config, im, now)
	if errors.Is(err, store.ErrLocked) {
		// The daemon holds the file, yet its control socket does not
		// answer: off, refused to this user, or greyd is starting.
		if t.Client == nil {
			return f.fail("greyd is running (%v) and its control socket is off (control { socket = \"\" }): stop greyd first (systemctl stop greyd), run the import, then start greyd; or set the socket and restart greyd", err)
		}
		fmt.Fprintf(stderr, "greyd import-postgrey: greyd is running (%v) but its control socket does not answer: %v. Import again once it does, or stop greyd first (systemctl stop greyd); nothing was written\n", err, t.ProbeErr)
		return exitUnreachable
	}
	if err != nil {
		return f.fail("%v", err)
	}
	printStats(stdout, im.Stats, false)
	return exitOK
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
	to, err := migrate.PostgreyKeys(*optsFile)
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
	e := migrate.NewExporter(cfg, to)
	if err := migrate.ReadGreydDB(cfg.Database.Path, e); err != nil {
		return fail("%v", err)
	}
	if err := migrate.WriteDumps(e, fs.Arg(0), *clients, stdout); err != nil {
		return fail("%v", err)
	}
	printExportStats(stderr, "greyd export-postgrey", e.Stats)
	return exitOK
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
	to, err := migrate.PostgreyKeys(optsFile)
	if err != nil {
		return fail("%v", err)
	}
	if cfg.Greylist.Privacy {
		return fail("%v", postgrey.ErrHashedKeys)
	}
	ctx := context.Background()
	if err := migrate.CheckDaemonNetworks(ctx, c, cfg); err != nil {
		return failed(stderr, name, err)
	}
	e := migrate.NewExporter(cfg, to)
	whitelist, err := migrate.ReadExport(ctx, c, e)
	if err != nil {
		return failed(stderr, name, err)
	}
	// Postgrey's dump is sorted by key and loaded by db_load only when
	// complete, so it is written once the stream has ended: an export
	// that failed in the middle writes nothing.
	if err := migrate.WriteDumps(e, "-", clients, stdout); err != nil {
		return fail("%v", err)
	}
	printExportStats(stderr, name, e.Stats)
	if whitelist > 0 {
		fmt.Fprintf(stderr, "%s: %d runtime whitelist entries are not in the dump (Postgrey has no such store): greyd whitelist list shows them; copy them into Postgrey's whitelist_clients.local or whitelist_recipients.local\n", name, whitelist)
	}
	return exitOK
}
