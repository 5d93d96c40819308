package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 12 through the real binary: lookup_by "auto" keys a verified mail
// server by its organisation, everything else by its network.

// noWhitelists adds a drop-in that empties the whitelists: the shipped
// one lists the big providers these tests use as examples.
func noWhitelists(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "no-whitelists.hcl"), []byte("whitelist {\n  clients = []\n  recipients = []\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pooledRetry sends a provider's first attempt and its retry from another
// /24 ten minutes later, and returns the retry's answer.
func pooledRetry(t *testing.T, c *client, sender string, now int64) string {
	t.Helper()
	if got := c.ask(rcpt("209.85.220.41", "mail-sor-f41.google.com", sender, "bob@example.org", now)...); got != greylisted {
		t.Fatalf("first attempt: %q, want %q", got, greylisted)
	}
	return c.ask(rcpt("209.85.128.73", "mail-wm1-f73.google.com", sender, "bob@example.org", now+600)...)
}

func TestLookupByAutoPooledRetry(t *testing.T) {
	now := time.Now().Unix()
	for _, mode := range []string{"auto", "subnet"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			sock, _ := testConfig(t, dir, "greylist {\n  lookup_by = \""+mode+"\"\n}\n")
			noWhitelists(t, dir)
			startDaemonDir(t, dir)
			got := pooledRetry(t, dial(t, "unix", sock), "alice@gmail.com", now)
			passed := strings.HasPrefix(got, "PREPEND X-Greylist: delayed 600 seconds")
			if mode == "auto" && !passed {
				t.Errorf("auto: retry from another network of the organisation: %q, want the X-Greylist header", got)
			}
			if mode == "subnet" && got != greylisted {
				t.Errorf("subnet: retry from another network: %q, want %q", got, greylisted)
			}
		})
	}
}

// TestLookupByAutoStaysOnSubnet: unknown, dynamic and forged names, and
// the unverified reverse_client_name, never aggregate.
func TestLookupByAutoStaysOnSubnet(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "greylist {\n  lookup_by = \"auto\"\n}\n")
	startDaemonDir(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	cases := []struct{ name, addr1, addr2 string }{
		{"unknown", "73.15.220.11", "73.16.1.2"},
		{"c-73-15-220-11.hsd1.ca.comcast.net", "73.15.220.11", "73.15.221.12"},
		{"pool-100-2-3-4.nycmny.fios.verizon.net", "100.2.3.4", "100.2.9.4"},
		{"ec2-54-1-2-3.compute-1.amazonaws.com", "54.1.2.3", "54.1.9.3"},
	}
	for i, tc := range cases {
		sender := "bot" + string(rune('a'+i)) + "@example.net"
		if got := c.ask(rcpt(tc.addr1, tc.name, sender, "bob@example.org", now)...); got != greylisted {
			t.Errorf("%s first: %q", tc.name, got)
		}
		if got := c.ask(rcpt(tc.addr2, tc.name, sender, "bob@example.org", now+600)...); got != greylisted {
			t.Errorf("%s retry from another network: %q, want %q", tc.name, got, greylisted)
		}
	}
	// A forged PTR: Postfix could not verify it (client_name=unknown) and
	// only reverse_client_name claims Google.
	forged := func(addr string, at int64) []string {
		r := rcpt(addr, "unknown", "forger@gmail.com", "bob@example.org", at)
		for i, l := range r {
			if strings.HasPrefix(l, "reverse_client_name=") {
				r[i] = "reverse_client_name=mail-sor-f41.google.com"
			}
		}
		return r
	}
	if got := c.ask(forged("203.0.113.5", now)...); got != greylisted {
		t.Errorf("forged first: %q", got)
	}
	if got := c.ask(forged("198.51.100.5", now+600)...); got != greylisted {
		t.Errorf("forged PTR retrying from another network: %q, want %q", got, greylisted)
	}
}

// TestLookupByAutoAWLPerAddress: one pass from one Outlook host does not
// whitelist all of Outlook.
func TestLookupByAutoAWLPerAddress(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "greylist {\n  lookup_by = \"auto\"\n}\nauto_whitelist {\n  clients = 1\n}\n")
	noWhitelists(t, dir)
	startDaemonDir(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	host := "a9-92.smtp-out.amazonses.com"
	c.ask(rcpt("54.240.9.92", host, "a@ses.example", "bob@example.org", now)...)
	if got := c.ask(rcpt("54.240.9.92", host, "a@ses.example", "bob@example.org", now+300)...); !strings.HasPrefix(got, "PREPEND ") {
		t.Fatalf("first pass: %q", got)
	}
	if got := c.ask(rcpt("54.240.9.92", host, "new@ses.example", "bob@example.org", now+400)...); got != "DUNNO" {
		t.Errorf("same address, new triplet: %q, want DUNNO (auto-whitelisted)", got)
	}
	if got := c.ask(rcpt("54.240.27.11", "a27-11.smtp-out.amazonses.com", "new2@ses.example", "bob@example.org", now+400)...); got != greylisted {
		t.Errorf("another host of the organisation, new triplet: %q, want %q", got, greylisted)
	}
}

// TestSwitchSubnetToAuto: editing the configuration from subnet to auto
// (an automatic reload) greylists nothing that had passed.
func TestSwitchSubnetToAuto(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "greylist {\n  lookup_by = \"subnet\"\n}\n")
	noWhitelists(t, dir)
	d := startDaemonDir(t, dir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	c.ask(rcpt("209.85.220.41", "mail-sor-f41.google.com", "alice@gmail.com", "bob@example.org", now)...)
	if got := c.ask(rcpt("209.85.220.41", "mail-sor-f41.google.com", "alice@gmail.com", "bob@example.org", now+300)...); !strings.HasPrefix(got, "PREPEND ") {
		t.Fatalf("pass under subnet: %q", got)
	}
	cfg := filepath.Join(dir, "greyd.hcl")
	b, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), `lookup_by = "subnet"`, `lookup_by = "auto"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.waitLog("): ok")
	if got := c.ask(rcpt("209.85.220.41", "mail-sor-f41.google.com", "alice@gmail.com", "bob@example.org", now+400)...); got != "DUNNO" {
		t.Errorf("after the switch to auto: %q, want DUNNO", got)
	}
	// And the organisation key now holds it: another network of Google
	// passes too.
	if got := c.ask(rcpt("209.85.128.73", "mail-wm1-f73.google.com", "alice@gmail.com", "bob@example.org", now+500)...); got != "DUNNO" {
		t.Errorf("another network after the switch: %q, want DUNNO", got)
	}
}
