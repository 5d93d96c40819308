package report

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// fatalSet is a report's fatal triplets, in report order.
func fatalSet() []*Triplet {
	tr := func(addr, name, sender, rcpt, ts string, tries int) *Triplet {
		return &Triplet{Addr: netip.MustParseAddr(addr), Name: name, Sender: sender, Recipient: rcpt, Time: ts, Rejects: tries, Fatal: true}
	}
	return []*Triplet{
		tr("4.29.43.31", "unknown", "marissa@abit.example", "user1@example.org", "Dec  7 04:00:01", 1),
		tr("4.29.43.31", "unknown", "jake@ali.example", "user2@example.org", "Dec  7 04:00:02", 3),
		tr("4.29.43.32", "unknown", "x@y.example", "user1@example.org", "Dec  7 04:00:03", 1),
		tr("17.250.248.83", "smtpout.mac.example", "do_not_reply@apple.example", "user4@example.org", "Dec  7 04:00:04", 12),
		tr("2001:db8::25", "mail.v6.example", "", "user5@example.org", "", 1),
	}
}

// The expected outputs follow postgreyreport 1.14.3's printf calls.
func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		want string
	}{
		{"default: single line", Format{SingleLine: true}, "" +
			"     4.29.43.31 unknown marissa@abit.example user1@example.org\n" +
			"     4.29.43.31 unknown jake@ali.example user2@example.org\n" +
			"     4.29.43.32 unknown x@y.example user1@example.org\n" +
			"  17.250.248.83 smtpout.mac.example do_not_reply@apple.example user4@example.org\n" +
			"   2001:db8::25 mail.v6.example <> user5@example.org\n"},
		{"show tries and time", Format{SingleLine: true, ShowTries: true, ShowTime: true}, "" +
			"Dec  7 04:00:01 1      4.29.43.31 unknown marissa@abit.example user1@example.org\n" +
			"Dec  7 04:00:02 3      4.29.43.31 unknown jake@ali.example user2@example.org\n" +
			"Dec  7 04:00:03 1      4.29.43.32 unknown x@y.example user1@example.org\n" +
			"Dec  7 04:00:04 12   17.250.248.83 smtpout.mac.example do_not_reply@apple.example user4@example.org\n" +
			"- 1    2001:db8::25 mail.v6.example <> user5@example.org\n"},
		{"tab", Format{SingleLine: true, Tab: true, ShowTries: true}, "" +
			"1\t4.29.43.31\tunknown\tmarissa@abit.example\tuser1@example.org\n" +
			"3\t4.29.43.31\tunknown\tjake@ali.example\tuser2@example.org\n" +
			"1\t4.29.43.32\tunknown\tx@y.example\tuser1@example.org\n" +
			"12\t17.250.248.83\tsmtpout.mac.example\tdo_not_reply@apple.example\tuser4@example.org\n" +
			"1\t2001:db8::25\tmail.v6.example\t<>\tuser5@example.org\n"},
		{"separate by subnet", Format{SingleLine: true, SeparateBySubnet: `==\n`}, "" +
			"==\n" +
			"     4.29.43.31 unknown marissa@abit.example user1@example.org\n" +
			"     4.29.43.31 unknown jake@ali.example user2@example.org\n" +
			"     4.29.43.32 unknown x@y.example user1@example.org\n" +
			"==\n" +
			"  17.250.248.83 smtpout.mac.example do_not_reply@apple.example user4@example.org\n" +
			"==\n" +
			"   2001:db8::25 mail.v6.example <> user5@example.org\n"},
		{"separate by subnet and IP", Format{SingleLine: true, SeparateBySubnet: `==\n`, SeparateByIP: `\n`}, "" +
			"==\n" +
			"     4.29.43.31 unknown marissa@abit.example user1@example.org\n" +
			"     4.29.43.31 unknown jake@ali.example user2@example.org\n" +
			"\n" +
			"     4.29.43.32 unknown x@y.example user1@example.org\n" +
			"==\n" +
			"  17.250.248.83 smtpout.mac.example do_not_reply@apple.example user4@example.org\n" +
			"==\n" +
			"   2001:db8::25 mail.v6.example <> user5@example.org\n"},
		{"separate by IP", Format{SingleLine: true, SeparateByIP: "--\\n"}, "" +
			"--\n" +
			"     4.29.43.31 unknown marissa@abit.example user1@example.org\n" +
			"     4.29.43.31 unknown jake@ali.example user2@example.org\n" +
			"--\n" +
			"     4.29.43.32 unknown x@y.example user1@example.org\n" +
			"--\n" +
			"  17.250.248.83 smtpout.mac.example do_not_reply@apple.example user4@example.org\n" +
			"--\n" +
			"   2001:db8::25 mail.v6.example <> user5@example.org\n"},
		{"a /16 as subnet", Format{SingleLine: true, SeparateBySubnet: `==\n`, V4Prefix: 8}, "" +
			"==\n" +
			"     4.29.43.31 unknown marissa@abit.example user1@example.org\n" +
			"     4.29.43.31 unknown jake@ali.example user2@example.org\n" +
			"     4.29.43.32 unknown x@y.example user1@example.org\n" +
			"==\n" +
			"  17.250.248.83 smtpout.mac.example do_not_reply@apple.example user4@example.org\n" +
			"==\n" +
			"   2001:db8::25 mail.v6.example <> user5@example.org\n"},
		// Checked against postgreyreport's output in
		// TestSameAsPostgreyreport; spelled out here for IPv6 and "<>".
		{"grouped (-single-line=false)", Format{}, "" +
			"unknown                                                                            4.29.43.31\n" +
			"                               marissa@abit.example                         user1@example.org \n" +
			"                                   jake@ali.example                         user2@example.org \n" +
			"unknown                                                                            4.29.43.32\n" +
			"                                        x@y.example                         user1@example.org \n" +
			"smtpout.mac.example                                                             17.250.248.83\n" +
			"                         do_not_reply@apple.example                         user4@example.org \n" +
			"mail.v6.example                                                                  2001:db8::25\n" +
			"                                                 <>                         user5@example.org \n"},
		{"grouped with tries and separators", Format{ShowTries: true, SeparateBySubnet: `:====\n`}, "" +
			":====\n" +
			"unknown                                                                            4.29.43.31\n" +
			"        1                      marissa@abit.example                         user1@example.org \n" +
			"        3                          jake@ali.example                         user2@example.org \n" +
			"unknown                                                                            4.29.43.32\n" +
			"        1                               x@y.example                         user1@example.org \n" +
			":====\n" +
			"smtpout.mac.example                                                             17.250.248.83\n" +
			"       12                do_not_reply@apple.example                         user4@example.org \n" +
			":====\n" +
			"mail.v6.example                                                                  2001:db8::25\n" +
			"        1                                        <>                         user5@example.org \n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if err := tc.f.Write(&b, fatalSet()); err != nil {
			t.Fatal(err)
		}
		if got := b.String(); got != tc.want {
			t.Errorf("%s:\n got:\n%s\nwant:\n%s", tc.name, got, tc.want)
		}
	}
}

func TestFormatClean(t *testing.T) {
	tr := &Triplet{Addr: netip.MustParseAddr("192.0.2.1"), Name: "x\x1b[31m.example", Sender: "a\tb\xff\xfe@ex\u00e9mple.org", Recipient: "c\x7f\u0085@example.org", Time: "Dec  7\t04:00:00", Rejects: 1}
	var b bytes.Buffer
	f := Format{SingleLine: true, Tab: true, ShowTime: true}
	f.Write(&b, []*Triplet{tr})
	want := "Dec  7?04:00:00\t192.0.2.1\tx?[31m.example\ta?b??@ex\u00e9mple.org\tc??@example.org\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	// Wider than the column: nothing is cut.
	long := &Triplet{Addr: netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1234:5678"), Name: strings.Repeat("n", 80), Sender: strings.Repeat("s", 50) + "@x", Recipient: "r@x"}
	b.Reset()
	(&Format{}).Write(&b, []*Triplet{long})
	if want := strings.Repeat("n", 80) + " 2001:db8:1234:5678:9abc:def0:1234:5678\n" + "           " + strings.Repeat("s", 50) + "@x                                       r@x \n"; b.String() != want {
		t.Errorf("long fields:\n got %q\nwant %q", b.String(), want)
	}
}
