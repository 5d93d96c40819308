package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"greyd/internal/control"
)

// Greytraps through the binary: a client that writes to a trap address is
// held for the trap's duration, whatever it retries, and answered exactly
// as any greylisted client.

const trapBlock = `trap {
  recipients = ["trap_recipients"]
  duration   = "24h"
}
auto_whitelist {
  clients = 1
}
`

// trapDaemon starts greyd with the trap file of dir (spamtrap@example.org)
// and a client whitelist holding 192.0.2.200.
func trapDaemon(t *testing.T) (d *proc, c *client, cfg, ctl string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "trap_recipients"), "# addresses only spammers know\nspamtrap@example.org\n")
	writeFile(t, filepath.Join(dir, "whitelist_clients.local"), "192.0.2.200\n")
	d, ctl = adminDaemon(t, dir, trapBlock)
	return d, dial(t, "unix", d.sock), filepath.Join(dir, "greyd.hcl"), ctl
}

func TestTrapHoldsAndForgets(t *testing.T) {
	d, c, cfg, _ := trapDaemon(t)
	now := time.Now().Unix()
	const a = "198.51.100.70"
	ask := func(sender, rcptTo string, at int64) string {
		return c.ask(rcpt(a, "unknown", sender, rcptTo, at)...)
	}
	if got := ask("s1@foo.example", "bob@example.org", now); got != greylisted {
		t.Fatalf("first attempt: %q, want %q", got, greylisted)
	}
	// The trap: answered as any greylisted request.
	if got := ask("s2@spam.example", "spamtrap@example.org", now+10); got != greylisted {
		t.Errorf("to the trap: %q, want exactly the greylist reply %q", got, greylisted)
	}
	d.waitLog("action=greylist, reason=greytrap, client_name=unknown, client_address=" + a + ", sender=s2@spam.example, recipient=spamtrap@example.org")
	// Held past the delay, for any recipient.
	if got := ask("s1@foo.example", "bob@example.org", now+400); got != greylisted {
		t.Errorf("retry after the delay while trapped: %q, want %q", got, greylisted)
	}
	d.waitLog("action=greylist, reason=trapped, client_name=unknown, client_address=" + a + ", sender=s1@foo.example, recipient=bob@example.org")
	if got := ask("s1@foo.example", "bob@example.org", now+10+86399); got != greylisted {
		t.Errorf("a second before the trap ends: %q, want %q", got, greylisted)
	}

	// list and explain show it.
	recs := listJSON(t, cfg, "-kind", "trap")
	if len(recs) != 1 || recs[0].Client != a || recs[0].State != "trapped" || recs[0].First != now+10 || recs[0].Until != now+10+86400 {
		t.Errorf("list -kind trap = %+v; want %s trapped from %d until %d", recs, a, now+10, now+10+86400)
	}
	out := cliOK(t, 1, "explain", "-config", cfg, a, "unknown", "s1@foo.example", "bob@example.org")
	if want := "trapped until " + timeText(now+10+86400); !strings.Contains(out, want) {
		t.Errorf("explain lacks %q:\n%s", want, out)
	}
	if !strings.Contains(out, "reason=trapped") {
		t.Errorf("explain lacks reason=trapped:\n%s", out)
	}

	// Expiry: the trap is over, and the triplet the client left pending
	// before it was trapped reads as new (without the trap it would
	// pass now: first seen within the retry window, long past the
	// delay).
	if got := ask("s1@foo.example", "bob@example.org", now+10+86400); got != greylisted {
		t.Errorf("when the trap ends: %q, want %q (the pending triplet forgotten)", got, greylisted)
	}
	d.waitLog("action=greylist, reason=new, client_name=unknown, client_address=" + a + ", sender=s1@foo.example, recipient=bob@example.org")
	if got := ask("s1@foo.example", "bob@example.org", now+10+86400+300); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 300 seconds") {
		t.Errorf("retry after the trap and the delay: %q, want the X-Greylist header", got)
	}
}

func TestTrapExemptClients(t *testing.T) {
	d, c, cfg, _ := trapDaemon(t)
	now := time.Now().Unix()
	// A whitelisted client (a real server forwarding a typo).
	if got := c.ask(rcpt("192.0.2.200", "unknown", "x@fwd.example", "spamtrap@example.org", now)...); got != "DUNNO" {
		t.Errorf("whitelisted client to the trap: %q, want DUNNO", got)
	}
	d.waitLog("action=pass, reason=client whitelist, client_name=unknown, client_address=192.0.2.200")
	// A runtime whitelisted one.
	cliOK(t, 0, "whitelist", "add", "-config", cfg, "client", "198.51.100.90")
	if got := c.ask(rcpt("198.51.100.90", "unknown", "x@fwd.example", "spamtrap@example.org", now)...); got != "DUNNO" {
		t.Errorf("runtime whitelisted client to the trap: %q, want DUNNO", got)
	}
	// An auto-whitelisted one (auto_whitelist { clients = 1 }).
	const b = "198.51.100.75"
	c.ask(rcpt(b, "unknown", "b@good.example", "bob@example.org", now)...)
	if got := c.ask(rcpt(b, "unknown", "b@good.example", "bob@example.org", now+300)...); !strings.HasPrefix(got, "PREPEND ") {
		t.Fatalf("auto-whitelisting %s: %q", b, got)
	}
	if got := c.ask(rcpt(b, "unknown", "typo@good.example", "spamtrap@example.org", now+400)...); got != "DUNNO" {
		t.Errorf("auto-whitelisted client to the trap: %q, want DUNNO", got)
	}
	if got := c.ask(rcpt(b, "unknown", "b@good.example", "carol@example.org", now+401)...); got != "DUNNO" {
		t.Errorf("auto-whitelisted client after writing to the trap: %q, want DUNNO", got)
	}
	if got := listJSON(t, cfg, "-kind", "trap"); len(got) != 0 {
		t.Errorf("traps after whitelisted clients wrote to the trap: %+v; want none", got)
	}
}

func TestTrapDelete(t *testing.T) {
	d, c, cfg, _ := trapDaemon(t)
	now := time.Now().Unix()
	const a = "198.51.100.71"
	c.ask(rcpt(a, "unknown", "x@spam.example", "spamtrap@example.org", now)...)
	c.ask(rcpt(a, "unknown", "y@foo.example", "bob@example.org", now+1)...)
	d.waitLog("reason=trapped, client_name=unknown, client_address=" + a)
	if out := cliOK(t, 0, "delete", "-config", cfg, "-dry-run", "-trap", a); out != "would delete 1 trap(s)\n" {
		t.Errorf("delete -dry-run -trap: %q", out)
	}
	if out := cliOK(t, 0, "delete", "-config", cfg, "-trap", a); out != "deleted 1 trap(s)\n" {
		t.Errorf("delete -trap: %q", out)
	}
	d.waitLog("deleted 0 triplet(s), 0 auto-whitelist entr(ies) and 1 trap(s) matching client=\"" + a + "\" kind=\"trap\"")
	if got := c.ask(rcpt(a, "unknown", "y@foo.example", "bob@example.org", now+2)...); got != greylisted {
		t.Errorf("after delete -trap: %q, want %q", got, greylisted)
	}
	d.waitLog("action=greylist, reason=new, client_name=unknown, client_address=" + a + ", sender=y@foo.example")
	if got := c.ask(rcpt(a, "unknown", "y@foo.example", "bob@example.org", now+302)...); !strings.HasPrefix(got, "PREPEND ") {
		t.Errorf("retry after the delay, trap released: %q, want the X-Greylist header", got)
	}
	if _, errOut, code := cli(t, nil, "delete", "-config", cfg, "-trap", a, "-sender", "y@foo.example"); code != 2 || !strings.Contains(errOut, "-trap takes no other filter") {
		t.Errorf("delete -trap with -sender: exit %d, %q", code, errOut)
	}
}

// TestTrapFileReload: an address added to the trap file traps from the
// next request on, without a restart.
func TestTrapFileReload(t *testing.T) {
	d, c, _, ctl := trapDaemon(t)
	now := time.Now().Unix()
	const a = "198.51.100.72"
	isTrap := func() bool {
		x, err := control.NewClient(ctl).Explain(context.Background(), a, "unknown", "x@spam.example", "late@example.org")
		if err != nil {
			t.Fatalf("explain: %v", err)
		}
		return x.Trap != nil && x.Trap.Recipient
	}
	if isTrap() {
		t.Fatal("late@example.org is a trap before it is in the file")
	}
	writeFile(t, filepath.Join(d.dir, "trap_recipients"), "spamtrap@example.org\nlate@example.org\n")
	for deadline := time.Now().Add(5 * time.Second); !isTrap(); time.Sleep(25 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("late@example.org not a trap 5s after the edit:\n%s", d.logs)
		}
	}
	if got := c.ask(rcpt(a, "unknown", "x@spam.example", "late@example.org", now)...); got != greylisted {
		t.Errorf("to the new trap: %q", got)
	}
	d.waitLog("action=greylist, reason=greytrap, client_name=unknown, client_address=" + a)
}

func TestTrapCheckConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "greyd.hcl")
	traps := filepath.Join(dir, "trap_recipients")
	check := func() (string, int) {
		cmd := exec.Command(binary, "check-config", "-config", cfg)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	writeFile(t, filepath.Join(dir, "whitelist_clients"), "")
	writeFile(t, filepath.Join(dir, "whitelist_recipients"), "")
	writeFile(t, cfg, "trap {\n  recipients = [\"trap_recipients\"]\n  duration   = \"90d\"\n}\n")
	writeFile(t, traps, "spamtrap@example.org\n")
	if out, code := check(); code != 2 || !strings.Contains(out, cfg+`:3:16: Value out of range: trap.duration must be at most 30d, got "90d"`) {
		t.Errorf("duration of 90d: exit %d, want 2 and the file:line:\n%s", code, out)
	}
	writeFile(t, cfg, "trap {\n  recipients = [\"trap_recipients\"]\n}\n")
	writeFile(t, traps, "# bait\nspamtrap@example.org\nnot an address\n")
	if out, code := check(); code != 2 || !strings.Contains(out, traps+`:3: "not an address": doesn't look like an address`) {
		t.Errorf("a bad trap entry: exit %d, want 2 and the file:line:\n%s", code, out)
	}
	os.Remove(traps)
	if out, code := check(); code != 2 || !strings.Contains(out, traps+": cannot open") {
		t.Errorf("a missing trap file: exit %d, want 2:\n%s", code, out)
	}
	// The packaged file: comments only.
	shipped, err := os.ReadFile("../../etc/greyd/trap_recipients")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, traps, string(shipped))
	if out, code := check(); code != 0 || !strings.Contains(out, "is valid") {
		t.Errorf("the packaged trap_recipients: exit %d, want 0:\n%s", code, out)
	}
	writeFile(t, traps, "spamtrap@example.org\n")
	if out, code := check(); code != 0 || !strings.Contains(out, "trap {") || !strings.Contains(out, `duration   = "1d"`) {
		t.Errorf("a good trap block: exit %d, want 0 and the block in the output:\n%s", code, out)
	}
}
