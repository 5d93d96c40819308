package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/policy"
	"greyd/internal/store"
	"greyd/internal/store/buntdb"
	"greyd/internal/whitelist"
)

func TestAccess(t *testing.T) {
	tests := []struct {
		name     string
		p        peer
		groupOK  bool
		groups   []uint32
		unmapped bool
		guarded  bool
		want     bool
	}{
		{"root", peer{known: true, uid: 0, gid: 0}, true, nil, false, false, true},
		{"greyd's own user", peer{known: true, uid: 120, gid: 5}, false, nil, false, false, true},
		{"primary group greyd", peer{known: true, uid: 1000, gid: 130}, true, nil, false, false, true},
		{"supplementary group greyd", peer{known: true, uid: 1000, gid: 1000}, true, []uint32{27, 130}, false, false, true},
		{"other user", peer{known: true, uid: 1000, gid: 1000}, true, []uint32{27}, false, true, false},
		{"no group greyd", peer{known: true, uid: 1000, gid: 130}, false, nil, false, true, false},
		{"unmapped, socket guarded", peer{known: true, uid: 65534, gid: 65534}, true, nil, true, true, true},
		{"unmapped, socket loosened", peer{known: true, uid: 65534, gid: 65534}, true, nil, true, false, false},
		{"unknown credentials", peer{}, true, nil, false, true, false},
	}
	for i, tc := range tests {
		a := &access{
			self:      120,
			group:     func() (uint32, bool) { return 130, tc.groupOK },
			groups:    func(uint32) []uint32 { return tc.groups },
			unmapped:  func(uint32) bool { return tc.unmapped },
			guardedFn: func() bool { return tc.guarded },
		}
		if got, why := a.allow(tc.p); got != tc.want {
			t.Errorf("%d %s: allow(%v) = %v (%s), want %v", i, tc.name, tc.p, got, why, tc.want)
		}
	}
}

func TestProcGroups(t *testing.T) {
	got := procGroups(uint32(os.Getpid()))
	want, _ := os.Getgroups()
	for _, g := range want {
		if !slices.Contains(got, uint32(g)) {
			t.Errorf("procGroups(self) = %v, lacks %d of %v", got, g, want)
		}
	}
	if procGroups(1<<31) != nil {
		t.Error("a missing process has groups")
	}
}

func TestSplitTriplet(t *testing.T) {
	tests := []struct {
		key           string
		byHost        bool
		net, snd, rcp string
		ok            bool
	}{
		{"198.51.100.0/a@b.example/c@d.example", false, "198.51.100.0", "a@b.example", "c@d.example", true},
		{"198.51.100.0//c@d.example", false, "198.51.100.0", "", "c@d.example", true},
		{"198.51.100.0/32/c@d.example", false, "198.51.100.0", "32", "c@d.example", true}, // sender "32"
		{"198.51.100.60/32/a/b@x/c@d", true, "198.51.100.60/32", "a/b@x", "c@d", true},
		{"2001:db8:0:0:0:0:0:1/128//c@d", true, "2001:db8:0:0:0:0:0:1/128", "", "c@d", true},
		{"abc/def", false, "", "", "", false},
		{"198.51.100.60/32", true, "", "", "", false},
	}
	for i, tc := range tests {
		n, s, r, ok := splitTriplet(tc.key, tc.byHost)
		if n != tc.net || s != tc.snd || r != tc.rcp || ok != tc.ok {
			t.Errorf("%d: splitTriplet(%q, %v) = %q %q %q %v; want %q %q %q %v", i, tc.key, tc.byHost, n, s, r, ok, tc.net, tc.snd, tc.rcp, tc.ok)
		}
	}
}

func TestEnumerate(t *testing.T) {
	tests := []struct {
		prefix string
		bits   int
		want   []string
	}{
		{"192.0.2.0/23", 24, []string{"192.0.2.0", "192.0.3.0"}},
		{"192.0.2.7/32", 24, []string{"192.0.2.7"}},
		{"10.255.255.254/31", 32, []string{"10.255.255.254", "10.255.255.255"}},
		{"2001:db8::/63", 64, []string{"2001:db8::", "2001:db8:0:1::"}},
		{"2001:db8::fffe/127", 128, []string{"2001:db8::fffe", "2001:db8::ffff"}},
		{"2001:db8:0:0:ffff:ffff:ffff:fffe/127", 128, []string{"2001:db8::ffff:ffff:ffff:fffe", "2001:db8::ffff:ffff:ffff:ffff"}},
		{"2001:db8:0:ffff::/63", 64, []string{"2001:db8:0:fffe::", "2001:db8:0:ffff::"}},
		{"10.0.0.0/8", 32, nil},
	}
	for i, tc := range tests {
		got, ok := enumerate(netip.MustParsePrefix(tc.prefix).Masked(), tc.bits)
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if ok != (tc.want != nil) || !slices.Equal(s, tc.want) {
			t.Errorf("%d: enumerate(%s, %d) = %v, %v; want %v", i, tc.prefix, tc.bits, s, ok, tc.want)
		}
	}
	// Carry from the low into the high half.
	if got := stepAddr(netip.MustParseAddr("2001:db8:0:1:ffff:ffff:ffff:ffff"), 128); got != netip.MustParseAddr("2001:db8:0:2::") {
		t.Errorf("carry: %v", got)
	}
}

func testSnap(t testing.TB, privacy bool) *greylist.Snapshot {
	t.Helper()
	clients, _ := whitelist.ParseClients("clients", strings.NewReader("outlook.com\n"))
	rcpts, _ := whitelist.ParseRecipients("recipients", strings.NewReader("postmaster@\n"))
	s := &greylist.Snapshot{
		Settings: greylist.Settings{
			Delay: 300 * time.Second, RetryWindow: 48 * time.Hour, MaxAge: 35 * 24 * time.Hour,
			IPv4Prefix: 24, IPv6Prefix: 64, Action: "DEFER_IF_PERMIT", Text: "Greylisted",
			XGreylistHeader: true, HeaderText: greylist.DefaultHeaderText, Hostname: "mx", Version: "test",
			AutoWhitelistClients: 5,
		},
		Clients: clients, Recipients: rcpts,
	}
	if privacy {
		s.Privacy = greylist.NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	}
	return s
}

func TestFilter(t *testing.T) {
	type ent struct {
		kind               store.Kind
		addr, sender, rcpt string
		a, b               int64
	}
	entries := []ent{
		{store.KindTriplet, "198.51.100.7", "a@one.example", "r@example.org", 0, 400},
		{store.KindTriplet, "198.51.100.8", "b@one.example", "r@example.org", 0, 0},
		{store.KindTriplet, "192.0.2.1", "a@one.example", "s@example.org", 0, 0},
		{store.KindTriplet, "2001:db8:1:2::5", "", "r@example.org", 0, 0},
		{store.KindClient, "198.51.100.7", "", "", 6, 0},
		{store.KindClient, "2001:db8:1:2::5", "", "", 1, 0},
	}
	tests := []struct {
		q    url.Values
		want []int
	}{
		{url.Values{}, []int{0, 1, 2, 3, 4, 5}},
		{url.Values{"client": {"198.51.100.0/24"}}, []int{0, 1, 4}},
		{url.Values{"client": {"198.51.100.8"}}, []int{0, 1}},
		{url.Values{"client": {"198.51.0.0/16"}}, []int{0, 1, 4}},
		{url.Values{"client": {"2001:db8:1:2::/64"}}, []int{3, 5}}, // under privacy: 3 only (see below)
		{url.Values{"client": {"2001:db8:1:2::5"}}, []int{3, 5}},
		{url.Values{"client": {"::ffff:198.51.100.7"}}, []int{0, 1, 4}},
		{url.Values{"sender": {"A@One.example"}}, []int{0, 2}},
		{url.Values{"sender": {"<>"}}, []int{3}},
		{url.Values{"recipient": {"R@example.org"}}, []int{0, 1, 3}},
		{url.Values{"state": {"passed"}}, []int{0, 4}},
		{url.Values{"state": {"pending"}, "kind": {"client"}}, []int{5}},
		{url.Values{"kind": {"triplet"}, "client": {"198.51.100.7"}}, []int{0, 1}},
	}
	for _, privacy := range []bool{false, true} {
		snap := testSnap(t, privacy)
		var stored []store.Entry
		for _, e := range entries {
			ip := netip.MustParseAddr(e.addr)
			key := snap.ClientKey(ip)
			if e.kind == store.KindTriplet {
				key = snap.TripletKey(ip, e.sender, e.rcpt)
			}
			stored = append(stored, store.StoredEntry(e.kind, key, e.a, e.b, 0))
		}
		for i, tc := range tests {
			f, err := parseFilter(tc.q, snap)
			if err != nil {
				t.Errorf("privacy %v, %d: %v: %v", privacy, i, tc.q, err)
				continue
			}
			var got []int
			for j, e := range stored {
				if (f.kinds == nil || slices.Contains(f.kinds, e.Kind)) && f.match(e) {
					got = append(got, j)
				}
			}
			want := tc.want
			if privacy && tc.q.Get("client") == "2001:db8:1:2::/64" {
				want = []int{3} // 2^64 addresses cannot be hashed one by one
			}
			if !slices.Equal(got, want) {
				t.Errorf("privacy %v, %d: filter %v matches %v, want %v", privacy, i, tc.q, got, want)
			}
		}
	}
	// lookup_by "auto": an organisation's triplets are selected by its
	// domain, hashed under privacy like the rest.
	for _, privacy := range []bool{false, true} {
		snap := testSnap(t, privacy)
		org := store.Entry{Kind: store.KindTriplet, Key: snap.OrgTripletKey("outlook.com", "a@b.example", "r@example.org")}
		net := store.Entry{Kind: store.KindTriplet, Key: snap.TripletKey(netip.MustParseAddr("198.51.100.7"), "a@b.example", "r@example.org")}
		cl := store.Entry{Kind: store.KindClient, Key: snap.ClientKey(netip.MustParseAddr("198.51.100.7"))}
		f, err := parseFilter(url.Values{"client": {"Outlook.COM."}}, snap)
		if err != nil || !f.match(org) || f.match(net) || f.match(cl) || !slices.Equal(f.kinds, []store.Kind{store.KindTriplet}) {
			t.Errorf("privacy %v: -client outlook.com: %v; matches org %v, network %v, client %v", privacy, err, f.match(org), f.match(net), f.match(cl))
		}
	}
	for _, q := range []url.Values{{"client": {"nonsense"}}, {"state": {"done"}}, {"kind": {"x"}}} {
		if _, err := parseFilter(q, testSnap(t, false)); err == nil {
			t.Errorf("filter %v: no error", q)
		}
	}
	if _, err := parseFilter(url.Values{"client": {"10.0.0.0/7"}}, testSnap(t, true)); err == nil || !strings.Contains(err.Error(), "privacy") {
		t.Errorf("privacy and a /7: %v", err)
	}
	if f, err := parseFilter(url.Values{"client": {"2001:db8::/64"}}, testSnap(t, true)); err != nil || f.warning == "" || !f.noClients {
		t.Errorf("privacy and an IPv6 /64: %v, %+v", err, f)
	}
}

func TestCheckEntry(t *testing.T) {
	tests := []struct {
		kind        store.WhitelistKind
		value, want string // want: canonical form, or "!" + part of the error
	}{
		{store.WhitelistClient, "Relay.Partner.Example", "relay.partner.example"},
		{store.WhitelistClient, " 192.0.2.0/24  # lab", "192.0.2.0/24"},
		{store.WhitelistClient, `/^MX\d+\.Example\.COM$/`, `/^MX\d+\.Example\.COM$/`},
		{store.WhitelistClient, "2001:db8::/48", "2001:db8::/48"},
		{store.WhitelistClient, "a b", "!hostname"},
		{store.WhitelistClient, "# only a comment", "!empty"},
		{store.WhitelistClient, "user@example.org", "!"},
		{store.WhitelistRecipient, "Postmaster@", "postmaster@"},
		{store.WhitelistRecipient, "@example.org", "@example.org"},
		{store.WhitelistRecipient, "sales@example.org", "sales@example.org"},
	}
	for i, tc := range tests {
		v := canonical(tc.value)
		msg := checkEntry(tc.kind, v)
		switch {
		case strings.HasPrefix(tc.want, "!"):
			if msg == "" || !strings.Contains(msg, tc.want[1:]) {
				t.Errorf("%d: %s %q: error %q, want one with %q", i, tc.kind, tc.value, msg, tc.want[1:])
			}
		case msg != "" || v != tc.want:
			t.Errorf("%d: %s %q: %q, %q; want %q", i, tc.kind, tc.value, v, msg, tc.want)
		}
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "control.sock")
	ln, _, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o660 {
		t.Errorf("mode %v, want 0660", fi.Mode().Perm())
	}
	// A live socket is not taken over.
	if _, _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second Listen on a live socket: %v", err)
	}
	// A stale one is: a listener closed without unlinking, as after a
	// crash.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, _, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
	os.WriteFile(path, []byte("x"), 0o600)
	if _, _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a file: %v", err)
	}
	if _, _, err := Listen(filepath.Join(dir, "missing", "deeper", "c.sock")); err == nil || !strings.Contains(err.Error(), "RuntimeDirectory") {
		t.Errorf("Listen in a missing directory whose parent is missing too: %v", err)
	}
	// A missing directory (greyd started by hand: no RuntimeDirectory=)
	// is made when its parent exists.
	ln, _, err = Listen(filepath.Join(dir, "made", "c.sock"))
	if err != nil {
		t.Fatalf("Listen in a missing directory: %v", err)
	}
	ln.Close()
	if fi, err := os.Stat(filepath.Join(dir, "made")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("made directory: %v, %v; want mode 0750", fi, err)
	}
}

// daemon is an engine on an in-memory buntdb with the API served on a
// real unix socket.
type daemon struct {
	engine *greylist.Engine
	db     *buntdb.DB
	client *Client
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startServer(t testing.TB, snap *greylist.Snapshot, db *buntdb.DB) *daemon {
	t.Helper()
	return startServerWith(t, snap, db, Options{})
}

// startServerWith is startServer with opts (Engine, Admin, Log, Version
// and Started are filled in).
func startServerWith(t testing.TB, snap *greylist.Snapshot, db *buntdb.DB, opts Options) *daemon {
	t.Helper()
	if db == nil {
		var err error
		if db, err = buntdb.Open(buntdb.Memory, buntdb.Options{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	e := greylist.NewEngine(db, snap, time.Now, log)
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, _, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.Engine, opts.Admin, opts.Log, opts.Version, opts.Started = e, db, log, "test", time.Now()
	srv := NewServer(opts)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &daemon{engine: e, db: db, client: NewClient(path), logs: logs}
}

func ask(e *greylist.Engine, addr, name, sender, rcpt string) string {
	return e.ServePolicy(context.Background(), policy.ParseRequest(fmt.Sprintf(
		"request=smtpd_access_policy\nclient_address=%s\nclient_name=%s\nsender=%s\nrecipient=%s\n", addr, name, sender, rcpt)))
}

func TestServer(t *testing.T) {
	d := startServer(t, testSnap(t, false), nil)
	ctx := context.Background()
	if got := ask(d.engine, "198.51.100.7", "mx.partner.example", "a@b.example", "r@example.org"); got != "DEFER_IF_PERMIT Greylisted" {
		t.Fatalf("first request: %q", got)
	}
	x, err := d.client.Explain(ctx, "198.51.100.7", "mx.partner.example", "a@b.example", "r@example.org")
	if err != nil || !x.Greylisted || x.Reason != "new" || !x.Triplet.Found {
		t.Fatalf("explain: %+v, %v", x, err)
	}
	if _, err := d.client.AddWhitelist(ctx, WhitelistAdd{Kind: "client", Value: "partner.example", Comment: "c"}); err != nil {
		t.Fatal(err)
	}
	if got := ask(d.engine, "198.51.100.7", "mx.partner.example", "a@b.example", "r@example.org"); got != "DUNNO" {
		t.Errorf("after whitelist add: %q", got)
	}
	var ae *APIError
	if _, err := d.client.AddWhitelist(ctx, WhitelistAdd{Kind: "client", Value: "a b"}); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("bad entry: %v", err)
	}
	if _, err := d.client.AddWhitelist(ctx, WhitelistAdd{Kind: "sender", Value: "x"}); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("bad kind: %v", err)
	}
	l, err := d.client.Whitelist(ctx)
	if err != nil || len(l.Runtime) != 1 || l.Runtime[0].Value != "partner.example" {
		t.Errorf("whitelist list: %+v, %v", l, err)
	}
	if err := d.client.RemoveWhitelist(ctx, "client", "Partner.Example"); err != nil {
		t.Errorf("remove: %v", err)
	}
	if got := ask(d.engine, "198.51.100.7", "mx.partner.example", "a@b.example", "r@example.org"); got != "DEFER_IF_PERMIT Greylisted" {
		t.Errorf("after whitelist remove: %q", got)
	}
	if err := d.client.RemoveWhitelist(ctx, "client", "partner.example"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("remove again: %v", err)
	}

	var buf bytes.Buffer
	if err := d.client.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 2 || !strings.HasPrefix(buf.String(), `{"kind":"header","format":"greyd-export/1"`) {
		t.Errorf("export:\n%s", buf.String())
	}
	d2 := startServer(t, testSnap(t, false), nil)
	res, err := d2.client.Import(ctx, strings.NewReader(buf.String()+"garbage\n{\"kind\":\"triplet\"}\n"))
	if err != nil || res.Imported != 1 || res.Skipped != 2 || len(res.Errors) != 2 || !strings.HasPrefix(res.Errors[0], "line 3: ") {
		t.Errorf("import: %+v, %v", res, err)
	}
	// A key that is not UTF-8 goes out and comes back as key_base64.
	bad := Record{Kind: "triplet", Key: "198.51.100.0/\xff@x/r@y", First: 1, Last: 2, Expires: time.Now().Unix() + 60}
	hdr := Header(testSnap(t, false), "test", time.Now())
	if res, err := d2.client.Import(ctx, bytes.NewReader(appendRecord(appendRecord(nil, &hdr), &bad))); err != nil || res.Imported != 1 {
		t.Errorf("import of a key_base64 record: %+v, %v", res, err)
	}
	buf.Reset()
	d2.client.Export(ctx, &buf)
	if !strings.Contains(buf.String(), `"key_base64":"`) {
		t.Errorf("export lost the non-UTF-8 key:\n%s", buf.String())
	}
	del, err := d2.client.Delete(ctx, url.Values{"sender": {"a@b.example"}})
	if err != nil || del.Triplets != 1 {
		t.Errorf("delete: %+v, %v", del, err)
	}
	if _, err := d2.client.Delete(ctx, url.Values{}); !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "at least one") {
		t.Errorf("delete everything: %v", err)
	}
	st, err := d.client.Stats(ctx)
	if err != nil || st.Entries.Triplets != 1 || st.Requests != 0 || !st.Store.Healthy {
		t.Errorf("stats: %+v, %v", st, err)
	}
	resp, err := d.client.do(ctx, "GET", "/v2/nothing", nil, nil)
	if !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "no endpoint GET /v2/nothing") {
		t.Errorf("unknown endpoint: %v, %v", resp, err)
	}
	if !strings.Contains(d.logs.String(), `runtime client whitelist entry \"partner.example\" added`) {
		t.Errorf("no log line for the change:\n%s", d.logs)
	}
}

func TestUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	_, err := NewClient(path).Stats(context.Background())
	if !IsUnreachable(err) || !strings.Contains(err.Error(), "cannot reach greyd at "+path+": no such file or directory") {
		t.Errorf("missing socket: %v", err)
	}
	// A socket file nobody listens on.
	ln, _ := net.Listen("unix", path)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = NewClient(path).Stats(context.Background())
	if !IsUnreachable(err) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("stale socket: %v", err)
	}
}

// TestNoAdmin: a backend without store.Admin still explains; the rest
// says why not.
func TestNoAdmin(t *testing.T) {
	var a store.Admin = AdminOf(struct{ store.Store }{})
	if err := a.Scan(context.Background(), nil, func(store.Entry) bool { return true }); !errors.Is(err, ErrNoAdmin) {
		t.Errorf("Scan: %v", err)
	}
}

// FuzzFilter: no filter, however typed, and no stored key, however
// shaped, makes parsing or matching panic.
func FuzzFilter(f *testing.F) {
	f.Add("198.51.100.0/24", "a@b.example", "r@example.org", "198.51.100.0/a@b.example/r@example.org", false)
	f.Add("2001:db8::/127", "<>", "", "2001:db8:0:0:0:0:0:1/128//x", true)
	f.Add("::ffff:1.2.3.4/120", "", "x", "/", false)
	f.Fuzz(func(t *testing.T, client, sender, rcpt, key string, byHost bool) {
		for _, privacy := range []bool{false, true} {
			snap := testSnap(t, privacy)
			snap.LookupByHost = byHost
			q := url.Values{"client": {client}, "sender": {sender}, "recipient": {rcpt}}
			fl, err := parseFilter(q, snap)
			if err != nil {
				continue
			}
			for _, k := range []store.Kind{store.KindTriplet, store.KindClient} {
				fl.match(store.StoredEntry(k, key, 1, 2, 0))
			}
		}
	})
}
