package report

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"greyd/internal/whitelist"
)

// reject is Postfix's line for one greylisted recipient.
func reject(ts, name, addr, sender, rcpt string) string {
	return fmt.Sprintf("%s mx1 postfix/smtpd[4242]: NOQUEUE: reject: RCPT from %s[%s]: 450 4.2.0 <%s>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html; from=<%s> to=<%s> proto=ESMTP helo=<%s>",
		ts, name, addr, rcpt, sender, rcpt, name)
}

// decision is greyd's line.
func decision(action, reason, name, addr, sender, rcpt string) string {
	s := "Dec  7 04:30:00 mx1 greyd[77]: action=" + action + ", reason=" + reason + ", client_name=" + name + ", client_address=" + addr
	if sender != "" {
		s += ", sender=" + sender
	}
	return s + ", recipient=" + rcpt
}

// db answers lookups from a map of "addr/sender/recipient" (as the log
// named them) to first and last seen: the daemon's part, without a
// daemon (cmd/greyd's tests run the real one).
type db map[string][2]int64

func (d db) lookup(asked *[]Query) Lookup {
	return func(_ context.Context, qs []Query) ([]Answer, error) {
		as := make([]Answer, len(qs))
		for i, q := range qs {
			*asked = append(*asked, q)
			if q.Recipient == "unjudged@example.org" {
				as[i].Err = "not judged"
				continue
			}
			if v, ok := d[q.Addr+"/"+q.Sender+"/"+q.Recipient]; ok {
				as[i].Keys = []Stored{{Found: true, First: v[0], Last: v[1]}}
			} else {
				as[i].Keys = []Stored{{}}
			}
		}
		return as, nil
	}
}

func TestLog(t *testing.T) {
	lines := []string{
		"Dec  7 04:00:00 mx1 postfix/smtpd[4242]: connect from mail.example.net[198.51.100.7]",
		// Two recipients, greylisted twice, passed: Postfix and greyd
		// both log each attempt.
		reject("Dec  7 04:00:01", "mail.example.net", "198.51.100.7", "alice@example.net", "bob@example.org"),
		decision("greylist", "new", "mail.example.net", "198.51.100.7", "alice@example.net", "bob@example.org"),
		reject("Dec  7 04:00:01", "mail.example.net", "198.51.100.7", "alice@example.net", "carol@example.org"),
		reject("Dec  7 04:02:01", "mail.example.net", "198.51.100.7", "alice@example.net", "bob@example.org"),
		decision("greylist", "early-retry (180s missing)", "mail.example.net", "198.51.100.7", "alice@example.net", "bob@example.org"),
		reject("Dec  7 04:02:01", "mail.example.net", "198.51.100.7", "alice@example.net", "carol@example.org"),
		// A VERP sender that changes at each attempt: one triplet, the
		// last address asked about.
		reject("Dec  7 04:03:00", "lists.example.com", "192.0.2.200", "bounce-123@lists.example.com", "Bob@Example.org"),
		reject("Dec  7 04:13:00", "lists.example.com", "192.0.2.200", "bounce-456@lists.example.com", "bob@example.org"),
		// Only greyd saw it: the null sender, over IPv6.
		"Dec  7 04:05:00 mx1 greyd[77]: action=greylist, reason=new, client_name=unknown, client_address=2001:db8::25, recipient=bob@example.org",
		// Only Postfix saw it (greyd logs to another file).
		reject("Dec  7 04:06:00", "unknown", "192.0.2.9", "spam@spam.example", "bob@example.org"),
		reject("Dec  7 04:06:00", "unknown", "192.0.2.10", "spam@spam.example", "bob@example.org"),
		// Auto-whitelisted since: the daemon's triplet stays pending,
		// greyd's pass line says the mail got through.
		reject("Dec  7 04:07:00", "mx.awl.example", "203.0.113.5", "x@awl.example", "bob@example.org"),
		decision("pass", "client AWL", "mx.awl.example", "203.0.113.5", "x@awl.example", "bob@example.org"),
		// A pass line before the greylisting counts too.
		decision("pass", "client whitelist", "mx.early.example", "203.0.113.6", "y@early.example", "bob@example.org"),
		reject("Dec  7 04:08:00", "mx.early.example", "203.0.113.6", "y@early.example", "bob@example.org"),
		reject("Dec  7 04:09:00", "mx.odd.example", "203.0.113.7", "z@odd.example", "unjudged@example.org"),
		// Other lines, and garbage.
		"Dec  7 04:10:00 mx1 postfix/postscreen[11]: NOQUEUE: reject: RCPT from [192.0.2.99]:4711: 450 4.3.2 Service currently unavailable; from=<a@b> to=<c@d> proto=ESMTP helo=<x>",
		"\xff\xfe\x00 garbage action= reject: ",
		"Dec  7 04:24:54 mx1 greyd[77]: " + decisionMsg + " (dry run)",
	}
	stored := db{
		"198.51.100.7/alice@example.net/bob@example.org":           {1000, 1400},
		"198.51.100.7/alice@example.net/carol@example.org":         {1000, 1120}, // early retries only
		"192.0.2.200/bounce-456@lists.example.com/bob@example.org": {1000, 1600},
		"192.0.2.9/spam@spam.example/bob@example.org":              {1000, 1000},
		"203.0.113.5/x@awl.example/bob@example.org":                {1000, 1000},
		// 192.0.2.10 and 2001:db8::25: forgotten, so fatal.
	}
	l := NewLog(Parser{}, Filter{})
	if err := l.Read(strings.NewReader(strings.Join(lines, "\n") + "\n")); err != nil {
		t.Fatal(err)
	}
	var asked []Query
	if err := l.Judge(context.Background(), stored.lookup(&asked), 300, 3); err != nil {
		t.Fatal(err)
	}
	type row struct {
		addr, name, sender, rcpt string
		tries                    int
		fatal                    bool
		unjudged                 string
	}
	var got []row
	for _, tr := range l.Triplets() {
		got = append(got, row{tr.Addr.String(), tr.Name, tr.Sender, tr.Recipient, tr.Tries(), tr.Fatal, tr.Unjudged})
	}
	want := []row{
		{"192.0.2.9", "unknown", "spam@spam.example", "bob@example.org", 1, true, ""},
		{"192.0.2.10", "unknown", "spam@spam.example", "bob@example.org", 1, true, ""},
		{"192.0.2.200", "lists.example.com", "bounce-#@lists.example.com", "bob@example.org", 2, false, ""},
		{"198.51.100.7", "mail.example.net", "alice@example.net", "bob@example.org", 2, false, ""},
		{"198.51.100.7", "mail.example.net", "alice@example.net", "carol@example.org", 2, true, ""},
		{"203.0.113.5", "mx.awl.example", "x@awl.example", "bob@example.org", 1, false, ""},
		{"203.0.113.6", "mx.early.example", "y@early.example", "bob@example.org", 1, false, ""},
		{"203.0.113.7", "mx.odd.example", "z@odd.example", "unjudged@example.org", 1, false, "not judged"},
		{"2001:db8::25", "unknown", "", "bob@example.org", 1, true, ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("triplets:\n got %+v\nwant %+v", got, want)
	}
	// Passed by a pass line: not asked. Asked as logged, in batches.
	var names []string
	for _, q := range asked {
		names = append(names, q.Addr+" "+q.Name+" "+q.Sender+" "+q.Recipient)
	}
	wantAsked := []string{
		"192.0.2.9 unknown spam@spam.example bob@example.org",
		"192.0.2.10 unknown spam@spam.example bob@example.org",
		"192.0.2.200 lists.example.com bounce-456@lists.example.com bob@example.org",
		"198.51.100.7 mail.example.net alice@example.net bob@example.org",
		"198.51.100.7 mail.example.net alice@example.net carol@example.org",
		"203.0.113.7 mx.odd.example z@odd.example unjudged@example.org",
		"2001:db8::25 unknown  bob@example.org",
	}
	if !slices.Equal(names, wantAsked) {
		t.Errorf("asked:\n got %q\nwant %q", names, wantAsked)
	}
	s := l.Summary()
	wantSum := Summary{Greylisted: 9, Attempts: 12, Passed: 4, Fatal: 4, Unjudged: 1}
	if s != wantSum {
		t.Errorf("summary %+v, want %+v", s, wantSum)
	}
	if got, want := s.String(), "9 triplets greylisted (12 attempts): 4 retried and passed, 4 never retried, 1 not looked up"; got != want {
		t.Errorf("summary line %q, want %q", got, want)
	}
	if l.Lines != len(lines) {
		t.Errorf("%d lines read, want %d", l.Lines, len(lines))
	}
}

func TestJudgeDelay(t *testing.T) {
	tests := []struct {
		keys  []Stored
		delay int64
		fatal bool
	}{
		{nil, 300, true},
		{[]Stored{{}}, 300, true},
		{[]Stored{{Found: true, First: 100, Last: 399}}, 300, true},
		{[]Stored{{Found: true, First: 100, Last: 400}}, 300, false},
		{[]Stored{{Found: true, First: 100, Last: 400}}, 301, true},
		// lookup_by "auto": the network's key passed, the organisation's
		// is new.
		{[]Stored{{Found: true, First: 500, Last: 500}, {Found: true, First: 100, Last: 400}}, 300, false},
		{[]Stored{{}, {Found: true, First: 100, Last: 400}}, 300, false},
		{[]Stored{{}, {Found: true, First: 100, Last: 100}}, 300, true},
	}
	for i, tc := range tests {
		if got := Fatal(tc.keys, tc.delay); got != tc.fatal {
			t.Errorf("%d: Fatal(%+v, %d) = %v, want %v", i, tc.keys, tc.delay, got, tc.fatal)
		}
	}
}

func TestJudgeErrors(t *testing.T) {
	l := NewLog(Parser{}, Filter{})
	l.Read(strings.NewReader(reject("Dec  7 04:00:00", "x.example", "192.0.2.1", "a@b.example", "c@example.org")))
	boom := errors.New("boom")
	if err := l.Judge(context.Background(), func(context.Context, []Query) ([]Answer, error) { return nil, boom }, 300, 10); !errors.Is(err, boom) {
		t.Errorf("lookup failing: %v", err)
	}
	short := func(context.Context, []Query) ([]Answer, error) { return nil, nil }
	if err := l.Judge(context.Background(), short, 300, 10); err == nil || !strings.Contains(err.Error(), "answered 0 triplets for 1") {
		t.Errorf("lookup answering too few: %v", err)
	}
}

func TestFilter(t *testing.T) {
	clients := func(lines ...string) *whitelist.Clients {
		c, probs := whitelist.ParseClients("test", strings.NewReader(strings.Join(lines, "\n")))
		if len(probs) > 0 {
			t.Fatal(probs)
		}
		return c
	}
	tests := []struct {
		f    Filter
		name string
		addr string
		keep bool
	}{
		{Filter{}, "mail.example.net", "198.51.100.7", true},
		{Filter{Skip: clients("example.net")}, "mail.example.net", "198.51.100.7", false},
		{Filter{Skip: clients("example.net")}, "mail.badexample.net", "198.51.100.7", true},
		{Filter{Skip: clients("198.51.100")}, "x.example", "198.51.100.7", false},
		{Filter{Skip: clients("198.51.100")}, "x.example", "198.51.10.7", true},
		{Filter{Skip: clients("/^mail\\d/")}, "mail1.example", "192.0.2.1", false},
		{Filter{Match: clients("example.net")}, "mail.example.net", "198.51.100.7", true},
		{Filter{Match: clients("example.net")}, "mail.example.com", "198.51.100.7", false},
		{Filter{Match: clients()}, "mail.example.net", "198.51.100.7", false}, // an empty file matches nothing
		{Filter{Match: clients("example.net"), Skip: clients("mail.example.net")}, "mail.example.net", "198.51.100.7", false},
		{Filter{SkipPool: true}, "dsl-100-7.pool.example", "198.51.100.7", false},
		{Filter{SkipPool: true}, "host7-100.example", "198.51.100.7", false},
		{Filter{SkipPool: true}, "mail.example.net", "198.51.100.7", true},
		{Filter{SkipPool: true}, "dsl-100.pool.example", "198.51.100.7", true},
		{Filter{SkipPool: true}, "unknown", "2001:db8::25", true},
	}
	for i, tc := range tests {
		if got := tc.f.Keep(tc.name, netip.MustParseAddr(tc.addr)); got != tc.keep {
			t.Errorf("%d: Keep(%s[%s]) = %v, want %v", i, tc.name, tc.addr, got, tc.keep)
		}
	}

	// Filtered triplets are counted apart.
	l := NewLog(Parser{}, Filter{Skip: clients("spam.example")})
	l.Read(strings.NewReader(reject("Dec  7 04:00:00", "mx.spam.example", "192.0.2.1", "a@spam.example", "c@example.org") + "\n" +
		reject("Dec  7 04:00:00", "mx.ham.example", "192.0.2.2", "a@ham.example", "c@example.org") + "\n"))
	if s := l.Summary(); s.Greylisted != 1 || s.Filtered != 1 || !strings.HasSuffix(s.String(), "; 1 left out by the client filters") {
		t.Errorf("summary %+v %q: want 1 greylisted, 1 left out", s, s)
	}
}

func TestReadHostile(t *testing.T) {
	line := reject("Dec  7 04:00:00", "x.example", "192.0.2.1", "a@b.example", "c@example.org")
	var in bytes.Buffer
	in.WriteString(line + "\r\n") // CRLF: a log copied from elsewhere
	in.WriteString(strings.Repeat("reject: ", MaxLine) + "\n")
	in.WriteString(line[:len(line)-1] + strings.Repeat("x", 3*MaxLine) + "\n") // one line over the limit, then the next line
	in.WriteString(reject("Dec  7 04:00:00", "x.example", "192.0.2.2", "a@b.example", "c@example.org") + "\n")
	in.WriteString("\x00\x01\x02\xff\n\n\n")
	in.WriteString(reject("Dec  7 04:00:00", "x.example", "192.0.2.3", "a@b.example", "c@example.org")) // no final newline
	l := NewLog(Parser{}, Filter{})
	if err := l.Read(&in); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tr := range l.Triplets() {
		got = append(got, tr.Addr.String())
	}
	if want := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}; !slices.Equal(got, want) {
		t.Errorf("triplets %q, want %q", got, want)
	}
	if l.Long != 2 || l.Lines != 8 {
		t.Errorf("%d lines, %d long: want 8 and 2", l.Lines, l.Long)
	}
	if s := l.Summary().String(); !strings.Contains(s, "; 2 lines longer than 65536 bytes skipped") {
		t.Errorf("summary %q does not say lines were skipped", s)
	}
}

func TestReadGzip(t *testing.T) {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	fmt.Fprintln(zw, reject("Dec  7 04:00:00", "x.example", "192.0.2.1", "a@b.example", "c@example.org"))
	zw.Close()
	path := filepath.Join(t.TempDir(), "mail.log.1.gz")
	os.WriteFile(path, z.Bytes(), 0o644)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l := NewLog(Parser{}, Filter{})
	if err := l.Read(f); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Triplets()); n != 1 {
		t.Errorf("%d triplets from a gzip file, want 1", n)
	}
	if err := NewLog(Parser{}, Filter{}).Read(bytes.NewReader(z.Bytes()[:12])); err == nil {
		t.Error("a truncated gzip file: no error")
	}
}
