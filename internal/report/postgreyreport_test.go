package report

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"greyd/internal/normalize"
	"greyd/internal/whitelist"
)

// The real postgreyreport (Debian's postgrey package, 1.14.3) and greyd's
// report read the same mail log; postgreyreport looks the triplets up in
// a postgrey.db written with db_load, greyd's report in the same entries
// through a Lookup. Where the two should agree, their outputs must be the
// same, option for option. (Only the order of one address's triplets may
// differ: postgreyreport takes it from a Perl hash, greyd from the log.)

const postgreyreport = "/usr/bin/postgreyreport"

// pgLog is a day of a mail log: Postfix's rejects for greyd's reply, and
// lines that neither reads.
func pgLog() (log string, entries map[string]string) {
	entries = map[string]string{} // postgrey.db: "ip/sender/recipient" → "first,last"
	var b strings.Builder
	n := 0
	add := func(name, ip, sender, rcpt string, times int, first, last int64) {
		for i := 0; i < times; i++ {
			n++
			ts := fmt.Sprintf("Dec %2d %02d:%02d:%02d", 6+n/1440, n/60%24, n%60, n*7%60)
			b.WriteString(reject(ts, name, ip, sender, rcpt) + "\n")
			if n%3 == 0 {
				fmt.Fprintf(&b, "%s mx1 postfix/smtpd[4242]: disconnect from %s[%s] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4\n", ts, name, ip)
			}
		}
		if first > 0 {
			k := strings.ToLower(ip + "/" + string(normalize.AppendSender(nil, sender)) + "/" + rcpt)
			entries[k] = fmt.Sprintf("%d,%d", first, last)
		}
	}
	const t = 1733500000
	add("mail.example.net", "198.51.100.7", "alice@example.net", "bob@example.org", 2, t, t+400)            // passed
	add("mail.example.net", "198.51.100.7", "alice@example.net", "carol@example.org", 3, t, t+120)          // fatal: early retries only
	add("mail.example.net", "198.51.100.7", "Dave+news@Example.NET", "bob@example.org", 1, t, t)            // fatal
	add("old.example.net", "198.51.100.8", "alice@example.net", "bob@example.org", 1, 0, 0)                 // fatal: forgotten;
	add("mail.example.net", "198.51.100.8", "alice@example.net", "bob@example.org", 1, 0, 0)                // the last line's name
	add("lists.example.com", "192.0.2.200", "bounce-123-456@lists.example.com", "bob@example.org", 2, t, t) // fatal
	add("lists.example.com", "192.0.2.200", "bounce-789-1@lists.example.com", "bob@example.org", 1, t, t)   // the same triplet
	add("lists.example.com", "192.0.2.201", "bounce-1@lists.example.com", "bob@example.org", 1, t, t+300)   // passed: exactly the delay
	add("lists.example.com", "192.0.2.202", "bounce-2@lists.example.com", "bob@example.org", 1, t, t+299)   // fatal: a second short
	add("unknown", "203.0.113.5", "spam1@spam.example", "bob@example.org", 4, t, t)
	add("unknown", "203.0.113.6", "spam2@spam.example", "bob@example.org", 1, 0, 0)
	add("unknown", "203.0.113.6", "spam2@spam.example", "carol@example.org", 1, 0, 0)
	add("dsl-113-7.pool.example", "203.0.113.7", "x@pool.example", "bob@example.org", 2, t, t)
	add("host7-113.dyn.example", "203.0.113.7", "y@pool.example", "bob@example.org", 1, t, t+1000)
	add("mail1.partner.example", "10.1.2.3", "p@partner.example", "bob@example.org", 1, t, t)
	add("mail2.partner.example", "10.1.2.4", "p@partner.example", "bob@example.org", 1, t, t+5000)
	add("mx.big.example", "8.8.4.4", "news@big.example", "BOB@example.org", 1, t, t)
	add("mx.big.example", "8.8.4.4", "news@big.example", "bob@example.org", 1, t, t)
	add("mx.other.example", "8.8.4.200", "o@other.example", "bob@example.org", 1, t, t)
	add("mx.far.example", "100.64.0.1", "f@far.example", "bob@example.org", 1, t, t+60)

	// Lines neither reads.
	b.WriteString("Dec  7 04:10:00 mx1 postfix/postscreen[11]: NOQUEUE: reject: RCPT from [192.0.2.99]:4711: 450 4.3.2 Service currently unavailable; from=<a@b.example> to=<c@example.org> proto=ESMTP helo=<x>\n")
	b.WriteString("Dec  7 04:10:01 mx1 postfix/smtpd[11]: NOQUEUE: reject: RCPT from mx.bl.example[192.0.2.98]: 554 5.7.1 Service unavailable; Client host [192.0.2.98] blocked using zen.spamhaus.org; from=<a@b.example> to=<c@example.org> proto=ESMTP helo=<x>\n")
	b.WriteString("Dec  7 04:10:02 mx1 postfix/smtpd[11]: NOQUEUE: reject: RCPT from mx.conf.example[192.0.2.97]: 451 4.3.5 <c@example.org>: Recipient address rejected: Server configuration problem; from=<a@b.example> to=<c@example.org> proto=ESMTP helo=<x>\n")
	b.WriteString("Dec  7 04:10:03 mx1 postfix/qmgr[12]: 4F3A21C0B2D: from=<alice@example.net>, size=1234, nrcpt=1 (queue active)\n")
	return b.String(), entries
}

// writePostgreyDB writes entries to dir/postgrey.db with db_load.
func writePostgreyDB(t *testing.T, dir string, entries map[string]string) {
	t.Helper()
	load := ""
	for _, n := range []string{"db_load", "db5.3_load"} {
		if p, err := exec.LookPath(n); err == nil {
			load = p
			break
		}
	}
	if load == "" {
		t.Fatal("db_load not installed (make deps installs db5.3-util)")
	}
	var dump strings.Builder
	dump.WriteString("VERSION=3\nformat=print\ntype=btree\nHEADER=END\n")
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&dump, " %s\n %s\n", k, entries[k])
	}
	dump.WriteString("DATA=END\n")
	in := filepath.Join(dir, "dump.txt")
	os.WriteFile(in, []byte(dump.String()), 0o600)
	if out, err := exec.Command(load, "-f", in, filepath.Join(dir, "postgrey.db")).CombinedOutput(); err != nil {
		t.Fatalf("db_load: %v\n%s", err, out)
	}
}

// pgLookup answers from the entries as the daemon would from its store,
// keyed by client address (lookup_by host).
func pgLookup(entries map[string]string) Lookup {
	return func(_ context.Context, qs []Query) ([]Answer, error) {
		as := make([]Answer, len(qs))
		for i, q := range qs {
			k := strings.ToLower(q.Addr + "/" + string(normalize.AppendSender(nil, q.Sender)) + "/" + q.Recipient)
			as[i].Keys = []Stored{{}}
			if v, ok := entries[k]; ok {
				f, l, _ := strings.Cut(v, ",")
				first, _ := strconv.ParseInt(f, 10, 64)
				last, _ := strconv.ParseInt(l, 10, 64)
				as[i].Keys[0] = Stored{Found: true, First: first, Last: last}
			}
		}
		return as, nil
	}
}

// canonical sorts the lines of each run of lines about one client
// address (the first word that is an address), and the pair lines under
// each heading of the grouped form: the only order the two may differ in.
func canonical(out string) string {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	addrOf := func(l string) string {
		if strings.HasPrefix(l, " ") && strings.TrimSpace(l) != "" {
			if _, err := netip.ParseAddr(strings.TrimSpace(l)); err != nil {
				return "pair" // the grouped form's sender/recipient line
			}
		}
		for _, w := range strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '\t' }) {
			if _, err := netip.ParseAddr(w); err == nil {
				return w
			}
		}
		return ""
	}
	for i := 0; i < len(lines); {
		a := addrOf(lines[i])
		j := i + 1
		for a != "" && j < len(lines) && addrOf(lines[j]) == a {
			j++
		}
		slices.Sort(lines[i:j])
		i = j
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestSameAsPostgreyreport(t *testing.T) {
	if _, err := os.Stat(postgreyreport); err != nil {
		t.Fatalf("%s: %v (make deps installs Debian's postgrey package)", postgreyreport, err)
	}
	dir := t.TempDir()
	log, entries := pgLog()
	writePostgreyDB(t, dir, entries)
	logFile := filepath.Join(dir, "mail.log")
	os.WriteFile(logFile, []byte(log), 0o644)
	os.WriteFile(filepath.Join(dir, "skip"), []byte("# partners\npartner.example\n/^lists\\./\n192.0.2.202\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "match"), []byte("example.net\n8.8.4\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "unknown"), []byte("unknown\n"), 0o644)

	clients := func(names ...string) *whitelist.Clients {
		var paths []string
		for _, n := range names {
			paths = append(paths, filepath.Join(dir, n))
		}
		c, probs := whitelist.LoadClients(paths)
		if len(probs) > 0 {
			t.Fatal(probs)
		}
		return c
	}
	tests := []struct {
		args   []string // postgreyreport's
		filter Filter
		format Format
		delay  int64
	}{
		{nil, Filter{}, Format{SingleLine: true}, 300},
		{[]string{"--show_tries"}, Filter{}, Format{SingleLine: true, ShowTries: true}, 300},
		{[]string{"--show_time", "--show_tries"}, Filter{}, Format{SingleLine: true, ShowTries: true, ShowTime: true}, 300},
		{[]string{"--tab", "--show_tries"}, Filter{}, Format{SingleLine: true, Tab: true, ShowTries: true}, 300},
		{[]string{"--tab", "--show_time"}, Filter{}, Format{SingleLine: true, Tab: true, ShowTime: true}, 300},
		{[]string{"--nosingle_line"}, Filter{}, Format{}, 300},
		{[]string{"--nosingle_line", "--show_tries"}, Filter{}, Format{ShowTries: true}, 300},
		{[]string{"--delay=100"}, Filter{}, Format{SingleLine: true}, 100},
		{[]string{"--delay=1000", "--show_tries"}, Filter{}, Format{SingleLine: true, ShowTries: true}, 1000},
		{[]string{"--skip_pool"}, Filter{SkipPool: true}, Format{SingleLine: true}, 300},
		{[]string{"--skip_clients=" + filepath.Join(dir, "skip")}, Filter{Skip: clients("skip")}, Format{SingleLine: true}, 300},
		{[]string{"--skip_clients=" + filepath.Join(dir, "skip"), "--skip_clients=" + filepath.Join(dir, "unknown")}, Filter{Skip: clients("skip", "unknown")}, Format{SingleLine: true}, 300},
		{[]string{"--match_clients=" + filepath.Join(dir, "match"), "--show_tries"}, Filter{Match: clients("match")}, Format{SingleLine: true, ShowTries: true}, 300},
		{[]string{"--match_clients=" + filepath.Join(dir, "match"), "--skip_clients=" + filepath.Join(dir, "skip")}, Filter{Match: clients("match"), Skip: clients("skip")}, Format{SingleLine: true}, 300},
		// postgreyreport's subnets are its addresses for clients named
		// "unknown" or like a pool (Postgrey 1.14's lookup-by-subnet):
		// without those, the separators are the same.
		{[]string{"--separate_by_subnet=:====\\n", "--skip_pool", "--skip_clients=" + filepath.Join(dir, "unknown")},
			Filter{SkipPool: true, Skip: clients("unknown")}, Format{SingleLine: true, SeparateBySubnet: `:====\n`}, 300},
		{[]string{"--separate_by_ip=\\n", "--skip_pool", "--skip_clients=" + filepath.Join(dir, "unknown")},
			Filter{SkipPool: true, Skip: clients("unknown")}, Format{SingleLine: true, SeparateByIP: `\n`}, 300},
		{[]string{"--nosingle_line", "--show_tries", "--separate_by_subnet=:====\\n", "--separate_by_ip=--\\n", "--skip_pool", "--skip_clients=" + filepath.Join(dir, "unknown")},
			Filter{SkipPool: true, Skip: clients("unknown")}, Format{ShowTries: true, SeparateBySubnet: `:====\n`, SeparateByIP: `--\n`}, 300},
	}
	for _, tc := range tests {
		args := append([]string{"--user=" + strconv.Itoa(os.Geteuid()), "--dbdir=" + dir}, tc.args...)
		cmd := exec.Command(postgreyreport, args...)
		cmd.Stdin = strings.NewReader(log)
		var pgOut, pgErr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &pgOut, &pgErr
		if err := cmd.Run(); err != nil {
			t.Fatalf("postgreyreport %q: %v\n%s", tc.args, err, pgErr.String())
		}

		l := NewLog(Parser{}, tc.filter)
		if err := l.Read(strings.NewReader(log)); err != nil {
			t.Fatal(err)
		}
		if err := l.Judge(context.Background(), pgLookup(entries), tc.delay, 7); err != nil {
			t.Fatal(err)
		}
		var ours bytes.Buffer
		if err := tc.format.Write(&ours, l.Fatal()); err != nil {
			t.Fatal(err)
		}
		if pgOut.Len() == 0 {
			t.Errorf("postgreyreport %q: no output (stderr: %s)", tc.args, pgErr.String())
			continue
		}
		if got, want := canonical(ours.String()), canonical(pgOut.String()); got != want {
			t.Errorf("postgreyreport %q:\n%s\ngreyd:\n%s", tc.args, pgOut.String(), ours.String())
		}
	}
}

// TestDifferencesFromPostgreyreport: the lines postgreyreport cannot
// read and greyd's report does (README lists every difference).
func TestDifferencesFromPostgreyreport(t *testing.T) {
	dir := t.TempDir()
	writePostgreyDB(t, dir, map[string]string{"192.0.2.250/x@y.example/z@example.org": "1,1"})
	log := strings.Join([]string{
		// the null sender: postgreyreport's from=<([^>]+)> needs one
		reject("Dec  7 04:00:01", "mx.bounce.example", "192.0.2.1", "", "bob@example.org"),
		// IPv6: postgreyreport's address is \d+\.\d+\.\d+\.\d+
		reject("Dec  7 04:00:02", "mx.v6.example", "2001:db8::25", "a@v6.example", "bob@example.org"),
		// another 4xx than 450 (greylist { action = "451 4.7.1" })
		strings.Replace(reject("Dec  7 04:00:03", "mx.451.example", "192.0.2.3", "a@451.example", "bob@example.org"), ": 450 4.2.0 ", ": 451 4.7.1 ", 1),
		// greyd's own line, when Postfix's is in another file
		"Dec  7 04:00:04 mx1 greyd[77]: action=greylist, reason=new, client_name=mx.own.example, client_address=192.0.2.4, sender=a@own.example, recipient=bob@example.org",
	}, "\n") + "\n"
	cmd := exec.Command(postgreyreport, "--user="+strconv.Itoa(os.Geteuid()), "--dbdir="+dir)
	cmd.Stdin = strings.NewReader(log)
	out, err := cmd.Output()
	if err != nil || len(out) != 0 {
		t.Errorf("postgreyreport: %v, output %q: want none", err, out)
	}
	l := NewLog(Parser{}, Filter{})
	l.Read(strings.NewReader(log))
	l.Judge(context.Background(), pgLookup(nil), 300, 10)
	var ours bytes.Buffer
	(&Format{SingleLine: true}).Write(&ours, l.Fatal())
	want := "" +
		"      192.0.2.1 mx.bounce.example <> bob@example.org\n" +
		"      192.0.2.3 mx.451.example a@451.example bob@example.org\n" +
		"      192.0.2.4 mx.own.example a@own.example bob@example.org\n" +
		"   2001:db8::25 mx.v6.example a@v6.example bob@example.org\n"
	if ours.String() != want {
		t.Errorf("greyd:\n%s\nwant:\n%s", ours.String(), want)
	}
}
