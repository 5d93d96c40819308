package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"greyd/internal/control"
)

// The admin subcommands against the real daemon over its real control
// socket.

// adminDaemon starts greyd with a control socket in dir and extra
// settings; it returns the daemon and the control socket's path.
func adminDaemon(t *testing.T, dir, extra string) (*proc, string) {
	t.Helper()
	ctl := filepath.Join(dir, "control.sock")
	testConfig(t, dir, fmt.Sprintf("control {\n  socket = %q\n}\n%s", ctl, extra))
	d := startDaemon(t, dir)
	d.waitLog("control socket " + ctl)
	return d, ctl
}

// cli runs "greyd args..." and returns its output and exit status.
func cli(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("greyd %q: %v", args, err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// cliOK runs greyd and fails unless it exits with want.
func cliOK(t *testing.T, want int, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, nil, args...)
	if code != want {
		t.Fatalf("greyd %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, out, errOut)
	}
	return out
}

// explainJSON runs greyd explain -json.
func explainJSON(t *testing.T, cfg string, want int, addr, name, sender, rcpt string) control.Explanation {
	t.Helper()
	out := cliOK(t, want, "explain", "-config", cfg, "-json", addr, name, sender, rcpt)
	var x control.Explanation
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("explain -json: %v\n%s", err, out)
	}
	return x
}

// listJSON runs greyd list -json with filter flags.
func listJSON(t *testing.T, cfg string, flags ...string) []control.Record {
	t.Helper()
	out := cliOK(t, 0, append([]string{"list", "-config", cfg, "-json"}, flags...)...)
	var recs []control.Record
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var r control.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("list -json line %q: %v", l, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// listAPI lists entries through the control socket with the client the
// CLI uses (quicker than a process per listing in the filter tables).
func listAPI(t *testing.T, ctl string, flags ...string) []control.Record {
	t.Helper()
	q := url.Values{}
	for i := 0; i+1 < len(flags); i += 2 {
		q.Set(strings.TrimPrefix(flags[i], "-"), flags[i+1])
	}
	var recs []control.Record
	if _, err := control.NewClient(ctl).Entries(context.Background(), q, func(r control.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatalf("list %q: %v", flags, err)
	}
	return recs
}

// live is a RCPT request at the daemon's own clock (no policy_test_time).
func live(addr, name, sender, recipient, instance string) []string {
	return []string{
		"request=smtpd_access_policy", "protocol_state=RCPT", "protocol_name=ESMTP",
		"sender=" + sender, "recipient=" + recipient, "client_address=" + addr, "client_name=" + name,
		"instance=" + instance, "etrn_domain=",
	}
}

// TestAdminExplain: explain before and after the delay consumes nothing:
// the real retry still gets its X-Greylist header, and a triplet that was
// only explained leaves no entry.
func TestAdminExplain(t *testing.T) {
	dir := t.TempDir()
	// Real time, not policy_test_time (explain uses the daemon's clock):
	// a delay with room for a loaded machine between the steps.
	_, _ = adminDaemon(t, dir, "greylist {\n  delay = \"5s\"\n}\n")
	cfg := filepath.Join(dir, "greyd.hcl")
	c := dial(t, "unix", filepath.Join(dir, "greyd.sock"))
	const addr, name, sender, rcpt = "198.51.100.60", "mx.foo.example", "alice@foo.example", "bob@example.org"
	start := time.Now()
	if got := c.ask(live(addr, name, sender, rcpt, "i1")...); got != greylisted {
		t.Fatalf("first attempt: %q", got)
	}
	time.Sleep(1100 * time.Millisecond)
	x := explainJSON(t, cfg, 1, addr, name, sender, rcpt)
	if x.Reason != "early-retry" || x.Action != greylisted || !x.Greylisted || x.Triplet == nil || !x.Triplet.Found ||
		x.Triplet.Network != "198.51.100.0" || x.Triplet.Sender != sender || x.Triplet.Passed {
		t.Errorf("explain within the delay: %+v, triplet %+v", x, x.Triplet)
	}
	text := cliOK(t, 1, "explain", "-config", cfg, addr, name, sender, rcpt)
	for _, want := range []string{
		"client whitelist     no match (", "runtime whitelist    no match (0 entries)",
		"triplet              198.51.100.0 / alice@foo.example / bob@example.org",
		"stored               first seen ", "(pending)", "decision             greylist, reason=early-retry (",
		"reply                " + greylisted,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explain output lacks %q:\n%s", want, text)
		}
	}
	time.Sleep(time.Until(start.Add(5100 * time.Millisecond)))
	for i := 0; i < 2; i++ {
		x = explainJSON(t, cfg, 0, addr, name, sender, rcpt)
		if x.Reason != "triplet found" || !strings.HasPrefix(x.Action, "PREPEND X-Greylist: delayed ") || x.Greylisted {
			t.Errorf("explain %d after the delay: reason %q action %q", i, x.Reason, x.Action)
		}
	}
	if got := c.ask(live(addr, name, sender, rcpt, "i2")...); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed ") {
		t.Errorf("real retry after explain: %q, want the X-Greylist header (explain must consume nothing)", got)
	}
	if got := c.ask(live(addr, name, sender, rcpt, "i3")...); got != "DUNNO" {
		t.Errorf("after the first pass: %q", got)
	}

	// Explained only: no entry, no auto-whitelist entry.
	x = explainJSON(t, cfg, 1, "203.0.113.9", "unknown", "<>", "carol@example.org")
	if x.Reason != "new" || x.Triplet.Sender != "" || x.Triplet.Found {
		t.Errorf("explain of a new triplet: %+v", x)
	}
	export := cliOK(t, 0, "export", "-config", cfg)
	if strings.Contains(export, "203.0.113") || strings.Contains(export, "carol@") {
		t.Errorf("an explained-only triplet was stored:\n%s", export)
	}
	if strings.Count(export, `"kind":"triplet"`) != 1 || !strings.Contains(export, `"kind":"client","key":"198.51.100.60","count":1`) {
		t.Errorf("export: want the one triplet and its client:\n%s", export)
	}

	// Whitelisted: the entry and where it is written.
	x = explainJSON(t, cfg, 0, "2001:db8::25", "mail-am6eur05.outbound.protection.outlook.com", sender, rcpt)
	repo, _ := filepath.Abs("../../etc/greyd/whitelist_clients")
	if x.Reason != "client whitelist" || !x.ClientWhitelist.Matched || x.ClientWhitelist.Entry != "outlook.com" ||
		x.ClientWhitelist.File != repo || x.ClientWhitelist.Line == 0 || x.RecipientWhitelist.Reached {
		t.Errorf("explain of a whitelisted client: %+v", x.ClientWhitelist)
	}
	// lookup_by "auto" (the default): a mail server of an organisation is
	// keyed by its domain; explain shows that key, the rule, and the
	// subnet key read alongside.
	c.ask(live("203.0.113.5", "smtp-out3.mailprovider.de", sender, rcpt, "o1")...)
	x = explainJSON(t, cfg, 1, "198.18.7.9", "smtp-out7.mailprovider.de", sender, rcpt)
	if x.Triplet.Network != "mailprovider.de" || !x.Triplet.Found || x.Triplet.Identity == "" || x.Triplet.Subnet == nil || x.Triplet.Subnet.Network != "198.18.7.0" {
		t.Errorf("explain of an organisation's server: %+v (subnet %+v)", x.Triplet, x.Triplet.Subnet)
	}
	x = explainJSON(t, cfg, 0, "not-an-ip", "x", sender, rcpt)
	if x.Reason != "malformed" || x.Action != "DUNNO" || !strings.Contains(x.Warning, "not an IP address") {
		t.Errorf("explain of a malformed request: %+v", x)
	}
	if _, e, code := cli(t, nil, "explain", "-config", cfg, addr, name); code != 2 || !strings.Contains(e, "want 4 arguments") {
		t.Errorf("explain with 2 arguments: exit %d, %s", code, e)
	}
}

// TestAdminListDelete: list and delete by client network, sender and
// recipient; with and without privacy.
func TestAdminListDelete(t *testing.T) {
	for _, privacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("privacy=%v", privacy), func(t *testing.T) {
			dir := t.TempDir()
			_, ctl := adminDaemon(t, dir, fmt.Sprintf("greylist {\n  privacy = %v\n}\n", privacy))
			cfg := filepath.Join(dir, "greyd.hcl")
			c := dial(t, "unix", filepath.Join(dir, "greyd.sock"))
			now := time.Now().Unix()
			// Two networks, three senders; the first client passes
			// once, so it has an auto-whitelist entry too.
			for _, r := range [][]string{
				rcpt("198.51.100.7", "x", "a@one.example", "r@example.org", now-400),
				rcpt("198.51.100.7", "x", "a@one.example", "r@example.org", now-50),
				rcpt("198.51.100.8", "x", "b@one.example", "r@example.org", now),
				rcpt("192.0.2.1", "x", "a@one.example", "s@example.org", now),
				rcpt("192.0.2.2", "x", "c@two.example", "r@example.org", now),
			} {
				c.ask(r...)
			}
			all := listJSON(t, cfg)
			if len(all) != 5 {
				t.Fatalf("list: %d entries, want 4 triplets and 1 client: %+v", len(all), all)
			}
			tests := []struct {
				flags          []string
				trips, clients int
			}{
				{[]string{"-client", "198.51.100.0/24"}, 2, 1},
				{[]string{"-client", "198.51.100.8"}, 2, 0}, // its network's triplets, not another client's entry
				{[]string{"-client", "198.51.100.7"}, 2, 1},
				{[]string{"-client", "192.0.2.0/23"}, 2, 0},
				{[]string{"-sender", "A@one.example"}, 2, 0},
				{[]string{"-recipient", "s@example.org"}, 1, 0},
				{[]string{"-client", "192.0.2.0/24", "-sender", "a@one.example"}, 1, 0},
				{[]string{"-state", "passed"}, 1, 0},
				{[]string{"-state", "pending", "-kind", "client"}, 0, 1},
				{[]string{"-kind", "client"}, 0, 1},
			}
			for i, tc := range tests {
				recs := listAPI(t, ctl, tc.flags...)
				var trips, clients int
				for _, r := range recs {
					if r.Kind == "triplet" {
						trips++
					} else {
						clients++
					}
					if privacy && (strings.Contains(r.Key, "198.51") || strings.Contains(r.Key, "@")) {
						t.Errorf("%d: privacy, but the listing shows an address: %+v", i, r)
					}
				}
				if trips != tc.trips || clients != tc.clients {
					t.Errorf("%d: list %q: %d triplets, %d clients; want %d, %d\n%+v", i, tc.flags, trips, clients, tc.trips, tc.clients, recs)
				}
			}
			table := cliOK(t, 0, "list", "-config", cfg, "-client", "192.0.2.2")
			if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "KIND") {
				t.Errorf("table: want a header and 2 rows:\n%s", table)
			} else if !privacy && !strings.Contains(table, " 192.0.2.0 c@two.example r@example.org") {
				t.Errorf("table row lacks client, sender, recipient:\n%s", table)
			}

			out := cliOK(t, 0, "delete", "-config", cfg, "-dry-run", "-client", "198.51.100.0/24")
			if out != "would delete 2 triplet(s) and 1 auto-whitelist entr(ies)\n" {
				t.Errorf("delete -dry-run: %q", out)
			}
			if n := len(listAPI(t, ctl)); n != 5 {
				t.Errorf("after a dry run: %d entries", n)
			}
			out = cliOK(t, 0, "delete", "-config", cfg, "-client", "198.51.100.0/24")
			if out != "deleted 2 triplet(s) and 1 auto-whitelist entr(ies)\n" {
				t.Errorf("delete: %q", out)
			}
			if n := len(listAPI(t, ctl)); n != 2 {
				t.Errorf("after delete: %d entries, want the 2 of 192.0.2.0/24", n)
			}
			// Forgotten: the passed triplet is greylisted as new again.
			if got := c.ask(rcpt("198.51.100.7", "x", "a@one.example", "r@example.org", now)...); got != greylisted {
				t.Errorf("after delete: %q, want greylisted", got)
			}
			if _, e, code := cli(t, nil, "delete", "-config", cfg); code != 2 || !strings.Contains(e, "at least one of") {
				t.Errorf("delete without a filter: exit %d, %s", code, e)
			}
			if _, e, code := cli(t, nil, "list", "-config", cfg, "-client", "nonsense"); code != 2 || !strings.Contains(e, "not an IP address, a network") {
				t.Errorf("list -client nonsense: exit %d, %s", code, e)
			}
		})
	}
}

// TestAdminWhitelist: a runtime entry works for the next request, and its
// removal too; it survives a restart.
func TestAdminWhitelist(t *testing.T) {
	dir := t.TempDir()
	d, _ := adminDaemon(t, dir, "")
	cfg := filepath.Join(dir, "greyd.hcl")
	sock := filepath.Join(dir, "greyd.sock")
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	req := rcpt("198.51.100.70", "mx1.partner.example", "a@partner.example", "c@example.org", now)
	if got := c.ask(req...); got != greylisted {
		t.Fatalf("before: %q", got)
	}
	out := cliOK(t, 0, "whitelist", "add", "-config", cfg, "-comment", "ticket 42", "client", "Partner.example")
	if !strings.HasPrefix(out, "added client partner.example, expires never") {
		t.Errorf("whitelist add: %q", out)
	}
	if got := c.ask(req...); got != "DUNNO" {
		t.Errorf("right after whitelist add: %q, want DUNNO", got)
	}
	d.waitLog("action=pass, reason=client whitelist, client_name=mx1.partner.example")
	cliOK(t, 0, "whitelist", "add", "-config", cfg, "-ttl", "7d", "recipient", "sales@example.org")
	if got := c.ask(rcpt("198.51.100.71", "x", "a@b.example", "Sales+x@example.org", now)...); got != "DUNNO" {
		t.Errorf("runtime recipient entry: %q", got)
	}
	list := cliOK(t, 0, "whitelist", "list", "-config", cfg)
	for _, want := range []string{"client    partner.example", "runtime, added ", "# ticket 42", "recipient sales@example.org", "whitelist_clients:"} {
		if !strings.Contains(list, want) {
			t.Errorf("whitelist list lacks %q:\n%s", want, list)
		}
	}
	x := explainJSON(t, cfg, 0, "198.51.100.70", "mx1.partner.example", "a@partner.example", "c@example.org")
	if !x.RuntimeWhitelist.Matched || x.RuntimeWhitelist.Entry != "client partner.example" || x.RuntimeWhitelist.Comment != "ticket 42" {
		t.Errorf("explain: %+v", x.RuntimeWhitelist)
	}
	if _, e, code := cli(t, nil, "whitelist", "add", "-config", cfg, "client", "a b"); code != 2 || !strings.Contains(e, "hostname") {
		t.Errorf("bad entry: exit %d, %s", code, e)
	}

	// Survives a restart.
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, dir)
	c = dial(t, "unix", sock)
	if got := c.ask(req...); got != "DUNNO" {
		t.Errorf("after a restart: %q, want DUNNO", got)
	}
	cliOK(t, 0, "whitelist", "remove", "-config", cfg, "client", "partner.example")
	if got := c.ask(req...); got != greylisted {
		t.Errorf("right after whitelist remove: %q, want greylisted", got)
	}
	if _, e, code := cli(t, nil, "whitelist", "remove", "-config", cfg, "client", "partner.example"); code != 1 || !strings.Contains(e, "no runtime client whitelist entry") {
		t.Errorf("removing again: exit %d, %s", code, e)
	}
}

// TestAdminRefused: a user that is neither root nor in group greyd gets
// nothing: the kernel refuses the connection on the 0660 socket, and if
// the socket's mode is loosened, the peer check refuses it and logs it.
func TestAdminRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the CLI as another user")
	}
	base, err := os.MkdirTemp("", "greyd-refused-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	os.Chmod(filepath.Dir(binary), 0o755) // nobody must be able to run it
	d, ctl := adminDaemon(t, base, "")
	cfg := filepath.Join(base, "greyd.hcl")
	if fi, err := os.Stat(ctl); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("control socket mode: %v, %v; want 0660", fi.Mode(), err)
	}
	asNobody := func() (string, int) {
		cmd := exec.Command(binary, "stats", "-config", cfg)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := asNobody()
	if code != 3 || !strings.Contains(out, "cannot reach greyd at "+ctl+": permission denied") || !strings.Contains(out, "group greyd") {
		t.Errorf("nobody on a 0660 socket: exit %d, %s", code, out)
	}
	os.Chmod(ctl, 0o666)
	out, code = asNobody()
	if code != 3 || !strings.Contains(out, "permission denied: uid 65534") || !strings.Contains(out, "not in group greyd") {
		t.Errorf("nobody on a 0666 socket: exit %d, %s", code, out)
	}
	d.waitLog("warning: control socket: refused uid 65534 (gid 65534, pid ")
	// Root still gets in.
	cliOK(t, 0, "stats", "-config", cfg)
}

// TestAdminExportImport: greyd export | greyd import into another greyd
// (buntdb to buntdb) loses nothing.
func TestAdminExportImport(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	_, _ = adminDaemon(t, dirA, "")
	_, _ = adminDaemon(t, dirB, "")
	cfgA, cfgB := filepath.Join(dirA, "greyd.hcl"), filepath.Join(dirB, "greyd.hcl")
	c := dial(t, "unix", filepath.Join(dirA, "greyd.sock"))
	now := time.Now().Unix()
	for i := 0; i < 50; i++ {
		addr := fmt.Sprintf("198.51.%d.%d", 100+i%3, i)
		c.ask(rcpt(addr, "x", fmt.Sprintf("s%d@a.example", i), "r@example.org", now-1000)...)
		if i%2 == 0 {
			c.ask(rcpt(addr, "x", fmt.Sprintf("s%d@a.example", i), "r@example.org", now-600)...)
		}
	}
	cliOK(t, 0, "whitelist", "add", "-config", cfgA, "-comment", "moved", "-ttl", "1d", "client", "192.0.2.0/24")
	export := cliOK(t, 0, "export", "-config", cfgA)
	out, e, code := cli(t, strings.NewReader(export), "import", "-config", cfgB)
	if code != 0 || out != "read 76, imported 75, merged 0, expired 0, runtime whitelist 1, skipped 0\n" {
		t.Fatalf("import: exit %d: %q %s", code, out, e)
	}
	exportB := cliOK(t, 0, "export", "-config", cfgB)
	a, b := normalizeExport(t, export), normalizeExport(t, exportB)
	if !slices.Equal(a, b) {
		t.Errorf("export of the import differs:\nA: %q\nB: %q", a, b)
	}
	// And it works: a passed triplet passes on B at once.
	if got := dial(t, "unix", filepath.Join(dirB, "greyd.sock")).ask(rcpt("198.51.100.0", "x", "s0@a.example", "r@example.org", now)...); got != "DUNNO" {
		t.Errorf("passed triplet on the importing greyd: %q", got)
	}
	// Importing again merges everything.
	out, _, _ = cli(t, strings.NewReader(export), "import", "-config", cfgB)
	if !strings.Contains(out, "imported 0, merged 75") {
		t.Errorf("second import: %q", out)
	}
	// An export made under privacy does not go into a greyd without.
	hdr := `{"kind":"header","format":"greyd-export/1","privacy":true,"privacy_key":"0123456789abcdef"}` + "\n"
	if _, e, code := cli(t, strings.NewReader(hdr), "import", "-config", cfgB); code == 0 || !strings.Contains(e, "privacy") {
		t.Errorf("privacy mismatch: exit %d, %s", code, e)
	}
}

// normalizeExport sorts an export's lines, without the header, with
// deadlines rounded down to 10 s (a reload rounds them to the second).
func normalizeExport(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		var r control.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("export line %q: %v", l, err)
		}
		if r.Kind == "header" {
			continue
		}
		r.Expires -= r.Expires % 10
		b, _ := json.Marshal(r)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// TestAdminStatsUnreachable: stats answers; a missing daemon is exit 3
// with the socket's name, a configuration without a socket exit 2.
func TestAdminStatsUnreachable(t *testing.T) {
	dir := t.TempDir()
	d, ctl := adminDaemon(t, dir, "")
	cfg := filepath.Join(dir, "greyd.hcl")
	dial(t, "unix", filepath.Join(dir, "greyd.sock")).ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", time.Now().Unix())...)
	var s control.Stats
	if err := json.Unmarshal([]byte(cliOK(t, 0, "stats", "-config", cfg, "-json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Requests != 1 || s.Entries.Triplets != 1 || s.Entries.TripletsPending != 1 || !s.Store.Healthy || s.Version != "test" {
		t.Errorf("stats: %+v", s)
	}
	if text := cliOK(t, 0, "stats", "-config", cfg); !strings.Contains(text, "1 triplets (1 pending, 0 passed)") || !strings.Contains(text, "greylist         new                  1") {
		t.Errorf("stats text:\n%s", text)
	}
	d.stop()
	if _, e, code := cli(t, nil, "stats", "-config", cfg); code != 3 || !strings.Contains(e, "cannot reach greyd at "+ctl) {
		t.Errorf("daemon stopped: exit %d, %s", code, e)
	}
	os.WriteFile(filepath.Join(dir, "off.hcl"), []byte("control {\n  socket = \"\"\n}\n"), 0o644)
	if _, e, code := cli(t, nil, "stats", "-config", filepath.Join(dir, "off.hcl")); code != 2 || !strings.Contains(e, "control socket is off") {
		t.Errorf("no control socket: exit %d, %s", code, e)
	}
}

// TestAdminStaleSocket: a control socket left by a killed greyd is
// replaced at the next start.
func TestAdminStaleSocket(t *testing.T) {
	dir := t.TempDir()
	d, _ := adminDaemon(t, dir, "")
	d.cmd.Process.Kill()
	<-d.done
	d.done <- nil
	d2 := startDaemon(t, dir)
	d2.waitLog("control socket ")
	cliOK(t, 0, "stats", "-config", filepath.Join(dir, "greyd.hcl"))
}

// TestExplainUnderLoad: 64 connections of mixed traffic while explain and
// list run in a loop; every policy request is answered correctly.
func TestExplainUnderLoad(t *testing.T) {
	dir := t.TempDir()
	_, _ = adminDaemon(t, dir, "")
	cfg := filepath.Join(dir, "greyd.hcl")
	sock := filepath.Join(dir, "greyd.sock")
	var stop atomic.Bool
	var answered, failures atomic.Int64
	var wg sync.WaitGroup
	now := time.Now().Unix()
	for w := 0; w < 64; w++ {
		wg.Go(func() {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				failures.Add(1)
				t.Error(err)
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; !stop.Load(); i++ {
				var req []string
				want := greylisted
				switch k := rng.IntN(10); {
				case k < 3: // new
					req = rcpt(fmt.Sprintf("198.18.%d.%d", w, i%250), "x", fmt.Sprintf("n%d-%d@a.example", w, i), "r@example.org", now)
				case k < 8: // repeat
					req = rcpt(fmt.Sprintf("198.19.%d.1", w), "x", fmt.Sprintf("p%d@a.example", i%20), "r@example.org", now)
				default: // whitelisted recipient
					req, want = rcpt("198.18.0.1", "x", "a@a.example", "postmaster@example.org", now), "DUNNO"
				}
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(conn, strings.Join(req, "\n")+"\n\n")
				line, err := br.ReadString('\n')
				if err == nil {
					_, err = br.ReadString('\n')
				}
				if err != nil || strings.TrimSpace(line) != "action="+want {
					failures.Add(1)
					t.Errorf("connection %d request %d: %q, %v; want %q", w, i, line, err, want)
					return
				}
				answered.Add(1)
			}
		})
	}
	deadline := time.Now().Add(3 * time.Second)
	var explains, lists int
	var lat []time.Duration
	for time.Now().Before(deadline) {
		s := time.Now()
		explainJSON(t, cfg, 1, "198.19.1.1", "x", "p1@a.example", "r@example.org")
		lat = append(lat, time.Since(s))
		explains++
		listJSON(t, cfg, "-client", "198.19.0.0/16")
		lists++
	}
	stop.Store(true)
	wg.Wait()
	slices.Sort(lat)
	t.Logf("%d policy requests answered, %d failed; %d explains (median %v including the CLI's start), %d lists",
		answered.Load(), failures.Load(), explains, lat[len(lat)/2], lists)
	if failures.Load() > 0 || answered.Load() == 0 {
		t.Errorf("%d failed policy requests", failures.Load())
	}
}

// TestAdminUnavailable: a control socket that cannot be created and a
// metrics port that is taken cost their feature, never the service.
func TestAdminUnavailable(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ctl := filepath.Join(dir, "missing", "deeper", "control.sock")
	sock, _ := testConfig(t, dir, fmt.Sprintf("control {\n  socket = %q\n}\nmetrics {\n  listen = %q\n}\n", ctl, busy.Addr()))
	d := startDaemon(t, dir)
	if got := dial(t, "unix", sock).ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", time.Now().Unix())...); got != greylisted {
		t.Errorf("without control socket and metrics: %q", got)
	}
	d.waitLog("error: control socket " + ctl + ": directory " + filepath.Dir(ctl) + ": no such file or directory")
	d.waitLog("serving without the control socket")
	d.waitLog("error: metrics listener " + busy.Addr().String() + ": ")
	if _, e, code := cli(t, nil, "stats", "-config", filepath.Join(dir, "greyd.hcl")); code != 3 || !strings.Contains(e, ctl) {
		t.Errorf("stats: exit %d, %s", code, e)
	}
}
