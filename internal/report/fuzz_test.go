package report

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse feeds the line parser anything: it must not panic, and what
// it returns must come from the line (no field invented, none cut from
// another line's bytes).
func FuzzParse(f *testing.F) {
	f.Add("Dec  7 04:24:54 mx1 postfix/smtpd[12345]: "+rejectMsg, "")
	f.Add("2024-12-07T04:24:54.123456+01:00 mx1 postfix/smtpd[1]: "+rejectMsg, "Greylisted")
	f.Add("Sat 2024-12-07 04:24:54 CET mx1 postfix/smtpd[1]: "+rejectMsg, "")
	f.Add("[  123.456789] mx1 postfix/smtpd[1]: "+rejectMsg, "")
	f.Add("1733541894.123456 mx1 greyd[1]: 4F3A: "+decisionMsg, "")
	f.Add("<5>"+decisionMsg+" (dry run)", "")
	f.Add("action=pass, reason=triplet found, delay=306, client_name=x, client_address=2001:db8::1, recipient=b@c", "")
	f.Add(`NOQUEUE: reject: RCPT from x[198.51.100.7]:25: 450 4.2.0 <"a>b"@c>: Recipient address rejected: Greylisted; from=<"x\"> to=<"@y> to=<b@c> proto=ESMTP`, "")
	f.Add("NOQUEUE: reject: RCPT from x[198.51.100.7]: 450 4.2.0 <b@c>: Recipient address rejected: \xff; from=<\xfe> to=<\x00>", "\xff")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, line, text string) {
		p := &Parser{Text: text}
		e, ok := p.Parse(line)
		if !ok {
			if e != (Event{}) {
				t.Fatalf("Parse(%q) = %+v, false: want the zero Event", line, e)
			}
			return
		}
		if e.Kind < Reject || e.Kind > Pass {
			t.Fatalf("Parse(%q): kind %d", line, e.Kind)
		}
		if !e.Addr.IsValid() || e.Addr.Is4In6() || e.Addr.Zone() != "" {
			t.Fatalf("Parse(%q): address %v", line, e.Addr)
		}
		if e.Recipient == "" {
			t.Fatalf("Parse(%q): empty recipient", line)
		}
		if !strings.HasPrefix(line, e.Time) {
			t.Fatalf("Parse(%q): time %q does not start the line", line, e.Time)
		}
		for _, part := range []string{e.Sender, e.Recipient} {
			if !strings.Contains(line, part) {
				t.Fatalf("Parse(%q): %q is not in the line", line, part)
			}
		}
		if e.Name != "unknown" && !strings.Contains(line, e.Name) {
			t.Fatalf("Parse(%q): name %q is not in the line", line, e.Name)
		}
		if e.Kind == Reject && (e.Name == "" || strings.ContainsAny(e.Name, " [")) {
			t.Fatalf("Parse(%q): name %q", line, e.Name)
		}
		if again, _ := p.Parse(line); again != e {
			t.Fatalf("Parse(%q) twice: %+v, then %+v", line, e, again)
		}
		if strings.ContainsAny(line, "\n") || strings.HasSuffix(line, "\r") {
			return // not one line of a file
		}
		// The whole path, to the report's lines.
		l := NewLog(*p, Filter{})
		if err := l.Read(strings.NewReader(line + "\n" + line)); err != nil {
			t.Fatal(err)
		}
		for _, tr := range l.Triplets() {
			tr.Fatal = true
		}
		var out bytes.Buffer
		for _, f := range []Format{{SingleLine: true}, {SingleLine: true, Tab: true, ShowTime: true, ShowTries: true}, {}} {
			out.Reset()
			if err := f.Write(&out, l.Fatal()); err != nil {
				t.Fatal(err)
			}
			for _, c := range out.Bytes() {
				if c < ' ' && c != '\n' && c != '\t' || c == 0x7f {
					t.Fatalf("Parse(%q): control character %#x in the report:\n%q", line, c, out.String())
				}
			}
			if e.Kind != Pass && bytes.Count(out.Bytes(), []byte("\n")) == 0 {
				t.Fatalf("Parse(%q): greylisted, but no line in the report", line)
			}
		}
	})
}
