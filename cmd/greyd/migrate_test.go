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
	if _, _, err := findDBTools(); err != nil {
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

func TestImportPostgreyDatabase(t *testing.T) {
	needPostgrey(t)
	for _, mode := range []string{"subnet", "host"} {
		t.Run(mode, func(t *testing.T) { testImportPostgrey(t, mode) })
	}
}

func testImportPostgrey(t *testing.T, mode string) {
	dir := t.TempDir()
	pgdir := filepath.Join(dir, "postgrey")
	var pgOpts []string
	extra := ""
	if mode == "host" {
		pgOpts = []string{"--lookup-by-host"}
		extra = "greylist {\n  lookup_by = \"host\"\n}\n"
	}
	now := time.Now().Unix()
	pg := startPostgrey(t, dir, pgdir, pgOpts...)
	pc := dial(t, "unix", pg.sock)
	seedPostgrey(t, pc, now)
	pc.c.Close()
	stopPostgrey(t, pg)

	sock, _ := testConfig(t, dir, extra)
	cfg := filepath.Join(dir, "greyd.hcl")
	// -dry-run writes nothing.
	out, errOut, code := runGreyd(t, "import-postgrey", "-config", cfg, "-dry-run", "-dbdir", pgdir)
	if code != 0 || !strings.Contains(out, "read 19 (15 triplets, 4 auto-whitelist clients)") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "greyd.db")); err == nil {
		t.Errorf("dry run created the database")
	}
	// Postgrey's own files are left as they were.
	before, _ := os.ReadDir(pgdir)
	out, errOut, code = runGreyd(t, "import-postgrey", "-config", cfg, "-dbdir", pgdir)
	t.Logf("import (%s):\n%s%s", mode, out, errOut)
	wantSkipped := "skipped 1\n" // the ::ffff: client's shared /64
	if mode == "host" {
		wantSkipped = "skipped 0\n" // by host, Postgrey kept the mapped address
	}
	for _, want := range []string{"read 19 ", "imported 19\n", "merged 0\n", "expired 0\n", "unparseable 0\n"} {
		if mode == "subnet" && want == "imported 19\n" {
			want = "imported 18\n"
		}
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s%s", want, out, errOut)
		}
	}
	if code != 0 || !strings.Contains(out, wantSkipped) {
		t.Fatalf("import: exit %d, want 0 and %q\n%s%s", code, wantSkipped, out, errOut)
	}
	after, _ := os.ReadDir(pgdir)
	if len(before) != len(after) {
		t.Errorf("Postgrey's directory changed: %v -> %v", before, after)
	}

	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	other := func(subnet, host string) string {
		if mode == "subnet" {
			return subnet
		}
		return host
	}
	tests := []struct {
		name      string
		req       []string
		wantStart string
	}{
		// Pending: first-seen kept, so the retry passes with the full delay.
		{"pending IPv4", rcptReq(other("198.51.100.8", "198.51.100.7"), "alice+other@foo.example", "bob@example.org", now+250), "PREPEND X-Greylist: delayed 350 seconds"},
		{"pending IPv6", rcptReq(other("2001:db8:1:2::99", "2001:db8:1:2::5"), "dave@v6.example", "BOB@example.org", now+250), "PREPEND X-Greylist: delayed 450 seconds"},
		// Passed: at once, VERP numbers or not.
		{"passed IPv4", rcptReq(other("203.0.113.77", "203.0.113.5"), "bounce-456@lists.example", "carol@example.org", now), "DUNNO"},
		{"passed IPv6", rcptReq(other("2001:db8:3:4::77", "2001:db8:3:4::5"), "erin@v6.example", "carol@example.org", now), "DUNNO"},
		// Auto-whitelisted clients: a new triplet passes at once.
		{"AWL IPv4", rcptReq("192.0.2.10", "new@new.example", "someone@example.org", now), "DUNNO"},
		{"AWL IPv6", rcptReq("2001:db8:9::10", "new@new.example", "someone@example.org", now), "DUNNO"},
		// And what Postgrey never saw is greylisted.
		{"new", rcptReq("198.51.100.99", "new@new.example", "someone@example.org", now), greylisted},
	}
	for _, tc := range tests {
		if got := c.ask(tc.req...); !strings.HasPrefix(got, tc.wantStart) {
			t.Errorf("%s: sent %q\ngot %q, want %q...", tc.name, tc.req, got, tc.wantStart)
		}
	}

	// With greyd running the database is locked: the import says so.
	out, errOut, code = runGreyd(t, "import-postgrey", "-config", cfg, "-dbdir", pgdir)
	if code == 0 || !strings.Contains(errOut, "stop greyd first") {
		t.Errorf("import while greyd runs: exit %d\n%s%s", code, out, errOut)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}

	// The way back: export, db_load, and Postgrey answers as greyd did.
	optsFile := filepath.Join(dir, "default-postgrey")
	os.WriteFile(optsFile, []byte(fmt.Sprintf("POSTGREY_OPTS=\"--inet=10023 %s\"\n", strings.Join(pgOpts, " "))), 0o644)
	trip, clients := filepath.Join(dir, "postgrey.dump"), filepath.Join(dir, "clients.dump")
	out, errOut, code = runGreyd(t, "export-postgrey", "-config", cfg, "-options-file", optsFile, "-clients", clients, trip)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
	}
	back := filepath.Join(dir, "back")
	os.MkdirAll(back, 0o700)
	load := dbLoadTool(t)
	for f, db := range map[string]string{trip: "postgrey.db", clients: "postgrey_clients.db"} {
		if b, err := exec.Command(load, "-f", f, filepath.Join(back, db)).CombinedOutput(); err != nil {
			t.Fatalf("db_load -f %s: %v\n%s", f, err, b)
		}
	}
	os.Remove(filepath.Join(dir, "postgrey.sock"))
	pg = startPostgrey(t, dir, back, pgOpts...)
	pc = dial(t, "unix", pg.sock)
	rollback := []struct {
		name      string
		req       []string
		wantStart string
	}{
		// greyd passed these: Postgrey passes them too, without a header.
		{"passed IPv4", rcptReq(other("198.51.100.8", "198.51.100.7"), "alice@foo.example", "bob@example.org", now+600), "DUNNO"},
		{"passed IPv6", rcptReq(other("2001:db8:3:4::77", "2001:db8:3:4::5"), "erin@v6.example", "carol@example.org", now+600), "DUNNO"},
		{"AWL IPv4", rcptReq("192.0.2.10", "other@new.example", "x@example.org", now+600), "DUNNO"},
		{"AWL IPv6", rcptReq("2001:db8:9::10", "other@new.example", "x@example.org", now+600), "DUNNO"},
		// greyd's pending entry keeps its first-seen time.
		{"pending", rcptReq("198.51.100.99", "new@new.example", "someone@example.org", now+400), "PREPEND X-Greylist: delayed 400 seconds"},
		{"new", rcptReq("198.51.100.99", "never@seen.example", "someone@example.org", now+600), "DEFER_IF_PERMIT"},
	}
	for _, tc := range rollback {
		if got := pc.ask(tc.req...); !strings.HasPrefix(got, tc.wantStart) {
			t.Errorf("Postgrey after the rollback, %s: sent %q\ngot %q, want %q...", tc.name, tc.req, got, tc.wantStart)
		}
	}
	pc.c.Close()
	stopPostgrey(t, pg)
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
	sock, _ := testConfig(t, dir, "")
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
	out, errOut, code := runGreyd(t, "import-postgrey", "-config", filepath.Join(dir, "greyd.hcl"), "-dump", f)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
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
}

func TestImportPostgreyPrivacyAndOptions(t *testing.T) {
	dir := t.TempDir()
	testConfig(t, dir, "")
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
