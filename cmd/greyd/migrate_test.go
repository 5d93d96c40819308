package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"greyd/internal/migrate"
	"greyd/internal/store/redis/redistest"
)

// These tests run the real Postgrey 1.37 (Debian package postgrey) and the
// BerkeleyDB utilities (db5.3-util), write its databases with requests
// placed in the past by policy_test_time, import them, and check that
// greyd answers as Postgrey would have; then the way back.

func needPostgrey(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("postgrey"); err != nil {
		t.Fatal("postgrey not installed (make deps installs it: apt install postgrey)")
	}
	if _, _, err := migrate.FindDBTools(); err != nil {
		t.Fatal(err)
	}
}

// startPostgrey runs Postgrey in the foreground on a unix socket in dir.
func startPostgrey(t *testing.T, dir, dbdir string, extra ...string) *proc {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dbdir, 0o700)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	sock := filepath.Join(dir, "postgrey.sock")
	// --user/--group: Postgrey drops privileges to "postgrey" by default,
	// which could not write a test directory; the current user can.
	args := append([]string{"--unix=" + sock, "--dbdir=" + dbdir, "--user=" + u.Username, "--group=" + g.Name,
		"--whitelist-clients=" + empty, "--whitelist-recipients=" + empty, "--delay=300"}, extra...)
	d := &proc{t: t, dir: dir, sock: sock, logs: &syncBuf{}, done: make(chan error, 1)}
	d.cmd = exec.Command("postgrey", args...)
	startProc(t, d)
	return d
}

// stopPostgrey stops Postgrey with SIGTERM. Its IO::Multiplex loop only
// sees the signal when a socket wakes it, hence the connection.
func stopPostgrey(t *testing.T, d *proc) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if c, err := net.Dial("unix", d.sock); err == nil {
			c.Close()
		}
		select {
		case err := <-d.done:
			d.done <- err
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("Postgrey did not stop within 15s of SIGTERM:\n%s", d.logs)
}

func runGreyd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func isPass(got string) bool { return got == "DUNNO" || strings.HasPrefix(got, "PREPEND X-Greylist") }

type pgCase struct {
	addr, sender, rcpt string
}

// seedPostgrey writes, through Postgrey, a pending and a passed triplet
// per family, and two auto-whitelisted clients, with times before now.
func seedPostgrey(t *testing.T, c *client, now int64) {
	t.Helper()
	ask := func(addr, sender, rcpt string, when int64, pass bool) {
		t.Helper()
		got := c.ask(rcptReq(addr, sender, rcpt, when)...)
		if isPass(got) != pass {
			t.Fatalf("Postgrey, %s %s %s at now%+d: got %q, want pass=%v", addr, sender, rcpt, when-now, got, pass)
		}
	}
	ask("198.51.100.7", "Alice+news@Foo.example", "Bob@example.org", now-100, false)
	ask("203.0.113.5", "bounce-123@lists.example", "carol@example.org", now-4000, false)
	ask("203.0.113.5", "bounce-123@lists.example", "carol@example.org", now-3600, true)
	ask("2001:db8:1:2::5", "dave@v6.example", "bob@example.org", now-200, false)
	ask("2001:db8:3:4::5", "erin@v6.example", "carol@example.org", now-4000, false)
	ask("2001:db8:3:4::5", "erin@v6.example", "carol@example.org", now-3000, true)
	for _, a := range []string{"192.0.2.10", "2001:db8:9::10"} {
		// Five completed triplets, counted at most once an hour.
		for i := int64(0); i < 5; i++ {
			base := now - 30000 + i*3700
			s := fmt.Sprintf("s%d@awl.example", i)
			ask(a, s, "r@example.org", base, false)
			ask(a, s, "r@example.org", base+301, true)
		}
	}
	ask("::ffff:192.0.2.200", "m@mapped.example", "bob@example.org", now-100, false)
}

func rcptReq(addr, sender, rcpt string, when int64) []string {
	return rcpt2(addr, "unknown", sender, rcpt, when)
}

// rcpt2 is rcpt with the instance made unique per request, so that both
// servers add their header to every first pass.
func rcpt2(addr, name, sender, recipient string, when int64) []string {
	r := rcpt(addr, name, sender, recipient, when)
	for i, l := range r {
		if strings.HasPrefix(l, "instance=") {
			r[i] = fmt.Sprintf("instance=%s-%s-%d", addr, recipient, when)
		}
	}
	return r
}

// ctlConfig is testConfig with the control socket in dir. Never the
// default /run/greyd/control.sock: another greyd on this machine may
// answer there, and the import would go to it.
func ctlConfig(t *testing.T, dir, extra string) (sock, ctl string) {
	t.Helper()
	ctl = filepath.Join(dir, "control.sock")
	sock, _ = testConfig(t, dir, fmt.Sprintf("control {\n  socket = %q\n}\n%s", ctl, extra))
	return sock, ctl
}

// pgSeed is a Postgrey database written by the real Postgrey in one key
// mode, shared by the imports with greyd stopped and running (the import
// never changes it).
type pgSeed struct {
	mode   string   // "subnet" or "host"
	dbdir  string   // Postgrey's --dbdir
	pgOpts []string // Postgrey's options of the mode
	extra  string   // greyd.hcl settings of the mode
	now    int64
}

func seedMode(t *testing.T, mode string) *pgSeed {
	t.Helper()
	dir := t.TempDir()
	m := &pgSeed{mode: mode, dbdir: filepath.Join(dir, "postgrey"), now: time.Now().Unix()}
	if mode == "host" {
		m.pgOpts = []string{"--lookup-by-host"}
		m.extra = "greylist {\n  lookup_by = \"host\"\n}\n"
	}
	pg := startPostgrey(t, dir, m.dbdir, m.pgOpts...)
	pc := dial(t, "unix", pg.sock)
	seedPostgrey(t, pc, m.now)
	pc.c.Close()
	stopPostgrey(t, pg)
	return m
}

// other picks the client of a check: another host of the network when
// Postgrey and greyd key by subnet, the same host when by host.
func (m *pgSeed) other(subnet, host string) string {
	if m.mode == "subnet" {
		return subnet
	}
	return host
}

func TestImportPostgreyDatabase(t *testing.T) {
	needPostgrey(t)
	for _, mode := range []string{"subnet", "host"} {
		t.Run(mode, func(t *testing.T) {
			m := seedMode(t, mode)
			t.Run("stopped", func(t *testing.T) { testImportStopped(t, m) })
			t.Run("running", func(t *testing.T) { testImportRunning(t, m) })
		})
	}
}

// checkImportCounts checks the counts an import printed for the seeded
// database: 19 records, of which the ::ffff: client's shared /64 is
// skipped by subnet; merged entries were in greyd already.
func checkImportCounts(t *testing.T, m *pgSeed, out, errOut string, code, merged int) {
	t.Helper()
	imported, skipped := 19, 0
	if m.mode == "subnet" {
		imported, skipped = 18, 1
	}
	for _, want := range []string{"read 19 (15 triplets, 4 auto-whitelist clients)\n", fmt.Sprintf("imported %d\n", imported-merged),
		fmt.Sprintf("merged %d\n", merged), "expired 0\n", fmt.Sprintf("skipped %d\n", skipped), "unparseable 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s%s", want, out, errOut)
		}
	}
	if code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
}

// checkImported asks greyd what Postgrey would have answered.
func checkImported(t *testing.T, m *pgSeed, c *client) {
	t.Helper()
	now := m.now
	for _, tc := range []struct {
		name      string
		req       []string
		wantStart string
	}{
		// Pending: first-seen kept, so the retry passes with the full delay.
		{"pending IPv4", rcptReq(m.other("198.51.100.8", "198.51.100.7"), "alice+other@foo.example", "bob@example.org", now+250), "PREPEND X-Greylist: delayed 350 seconds"},
		{"pending IPv6", rcptReq(m.other("2001:db8:1:2::99", "2001:db8:1:2::5"), "dave@v6.example", "BOB@example.org", now+250), "PREPEND X-Greylist: delayed 450 seconds"},
		// Passed: at once, VERP numbers or not.
		{"passed IPv4", rcptReq(m.other("203.0.113.77", "203.0.113.5"), "bounce-456@lists.example", "carol@example.org", now), "DUNNO"},
		{"passed IPv6", rcptReq(m.other("2001:db8:3:4::77", "2001:db8:3:4::5"), "erin@v6.example", "carol@example.org", now), "DUNNO"},
		// Auto-whitelisted clients: a new triplet passes at once.
		{"AWL IPv4", rcptReq("192.0.2.10", "new@new.example", "someone@example.org", now), "DUNNO"},
		{"AWL IPv6", rcptReq("2001:db8:9::10", "new@new.example", "someone@example.org", now), "DUNNO"},
		// And what Postgrey never saw is greylisted.
		{"new", rcptReq("198.51.100.99", "new@new.example", "someone@example.org", now), greylisted},
	} {
		if got := c.ask(tc.req...); !strings.HasPrefix(got, tc.wantStart) {
			t.Errorf("%s: sent %q\ngot %q, want %q...", tc.name, tc.req, got, tc.wantStart)
		}
	}
}

// checkRollback loads the dumps greyd exported into a new Postgrey
// database and checks that the real Postgrey answers as greyd did.
func checkRollback(t *testing.T, m *pgSeed, dir, trip, clients string) {
	t.Helper()
	back := filepath.Join(dir, "back")
	os.MkdirAll(back, 0o700)
	load := dbLoadTool(t)
	for f, db := range map[string]string{trip: "postgrey.db", clients: "postgrey_clients.db"} {
		if b, err := exec.Command(load, "-f", f, filepath.Join(back, db)).CombinedOutput(); err != nil {
			t.Fatalf("db_load -f %s: %v\n%s", f, err, b)
		}
	}
	pg := startPostgrey(t, dir, back, m.pgOpts...)
	pc := dial(t, "unix", pg.sock)
	now := m.now
	for _, tc := range []struct {
		name      string
		req       []string
		wantStart string
	}{
		// greyd passed these: Postgrey passes them too, without a header.
		{"passed IPv4", rcptReq(m.other("198.51.100.8", "198.51.100.7"), "alice@foo.example", "bob@example.org", now+600), "DUNNO"},
		{"passed IPv6", rcptReq(m.other("2001:db8:3:4::77", "2001:db8:3:4::5"), "erin@v6.example", "carol@example.org", now+600), "DUNNO"},
		{"AWL IPv4", rcptReq("192.0.2.10", "other@new.example", "x@example.org", now+600), "DUNNO"},
		{"AWL IPv6", rcptReq("2001:db8:9::10", "other@new.example", "x@example.org", now+600), "DUNNO"},
		// greyd's pending entry keeps its first-seen time.
		{"pending", rcptReq("198.51.100.99", "new@new.example", "someone@example.org", now+400), "PREPEND X-Greylist: delayed 400 seconds"},
		{"new", rcptReq("198.51.100.99", "never@seen.example", "someone@example.org", now+600), "DEFER_IF_PERMIT"},
	} {
		if got := pc.ask(tc.req...); !strings.HasPrefix(got, tc.wantStart) {
			t.Errorf("Postgrey after the rollback, %s: sent %q\ngot %q, want %q...", tc.name, tc.req, got, tc.wantStart)
		}
	}
	pc.c.Close()
	stopPostgrey(t, pg)
}

// optionsFile writes the /etc/default/postgrey that the rollback's
// Postgrey runs with.
func optionsFile(t *testing.T, m *pgSeed, dir string) string {
	f := filepath.Join(dir, "default-postgrey")
	if err := os.WriteFile(f, []byte(fmt.Sprintf("POSTGREY_OPTS=\"--inet=10023 %s\"\n", strings.Join(m.pgOpts, " "))), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// testImportStopped: greyd stopped, the import opens its database.
func testImportStopped(t *testing.T, m *pgSeed) {
	dir := t.TempDir()
	sock, ctl := ctlConfig(t, dir, m.extra)
	cfg := filepath.Join(dir, "greyd.hcl")
	// -dry-run writes nothing.
	out, errOut, code := runGreyd(t, "import-postgrey", "-config", cfg, "-dry-run", "-dbdir", m.dbdir)
	if code != 0 || !strings.Contains(out, "read 19 (15 triplets, 4 auto-whitelist clients)") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "greyd.db")); err == nil {
		t.Errorf("dry run created the database")
	}
	// Postgrey's own files are left as they were.
	before, _ := os.ReadDir(m.dbdir)
	out, errOut, code = runGreyd(t, "import-postgrey", "-config", cfg, "-dbdir", m.dbdir)
	t.Logf("import (%s, greyd stopped):\n%s%s", m.mode, out, errOut)
	checkImportCounts(t, m, out, errOut, code, 0)
	if strings.Contains(out, "control socket") {
		t.Errorf("greyd is stopped, yet the import went through a control socket:\n%s", out)
	}
	after, _ := os.ReadDir(m.dbdir)
	if len(before) != len(after) {
		t.Errorf("Postgrey's directory changed: %v -> %v", before, after)
	}

	d := startDaemon(t, dir)
	d.waitLog("control socket " + ctl)
	checkImported(t, m, dial(t, "unix", sock))

	// greyd holds the database lock but its control socket cannot
	// carry the import: off, or not answering at the configured path.
	text, _ := os.ReadFile(cfg)
	for _, tc := range []struct {
		socket, want string
		code         int
	}{
		{"", "stop greyd first", exitFailure},
		{filepath.Join(dir, "elsewhere.sock"), "elsewhere.sock", exitUnreachable},
	} {
		other := filepath.Join(dir, "other.hcl")
		os.WriteFile(other, []byte(strings.Replace(string(text), fmt.Sprintf("socket = %q", ctl), fmt.Sprintf("socket = %q", tc.socket), 1)), 0o644)
		out, errOut, code = runGreyd(t, "import-postgrey", "-config", other, "-dbdir", m.dbdir)
		if code != tc.code || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "greyd is running") {
			t.Errorf("import with greyd running and control socket %q: exit %d, want %d and %q\n%s%s", tc.socket, code, tc.code, tc.want, out, errOut)
		}
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}

	// The way back with greyd stopped: export-postgrey reads its file.
	trip, clients := filepath.Join(dir, "postgrey.dump"), filepath.Join(dir, "clients.dump")
	out, errOut, code = runGreyd(t, "export-postgrey", "-config", cfg, "-options-file", optionsFile(t, m, dir), "-clients", clients, trip)
	if code != 0 {
		t.Fatalf("export-postgrey: exit %d\n%s%s", code, out, errOut)
	}
	checkRollback(t, m, dir, trip, clients)
}

// testImportRunning: greyd started before the import, answering after it
// without a restart; the way back from the running greyd.
func testImportRunning(t *testing.T, m *pgSeed) {
	dir := t.TempDir()
	sock, ctl := ctlConfig(t, dir, m.extra)
	cfg := filepath.Join(dir, "greyd.hcl")
	d := startDaemon(t, dir)
	d.waitLog("control socket " + ctl)
	c := dial(t, "unix", sock)
	// greyd has a pending entry for a triplet that Postgrey passed: the
	// daemon merges them, and the passed one wins.
	if got := c.ask(rcptReq("203.0.113.5", "bounce-123@lists.example", "carol@example.org", m.now-10)...); got != greylisted {
		t.Fatalf("before the import: got %q, want greylisted", got)
	}
	entries := func() int {
		out, errOut, code := runGreyd(t, "list", "-config", cfg, "-json")
		if code != 0 {
			t.Fatalf("greyd list: exit %d\n%s%s", code, out, errOut)
		}
		return strings.Count(out, "\n")
	}
	held := entries()

	out, errOut, code := runGreyd(t, "import-postgrey", "-config", cfg, "-dry-run", "-dbdir", m.dbdir)
	if code != 0 || !strings.Contains(out, "read 19 (15 triplets, 4 auto-whitelist clients)") || !strings.Contains(out, "greyd is running: the import will go through its control socket "+ctl) {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	if n := entries(); n != held {
		t.Errorf("the dry run wrote: greyd holds %d entries, had %d", n, held)
	}

	start := time.Now()
	out, errOut, code = runGreyd(t, "import-postgrey", "-config", cfg, "-dbdir", m.dbdir)
	t.Logf("import (%s, greyd running) took %v:\n%s%s", m.mode, time.Since(start).Round(time.Millisecond), out, errOut)
	checkImportCounts(t, m, out, errOut, code, 1)
	if !strings.Contains(out, "greyd is running: entries sent through its control socket "+ctl) {
		t.Errorf("import output does not say it went through the control socket:\n%s", out)
	}
	// The same daemon, the same connection.
	checkImported(t, m, c)
	select {
	case err := <-d.done:
		t.Fatalf("greyd exited during the import: %v\n%s", err, d.logs)
	default:
	}
	d.waitLog("control: imported")

	// The way back from the running greyd: its export stream as
	// postgrey.db and postgrey_clients.db dumps.
	trip, clients := filepath.Join(dir, "postgrey.dump"), filepath.Join(dir, "clients.dump")
	out, errOut, code = runGreyd(t, "export", "-config", cfg, "-format", "postgrey-dump", "-options-file", optionsFile(t, m, dir), "-clients", clients)
	if code != 0 || !strings.HasPrefix(out, "VERSION=3\n") {
		t.Fatalf("export -format postgrey-dump: exit %d\n%s", code, errOut)
	}
	t.Logf("export -format postgrey-dump: %s", errOut)
	if err := os.WriteFile(trip, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	checkRollback(t, m, dir, trip, clients)
}

func dbLoadTool(t *testing.T) string {
	for _, n := range []string{"db_load", "db5.3_load"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatal("db_load not installed (make deps installs db5.3-util)")
	return ""
}

// TestImportPostgreyOldFormats imports a synthetic dump in the 1.35 and
// 1.36 key formats, with malformed lines.
func TestImportPostgreyOldFormats(t *testing.T) {
	dir := t.TempDir()
	sock, _ := ctlConfig(t, dir, "")
	now := time.Now().Unix()
	dump := fmt.Sprintf(`VERSION=3
format=print
type=btree
db_pagesize=4096
HEADER=END
 198.51.100.0/24/alice@foo.example/bob@example.org
 %[1]d,%[2]d
 203.0.113.9/pool@dyn.example/bob@example.org
 %[1]d,%[2]d,9
 2001:db8:5::1/v6@old.example/bob@example.org
 %[3]d,%[3]d
this line lost its leading space
 %[1]d,%[2]d
 192.0.2.0/x@y.example/z@example.org
 not-a-value
DATA=END
VERSION=3
format=print
type=btree
HEADER=END
 192.0.2.33
 5,%[2]d
DATA=END
`, now-5000, now-4000, now-100)
	f := filepath.Join(dir, "old.dump")
	os.WriteFile(f, []byte(dump), 0o644)

	// A greyd answers on the configured control socket, but it uses
	// another database (two configurations naming one socket): the
	// import must not go to it, and writes this database directly.
	otherDir := t.TempDir()
	_, otherCtl := ctlConfig(t, otherDir, "")
	other := startDaemon(t, otherDir)
	other.waitLog("control socket " + otherCtl)
	cfg := filepath.Join(dir, "greyd.hcl")
	text, _ := os.ReadFile(cfg)
	ctl := filepath.Join(dir, "control.sock")
	os.WriteFile(cfg, []byte(strings.Replace(string(text), fmt.Sprintf("socket = %q", ctl), fmt.Sprintf("socket = %q", otherCtl), 1)), 0o644)

	out, errOut, code := runGreyd(t, "import-postgrey", "-config", cfg, "-dump", f)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "a greyd answers at "+otherCtl) || strings.Contains(out, "control socket") {
		t.Errorf("import next to another greyd: it should say so and write the file\n%s%s", out, errOut)
	}
	if o, e, code := runGreyd(t, "list", "-config", filepath.Join(otherDir, "greyd.hcl"), "-json"); code != 0 || o != "" {
		t.Errorf("the other greyd got entries (exit %d):\n%s%s", code, o, e)
	}
	if err := other.stop(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfg, text, 0o644)
	for _, want := range []string{f + ":12: data line without its leading space", f + ":14: key \"192.0.2.0/x@y.example/z@example.org\": value \"not-a-value\""} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	for _, want := range []string{"read 6 ", "imported 4\n", "unparseable 2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	startDaemon(t, dir)
	c := dial(t, "unix", sock)
	for _, tc := range []struct {
		req       []string
		wantStart string
	}{
		{rcptReq("198.51.100.50", "alice@foo.example", "bob@example.org", now), "DUNNO"},
		{rcptReq("203.0.113.44", "pool@dyn.example", "bob@example.org", now), "DUNNO"}, // the 1.35 host key, now its /24
		{rcptReq("2001:db8:5::1", "v6@old.example", "bob@example.org", now+200), "PREPEND X-Greylist: delayed 300 seconds"},
		{rcptReq("192.0.2.33", "a@b.example", "c@example.org", now), "DUNNO"},
	} {
		if got := c.ask(tc.req...); !strings.HasPrefix(got, tc.wantStart) {
			t.Errorf("sent %q\ngot %q, want %q...", tc.req, got, tc.wantStart)
		}
	}

	// A configuration that keys otherwise than the running greyd (here
	// an edit not reloaded): the import would store entries no request
	// looks up, so it refuses before sending anything.
	edited := filepath.Join(dir, "edited.hcl")
	os.WriteFile(edited, append(text, "greylist {\n  ipv4_prefix = 16\n}\n"...), 0o644)
	out, errOut, code = runGreyd(t, "import-postgrey", "-config", edited, "-dump", f)
	if code != exitFailure || !strings.Contains(errOut, "keys triplets otherwise than this configuration") || !strings.Contains(errOut, "nothing was written") {
		t.Errorf("import keyed otherwise than the running greyd: exit %d\n%s%s", code, out, errOut)
	}
}

func TestImportPostgreyPrivacyAndOptions(t *testing.T) {
	dir := t.TempDir()
	ctlConfig(t, dir, "")
	f := filepath.Join(dir, "privacy.dump")
	os.WriteFile(f, []byte("VERSION=3\nformat=print\nHEADER=END\n 0123456789abcdef0123456789abcdef01234567\n 1,2\nDATA=END\n"), 0o644)
	out, errOut, code := runGreyd(t, "import-postgrey", "-config", filepath.Join(dir, "greyd.hcl"), "-dump", f)
	if code == 0 || !strings.Contains(errOut, "--privacy") || !strings.Contains(errOut, "Nothing was written") {
		t.Errorf("privacy dump: exit %d\n%s%s", code, out, errOut)
	}
	opts := filepath.Join(dir, "postgrey")
	os.WriteFile(opts, []byte("POSTGREY_OPTS=\"--inet=10023 --delay=120 --auto-whitelist-clients=0\"\nPOSTGREY_TEXT=\"Come back later\"\n"), 0o644)
	out, errOut, code = runGreyd(t, "import-postgrey", "-options-file", opts)
	if code != 0 || !strings.Contains(out, `delay = "120s"`) || !strings.Contains(out, "clients = 0") || !strings.Contains(out, "whitelist_clients.local") {
		t.Fatalf("options: exit %d\n%s%s", code, out, errOut)
	}
	// What it prints is a configuration greyd accepts.
	fdir := filepath.Join(dir, "etc")
	os.MkdirAll(fdir, 0o755)
	for _, n := range []string{"whitelist_clients", "whitelist_recipients"} {
		os.WriteFile(filepath.Join(fdir, n), nil, 0o644)
	}
	frag := filepath.Join(fdir, "greyd.hcl")
	os.WriteFile(frag, []byte(out), 0o644)
	if o, e, code := runGreyd(t, "check-config", "-config", frag); code != 0 {
		t.Errorf("check-config of the translated options: exit %d\n%s%s\n%s", code, o, e, out)
	}
}

// shippedConfig copies the shipped etc/greyd to dir, with fragment in
// conf.d as the README's switching recipe puts it there, and a last
// drop-in that moves the socket, database and control socket into dir.
func shippedConfig(t *testing.T, dir, fragment string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755)
	for _, f := range []string{"greyd.hcl", "whitelist_clients", "whitelist_recipients"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "etc", "greyd", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f), string(b))
	}
	writeFile(t, filepath.Join(dir, "conf.d", "postgrey.hcl"), fragment)
	// policy_test_time: the tests compare greyd with Postgrey at set times.
	writeFile(t, filepath.Join(dir, "conf.d", "zz-test.hcl"), fmt.Sprintf("listen_reset = true\nlisten {\n  unix = %q\n}\ndatabase {\n  path = %q\n}\ncontrol {\n  socket = %q\n}\ngreylist {\n  policy_test_time = true\n}\n",
		filepath.Join(dir, "greyd.sock"), filepath.Join(dir, "state", "greyd.db"), filepath.Join(dir, "control.sock")))
}

// TestImportPostgreyOptionsRepeated: Debian's /etc/default/postgrey with
// repeated options and POSTGREY_TEXT (a second --greylist-text) gives a
// fragment that check-config accepts next to the shipped greyd.hcl, and
// greyd then answers as the real Postgrey run with the same arguments.
func TestImportPostgreyOptionsRepeated(t *testing.T) {
	needPostgrey(t)
	dir := t.TempDir()
	r1, r2 := filepath.Join(dir, "rcpt1"), filepath.Join(dir, "rcpt2")
	writeFile(t, r1, "only-r1@example.org\n")
	writeFile(t, r2, "only-r2@example.org\n")
	opts := "--inet=10023 --delay=60 --greylist-text=First --greylist-action=451 --delay=120 --greylist-action=DEFER" +
		" --x-greylist-header=X-Old:_%t --x-greylist-header=X-Greylist:_waited_%t" +
		" --whitelist-recipients=" + r1 + " --whitelist-recipients=" + r2 + " --retry-window=1 --retry-window=6h"
	const text = "Second, see %r"
	optsFile := filepath.Join(dir, "default-postgrey")
	writeFile(t, optsFile, fmt.Sprintf("POSTGREY_OPTS=%q\nPOSTGREY_TEXT=%q\n", opts, text))

	frag, errOut, code := runGreyd(t, "import-postgrey", "-options-file", optsFile)
	if code != 0 {
		t.Fatalf("import-postgrey -options-file: exit %d\n%s%s", code, frag, errOut)
	}
	cfg := filepath.Join(dir, "greyd")
	shippedConfig(t, cfg, frag)
	if out, errOut, code := runGreyd(t, "check-config", "-config", cfg); code != 0 {
		t.Fatalf("check-config of the shipped configuration with the fragment: exit %d\n%s%s\nfragment:\n%s", code, out, errOut, frag)
	}

	// Postgrey as Debian's unit starts it: $POSTGREY_OPTS, then
	// --greylist-text="$POSTGREY_TEXT". Its socket is the test's: with
	// --inet it would listen on port 10023 instead.
	var args []string
	for _, a := range strings.Fields(opts) {
		if !strings.HasPrefix(a, "--inet=") {
			args = append(args, a)
		}
	}
	pg := startPostgrey(t, dir, filepath.Join(dir, "pgdb"), append(args, "--greylist-text="+text)...)
	pc := dial(t, "unix", pg.sock)
	d := startDaemonDir(t, cfg)
	gc := dial(t, "unix", d.sock)

	const t0 = 1700000000
	for _, tc := range []struct {
		req       []string
		wantStart string
	}{
		{rcpt2("198.51.100.7", "mx.foo.example", "a@foo.example", "bob@example.org", t0), "DEFER 4.2.0 Second, see example.org"},
		{rcpt2("198.51.100.7", "mx.foo.example", "a@foo.example", "bob@example.org", t0+119), "DEFER "},
		{rcpt2("198.51.100.7", "mx.foo.example", "a@foo.example", "bob@example.org", t0+120), "PREPEND X-Greylist:_waited_120"},
		{rcpt2("198.51.100.7", "mx.foo.example", "b@foo.example", "only-r1@example.org", t0), "DUNNO"},
		{rcpt2("198.51.100.7", "mx.foo.example", "b@foo.example", "only-r2@example.org", t0), "DUNNO"},
		// The retry window is 6h, not a day: this retry starts over.
		{rcpt2("203.0.113.9", "mx.bar.example", "c@bar.example", "bob@example.org", t0), "DEFER "},
		{rcpt2("203.0.113.9", "mx.bar.example", "c@bar.example", "bob@example.org", t0+6*3600+1), "DEFER "},
	} {
		want := pc.ask(tc.req...)
		if !strings.HasPrefix(want, tc.wantStart) {
			t.Fatalf("Postgrey: sent %q\ngot %q, want %q...", tc.req, want, tc.wantStart)
		}
		if got := gc.ask(tc.req...); got != want {
			t.Errorf("sent %q\ngreyd answered %q, Postgrey %q\nfragment:\n%s", tc.req, got, want, frag)
		}
	}
	pc.c.Close()
	stopPostgrey(t, pg)
}

// TestImportPostgreyRedis: on Redis only the running greyd writes the
// database, so the import goes through its control socket; with greyd
// stopped it says so. And the way back reads Redis through greyd too.
func TestImportPostgreyRedis(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	ctl := filepath.Join(dir, "control.sock")
	sock := redisConfig(t, dir, srv, fmt.Sprintf("control {\n  socket = %q\n}\n", ctl))
	cfg := filepath.Join(dir, "greyd.hcl")
	now := time.Now().Unix()
	// Postgrey 1.37 keys: a pending IPv4 triplet, a passed IPv6 one, an
	// auto-whitelisted client.
	dump := fmt.Sprintf("VERSION=3\nformat=print\ntype=btree\nHEADER=END\n"+
		" 198.51.100.0/alice@foo.example/bob@example.org\n %[1]d,%[1]d\n"+
		" 2001:db8:3:4:0:0:0:0/erin@v6.example/carol@example.org\n %[2]d,%[3]d\n"+
		"DATA=END\nVERSION=3\nformat=print\ntype=btree\nHEADER=END\n"+
		" 192.0.2.33\n 5,%[3]d\nDATA=END\n", now-100, now-4000, now-3000)
	f := filepath.Join(dir, "pg.dump")
	os.WriteFile(f, []byte(dump), 0o644)

	out, errOut, code := runGreyd(t, "import-postgrey", "-config", cfg, "-dump", f)
	if code != exitUnreachable || !strings.Contains(errOut, ctl) || !strings.Contains(errOut, "Redis") {
		t.Errorf("import on Redis with greyd stopped: exit %d, want %d naming %s\n%s%s", code, exitUnreachable, ctl, out, errOut)
	}
	out, errOut, code = runGreyd(t, "import-postgrey", "-config", cfg, "-dry-run", "-dump", f)
	if code != 0 || !strings.Contains(out, "imported 3 (dry run)") || !strings.Contains(out, "start greyd before the real import") {
		t.Errorf("dry run on Redis with greyd stopped: exit %d\n%s%s", code, out, errOut)
	}

	d := startDaemon(t, dir)
	d.waitLog("control socket " + ctl)
	out, errOut, code = runGreyd(t, "import-postgrey", "-config", cfg, "-dump", f)
	if code != 0 || !strings.Contains(out, "read 3 ") || !strings.Contains(out, "imported 3\n") || !strings.Contains(out, "merged 0\n") {
		t.Fatalf("import on Redis with greyd running: exit %d\n%s%s", code, out, errOut)
	}
	if keys := srv.Must("DBSIZE"); keys == "0" {
		t.Errorf("Redis holds no keys after the import")
	}
	c := dial(t, "unix", sock)
	for _, tc := range []struct {
		req       []string
		wantStart string
	}{
		{rcptReq("198.51.100.7", "alice@foo.example", "bob@example.org", now+200), "PREPEND X-Greylist: delayed 300 seconds"},
		{rcptReq("2001:db8:3:4::77", "erin@v6.example", "carol@example.org", now), "DUNNO"},
		{rcptReq("192.0.2.33", "a@b.example", "c@example.org", now), "DUNNO"},
	} {
		if got := c.ask(tc.req...); !strings.HasPrefix(got, tc.wantStart) {
			t.Errorf("sent %q\ngot %q, want %q...", tc.req, got, tc.wantStart)
		}
	}
	// The same entries again: greyd has them all, so all merge.
	out, errOut, code = runGreyd(t, "import-postgrey", "-config", cfg, "-dump", f)
	if code != 0 || !strings.Contains(out, "imported 0\n") || !strings.Contains(out, "merged 3\n") {
		t.Errorf("second import: exit %d\n%s%s", code, out, errOut)
	}

	// The way back: the postgrey.db dump has the triplets as greyd holds
	// them now (the pending one passed at now+200).
	clients := filepath.Join(dir, "clients.dump")
	out, errOut, code = runGreyd(t, "export", "-config", cfg, "-format", "postgrey-dump", "-clients", clients)
	if code != 0 {
		t.Fatalf("export -format postgrey-dump: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		fmt.Sprintf(" 198.51.100.0/alice@foo.example/bob@example.org\n %d,%d\n", now-100, now+200),
		fmt.Sprintf(" 2001:db8:3:4:0:0:0:0/erin@v6.example/carol@example.org\n %d,", now-4000),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("postgrey.db dump lacks %q:\n%s", want, out)
		}
	}
	if b, _ := os.ReadFile(clients); !strings.Contains(string(b), " 192.0.2.33\n ") {
		t.Errorf("postgrey_clients.db dump lacks 192.0.2.33:\n%s", b)
	}
}
