package whitelist

import (
	"regexp/syntax"
	"testing"
)

func TestRequiredLiteral(t *testing.T) {
	tests := []struct {
		re   string
		want string
	}{
		{`^mail\d+\.telekom\.de$`, ".telekom.de"},
		{`^(?:smtp\w*|postfix)[0-9]+-g[0-9]+\.free\.fr$`, ".free.fr"},
		{`^smtp\d+.citigroup.com$`, "citigroup"},
		{`ABC`, "abc"},
		{`(?i)Abc`, "abc"},
		{`(abc)+x`, "abc"},
		{`(abc){2,}x`, "abc"},
		{`(abc)*x`, "x"},
		{`(abc)?`, ""},
		{`abc|abd`, "ab"}, // the parser factors out the common prefix
		{`abc|xyz`, ""},
		{`.*`, ""},
		{`äöü`, ""},
	}
	for i, tc := range tests {
		re, err := syntax.Parse(tc.re, syntax.Perl)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if got := requiredLiteral(re.Simplify()); got != tc.want {
			t.Errorf("%d: requiredLiteral(%q) = %q, want %q", i, tc.re, got, tc.want)
		}
	}
}

func TestRequiredSuffix(t *testing.T) {
	tests := []struct {
		re   string
		want string
	}{
		{`^mail\d+\.telekom\.de$`, ".telekom.de"},
		{`^smtp\d+.citigroup.com$`, "com"},
		{`^(?:smtp\w*|postfix)[0-9]+-g[0-9]+\.free\.fr$`, ".free.fr"},
		{`(?i)\.ORANGE\.fr$`, ".orange.fr"},
		{`\.orange\.fr`, ""},     // not anchored
		{`\.orange\.fr$|x$`, ""}, // alternation
		{`\.fr\d$`, ""},
		{`(?m)\.fr$`, ""}, // end of line, not of text
		{`äö$`, ""},
	}
	for i, tc := range tests {
		re, err := syntax.Parse(tc.re, syntax.Perl)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if got := requiredSuffix(re.Simplify()); got != tc.want {
			t.Errorf("%d: requiredSuffix(%q) = %q, want %q", i, tc.re, got, tc.want)
		}
	}
}

// The literal shortcut must never hide a match the regex itself finds.
func TestRegexShortcut(t *testing.T) {
	tests := []struct {
		entry string
		name  string
		want  bool
	}{
		{`/^kx\.example$/`, "\u212ax.example", true}, // Kelvin sign folds to k
		{`/^kx\.example$/`, "KX.example", true},
		{`/(?-i)ABC/`, "xABCx", true},
		{`/(?-i)ABC/`, "xabcx", false},
		{`/de\.$/`, "mx.DE.", true},
		{`/telekom/`, "TELEKOM", true},
		{`/telekom/`, "telecom", false},
		{`/^smtp\d+\.orange\.fr$/`, "SMTP12.Orange.FR", true},
		{`/^smtp\d+\.orange\.fr$/`, "smtp12.orange.fr.evil.example", false},
		{`/^smtp\d+\.orange\.fr$/`, "smtp12.orange.fr\n", false},
		{`/\.\x{212A}x$/`, "a.kx", true}, // Kelvin sign in the regex: no ASCII suffix
	}
	for i, tc := range tests {
		c := mustClients(t, tc.entry)
		if got := c.MatchName(tc.name); got != tc.want {
			t.Errorf("%d: entry %q, MatchName(%q) = %v, want %v", i, tc.entry, tc.name, got, tc.want)
		}
		r := mustRecipients(t, tc.entry)
		if got := r.Match(tc.name); got != tc.want {
			t.Errorf("%d: entry %q, Recipients.Match(%q) = %v, want %v", i, tc.entry, tc.name, got, tc.want)
		}
	}
}
