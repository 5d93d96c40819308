package report

import (
	"net/netip"
	"strings"
	"testing"
)

// The message of a Postfix 3.7 smtpd reject of greyd's default reply.
const rejectMsg = "NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<mail.example.net>"

// The same attempt, as greyd logs it.
const decisionMsg = "action=greylist, reason=new, client_name=mail.example.net, client_address=198.51.100.7, sender=alice@example.net, recipient=bob@example.org"

func TestParse(t *testing.T) {
	addr := netip.MustParseAddr("198.51.100.7")
	v6 := netip.MustParseAddr("2001:db8::25")
	rej := func(ts string) Event {
		return Event{Kind: Reject, Time: ts, Name: "mail.example.net", Addr: addr, Sender: "alice@example.net", Recipient: "bob@example.org"}
	}
	grey := func(ts string) Event {
		e := rej(ts)
		e.Kind = Greylist
		return e
	}
	none := Event{}
	tests := []struct {
		name string
		line string
		want Event // zero: not a line of the report
	}{
		// Postfix's reject, in every format a log comes in.
		{"syslog", "Dec  7 04:24:54 mx1 postfix/smtpd[12345]: " + rejectMsg, rej("Dec  7 04:24:54")},
		{"rsyslog RFC 3339", "2024-12-07T04:24:54.123456+01:00 mx1 postfix/smtpd[12345]: " + rejectMsg, rej("2024-12-07T04:24:54.123456+01:00")},
		{"rsyslog RFC 3339 UTC", "2024-12-07T03:24:54Z mx1 postfix/smtpd[12345]: " + rejectMsg, rej("2024-12-07T03:24:54Z")},
		{"journalctl short", "Dec 07 04:24:54 mx1 postfix/smtpd[12345]: " + rejectMsg, rej("Dec 07 04:24:54")},
		{"journalctl short-precise", "Dec 07 04:24:54.123456 mx1 postfix/smtpd[12345]: " + rejectMsg, rej("Dec 07 04:24:54.123456")},
		{"journalctl short-iso", "2024-12-07T04:24:54+0100 mx1 postfix/smtpd[12345]: " + rejectMsg, rej("2024-12-07T04:24:54+0100")},
		{"journalctl short-iso-precise", "2024-12-07T04:24:54.123456+01:00 mx1 postfix/smtpd[12345]: " + rejectMsg, rej("2024-12-07T04:24:54.123456+01:00")},
		{"journalctl short-full", "Sat 2024-12-07 04:24:54 CET mx1 postfix/smtpd[12345]: " + rejectMsg, rej("Sat 2024-12-07 04:24:54 CET")},
		{"journalctl short-unix", "1733541894.123456 mx1 postfix/smtpd[12345]: " + rejectMsg, rej("1733541894.123456")},
		{"journalctl short-monotonic", "[  123.456789] mx1 postfix/smtpd[12345]: " + rejectMsg, rej("[  123.456789]")},
		{"journalctl cat", rejectMsg, rej("")},
		{"postlogd (maillog_file)", "Dec 07 04:24:54.123456 mx1 postfix/smtpd[12345]: " + rejectMsg, rej("Dec 07 04:24:54.123456")},
		{"submission service", "Dec  7 04:24:54 mx1 postfix/submission/smtpd[12345]: " + rejectMsg, rej("Dec  7 04:24:54")},
		{"second instance", "Dec  7 04:24:54 mx1 postfix-in/smtpd[12345]: " + rejectMsg, rej("Dec  7 04:24:54")},
		{"queue ID (a recipient was accepted before)", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: 4F3A21C0B2D: reject: RCPT from mail.example.net[198.51.100.7]: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<mail.example.net>", rej("Dec  7 04:24:54")},
		{"client port logged", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]:54321: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<mail.example.net>", rej("Dec  7 04:24:54")},
		{"DATA stage", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: DATA from mail.example.net[198.51.100.7]: 450 4.7.1 <DATA>: Data command rejected: Greylisted; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<mail.example.net>", rej("Dec  7 04:24:54")},
		{"IPv6, unknown name, null sender", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[2001:db8::25]: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html; from=<> to=<bob@example.org> proto=ESMTP helo=<[IPv6:2001:db8::25]>",
			Event{Kind: Reject, Time: "Dec  7 04:24:54", Name: "unknown", Addr: v6, Recipient: "bob@example.org"}},
		{"IPv4-mapped", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[::ffff:198.51.100.7]: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted; from=<alice@example.net> to=<bob@example.org> proto=SMTP", rej("Dec  7 04:24:54")},
		{"no 4.2.0 (action DEFER_IF_PERMIT with a text of its own)", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 450 <bob@example.org>: Recipient address rejected: Greylisted for 300 seconds; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<x>", rej("Dec  7 04:24:54")},
		{"451 (action = \"451 4.7.1\")", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 451 4.7.1 <bob@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<mail.example.net>", rej("Dec  7 04:24:54")},
		{"quoted local part", `Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted; from=<"a> to=<x"@example.net> to=<bob@example.org> proto=ESMTP helo=<x>`,
			Event{Kind: Reject, Time: "Dec  7 04:24:54", Name: "mail.example.net", Addr: addr, Sender: `"a> to=<x"@example.net`, Recipient: "bob@example.org"}},

		// What an SMTP client chose cannot pass for Postfix's fields.
		{"helo with a from= of its own", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: " + strings.Replace(rejectMsg, "helo=<mail.example.net>", "helo=<x; from=<evil@x.example> to=<evil@y.example>>", 1), rej("Dec  7 04:24:54")},
		{"recipient with the text and a from=", `Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 450 4.2.0 <"Greylisted; from=<e@x> to=<e@y>"@example.org>: Recipient address rejected: Greylisted; from=<alice@example.net> to=<"Greylisted; from=<e@x> to=<e@y>"@example.org> proto=ESMTP helo=<x>`,
			Event{Kind: Reject, Time: "Dec  7 04:24:54", Name: "mail.example.net", Addr: addr, Sender: "alice@example.net", Recipient: `"Greylisted; from=<e@x> to=<e@y>"@example.org`}},
		{"a 450 of another restriction, Greylisted in the helo", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 450 4.7.1 Client host rejected: cannot find your hostname, [198.51.100.7]; from=<a@b.example> to=<bob@example.org> proto=ESMTP helo=<Greylisted>", none},
		{"non-UTF-8 sender", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted; from=<\xff\xfe@example.net> to=<bob@example.org> proto=ESMTP helo=<x>",
			Event{Kind: Reject, Time: "Dec  7 04:24:54", Name: "mail.example.net", Addr: addr, Sender: "\xff\xfe@example.net", Recipient: "bob@example.org"}},

		// Not greylisting.
		{"postscreen", "Dec  7 04:24:54 mx1 postfix/postscreen[1]: NOQUEUE: reject: RCPT from [198.51.100.7]:54321: 450 4.3.2 Service currently unavailable; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<mail.example.net>", none},
		{"postscreen, greylist text", "Dec  7 04:24:54 mx1 postfix/postscreen[1]: NOQUEUE: reject: RCPT from [198.51.100.7]:54321: 450 4.3.2 Greylisted; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<mail.example.net>", none},
		{"DNSBL 554", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<Greylisted>", none},
		{"greyd unreachable", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 451 4.3.5 <bob@example.org>: Recipient address rejected: Server configuration problem; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<x>", none},
		{"reject_warning (soft_bounce, warn_if_reject)", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject_warning: RCPT from mail.example.net[198.51.100.7]: 450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<x>", none},
		{"connect", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: connect from mail.example.net[198.51.100.7]", none},
		{"qmgr", "Dec  7 04:24:54 mx1 postfix/qmgr[2]: 4F3A21C0B2D: from=<alice@example.net>, size=1234, nrcpt=1 (queue active)", none},
		{"local delivery", "Dec  7 04:24:54 mx1 postfix/local[3]: 4F3A21C0B2D: to=<bob@example.org>, relay=local, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (delivered to mailbox)", none},
		{"cleanup", "Dec  7 04:24:54 mx1 postfix/cleanup[4]: 4F3A21C0B2D: message-id=<action=greylist@example.net>", none},
		{"smtpd warning", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: warning: problem talking to server greyd/socket: Connection refused", none},

		// greyd's own lines.
		{"greyd, syslog", "Dec  7 04:24:54 mx1 greyd[777]: " + decisionMsg, grey("Dec  7 04:24:54")},
		{"greyd, journalctl short-iso", "2024-12-07T04:24:54+0100 mx1 greyd[777]: " + decisionMsg, grey("2024-12-07T04:24:54+0100")},
		{"greyd, its standard error", "2024-12-07T04:24:54.123+01:00 " + decisionMsg, grey("2024-12-07T04:24:54.123+01:00")},
		{"greyd, journal stream with priority", "<5>" + decisionMsg, grey("")},
		{"greyd, journalctl cat", decisionMsg, grey("")},
		{"greyd, queue ID", "Dec  7 04:24:54 mx1 greyd[777]: 4F3A21C0B2D: " + decisionMsg, grey("Dec  7 04:24:54")},
		{"greyd, early retry", "Dec  7 04:24:54 mx1 greyd[777]: action=greylist, reason=early-retry (180s missing), client_name=mail.example.net, client_address=198.51.100.7, sender=alice@example.net, recipient=bob@example.org", grey("Dec  7 04:24:54")},
		{"greyd, null sender, IPv6", "Dec  7 04:24:54 mx1 greyd[777]: action=greylist, reason=new, client_name=unknown, client_address=2001:db8::25, recipient=bob@example.org",
			Event{Kind: Greylist, Time: "Dec  7 04:24:54", Name: "unknown", Addr: v6, Recipient: "bob@example.org"}},
		{"greyd, no client_name", "action=greylist, reason=new, client_address=2001:db8::25, sender=a@b.example, recipient=bob@example.org",
			Event{Kind: Greylist, Name: "unknown", Addr: v6, Sender: "a@b.example", Recipient: "bob@example.org"}},
		{"greyd, first pass", "Dec  7 04:30:00 mx1 greyd[777]: action=pass, reason=triplet found, delay=306, client_name=mail.example.net, client_address=198.51.100.7, sender=alice@example.net, recipient=bob@example.org",
			Event{Kind: Pass, Time: "Dec  7 04:30:00", Name: "mail.example.net", Addr: addr, Sender: "alice@example.net", Recipient: "bob@example.org"}},
		{"greyd, auto-whitelisted", "action=pass, reason=client AWL, client_name=mail.example.net, client_address=198.51.100.7, sender=alice@example.net, recipient=bob@example.org",
			Event{Kind: Pass, Name: "mail.example.net", Addr: addr, Sender: "alice@example.net", Recipient: "bob@example.org"}},
		{"greyd, sender with a recipient= of its own", "action=greylist, reason=new, client_name=unknown, client_address=198.51.100.7, sender=a, recipient=x@y, recipient=bob@example.org",
			Event{Kind: Greylist, Name: "unknown", Addr: addr, Sender: "a, recipient=x@y", Recipient: "bob@example.org"}},
		{"greyd, dry run", "Dec  7 04:24:54 mx1 greyd[777]: " + decisionMsg + " (dry run)", none},
		{"greyd, warning", "Dec  7 04:24:54 mx1 greyd[777]: warning: client_address is not an IP address: 'x': answering DUNNO (client x[x])", none},
		{"greyd, whitelisted", "Dec  7 04:24:54 mx1 greyd[777]: whitelisted: mail.example.net[198.51.100.7]", none},
		{"greyd, bad address", "action=greylist, reason=new, client_name=x, client_address=not-an-ip, sender=a@b, recipient=c@d", none},
		{"greyd, no recipient", "action=greylist, reason=new, client_name=x, client_address=198.51.100.7, sender=a@b", none},
		{"a decision in another line's helo", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: lost connection after EHLO from x[198.51.100.7]: helo=<action=greylist, reason=new, client_name=x, client_address=198.51.100.9, recipient=c@d>", none},

		// Garbage.
		{"empty", "", none},
		{"NUL bytes", "\x00\x00\x00", none},
		{"bare marker", "reject: ", none},
		{"bare action", "action=", none},
		{"cut short", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[", none},
		{"cut after the text", "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[198.51.100.7]: 450 4.2.0 <b@example.org>: Recipient address rejected: Greylisted; from=<a@b", none},
		{"empty recipient", "NOQUEUE: reject: RCPT from x[198.51.100.7]: 450 4.2.0 <>: Recipient address rejected: Greylisted; from=<a@b> to=<> proto=ESMTP", none},
		{"bad address", "NOQUEUE: reject: RCPT from x[999.1.1.1]: 450 4.2.0 <b@c>: Recipient address rejected: Greylisted; from=<a@b> to=<b@c> proto=ESMTP", none},
		{"timestamp only", "Dec  7 04:24:54", none},
		{"priority only", "<5>", none},
		{"unclosed quote", `NOQUEUE: reject: RCPT from x[198.51.100.7]: 450 4.2.0 <b@c>: Recipient address rejected: Greylisted; from=<"a@b> to=<b@c> proto=ESMTP`, none},
	}
	p := &Parser{}
	for _, tc := range tests {
		got, ok := p.Parse(tc.line)
		if ok != (tc.want != none) || got != tc.want {
			t.Errorf("%s: Parse(%q)\n got %+v, %v\nwant %+v", tc.name, tc.line, got, ok, tc.want)
		}
	}
}

func TestParseText(t *testing.T) {
	line := "Dec  7 04:24:54 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from mail.example.net[198.51.100.7]: 450 4.7.1 <bob@example.org>: Recipient address rejected: Please try again later; from=<alice@example.net> to=<bob@example.org> proto=ESMTP helo=<x>"
	for _, tc := range []struct {
		text string
		ok   bool
	}{
		{"", false},
		{"Greylisted", false},
		{"try again", true},
		{"Please try again later", true},
	} {
		p := &Parser{Text: tc.text}
		if _, ok := p.Parse(line); ok != tc.ok {
			t.Errorf("text %q: Parse ok = %v, want %v", tc.text, ok, tc.ok)
		}
	}
}

func TestTextOf(t *testing.T) {
	tests := []struct{ text, want string }{
		{"Greylisted, see http://postgrey.schweikert.ch/help/%r.html", "Greylisted"},
		{"", "Greylisted"},
		{"%s", "Greylisted"},
		{"4.7.1 Please try again in %s seconds", "Please try again in"},
		{"Come back later (%r)", "Come back later ("},
		{"100% sure: later", "100% sure: later"},
		{"4.7.1", "4.7.1"},
	}
	for _, tc := range tests {
		if got := TextOf(tc.text); got != tc.want {
			t.Errorf("TextOf(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}
