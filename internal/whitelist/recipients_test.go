package whitelist

import (
	"strings"
	"testing"
)

func mustRecipients(t *testing.T, text string) *Recipients {
	t.Helper()
	r, probs := ParseRecipients("test", strings.NewReader(text))
	if len(probs) > 0 {
		t.Fatalf("ParseRecipients(%q): unexpected problems %v", text, probs)
	}
	return r
}

func TestRecipientsMatch(t *testing.T) {
	tests := []struct {
		entries string
		rcpt    string
		want    bool
	}{
		// user@domain: that address and user+ext@domain, not subdomains.
		{"bob@example.org", "bob@example.org", true},
		{"bob@example.org", "Bob@Example.ORG", true},
		{"Bob@Example.ORG", "bob@example.org", true},
		{"bob@example.org", "bob+lists@example.org", true},
		{"bob@example.org", "bob+a+b@example.org", true},
		{"bob@example.org", "bob+@example.org", false}, // empty extension
		{"bob@example.org", "bobby@example.org", false},
		{"bob@example.org", "xbob@example.org", false},
		{"bob@example.org", "bob@mail.example.org", false},
		{"bob@example.org", "bob@example.org.evil", false},
		{"bob@example.org", "alice@example.org", false},
		{"bob@example.org", "bob", false},
		// Every '+' counts, as with Postgrey's ^user(?:\+[^@]+)?@domain$.
		{"a@d.example", "a+b+c@d.example", true},
		{"a+b@d.example", "a+b+c@d.example", true},
		{"a+b+c@d.example", "a+b+c@d.example", true},
		{"a+b@d.example", "a@d.example", false},
		{"a+b@d.example", "a+bc@d.example", false},
		{"a+@d.example", "a++x@d.example", true},
		// user@: that local part (and +ext) at any domain.
		{"postmaster@", "postmaster@example.org", true},
		{"postmaster@", "POSTMASTER@sub.example.org", true},
		{"postmaster@", "postmaster+test@example.org", true},
		{"postmaster@", "postmasterx@example.org", false},
		{"postmaster@", "xpostmaster@example.org", false},
		{"postmaster@", "postmaster", true}, // bare local part, e.g. RCPT TO:<postmaster>
		{"abuse@", "abuse+x+y@example.net", true},
		// domain: any address at that domain or below it.
		{"example.org", "anyone@example.org", true},
		{"example.org", "anyone@lists.example.org", true},
		{"example.org", "anyone@a.b.EXAMPLE.org", true},
		{"example.org", "anyone@notexample.org", false},
		{"example.org", "anyone@example.org.evil", false},
		{"example.org", "example.org", false},
		{"example.org", "x@example.org.", true},
		{"example.org.", "x@example.org", true},
		// @domain: any address at exactly that domain (Postgrey never
		// matched these; this is what Postfix access maps mean).
		{"@example.org", "anyone@example.org", true},
		{"@example.org", "a+b@Example.Org", true},
		{"@example.org", "anyone@sub.example.org", false},
		{"@example.org", "anyone@notexample.org", false},
		// Split at the last '@'.
		{"example.org", `"a@b"@example.org`, true},
		{`"a@b"@example.org`, `"a@b"@example.org`, true},
		{"@b", `"a@b"@example.org`, false},
		// Regexes: whole raw address, case-insensitive.
		{`/^info-.*@example\.org$/`, "Info-Sales@EXAMPLE.org", true},
		{`/^info-.*@example\.org$/`, "info@example.org", false},
		{`/@EXAMPLE\.net$/`, "x@example.net", true},
		{`/postmaster/`, "postmaster", true},
		// Comments and blank lines.
		{"# postmaster@\n\n", "postmaster@example.org", false},
		{"  postmaster@   # role address\n", "postmaster@example.org", true},
		// Several entries.
		{"postmaster@\nabuse@\nexample.org", "abuse@example.com", true},
		{"postmaster@\nabuse@\nexample.org", "x@y.example.org", true},
		{"postmaster@\nabuse@\nexample.org", "x@example.com", false},
		{"postmaster@\nabuse@\nexample.org", "", false},
	}
	for i, tc := range tests {
		r := mustRecipients(t, tc.entries)
		if got := r.Match(tc.rcpt); got != tc.want {
			t.Errorf("%d: entries %q, Match(%q) = %v, want %v", i, tc.entries, tc.rcpt, got, tc.want)
		}
	}
}

func TestRecipientsLongInput(t *testing.T) {
	long := strings.Repeat("a", 300)
	r := mustRecipients(t, long+"@\nexample.org")
	tests := []struct {
		rcpt string
		want bool
	}{
		{long + "@example.com", true},
		{long + "+x@example.com", true},
		{"x@" + strings.Repeat("b.", 200) + "EXAMPLE.org", true},
		{"x@" + strings.Repeat("b.", 200) + "example.com", false},
	}
	for i, tc := range tests {
		if got := r.Match(tc.rcpt); got != tc.want {
			t.Errorf("%d: Match(%.20q...) = %v, want %v", i, tc.rcpt, got, tc.want)
		}
	}
	c := mustClients(t, "example.org")
	if !c.MatchName(strings.Repeat("b.", 200) + "Example.org") {
		t.Errorf("MatchName of a 400-byte name under example.org = false, want true")
	}
}

func TestRecipientsNil(t *testing.T) {
	var r *Recipients
	if r.Match("postmaster@example.org") || r.Len() != 0 {
		t.Errorf("nil *Recipients matches or has entries")
	}
	var z Recipients
	if z.Match("postmaster@example.org") || z.Len() != 0 {
		t.Errorf("zero Recipients matches or has entries")
	}
}

func TestRecipientsLen(t *testing.T) {
	tests := []struct {
		entries string
		want    int
	}{
		{"", 0},
		{"postmaster@\nabuse@", 2},
		{"a@b\nb@b\n@b\nb\nx@\n/re/", 6},
		{"A@B\na@b\na@b.\npostmaster@\nPostmaster@\n/re/\n/re/", 3},
	}
	for i, tc := range tests {
		r := mustRecipients(t, tc.entries)
		if got := r.Len(); got != tc.want {
			t.Errorf("%d: entries %q: Len() = %d, want %d", i, tc.entries, got, tc.want)
		}
	}
}

func TestRecipientsProblems(t *testing.T) {
	tests := []struct {
		entry string
		want  string
	}{
		{"foo bar", `"foo bar": doesn't look like an address (contains whitespace`},
		{"/a(b/", `"/a(b/": bad regex: missing closing )`},
		{"//", `empty regex`},
		{"@", `doesn't look like an address`},
		{"*@example.org", `write "@example.org"`},
		{"*.example.org", `write "example.org"`},
		{"@.example.org", `leading dot`},
		{"user@*.example.org", `wildcards are not supported`},
		{"/^info", `write a regex as /regex/`},
		{"x@.", `empty domain`},
		// Accepted.
		{"postmaster@", ""},
		{"@example.org", ""},
		{"user@[192.0.2.1]", ""},
		{"localhost", ""},
	}
	for i, tc := range tests {
		_, probs := ParseRecipients("f", strings.NewReader(tc.entry))
		switch {
		case tc.want == "" && len(probs) > 0:
			t.Errorf("%d: entry %q: unexpected problems %v", i, tc.entry, probs)
		case tc.want == "":
		case len(probs) != 1:
			t.Errorf("%d: entry %q: got problems %v, want one containing %q", i, tc.entry, probs, tc.want)
		case !strings.Contains(probs[0].Msg, tc.want) || probs[0].Line != 1 || probs[0].File != "f":
			t.Errorf("%d: entry %q: got problem %q, want f:1: ...%s...", i, tc.entry, probs[0].Error(), tc.want)
		}
	}
}

func TestRecipientsProblemLines(t *testing.T) {
	text := "postmaster@\n\n# c\nfoo bar\n@\nexample.org\n"
	r, probs := ParseRecipients("rw", strings.NewReader(text))
	want := []string{"rw:4: ", "rw:5: "}
	if len(probs) != len(want) {
		t.Fatalf("got problems %v, want %d", probs, len(want))
	}
	for i, p := range probs {
		if !strings.HasPrefix(p.Error(), want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, p.Error(), want[i])
		}
	}
	if !r.Match("postmaster@x.example") || !r.Match("a@example.org") {
		t.Errorf("good entries around bad lines were not used")
	}
}
