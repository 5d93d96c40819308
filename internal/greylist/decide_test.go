package greylist

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"greyd/internal/policy"
	"greyd/internal/store"
	"greyd/internal/store/buntdb"
	"greyd/internal/whitelist"
)

var t0 = time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)

func newStore(t testing.TB) *buntdb.DB {
	t.Helper()
	db, err := buntdb.Open(buntdb.Memory, buntdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testSnapshot(t testing.TB) *Snapshot {
	t.Helper()
	clients, ps := whitelist.ParseClients("clients", strings.NewReader("outlook.com\n/^mail\\d+\\.example\\.net$/\n192.0.2.7\n203.0.113.0/28\n2001:db8:ffff::/48\n"))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	rcpts, ps := whitelist.ParseRecipients("recipients", strings.NewReader("postmaster@\nabuse@\n"))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	return &Snapshot{
		Settings: Settings{
			Delay:                5 * time.Minute,
			RetryWindow:          48 * time.Hour,
			MaxAge:               35 * 24 * time.Hour,
			IPv4Prefix:           24,
			IPv6Prefix:           64,
			Action:               "DEFER_IF_PERMIT",
			Text:                 "Greylisted, see http://postgrey.schweikert.ch/help/%r.html",
			XGreylistHeader:      true,
			HeaderText:           DefaultHeaderText,
			Hostname:             "mx.example.org",
			Version:              "test",
			AutoWhitelistClients: 5,
			UseTestTime:          true,
		},
		Clients:    clients,
		Recipients: rcpts,
	}
}

// req builds a request as Postfix sends it at RCPT time.
func req(addr, name, sender, rcpt string) *policy.Request {
	return policy.ParseRequest(fmt.Sprintf("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=%s\nclient_name=%s\nsender=%s\nrecipient=%s\n", addr, name, sender, rcpt))
}

type step struct {
	at      time.Duration // since t0
	r       *policy.Request
	kind    Action
	reason  Reason
	missing int64 // Greylist
	waited  int64 // FirstPass
}

func runSteps(t *testing.T, snap *Snapshot, st store.Store, steps []step) {
	t.Helper()
	for i, s := range steps {
		d := Decide(context.Background(), s.r, snap, st, t0.Add(s.at))
		if d.Action != s.kind || d.Reason != s.reason || d.Missing != s.missing || d.Waited != s.waited || d.Err != nil {
			t.Errorf("step %d at +%v (%s/%s/%s): got kind=%d reason=%q missing=%d waited=%d err=%v; want kind=%d reason=%q missing=%d waited=%d",
				i, s.at, s.r.ClientAddress, s.r.Sender, s.r.Recipient, d.Action, d.Reason, d.Missing, d.Waited, d.Err, s.kind, s.reason, s.missing, s.waited)
		}
	}
}

func TestTimeline(t *testing.T) {
	a := req("198.51.100.60", "unknown", "alice@foo.example", "bob@example.org")
	runSteps(t, testSnapshot(t), newStore(t), []step{
		{0, a, Greylist, New, 300, 0},
		{30 * time.Second, a, Greylist, EarlyRetry, 270, 0},
		{299 * time.Second, a, Greylist, EarlyRetry, 1, 0},
		// The delay boundary is inclusive.
		{300 * time.Second, a, FirstPass, TripletFound, 0, 300},
		{301 * time.Second, a, Pass, TripletFound, 0, 0},
		{100 * time.Hour, a, Pass, TripletFound, 0, 0},
		// Same /24, other host: same triplet.
		{100 * time.Hour, req("198.51.100.61", "unknown", "alice@foo.example", "bob@example.org"), Pass, TripletFound, 0, 0},
		// Other /24: new triplet.
		{100 * time.Hour, req("198.51.101.60", "unknown", "alice@foo.example", "bob@example.org"), Greylist, New, 300, 0},
		// Recipient is lower-cased into the key, +ext is not stripped.
		{100 * time.Hour, req("198.51.100.60", "unknown", "alice@foo.example", "Bob@Example.ORG"), Pass, TripletFound, 0, 0},
		{100 * time.Hour, req("198.51.100.60", "unknown", "alice@foo.example", "bob+x@example.org"), Greylist, New, 300, 0},
		// Sender normalisation: +ext, VERP and BATV map to the same key.
		{100 * time.Hour, req("198.51.100.60", "unknown", "prvs=1234567890=Alice+list@Foo.example", "bob@example.org"), Pass, TripletFound, 0, 0},
	})
}

func TestRetryWindow(t *testing.T) {
	a := req("198.51.100.60", "", "a@x.example", "b@y.example")
	b := req("198.51.100.60", "", "c@x.example", "b@y.example")
	runSteps(t, testSnapshot(t), newStore(t), []step{
		{0, a, Greylist, New, 300, 0},
		// Strictly more than the retry window after first sight: start over.
		{48*time.Hour + time.Second, a, Greylist, New, 300, 0},
		{0, b, Greylist, New, 300, 0},
		// Exactly at the window: still counts, passes.
		{48 * time.Hour, b, FirstPass, TripletFound, 0, 48 * 3600},
	})
}

func TestMaxAgeAtLookup(t *testing.T) {
	a := req("198.51.100.60", "", "a@x.example", "b@y.example")
	snap := testSnapshot(t)
	snap.AutoWhitelistClients = 0
	runSteps(t, snap, newStore(t), []step{
		{0, a, Greylist, New, 300, 0},
		{5 * time.Minute, a, FirstPass, TripletFound, 0, 300},
		// Last seen at +5m; exactly max_age later it still counts...
		{5*time.Minute + 35*24*time.Hour, a, Pass, TripletFound, 0, 0},
		// ...and one second more than max_age after that last sighting it is
		// forgotten even though no cleanup ran (Postgrey still passed it).
		{5*time.Minute + 70*24*time.Hour + time.Second, a, Greylist, New, 300, 0},
	})
}

func TestClockBackwards(t *testing.T) {
	a := req("198.51.100.60", "", "a@x.example", "b@y.example")
	st := newStore(t)
	snap := testSnapshot(t)
	runSteps(t, snap, st, []step{
		{time.Hour, a, Greylist, New, 300, 0},
		{time.Hour + 5*time.Minute, a, FirstPass, TripletFound, 0, 300},
	})
	d := Decide(context.Background(), a, snap, st, t0)
	if d.Action != Greylist || d.Reason != New || !d.FutureCorrected {
		t.Errorf("first seen in the future: got %+v, want re-greylisted as new with FutureCorrected", d)
	}
}

func TestWhitelists(t *testing.T) {
	tests := []struct {
		r      *policy.Request
		reason Reason
	}{
		{req("198.51.100.1", "mail-x.outlook.com", "a@b", "c@d"), ClientWhitelist},
		{req("198.51.100.1", "MAIL7.EXAMPLE.NET", "a@b", "c@d"), ClientWhitelist},
		{req("192.0.2.7", "unknown", "a@b", "c@d"), ClientWhitelist},
		{req("203.0.113.15", "unknown", "a@b", "c@d"), ClientWhitelist},
		{req("::ffff:203.0.113.3", "unknown", "a@b", "c@d"), ClientWhitelist},
		{req("2001:db8:ffff:1::25", "unknown", "a@b", "c@d"), ClientWhitelist},
		{req("198.51.100.1", "unknown", "a@b", "Postmaster@example.org"), RecipientWhitelist},
		{req("198.51.100.1", "unknown", "a@b", "abuse+x@example.org"), RecipientWhitelist},
		// Client whitelist is checked before the recipient whitelist.
		{req("192.0.2.7", "unknown", "a@b", "postmaster@example.org"), ClientWhitelist},
	}
	snap, st := testSnapshot(t), newStore(t)
	for i, tc := range tests {
		d := Decide(context.Background(), tc.r, snap, st, t0)
		if d.Action != Pass || d.Reason != tc.reason {
			t.Errorf("%d: %s[%s] -> %s: got kind=%d reason=%q, want pass %q", i, tc.r.ClientName, tc.r.ClientAddress, tc.r.Recipient, d.Action, d.Reason, tc.reason)
		}
	}
	// Not whitelisted: neighbours of the entries.
	for i, r := range []*policy.Request{
		req("203.0.113.16", "notoutlook.com", "a@b", "c@d"),
		req("192.0.2.8", "outlook.com.evil.example", "a@b", "postmaster.x@d"),
		req("2001:db8:fffe::25", "mail7.example.net.x", "a@b", "c@d"),
	} {
		if d := Decide(context.Background(), r, snap, st, t0); d.Action != Greylist {
			t.Errorf("neighbour %d (%s[%s]): got kind=%d reason=%q, want greylisted", i, r.ClientName, r.ClientAddress, d.Action, d.Reason)
		}
	}
}

func TestAutoWhitelist(t *testing.T) {
	snap, st := testSnapshot(t), newStore(t)
	ip := "198.51.100.60"
	// Five distinct triplets complete greylisting, an hour apart.
	var steps []step
	for i := 0; i < 5; i++ {
		r := req(ip, "", fmt.Sprintf("s%c@x.example", 'a'+i), "b@y.example")
		base := time.Duration(i) * time.Hour
		steps = append(steps,
			step{base, r, Greylist, New, 300, 0},
			step{base + 5*time.Minute, r, FirstPass, TripletFound, 0, 300},
		)
	}
	// Now the client is auto-whitelisted: a new triplet passes at once.
	steps = append(steps, step{5 * time.Hour, req(ip, "", "new@x.example", "z@y.example"), Pass, ClientAWL, 0, 0})
	// The AWL is per exact address: a neighbour in the /24 is not.
	steps = append(steps, step{5 * time.Hour, req("198.51.100.61", "", "new@x.example", "z@y.example"), Greylist, New, 300, 0})
	runSteps(t, snap, st, steps)

	// At most one count per hour: five passes within one hour count once.
	snap2, st2 := testSnapshot(t), newStore(t)
	steps = nil
	for i := 0; i < 6; i++ {
		r := req(ip, "", fmt.Sprintf("s%c@x.example", 'a'+i), "b@y.example")
		at := time.Duration(i) * time.Minute
		steps = append(steps, step{at, r, Greylist, New, 300, 0}, step{at + 5*time.Minute, r, FirstPass, TripletFound, 0, 300})
	}
	steps = append(steps, step{30 * time.Minute, req(ip, "", "new@x.example", "z@y.example"), Greylist, New, 300, 0})
	runSteps(t, snap2, st2, steps)
	c, found, err := st2.Client(context.Background(), "198.51.100.60")
	if err != nil || !found || c.Count != 1 {
		t.Errorf("client entry after six passes in one hour: %+v found=%v err=%v, want count 1", c, found, err)
	}

	// clients = 0 disables the auto-whitelist: nothing is stored.
	snap3, st3 := testSnapshot(t), newStore(t)
	snap3.AutoWhitelistClients = 0
	r := req(ip, "", "a@x.example", "b@y.example")
	runSteps(t, snap3, st3, []step{{0, r, Greylist, New, 300, 0}, {5 * time.Minute, r, FirstPass, TripletFound, 0, 300}})
	if _, found, _ := st3.Client(context.Background(), ip); found {
		t.Error("auto-whitelist disabled but a client entry was stored")
	}
}

func TestNewlyWhitelisted(t *testing.T) {
	snap, st := testSnapshot(t), newStore(t)
	snap.AutoWhitelistClients = 1
	r := req("198.51.100.60", "", "a@x.example", "b@y.example")
	Decide(context.Background(), r, snap, st, t0)
	d := Decide(context.Background(), r, snap, st, t0.Add(5*time.Minute))
	if !d.NewlyWhitelisted {
		t.Errorf("first pass with clients=1: NewlyWhitelisted = false, want true")
	}
}

func TestLookupByHost(t *testing.T) {
	snap := testSnapshot(t)
	snap.LookupByHost = true
	a := req("198.51.100.60", "", "a@x.example", "b@y.example")
	runSteps(t, snap, newStore(t), []step{
		{0, a, Greylist, New, 300, 0},
		{5 * time.Minute, a, FirstPass, TripletFound, 0, 300},
		{6 * time.Minute, req("198.51.100.61", "", "a@x.example", "b@y.example"), Greylist, New, 300, 0},
	})
}

func TestIPv6Subnet(t *testing.T) {
	a := req("2001:db8:1:2::25", "", "a@x.example", "b@y.example")
	runSteps(t, testSnapshot(t), newStore(t), []step{
		{0, a, Greylist, New, 300, 0},
		{5 * time.Minute, req("2001:db8:1:2:ffff::1", "", "a@x.example", "b@y.example"), FirstPass, TripletFound, 0, 300},
		{6 * time.Minute, req("2001:db8:1:3::25", "", "a@x.example", "b@y.example"), Greylist, New, 300, 0},
	})
}

func TestSkip(t *testing.T) {
	tests := []struct {
		text, warning string
	}{
		{"request=smtpd_access_policy\nclient_name=x\nsender=a@b\nrecipient=c@d\n", "attribute missing: client_address"},
		{"request=smtpd_access_policy\nclient_address=1.2.3.4\nsender=a@b\nrecipient=c@d\n", "attribute missing: client_name"},
		{"request=smtpd_access_policy\nclient_address=1.2.3.4\nclient_name=x\nsender=a@b\n", "attribute missing: recipient"},
		{"request=smtpd_access_policy\nclient_address=1.2.3.4\nclient_name=x\nrecipient=c@d\n", "attribute missing: sender"},
		{"request=smtpd_access_policy\nclient_address=localhost\nclient_name=x\nsender=\nrecipient=c@d\n", "client_address is not an IP address: 'localhost'"},
		{"request=smtpd_access_policy\nclient_address=\nclient_name=x\nsender=\nrecipient=c@d\n", "client_address is not an IP address: ''"},
		{"request=junk\nclient_address=1.2.3.4\n", "unrecognized request type: 'junk'"},
		{"client_address=1.2.3.4\n", "request attribute missing: not a policy request"},
	}
	snap, st := testSnapshot(t), newStore(t)
	for i, tc := range tests {
		d := Decide(context.Background(), policy.ParseRequest(tc.text), snap, st, t0)
		if d.Action != Skip || d.Warning != tc.warning {
			t.Errorf("%d: got kind=%d warning=%q, want skip %q", i, d.Action, d.Warning, tc.warning)
		}
	}
}

func TestPolicyTestTime(t *testing.T) {
	snap, st := testSnapshot(t), newStore(t)
	text := "request=smtpd_access_policy\nclient_address=198.51.100.1\nclient_name=x\nsender=a@b\nrecipient=c@d\npolicy_test_time=%d\n"
	Decide(context.Background(), policy.ParseRequest(fmt.Sprintf(text, t0.Unix())), snap, st, time.Now())
	d := Decide(context.Background(), policy.ParseRequest(fmt.Sprintf(text, t0.Unix()+310)), snap, st, time.Now())
	if d.Action != FirstPass || d.Waited != 310 {
		t.Errorf("policy_test_time +310: got %+v, want first pass after 310 s", d)
	}
	snap.UseTestTime = false
	d = Decide(context.Background(), policy.ParseRequest(fmt.Sprintf(strings.Replace(text, "a@b", "z@b", 1), t0.Unix()+310)), snap, st, t0)
	if !d.Now.Equal(t0) {
		t.Errorf("UseTestTime off: decision time %v, want the clock's %v", d.Now, t0)
	}
}

// TestPolicyTestTimeRange: only Unix times from 2000 to 2100 move the
// clock; others are ignored and flagged for a warning.
func TestPolicyTestTimeRange(t *testing.T) {
	tests := []struct {
		value string
		want  time.Time // zero: the clock
	}{
		{"946684800", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"4102444800", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"1700000000", time.Unix(1700000000, 0)},
		{"946684799", time.Time{}},
		{"4102444801", time.Time{}},
		{"9223372036854775807", time.Time{}},
		{"-1", time.Time{}},
		{"0", time.Time{}},
		{"1e9", time.Time{}},
		{"99999999999999999999", time.Time{}},
	}
	snap := testSnapshot(t)
	for i, tc := range tests {
		r := policy.ParseRequest(fmt.Sprintf("request=smtpd_access_policy\nclient_address=198.51.100.1\nclient_name=x\nsender=r%d@b\nrecipient=c@d\npolicy_test_time=%s\n", i, tc.value))
		d := Decide(context.Background(), r, snap, newStore(t), t0)
		want, bad := tc.want, tc.want.IsZero()
		if bad {
			want = t0
		}
		if !d.Now.Equal(want) || d.BadTestTime != bad || d.Input.FixedNow == bad || d.Input.Now != want.Unix() {
			t.Errorf("policy_test_time=%s: decided at %v (store told %d, fixed %v), BadTestTime %v; want %v, %v",
				tc.value, d.Now, d.Input.Now, d.Input.FixedNow, d.BadTestTime, want, bad)
		}
	}
	// Off (the default), the attribute is ignored without a word.
	snap.UseTestTime = false
	r := policy.ParseRequest("request=smtpd_access_policy\nclient_address=198.51.100.1\nclient_name=x\nsender=a@b\nrecipient=c@d\npolicy_test_time=-5\n")
	if d := Decide(context.Background(), r, snap, newStore(t), t0); !d.Now.Equal(t0) || d.BadTestTime || d.Input.FixedNow {
		t.Errorf("UseTestTime off: decided at %v, BadTestTime %v, fixed %v; want the clock, no warning", d.Now, d.BadTestTime, d.Input.FixedNow)
	}
}

func TestPrivacyKeys(t *testing.T) {
	snap, st := testSnapshot(t), newStore(t)
	snap.Privacy = NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	r := req("198.51.100.60", "", "a@x.example", "b@y.example")
	runSteps(t, snap, st, []step{{0, r, Greylist, New, 300, 0}, {5 * time.Minute, r, FirstPass, TripletFound, 0, 300}})
	for _, k := range []string{"198.51.100.0/a@x.example/b@y.example"} {
		if _, found, _ := st.Triplet(context.Background(), k); found {
			t.Errorf("privacy on, but plain key %q is stored", k)
		}
	}
	if _, found, _ := st.Client(context.Background(), "198.51.100.60"); found {
		t.Error("privacy on, but the plain client address is stored")
	}
	var buf []byte
	if k := snap.Privacy.Append(buf, []byte("198.51.100.0/a@x.example/b@y.example")); len(k) != 32 {
		t.Errorf("hashed key %q: want 32 hex characters", k)
	}
}

func TestStoreFailureFailsOpen(t *testing.T) {
	st := newStore(t)
	st.Close()
	snap := testSnapshot(t)
	var logs bytes.Buffer
	e := NewEngine(st, snap, func() time.Time { return t0 }, slog.New(slog.NewTextHandler(&logs, nil)))
	got := e.ServePolicy(context.Background(), req("198.51.100.60", "", "a@x.example", "b@y.example"))
	if got != "DUNNO" {
		t.Errorf("closed store: reply %q, want DUNNO", got)
	}
	if !strings.Contains(logs.String(), "store failed") {
		t.Errorf("closed store: log %q does not say the store failed", logs.String())
	}
}
