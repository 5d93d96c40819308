package whitelist

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func FuzzParseClients(f *testing.F) {
	f.Add("example.net\n/^mx\\d+\\./\n192.0.2.0/24\n195.235.39\n172.16\n2001:db8::/32\n", "mx1.example.net", []byte{192, 0, 2, 1})
	f.Add("# comment\n\nfoo bar\n/a(b/\n300.1.2.3\n*.example.com\n", "unknown", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4})
	f.Add("::ffff:1.2.3.0/120\nfe80::1%eth0\n0.0.0.0/0\n::/0\n", "", []byte{})
	f.Add("Example.NET.\n/(?i)A|b/\n", "A.B.EXAMPLE.NET.", []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add("example.net", "a.b.EXAMPLE.net", []byte(nil))
	f.Add("example.net.", "notexample.net", []byte(nil))
	f.Fuzz(func(t *testing.T, text, name string, ip []byte) {
		c, probs := ParseClients("f", strings.NewReader(text))
		lines := strings.Count(text, "\n") + 1
		for _, p := range probs {
			if p.File != "f" || p.Line < 1 || p.Line > lines || p.Msg == "" {
				t.Errorf("bad problem %#v for %q", p, text)
			}
		}
		if c.Len() < 0 {
			t.Errorf("Len() = %d", c.Len())
		}
		c.MatchName(name)
		if a, ok := netip.AddrFromSlice(ip); ok {
			c.MatchAddr(a)
		}
		// A lone host-name entry matches itself, and (for ASCII) exactly
		// what Postgrey's qr{(?:^|\.)\Q$entry\E$}i matches.
		entry := strings.TrimSpace(text)
		if len(probs) != 0 || c.Len() != 1 || strings.ContainsAny(entry, "#\n/:") || isIPv4Like(entry) {
			return
		}
		if !c.MatchName(entry) {
			t.Errorf("entry %q does not match itself", entry)
		}
		entry = strings.TrimSuffix(entry, ".")
		if isASCII(entry) && isASCII(name) && !strings.HasSuffix(name, ".") {
			want := regexp.MustCompile(`(?i)(?:^|\.)` + regexp.QuoteMeta(entry) + `$`).MatchString(name)
			if got := c.MatchName(name); got != want {
				t.Errorf("entry %q: MatchName(%q) = %v, Postgrey says %v", entry, name, got, want)
			}
		}
	})
}

func FuzzParseRecipients(f *testing.F) {
	f.Add("postmaster@\nabuse@\n", "postmaster+x@example.org")
	f.Add("bob@example.org\n@example.net\nexample.com\n/^info-/\n", "a+b+c@sub.example.com")
	f.Add("foo bar\n@\n*@x\n/a(b/\n", `"a@b"@example.org`)
	f.Add("a+@d\n", "a++@d.")
	f.Add("a+b@d.example", "A+b+c@d.example")
	f.Add("bob@example.org", "bob+@example.org")
	f.Add("example.org", "x@sub.Example.org")
	f.Add("postmaster@", "postmaster+x@example.org")
	f.Fuzz(func(t *testing.T, text, rcpt string) {
		r, probs := ParseRecipients("f", strings.NewReader(text))
		lines := strings.Count(text, "\n") + 1
		for _, p := range probs {
			if p.File != "f" || p.Line < 1 || p.Line > lines || p.Msg == "" {
				t.Errorf("bad problem %#v for %q", p, text)
			}
		}
		if r.Len() < 0 {
			t.Errorf("Len() = %d", r.Len())
		}
		r.Match(rcpt)
		// A lone user@domain entry matches itself; for ASCII, a lone entry
		// and an address with one '@' (no trailing dots, where greyd
		// normalises and Postgrey does not), greyd agrees with Postgrey's
		// regexes, "@domain" (which Postgrey never matched) excepted.
		entry := strings.TrimSpace(text)
		if len(probs) != 0 || r.Len() != 1 || strings.ContainsAny(entry, "#\n/") || strings.HasPrefix(entry, "@") || strings.Count(entry, "@") > 1 {
			return
		}
		user, domain, at := strings.Cut(entry, "@")
		if at && domain != "" && !r.Match(entry) {
			t.Errorf("entry %q does not match itself", entry)
		}
		if !isASCII(entry) || !isASCII(rcpt) || strings.Count(rcpt, "@") != 1 || strings.HasSuffix(entry, ".") || strings.HasSuffix(rcpt, ".") {
			return
		}
		var pg string
		switch {
		case !at:
			pg = `(?i)(?:@|\.)` + regexp.QuoteMeta(user) + `$`
		case domain == "":
			pg = `(?i)^` + regexp.QuoteMeta(user) + `(?:\+[^@]+)?@`
		default:
			pg = `(?i)^` + regexp.QuoteMeta(user) + `(?:\+[^@]+)?@` + regexp.QuoteMeta(domain) + `$`
		}
		if got, want := r.Match(rcpt), regexp.MustCompile(pg).MatchString(rcpt); got != want {
			t.Errorf("entry %q: Match(%q) = %v, Postgrey's %s says %v", entry, rcpt, got, pg, want)
		}
	})
}
