package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// greyd report against the real daemon: triplets sent over the policy
// socket (with policy_test_time), the mail log Postfix would have written
// for them, greyd's own log, and the report's exact output.

// postfixReject is the line Postfix logs when greyd greylists a recipient.
func postfixReject(ts, name, addr, sender, rcpt string) string {
	domain := rcpt[strings.IndexByte(rcpt, '@')+1:]
	return fmt.Sprintf("%s mx1 postfix/smtpd[4242]: NOQUEUE: reject: RCPT from %s[%s]: 450 4.2.0 <%s>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/%s.html; from=<%s> to=<%s> proto=ESMTP helo=<%s>\n",
		ts, name, addr, rcpt, domain, sender, rcpt, name)
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	d, _ := adminDaemon(t, dir, "") // testConfig turns policy_test_time on
	cfg := filepath.Join(dir, "greyd.hcl")
	c := dial(t, "unix", d.sock)
	t0 := time.Now().Unix() - 7200

	var maillog strings.Builder
	n := 0
	send := func(addr, name, sender, recipient string, when int64, greylist bool) {
		t.Helper()
		got := c.ask(rcpt(addr, name, sender, recipient, when)...)
		if greylist != strings.HasPrefix(got, "DEFER_IF_PERMIT ") {
			t.Fatalf("%s %s %s %s at t0+%d: %q, want greylisted %v", addr, name, sender, recipient, when-t0, got, greylist)
		}
		if greylist {
			n++
			maillog.WriteString(postfixReject(fmt.Sprintf("Dec  7 04:%02d:%02d", n/60, n%60), name, addr, sender, recipient))
		}
	}
	// Retried after the delay: passed.
	send("198.51.100.7", "mail.example.net", "alice@example.net", "bob@example.org", t0, true)
	send("198.51.100.7", "mail.example.net", "alice@example.net", "bob@example.org", t0+120, true)
	send("198.51.100.7", "mail.example.net", "alice@example.net", "bob@example.org", t0+400, false)
	// Early retries only: fatal.
	send("198.51.100.7", "mail.example.net", "alice@example.net", "carol@example.org", t0, true)
	send("198.51.100.7", "mail.example.net", "alice@example.net", "carol@example.org", t0+120, true)
	// Never again: fatal, also over IPv6 with the null sender.
	send("192.0.2.9", "unknown", "spam@spam.example", "bob@example.org", t0+10, true)
	send("2001:db8::25", "unknown", "", "bob@example.org", t0+20, true)
	// Retried from another address of the network: passed.
	send("203.0.113.5", "mx1.partner.example", "p@partner.example", "bob@example.org", t0+30, true)
	send("203.0.113.6", "mx2.partner.example", "p@partner.example", "bob@example.org", t0+500, false)
	// A VERP sender, retried with another number: passed.
	send("192.0.2.200", "lists.example.com", "bounce-123@lists.example.com", "bob@example.org", t0+40, true)
	send("192.0.2.200", "lists.example.com", "bounce-456@lists.example.com", "bob@example.org", t0+440, false)
	// Lines the report does not read.
	maillog.WriteString("Dec  7 05:00:00 mx1 postfix/postscreen[11]: NOQUEUE: reject: RCPT from [192.0.2.99]:4711: 450 4.3.2 Service currently unavailable; from=<a@b.example> to=<bob@example.org> proto=ESMTP helo=<x>\n")
	maillog.WriteString("Dec  7 05:00:01 mx1 postfix/smtpd[4242]: disconnect from unknown[192.0.2.9] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4\n")
	d.waitLog("action=pass, reason=triplet found, delay=400, client_name=lists.example.com")
	greydLog := d.logs.String()

	before := cliOK(t, 0, "list", "-config", cfg, "-json")
	const fatal = "" +
		"      192.0.2.9 unknown spam@spam.example bob@example.org\n" +
		"   198.51.100.7 mail.example.net alice@example.net carol@example.org\n" +
		"   2001:db8::25 unknown <> bob@example.org\n"
	const summary = "greyd report: 6 triplets greylisted (8 attempts): 3 retried and passed, 3 never retried\n"
	logs := []struct {
		name, log string
	}{
		{"Postfix's log", maillog.String()},
		{"greyd's log", greydLog},
		{"both", maillog.String() + greydLog},
	}
	for _, l := range logs {
		out, errOut, code := cli(t, strings.NewReader(l.log), "report", "-config", cfg)
		if code != 0 || out != fatal || errOut != summary {
			t.Errorf("report of %s: exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s\nwant the summary %q", l.name, code, out, fatal, errOut, summary)
		}
	}

	// Options; the log from a file.
	logFile := filepath.Join(dir, "mail.log")
	os.WriteFile(logFile, []byte(maillog.String()), 0o644)
	skip := filepath.Join(dir, "skip")
	os.WriteFile(skip, []byte("192.0.2.9\n"), 0o644)
	tests := []struct {
		args    []string
		out     string
		summary string
	}{
		{[]string{"-show-tries", "-tab"}, "" +
			"1\t192.0.2.9\tunknown\tspam@spam.example\tbob@example.org\n" +
			"2\t198.51.100.7\tmail.example.net\talice@example.net\tcarol@example.org\n" +
			"1\t2001:db8::25\tunknown\t<>\tbob@example.org\n", summary},
		{[]string{"-single-line=false", "-skip-clients", skip}, "" +
			"mail.example.net                                                                 198.51.100.7\n" +
			"                                  alice@example.net                         carol@example.org \n" +
			"unknown                                                                          2001:db8::25\n" +
			"                                                 <>                           bob@example.org \n",
			"greyd report: 5 triplets greylisted (7 attempts): 3 retried and passed, 2 never retried; 1 left out by the client filters\n"},
		// A longer delay than the retries waited: every triplet is fatal.
		{[]string{"-delay", "1h"}, "" +
			"      192.0.2.9 unknown spam@spam.example bob@example.org\n" +
			"    192.0.2.200 lists.example.com bounce-#@lists.example.com bob@example.org\n" +
			"   198.51.100.7 mail.example.net alice@example.net bob@example.org\n" +
			"   198.51.100.7 mail.example.net alice@example.net carol@example.org\n" +
			"    203.0.113.5 mx1.partner.example p@partner.example bob@example.org\n" +
			"   2001:db8::25 unknown <> bob@example.org\n",
			"greyd report: 6 triplets greylisted (8 attempts): 0 retried and passed, 6 never retried\n"},
		// Longer than two of them, shorter than the third.
		{[]string{"-delay", "450"}, "" +
			"      192.0.2.9 unknown spam@spam.example bob@example.org\n" +
			"    192.0.2.200 lists.example.com bounce-#@lists.example.com bob@example.org\n" +
			"   198.51.100.7 mail.example.net alice@example.net bob@example.org\n" +
			"   198.51.100.7 mail.example.net alice@example.net carol@example.org\n" +
			"   2001:db8::25 unknown <> bob@example.org\n",
			"greyd report: 6 triplets greylisted (8 attempts): 1 retried and passed, 5 never retried\n"},
	}
	for _, tc := range tests {
		args := append(append([]string{"report", "-config", cfg}, tc.args...), logFile)
		out, errOut, code := cli(t, nil, args...)
		if code != 0 || out != tc.out || !strings.HasSuffix(errOut, tc.summary) {
			t.Errorf("greyd %q: exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s\nwant the summary %q", args, code, out, tc.out, errOut, tc.summary)
		}
	}

	// Read-only: the daemon holds what it held.
	// As sets: a listing walks the store's shards in no fixed order.
	if after := cliOK(t, 0, "list", "-config", cfg, "-json"); !sameLines(after, before) {
		t.Errorf("the report changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Without a daemon: exit 3; nothing to ask: no daemon needed.
	gone := filepath.Join(dir, "gone.sock")
	if _, errOut, code := cli(t, strings.NewReader(maillog.String()), "report", "-socket", gone, "-delay", "300"); code != exitUnreachable || !strings.Contains(errOut, "cannot reach greyd at "+gone) {
		t.Errorf("no daemon: exit %d, want %d\n%s", code, exitUnreachable, errOut)
	}
	if out, errOut, code := cli(t, strings.NewReader("nothing\n"), "report", "-socket", gone, "-delay", "300"); code != 0 || out != "" || !strings.Contains(errOut, "0 triplets greylisted (0 attempts)") {
		t.Errorf("an empty log: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// Usage errors: exit 2.
	for _, args := range [][]string{
		{"report", "-config", cfg, "-delay", "soon"},
		{"report", "-config", cfg, "-skip-clients", filepath.Join(dir, "missing")},
		{"report", "-config", cfg, filepath.Join(dir, "missing.log")},
		{"report", "-config", filepath.Join(dir, "missing.hcl")},
	} {
		if _, errOut, code := cli(t, strings.NewReader(""), args...); code != exitConfig {
			t.Errorf("greyd %q: exit %d, want %d\n%s", args, code, exitConfig, errOut)
		}
	}
}

// sameLines reports whether a and b hold the same lines, in any order.
func sameLines(a, b string) bool {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
