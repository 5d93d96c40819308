package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"greyd/internal/control"
	"greyd/internal/store/redis/redistest"
)

// The admin subcommands of a greyd on Redis, and the move of a site from
// buntdb to Redis with greyd export | greyd import.

// redisAdminDaemon starts greyd on srv with a control socket in dir; it
// returns the daemon, its configuration file and its control socket.
func redisAdminDaemon(t *testing.T, dir string, srv *redistest.Server) (*proc, string, string) {
	t.Helper()
	ctl := filepath.Join(dir, "control.sock")
	redisConfig(t, dir, srv, fmt.Sprintf("control {\n  socket = %q\n}\n", ctl))
	d := startDaemon(t, dir)
	d.waitLog("control socket " + ctl)
	d.waitLog("redis: connected to unix:" + srv.Socket)
	return d, filepath.Join(dir, "greyd.hcl"), ctl
}

// sameRecords compares two listings or exports, whatever their order,
// deadlines within a second (buntdb keeps them in nanoseconds, Redis in
// milliseconds, both list them rounded up to the second). It returns what
// differs.
func sameRecords(a, b []control.Record) string {
	key := func(r control.Record) string {
		return r.Kind + " " + r.Key + r.KeyBase64 + " " + r.List + " " + r.Value
	}
	index := func(rs []control.Record) map[string]control.Record {
		m := map[string]control.Record{}
		for _, r := range rs {
			if r.Kind != "header" {
				m[key(r)] = r
			}
		}
		return m
	}
	ma, mb := index(a), index(b)
	var diff []string
	for k, ra := range ma {
		rb, ok := mb[k]
		if !ok {
			diff = append(diff, "only in the first: "+k)
			continue
		}
		ea, eb := ra.Expires, rb.Expires
		ra.Expires, rb.Expires = 0, 0
		if ra != rb || ea-eb > 1 || eb-ea > 1 {
			diff = append(diff, fmt.Sprintf("%s: %+v (expires %d) vs %+v (expires %d)", k, ra, ea, rb, eb))
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			diff = append(diff, "only in the second: "+k)
		}
	}
	slices.Sort(diff)
	return strings.Join(diff, "\n")
}

func parseRecords(t *testing.T, s string) []control.Record {
	t.Helper()
	var out []control.Record
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		var r control.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// TestAdminRedisExportImport: greyd export of a greyd on buntdb piped
// into greyd import of a greyd on Redis moves the site: Redis then holds
// the same entries and answers every exported triplet as buntdb does.
func TestAdminRedisExportImport(t *testing.T) {
	srv := redistest.Start(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	_, _ = adminDaemon(t, dirA, "")
	cfgA := filepath.Join(dirA, "greyd.hcl")
	b, cfgB, _ := redisAdminDaemon(t, dirB, srv)
	ca, cb := dial(t, "unix", filepath.Join(dirA, "greyd.sock")), dial(t, "unix", filepath.Join(dirB, "greyd.sock"))
	now := time.Now().Unix()

	// On buntdb: 20 passed triplets (their clients counted once), 10
	// pending since 100 s, and a client that passed 5 triplets an hour
	// apart (auto-whitelisted).
	for i := range 20 {
		r := func(at int64) []string {
			return rcpt(fmt.Sprintf("198.51.100.%d", i), "x", fmt.Sprintf("p%d@a.example", i), "r@example.org", at)
		}
		ca.ask(r(now - 1000)...)
		if got := ca.ask(r(now - 600)...); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed 400 seconds") {
			t.Fatalf("first pass on buntdb: %q", got)
		}
	}
	for i := range 10 {
		ca.ask(rcpt(fmt.Sprintf("198.51.101.%d", i), "x", fmt.Sprintf("q%d@a.example", i), "r@example.org", now-100)...)
	}
	base := now - 6*3600
	for k := range 5 {
		at := base + int64(k)*3600
		ca.ask(rcpt("203.0.113.5", "x", fmt.Sprintf("w%d@b.example", k), "r@example.org", at)...)
		ca.ask(rcpt("203.0.113.5", "x", fmt.Sprintf("w%d@b.example", k), "r@example.org", at+300)...)
	}
	cliOK(t, 0, "whitelist", "add", "-config", cfgA, "-comment", "moved, with care", "-ttl", "1d", "client", "192.0.2.0/24")

	export := cliOK(t, 0, "export", "-config", cfgA)
	recs := parseRecords(t, export)
	var trips, clients int
	for _, r := range recs {
		switch r.Kind {
		case "triplet":
			trips++
		case "client":
			clients++
		}
	}
	if trips != 35 || clients != 21 {
		t.Fatalf("export of buntdb: %d triplets, %d clients; want 35, 21:\n%s", trips, clients, export)
	}
	out, e, code := cli(t, strings.NewReader(export), "import", "-config", cfgB)
	if want := "read 57, imported 56, merged 0, expired 0, runtime whitelist 1, skipped 0\n"; code != 0 || out != want {
		t.Fatalf("import into Redis: exit %d: %q, want %q\n%s", code, out, want, e)
	}
	b.waitLog("control: imported 56 entries, merged 0")

	// The same entries, listed and exported.
	listA, listB := listJSON(t, cfgA), listJSON(t, cfgB)
	if len(listB) != 56 {
		t.Errorf("list -json on Redis: %d entries, want 56", len(listB))
	}
	if d := sameRecords(listA, listB); d != "" {
		t.Errorf("list -json differs between buntdb and Redis:\n%s", d)
	}
	if d := sameRecords(recs, parseRecords(t, cliOK(t, 0, "export", "-config", cfgB))); d != "" {
		t.Errorf("export of Redis differs from the export of buntdb:\n%s", d)
	}
	if wl := cliOK(t, 0, "whitelist", "list", "-config", cfgB); !strings.Contains(wl, "192.0.2.0/24") || !strings.Contains(wl, "# moved, with care") {
		t.Errorf("whitelist list on Redis lacks the imported entry:\n%s", wl)
	}

	// The same answers, asked of both at the same policy_test_time.
	probes := []struct {
		name string
		req  []string
		want string // a prefix
	}{
		{"passed triplet", rcpt("198.51.100.3", "x", "p3@a.example", "r@example.org", now), "DUNNO"},
		{"pending triplet, after its delay", rcpt("198.51.101.4", "x", "q4@a.example", "r@example.org", now+250), "PREPEND X-Greylist: delayed 350 seconds by greyd-test at "},
		{"pending triplet, passed", rcpt("198.51.101.4", "x", "q4@a.example", "r@example.org", now+260), "DUNNO"},
		{"pending triplet, early", rcpt("198.51.101.5", "x", "q5@a.example", "r@example.org", now+100), greylisted},
		{"auto-whitelisted client, new triplet", rcpt("203.0.113.5", "x", "new@c.example", "r@example.org", now), "DUNNO"},
		{"runtime whitelist", rcpt("192.0.2.77", "x", "any@d.example", "r@example.org", now), "DUNNO"},
		{"unknown triplet", rcpt("198.51.102.1", "x", "u@a.example", "r@example.org", now), greylisted},
	}
	for _, p := range probes {
		ga, gb := ca.ask(p.req...), cb.ask(p.req...)
		if gb != ga || !strings.HasPrefix(gb, p.want) {
			t.Errorf("%s: Redis answered %q, buntdb %q; want %q", p.name, gb, ga, p.want)
		}
	}
	b.waitLog("action=pass, reason=client AWL")
	b.waitLog("action=pass, reason=client whitelist")
	// And remembered the same.
	if d := sameRecords(listJSON(t, cfgA), listJSON(t, cfgB)); d != "" {
		t.Errorf("after the same requests, the entries differ:\n%s", d)
	}
	// Importing again merges everything.
	if out, _, _ := cli(t, strings.NewReader(export), "import", "-config", cfgB); !strings.Contains(out, "imported 0, merged 56") {
		t.Errorf("second import: %q", out)
	}
}

// TestAdminRedisControl: list, delete, whitelist and stats of a greyd on
// Redis, through its control socket.
func TestAdminRedisControl(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	_, cfg, ctl := redisAdminDaemon(t, dir, srv)
	c := dial(t, "unix", filepath.Join(dir, "greyd.sock"))
	now := time.Now().Unix()
	for _, r := range [][]string{
		rcpt("198.51.100.7", "x", "a@one.example", "r@example.org", now-400),
		rcpt("198.51.100.7", "x", "a@one.example", "r@example.org", now-50),
		rcpt("198.51.100.8", "x", "b@one.example", "r@example.org", now),
		rcpt("192.0.2.1", "x", "a@one.example", "s@example.org", now),
	} {
		c.ask(r...)
	}
	if all := listJSON(t, cfg); len(all) != 4 {
		t.Fatalf("list: %d entries, want 3 triplets and 1 client: %+v", len(all), all)
	}
	if got := listAPI(t, ctl, "-client", "198.51.100.0/24", "-state", "passed"); len(got) != 1 || got[0].Kind != "triplet" || got[0].Sender != "a@one.example" {
		t.Errorf("list -client 198.51.100.0/24 -state passed: %+v, want the passed triplet", got)
	}
	if table := cliOK(t, 0, "list", "-config", cfg, "-sender", "b@one.example"); !strings.Contains(table, " 198.51.100.0 b@one.example r@example.org") {
		t.Errorf("list table:\n%s", table)
	}
	var st control.Stats
	if err := json.Unmarshal([]byte(cliOK(t, 0, "stats", "-config", cfg, "-json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Entries.Triplets != 3 || st.Entries.Clients != 1 || st.Entries.TripletsPassed != 1 || !st.Store.Healthy {
		t.Errorf("stats on Redis: %+v", st)
	}

	if out := cliOK(t, 0, "delete", "-config", cfg, "-client", "198.51.100.0/24"); out != "deleted 2 triplet(s) and 1 auto-whitelist entr(ies)\n" {
		t.Errorf("delete: %q", out)
	}
	if got := listJSON(t, cfg); len(got) != 1 || got[0].Client != "192.0.2.0" {
		t.Errorf("after delete: %+v, want the triplet of 192.0.2.0/24", got)
	}
	if got := c.ask(rcpt("198.51.100.7", "x", "a@one.example", "r@example.org", now)...); got != greylisted {
		t.Errorf("a deleted passed triplet: %q, want greylisted", got)
	}

	req := rcpt("198.51.100.70", "mx1.partner.example", "a@partner.example", "c@example.org", now)
	if got := c.ask(req...); got != greylisted {
		t.Fatalf("before whitelist add: %q", got)
	}
	cliOK(t, 0, "whitelist", "add", "-config", cfg, "-comment", "ticket 42", "client", "partner.example")
	if got := c.ask(req...); got != "DUNNO" {
		t.Errorf("right after whitelist add: %q, want DUNNO", got)
	}
	if list := cliOK(t, 0, "whitelist", "list", "-config", cfg); !strings.Contains(list, "client    partner.example") || !strings.Contains(list, "# ticket 42") {
		t.Errorf("whitelist list:\n%s", list)
	}
	if got := srv.Must("HKEYS", "{greyd:}wl"); got != "c:partner.example" {
		t.Errorf("runtime whitelist in Redis: %q", got)
	}
	cliOK(t, 0, "whitelist", "remove", "-config", cfg, "client", "partner.example")
	if got := c.ask(req...); got != greylisted {
		t.Errorf("right after whitelist remove: %q, want greylisted", got)
	}
	if _, e, code := cli(t, nil, "whitelist", "remove", "-config", cfg, "client", "partner.example"); code != 1 || !strings.Contains(e, "no runtime client whitelist entry") {
		t.Errorf("removing again: exit %d, %s", code, e)
	}
}
