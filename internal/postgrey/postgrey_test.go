package postgrey

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"greyd/internal/config"
	"greyd/internal/greylist"
	"greyd/internal/normalize"
	"greyd/internal/store"
)

func TestDumpReader(t *testing.T) {
	in := "VERSION=3\nformat=print\ntype=btree\ndb_pagesize=4096\nHEADER=END\n" +
		" 198.51.100.0/alice@foo.com/bob@example.org\n 100,200\n" +
		" back\\\\slash\\2fx\\01/a@b/c@d\n 1,2\n" + // line 8
		"no leading space\n 5,6\n" + // 10, 11: pair dropped
		" 203.0.113.0/x@y/z@w\n bad\\zzescape\n" + // 12, 13: pair dropped
		"DATA=END\n" +
		"VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n" +
		" 3139322e302e322e31\n 352c393939\n" + // 192.0.2.1 -> 5,999
		" 0a\n" + // key without value
		"DATA=END\n"
	d := NewDumpReader(strings.NewReader(in))
	var got []Record
	for {
		r, err := d.Next()
		if err != nil {
			break
		}
		got = append(got, r)
	}
	want := []Record{
		{DB: 0, Key: "198.51.100.0/alice@foo.com/bob@example.org", Value: "100,200", Line: 6},
		{DB: 0, Key: "back\\slash/x\x01/a@b/c@d", Value: "1,2", Line: 8},
		{DB: 1, Key: "192.0.2.1", Value: "5,999", Line: 19},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("records:\n got %+v\nwant %+v", got, want)
	}
	lines := map[int]bool{}
	lost := 0
	for _, p := range d.Problems() {
		lines[p.Line] = true
		if p.Lost {
			lost++
		}
	}
	for _, l := range []int{10, 13, 12, 21} {
		if !lines[l] {
			t.Errorf("no problem reported on line %d: %+v", l, d.Problems())
		}
	}
	if lost != 3 {
		t.Errorf("lost pairs = %d, want 3: %+v", lost, d.Problems())
	}
}

func TestWriteDumpRoundTrip(t *testing.T) {
	es := []Entry{{"198.51.100.0/a@b/c@d", "1,2"}, {"x\\y\x00\n\xff z", "3,4"}}
	var b bytes.Buffer
	if err := WriteDump(&b, es); err != nil {
		t.Fatal(err)
	}
	d := NewDumpReader(&b)
	for i, e := range es {
		r, err := d.Next()
		if err != nil || r.Key != e.Key || r.Value != e.Value {
			t.Errorf("%d: got %+v, %v; want %+v", i, r, err, e)
		}
	}
	if len(d.Problems()) > 0 {
		t.Errorf("problems: %v", d.Problems())
	}
}

func TestParseTripletKey(t *testing.T) {
	tests := []struct {
		key     string
		src     Source
		client  string
		sender  string
		rcpt    string
		mapped  bool
		wantErr bool
	}{
		{key: "198.51.100.0/alice@foo.com/bob@example.org", client: "198.51.100.0/24", sender: "alice@foo.com", rcpt: "bob@example.org"},
		{key: "198.51.100.7/32/alice@foo.com/bob@example.org", client: "198.51.100.7/32", sender: "alice@foo.com", rcpt: "bob@example.org"},
		{key: "2001:db8:1:2:0:0:0:0/bounce-#@foo.com/bob@example.org", client: "2001:db8:1:2::/64", sender: "bounce-#@foo.com", rcpt: "bob@example.org"},
		{key: "2001:db8:0:0:0:0:0:1/128/a@b/c@d", client: "2001:db8::1/128", sender: "a@b", rcpt: "c@d"},
		// 1.36: the length printed.
		{key: "198.51.100.0/24/a@b/c@d", client: "198.51.100.0/24", sender: "a@b", rcpt: "c@d"},
		{key: "2001:db8:1:2:0:0:0:0/64/a@b/c@d", client: "2001:db8:1:2::/64", sender: "a@b", rcpt: "c@d"},
		// ≤1.35: dial-up pool host, raw IPv6 address.
		{key: "198.51.100.7/a@b/c@d", client: "198.51.100.7/32", sender: "a@b", rcpt: "c@d"},
		{key: "2001:db8::/a@b/c@d", client: "2001:db8::/128", sender: "a@b", rcpt: "c@d"},
		{key: "2001:db8::5/a@b/c@d", client: "2001:db8::5/128", sender: "a@b", rcpt: "c@d"},
		// Postgrey run with --ipv4cidr=16.
		{key: "198.51.0.0/a@b/c@d", src: Source{IPv4Prefix: 16, IPv6Prefix: 64}, client: "198.51.0.0/16", sender: "a@b", rcpt: "c@d"},
		// Null sender, slashes in local parts.
		{key: "198.51.100.0//bob@example.org", client: "198.51.100.0/24", sender: "", rcpt: "bob@example.org"},
		{key: "198.51.100.0/a/b@x.org/c/d@y.org", client: "198.51.100.0/24", sender: "a/b@x.org", rcpt: "c/d@y.org"},
		{key: "198.51.100.0//c/d@y.org", client: "198.51.100.0/24", sender: "", rcpt: "c/d@y.org"},
		// Mapped: shared /64, or kept by host.
		{key: "0:0:0:0:0:0:0:0/a@b/c@d", client: "::/64", sender: "a@b", rcpt: "c@d", mapped: true},
		{key: "0:0:0:0:0:ffff:c000:201/128/a@b/c@d", client: "192.0.2.1/32", sender: "a@b", rcpt: "c@d"},
		{key: "0123456789abcdef0123456789abcdef01234567", wantErr: true},
		{key: "not-an-ip/a@b/c@d", wantErr: true},
		{key: "198.51.100.0/a@b", wantErr: true},
		{key: "198.51.100.0", wantErr: true},
	}
	for i, tc := range tests {
		src := tc.src
		if src.IPv4Prefix == 0 {
			src = DefaultSource
		}
		k, err := ParseTripletKey(tc.key, src)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%d: %q: no error, got %+v", i, tc.key, k)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d: %q: %v", i, tc.key, err)
			continue
		}
		if k.Client.String() != tc.client || k.Sender != tc.sender || k.Recipient != tc.rcpt || k.Mapped != tc.mapped {
			t.Errorf("%d: %q: got %v %q %q mapped=%v, want %v %q %q mapped=%v", i, tc.key, k.Client, k.Sender, k.Recipient, k.Mapped, tc.client, tc.sender, tc.rcpt, tc.mapped)
		}
	}
}

func TestParseClientKeyAndValue(t *testing.T) {
	for key, want := range map[string]string{
		"198.51.100.7":            "198.51.100.7",
		"2001:DB8:0:0:0:0:0:1":    "2001:db8::1",
		"0:0:0:0:0:FFFF:C000:201": "192.0.2.1",
	} {
		a, err := ParseClientKey(key)
		if err != nil || a.String() != want {
			t.Errorf("%q: got %v, %v; want %s", key, a, err, want)
		}
	}
	if _, err := ParseClientKey("0123456789abcdef0123456789abcdef01234567"); err != ErrPrivacy {
		t.Errorf("privacy key: %v", err)
	}
	for v, ok := range map[string]bool{"1,2": true, "1,2,7": true, "1": false, "a,b": false, "1,2,3,4": false, "-1,2": false} {
		if _, _, err := ParseValue(v); (err == nil) != ok {
			t.Errorf("ParseValue(%q): %v", v, err)
		}
	}
}

// postgreySender is Postgrey 1.37's do_sender_substitutions followed by
// the key's lc, transcribed from the reference, to check what greyd makes
// of the senders Postgrey stored.
func postgreySender(s string) string {
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return strings.ToLower(s)
	}
	user, domain := s[:at], s[at+1:]
	if strings.HasPrefix(user, "prvs=") {
		a := strings.Split(strings.TrimRight(user, "="), "=")
		tag := regexp.MustCompile(`^[0-9a-z]{10}`)
		if len(a) == 3 {
			switch {
			case tag.MatchString(a[1]) && !tag.MatchString(a[2]):
				user = a[2]
			case tag.MatchString(a[2]) && !tag.MatchString(a[1]):
				user = a[1]
			default:
				user = a[2]
			}
		}
	}
	if i := strings.IndexByte(user, '+'); i >= 0 {
		user = user[:i]
	}
	user = regexp.MustCompile(`\b\d+\b`).ReplaceAllString(user, "#")
	return strings.ToLower(user + "@" + domain)
}

// TestStoredSenderMapsToGreydKey checks that greyd's sender part of a
// stored Postgrey sender equals greyd's sender part of the original
// sender: then greyd finds the imported entry at the next request.
func TestStoredSenderMapsToGreydKey(t *testing.T) {
	same := []string{
		"", "alice@foo.com", "Alice+list@Foo.COM", "prvs=1234567890=bounce@foo.com",
		"prvs=bounce=1234567890@foo.com", "prvs=abc=def@foo.com", "bounce-123-456@lists.foo.com",
		"user.2023@foo.com", "user2023@foo.com", "bounces+12345-abcd-me=x.org@sendgrid.net",
		"msprvs1=19ABCDEF=bounces-123@foo.com", "a@b@c.com", "PRVS=1234567890=bounce@foo.com",
		"PRVS=abcdef1234=bounce@foo.com", "SRS0=HHH=TT=domain.com=user@srs.example",
		"SRS0=1234=56=domain.com=bounce-77@fwd.example", "SRS0=HHH=TT=domain.com=user+tag@srs.example",
		"SRS1=HHH=fwd1.example==HHH=TT=orig.example=u@fwd2.example", "no-at-sign", "123@numbers.example",
	}
	for _, s := range same {
		stored := postgreySender(s)
		got := string(normalize.AppendSender(nil, stored))
		want := string(normalize.AppendSender(nil, s))
		if got != want {
			t.Errorf("sender %q: Postgrey stored %q, greyd maps it to %q but keys the request as %q", s, stored, got, want)
		}
	}
	// Known differences (README "Switching from Postgrey"): Postgrey's
	// case-sensitive BATV tag picks the tag as the user, and an SRS
	// address with '+' as separator loses everything after it.
	differ := []string{"prvs=user=ABCDEFGHIJ@x.example", "SRS0+HHH=TT=domain.com=user@srs.example"}
	for _, s := range differ {
		if got, want := string(normalize.AppendSender(nil, postgreySender(s))), string(normalize.AppendSender(nil, s)); got == want {
			t.Errorf("sender %q: expected a documented difference, both give %q", s, got)
		}
	}
}

func snapshot(byHost bool, v4, v6 int) *greylist.Snapshot {
	return &greylist.Snapshot{Settings: greylist.Settings{
		Delay: 300 * time.Second, RetryWindow: 2 * config.Day, MaxAge: 35 * config.Day,
		LookupByHost: byHost, IPv4Prefix: v4, IPv6Prefix: v6, AutoWhitelistClients: 5,
	}}
}

func TestImporter(t *testing.T) {
	const now = 1_800_000_000
	day := int64(86400)
	dump := func(recs ...string) string {
		var b strings.Builder
		b.WriteString("VERSION=3\nformat=print\ntype=btree\nHEADER=END\n")
		for _, r := range recs {
			b.WriteString(" " + r + "\n")
		}
		b.WriteString("DATA=END\n")
		return b.String()
	}
	pair := func(a, b int64) string { return pair(a, b) }
	in := dump(
		"198.51.100.0/alice@foo.com/bob@example.org", pair(now-100, now-100), // pending, kept
		"198.51.100.0/24/alice@foo.com/bob@example.org", pair(now-5000, now-4000), // 1.36 same triplet, passed: wins
		"203.0.113.0/c@d/e@f", pair(now-3*day, now-3*day), // pending past retry window
		"203.0.113.0/g@h/i@j", pair(now-40*day, now-36*day), // passed, past max_age
		"203.0.113.9/old@x/y@z", pair(now-1000, now-600)+",9", // 1.35 pool host, 3 fields
		"0:0:0:0:0:0:0:0/m@n/o@p", pair(now-10, now-10), // mapped
		"2001:db8:1:2:0:0:0:0/a@b/c@d", pair(now-10, now-10),
		"0123456789abcdef0123456789abcdef01234567", pair(now-10, now-10), // privacy
		"198.51.100.0/x@y/z@w", "garbage", // bad value
	) + dump(
		"198.51.100.7", pair(5, now-100),
		"2001:DB8:0:0:0:0:0:1", pair(7, now-200),
		"192.0.2.1", pair(3, now-36*day), // expired
	)
	im := NewImporter(snapshot(false, 24, 64), DefaultSource, now)
	if err := im.ReadAll(NewDumpReader(strings.NewReader(in))); err != nil {
		t.Fatal(err)
	}
	s := im.Stats
	want := Stats{Read: 12, ReadTriplets: 8, ReadClients: 3, Imported: 5, Merged: 1, Expired: 3, Skipped: 2, Unparseable: 1, Privacy: 1}
	s.SkipReasons = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("stats:\n got %+v\nwant %+v", s, want)
	}
	if n := s.Imported + s.Merged + s.Expired + s.Skipped + s.Unparseable; n != s.Read {
		t.Errorf("counts add up to %d, read %d", n, s.Read)
	}
	if got := im.Triplets["198.51.100.0/alice@foo.com/bob@example.org"]; got != (store.Triplet{First: now - 5000, Last: now - 4000}) {
		t.Errorf("merged triplet: %+v", got)
	}
	if _, ok := im.Triplets["203.0.113.0/old@x/y@z"]; !ok {
		t.Errorf("1.35 pool host not re-keyed to the subnet: %v", Keys(im.Triplets))
	}
	if _, ok := im.Clients["2001:DB8:0:0:0:0:0:1"]; !ok {
		t.Errorf("IPv6 client: %v", Keys(im.Clients))
	}
	if len(im.Problems) != 1 || im.Problems[0].Line != 21 {
		t.Errorf("problems: %+v", im.Problems)
	}

	// By host: subnet keys cannot be narrowed; host keys can be widened.
	im = NewImporter(snapshot(true, 24, 64), DefaultSource, now)
	im.ReadAll(NewDumpReader(strings.NewReader(dump(
		"198.51.100.0/a@b/c@d", pair(now-10, now-10),
		"198.51.100.7/32/a@b/c@d", pair(now-10, now-10),
	))))
	if im.Stats.Imported != 1 || im.Stats.SkipReasons[SkipNarrow] != 1 || len(im.Triplets) != 1 {
		t.Errorf("by host: %+v %v", im.Stats, Keys(im.Triplets))
	}
	if _, ok := im.Triplets["198.51.100.7/32/a@b/c@d"]; !ok {
		t.Errorf("by host: %v", Keys(im.Triplets))
	}
	im = NewImporter(snapshot(false, 16, 48), DefaultSource, now)
	im.ReadAll(NewDumpReader(strings.NewReader(dump("198.51.100.7/32/a@b/c@d", pair(now-10, now-10), "2001:db8:1:2:0:0:0:0/a@b/c@d", pair(now-10, now-10)))))
	if got := Keys(im.Triplets); !reflect.DeepEqual(got, []string{"198.51.0.0/a@b/c@d", "2001:db8:1:0:0:0:0:0/a@b/c@d"}) {
		t.Errorf("widened: %v", got)
	}
}

func TestMergeTriplet(t *testing.T) {
	tests := []struct{ a, b, want store.Triplet }{
		{store.Triplet{First: 100, Last: 500}, store.Triplet{First: 50, Last: 60}, store.Triplet{First: 100, Last: 500}},
		{store.Triplet{First: 50, Last: 60}, store.Triplet{First: 100, Last: 500}, store.Triplet{First: 100, Last: 500}},
		{store.Triplet{First: 100, Last: 500}, store.Triplet{First: 0, Last: 400}, store.Triplet{First: 0, Last: 500}},
		{store.Triplet{First: 10, Last: 20}, store.Triplet{First: 200, Last: 400}, store.Triplet{First: 10, Last: 400}},
		{store.Triplet{First: 10, Last: 20}, store.Triplet{First: 5, Last: 30}, store.Triplet{First: 5, Last: 30}},
	}
	for i, tc := range tests {
		if got := MergeTriplet(tc.a, tc.b, 300); got != tc.want {
			t.Errorf("%d: MergeTriplet(%+v, %+v) = %+v, want %+v", i, tc.a, tc.b, got, tc.want)
		}
	}
}

func TestTranslateOptions(t *testing.T) {
	file := `# Postgrey startup options, created for Debian
POSTGREY_OPTS="--inet=10023 --delay=60 --max-age=20 --retry-window=12h --lookup-by-host --ipv4cidr=0 --auto-whitelist-clients=3 -v --privacy --user=postgrey"
POSTGREY_TEXT="Greylisted for %s seconds, see \"https://example.org/${x}\""
`
	o, err := ParseOptionsFile(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`inet = "127.0.0.1:10023"`, `delay = "60s"`, `max_age = "20d"`, `retry_window = "12h"`,
		`lookup_by = "host"`, `ipv4_prefix = 24`, `clients = 3`, `privacy = true`,
		`text = "Greylisted for %s seconds, see \"https://example.org/$${x}\""`,
		"# NOTE --user=postgrey", "# NOTE -v", "/etc/postgrey/whitelist_clients.local -> /etc/greyd/whitelist_clients.local",
	} {
		if !strings.Contains(o.HCL, want) {
			t.Errorf("HCL lacks %q:\n%s", want, o.HCL)
		}
	}
	if !o.LookupByHost || o.Delay != 60 || o.IPv4Prefix != 24 || !o.Privacy {
		t.Errorf("options: %+v", o)
	}
	// The fragment is a valid greyd configuration.
	dir := t.TempDir()
	p := filepath.Join(dir, "greyd.hcl")
	os.WriteFile(p, []byte(o.HCL), 0o644)
	if _, ps := config.Load(p); len(ps) > 0 {
		t.Errorf("translated HCL does not load: %v\n%s", ps, o.HCL)
	}

	o, _ = ParseOptionsFile(strings.NewReader("/usr/sbin/postgrey --unix=/var/spool/postfix/postgrey/socket --socketmode=0660 --whitelist-clients=/etc/pg/wl --whitelist-clients /etc/pg/wl.local --ipv6cidr 48 --exim\n"))
	for _, want := range []string{`unix = "/var/spool/postfix/postgrey/socket"`, `socket_mode = "0660"`, `clients = ["/etc/pg/wl", "/etc/pg/wl.local"]`, `ipv6_prefix = 48`, "  exim = true\n"} {
		if !strings.Contains(o.HCL, want) {
			t.Errorf("HCL lacks %q:\n%s", want, o.HCL)
		}
	}
}

func TestExporter(t *testing.T) {
	const now = 1_800_000_000
	e := &Exporter{From: KeyConfig{IPv4Prefix: 24, IPv6Prefix: 64}, To: KeyConfig{IPv4Prefix: 24, IPv6Prefix: 64}, Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400, Now: now}
	e.AddTriplet("198.51.100.0/a@b/c@d", store.Triplet{First: now - 1000, Last: now - 10})
	e.AddTriplet("2001:db8:1:2:0:0:0:0/a@b/c@d", store.Triplet{First: now - 10, Last: now - 10})
	e.AddTriplet("example.com/a@b/c@d", store.Triplet{First: now - 10, Last: now - 10})
	e.AddTriplet("198.51.100.0/old@b/c@d", store.Triplet{First: now - 50*86400, Last: now - 40*86400})
	e.AddClient("2001:DB8:0:0:0:0:0:1", store.Client{Count: 5, Last: now})
	want := []Entry{{"198.51.100.0/a@b/c@d", pair(now-1000, now-10)}, {"2001:db8:1:2:0:0:0:0/a@b/c@d", pair(now-10, now-10)}}
	if got := e.Triplets(); !reflect.DeepEqual(got, want) {
		t.Errorf("triplets: %v", got)
	}
	if got := e.Clients(); len(got) != 1 || got[0].Key != "2001:DB8:0:0:0:0:0:1" {
		t.Errorf("clients: %v", got)
	}
	if e.Stats.Expired != 1 || e.Stats.Skipped != 1 {
		t.Errorf("stats: %+v", e.Stats)
	}
	if err := e.AddTriplet(strings.Repeat("a", 32)+"/"+strings.Repeat("b", 32)+"/"+strings.Repeat("c", 32), store.Triplet{First: now, Last: now}); err != ErrHashedKeys {
		t.Errorf("hashed key: %v", err)
	}
	_ = netip.Addr{}
}

func FuzzDumpReader(f *testing.F) {
	f.Add([]byte("VERSION=3\nformat=print\ntype=btree\nHEADER=END\n 1.2.3.0/a@b/c@d\n 1,2\nDATA=END\n"))
	f.Add([]byte("VERSION=3\nformat=bytevalue\nHEADER=END\n 3132\n 2c\n 0\nDATA=END\nVERSION=3\n"))
	f.Add([]byte("HEADER=END\n \\5c\\\n x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDumpReader(bytes.NewReader(b))
		im := NewImporter(snapshot(false, 24, 64), DefaultSource, 1_800_000_000)
		if err := im.ReadAll(d); err != nil {
			return
		}
		s := im.Stats
		if s.Imported+s.Merged+s.Expired+s.Skipped+s.Unparseable != s.Read {
			t.Fatalf("counts do not add up: %+v", s)
		}
		// What was read writes back and reads again the same.
		var out bytes.Buffer
		var es []Entry
		for _, k := range Keys(im.Triplets) {
			es = append(es, Entry{k, pair(im.Triplets[k].First, im.Triplets[k].Last)})
		}
		WriteDump(&out, es)
		d2 := NewDumpReader(&out)
		for _, e := range es {
			r, err := d2.Next()
			if err != nil || r.Key != e.Key || r.Value != e.Value {
				t.Fatalf("round trip: %+v, %v; want %+v", r, err, e)
			}
		}
	})
}
