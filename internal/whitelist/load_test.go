package whitelist

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	shippedClients    = "../../etc/greyd/whitelist_clients"
	shippedRecipients = "../../etc/greyd/whitelist_recipients"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadClientsMerges(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "whitelist_clients", "example.net\n192.0.2.0/24\n")
	b := writeFile(t, dir, "whitelist_clients.local", "# local additions\nexample.org\nbad entry\n")
	c, probs := LoadClients([]string{a, b})
	if len(probs) != 1 || probs[0].File != b || probs[0].Line != 3 {
		t.Fatalf("got problems %v, want one at %s:3", probs, b)
	}
	for _, name := range []string{"mx.example.net", "mx.example.org"} {
		if !c.MatchName(name) {
			t.Errorf("MatchName(%q) = false, want true", name)
		}
	}
	if !c.MatchAddr(netip.MustParseAddr("192.0.2.1")) {
		t.Errorf("MatchAddr(192.0.2.1) = false, want true")
	}
	if c.Len() != 3 {
		t.Errorf("Len() = %d, want 3", c.Len())
	}
}

func TestLoadMissingFiles(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "whitelist", "example.org\n") // valid in both kinds of file
	tests := []struct {
		paths []string
		want  []string // Problem.Error() of each problem
	}{
		{[]string{good, filepath.Join(dir, "whitelist_recipients.local")}, nil},
		{[]string{filepath.Join(dir, "missing")}, []string{filepath.Join(dir, "missing") + ": cannot open: no such file or directory"}},
		{[]string{filepath.Join(dir, "missing.locale"), good}, []string{filepath.Join(dir, "missing.locale") + ": cannot open: no such file or directory"}},
		{[]string{dir}, []string{dir + ": cannot read: is a directory"}},
		{nil, nil},
	}
	for i, tc := range tests {
		for _, kind := range []string{"clients", "recipients"} {
			var probs []Problem
			if kind == "clients" {
				_, probs = LoadClients(tc.paths)
			} else {
				_, probs = LoadRecipients(tc.paths)
			}
			var got []string
			for _, p := range probs {
				got = append(got, p.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("%d: Load%s(%q): got problems %q, want %q", i, kind, tc.paths, got, tc.want)
			}
		}
	}
	r, _ := LoadRecipients([]string{filepath.Join(dir, "nope"), good})
	if !r.Match("x@example.org") {
		t.Errorf("file after a missing one was not loaded")
	}
}

func TestLoadUnreadable(t *testing.T) {
	// A .local file that exists but cannot be read is reported: only a
	// missing one is normal. (A directory stands in for an unreadable
	// file because the tests run as root, which reads mode 0000 files.)
	dir := t.TempDir()
	path := filepath.Join(dir, "whitelist_clients.local")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	_, probs := LoadClients([]string{path})
	if len(probs) != 1 || !strings.HasPrefix(probs[0].Error(), path+": cannot read") {
		t.Errorf("got problems %v, want %q", probs, path+": cannot read...")
	}
}

func TestShippedClients(t *testing.T) {
	c, probs := LoadClients([]string{shippedClients, shippedClients + ".local"})
	for _, p := range probs {
		t.Errorf("shipped file: %v", p)
	}
	if n := c.Len(); n < 150 || n > 400 {
		t.Errorf("shipped file has %d entries, want a list of about 166", n)
	}
	names := []struct {
		name string
		want bool
	}{
		{"mail-eopbgr80052.outbound.protection.outlook.com", true},
		{"mail-wr1-f41.google.com", true},
		{"a48-31.smtp-out.amazonses.com", true},
		{"out-18.smtp.github.com", true},
		{"mail12.telekom.de", true},
		{"mailout3.telekom.de", true},
		{"smtp4-g21.free.fr", true},
		{"sc12pub.verizon.net", true},
		{"vger.kernel.org", true},
		{"mx.example.com", false},
		{"notoutlook.com", false},
		{"unknown", false},
	}
	for _, tc := range names {
		if got := c.MatchName(tc.name); got != tc.want {
			t.Errorf("shipped MatchName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	addrs := []struct {
		addr string
		want bool
	}{
		{"205.201.130.17", true},   // Mailchimp 205.201.128.0/20
		{"148.105.8.1", true},      // Mailchimp 148.105.0.0/16
		{"195.235.39.12", true},    // 195.235.39 (a /24)
		{"66.216.126.174", true},   // single host
		{"::ffff:51.4.72.9", true}, // IPv4-mapped, in 51.4.72.0/24
		{"2a01:4180:4050:400::25", true},
		{"192.0.2.1", false},
		{"2001:db8::1", false},
	}
	for _, tc := range addrs {
		if got := c.MatchAddr(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("shipped MatchAddr(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestShippedRecipients(t *testing.T) {
	r, probs := LoadRecipients([]string{shippedRecipients, shippedRecipients + ".local"})
	for _, p := range probs {
		t.Errorf("shipped file: %v", p)
	}
	if r.Len() != 2 {
		t.Errorf("shipped file has %d entries, want 2", r.Len())
	}
	tests := []struct {
		rcpt string
		want bool
	}{
		{"postmaster@example.org", true},
		{"Postmaster+test@example.org", true},
		{"abuse@example.net", true},
		{"bob@example.org", false},
	}
	for _, tc := range tests {
		if got := r.Match(tc.rcpt); got != tc.want {
			t.Errorf("shipped Match(%q) = %v, want %v", tc.rcpt, got, tc.want)
		}
	}
}

// Loaded lists are read by many connections at once; run with -race.
func TestConcurrentReaders(t *testing.T) {
	c, _ := LoadClients([]string{shippedClients})
	r, _ := LoadRecipients([]string{shippedRecipients})
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			ok := true
			for i := 0; i < 200; i++ {
				ok = ok && c.MatchName("mail-wr1-f41.google.com") && !c.MatchName("host.example") &&
					c.MatchName("smtp4-g21.free.fr") && c.MatchAddr(netip.MustParseAddr("205.201.130.17")) &&
					r.Match("postmaster@example.org") && !r.Match("bob@example.org")
			}
			done <- ok
		}()
	}
	for g := 0; g < 4; g++ {
		if !<-done {
			t.Errorf("concurrent reader got a wrong answer")
		}
	}
}
