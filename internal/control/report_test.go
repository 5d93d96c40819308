package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/identity"
	"greyd/internal/store"
	"greyd/internal/store/buntdb"
)

// tripletsDaemon serves the API on a real unix socket with POST
// /v1/triplets registered; without it (old), the endpoint answers as a
// daemon that does not know it.
func tripletsDaemon(t *testing.T, snap *greylist.Snapshot, db *buntdb.DB, old bool) (*Client, *greylist.Engine) {
	t.Helper()
	e := greylist.NewEngine(db, snap, time.Now, nil)
	srv := NewServer(Options{Engine: e, Admin: db, Log: slog.New(slog.DiscardHandler), Version: "test", Started: time.Now()})
	mux := http.NewServeMux()
	if old {
		mux.HandleFunc("POST /v1/triplets", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "no endpoint %s %s; greyd(8) lists the API", r.Method, r.URL.Path)
		})
	} else {
		mux.HandleFunc("POST /v1/triplets", srv.triplets)
	}
	mux.Handle("/", srv.Handler())
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return NewClient(path), e
}

func memDB(t *testing.T) *buntdb.DB {
	t.Helper()
	db, err := buntdb.Open(buntdb.Memory, buntdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// entries lists the store, sorted, to compare before and after.
func entries(t *testing.T, db *buntdb.DB) []store.Entry {
	t.Helper()
	var es []store.Entry
	if err := db.Scan(context.Background(), nil, func(e store.Entry) bool { es = append(es, e); return true }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(es, func(a, b store.Entry) int { return strings.Compare(string(a.Kind)+a.Key, string(b.Kind)+b.Key) })
	return es
}

func TestTriplets(t *testing.T) {
	now := time.Now().Unix()
	for _, privacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("privacy=%v", privacy), func(t *testing.T) {
			snap := testSnap(t, privacy)
			snap.Identity = identity.New(identity.Defaults()) // lookup_by "auto"
			db := memDB(t)
			ip := netip.MustParseAddr
			var seed []store.Entry
			trip := func(key string, first, last int64) {
				seed = append(seed, store.Entry{Kind: store.KindTriplet, Key: key, First: first, Last: last, Expires: now + 3600})
			}
			trip(snap.TripletKey(ip("192.0.2.1"), "pending@a.example", "r@example.org"), now-1000, now-900)
			trip(snap.TripletKey(ip("192.0.2.1"), "passed@a.example", "r@example.org"), now-1000, now-600)
			trip(snap.TripletKey(ip("192.0.2.1"), "", "r@example.org"), now-1000, now-1000)
			// lookup_by "auto": mx1.bigmail.net is keyed by bigmail.net;
			// its network's entry passed before.
			trip(snap.TripletKey(ip("198.51.100.7"), "n@bigmail.net", "r@example.org"), now-2000, now-1500)
			// A whitelisted client (outlook.com, keyed by its organisation
			// too), an auto-whitelisted client.
			trip(snap.TripletKey(ip("192.0.2.2"), "w@a.example", "r@example.org"), now-1000, now-1000)
			trip(snap.TripletKey(ip("192.0.2.3"), "awl@a.example", "r@example.org"), now-1000, now-990)
			seed = append(seed, store.Entry{Kind: store.KindClient, Key: snap.ClientKey(ip("192.0.2.3")), Count: 9, Last: now - 10, Expires: now + 3600})
			if _, _, err := db.Import(context.Background(), seed, 300); err != nil {
				t.Fatal(err)
			}
			before := entries(t, db)

			qs := []TripletQuery{
				{ClientAddress: "192.0.2.1", ClientName: "unknown", Sender: "pending@a.example", Recipient: "r@example.org"},
				{ClientAddress: "192.0.2.1", ClientName: "unknown", Sender: "Passed+tag@A.example", Recipient: "R@example.org"},
				{ClientAddress: "192.0.2.1", Sender: "", Recipient: "r@example.org"},
				{ClientAddress: "192.0.2.1", Sender: "<>", Recipient: "r@example.org"},
				{ClientAddress: "192.0.2.1", ClientName: "unknown", Sender: "never@a.example", Recipient: "r@example.org"},
				{ClientAddress: "198.51.100.7", ClientName: "mx1.bigmail.net", Sender: "n@bigmail.net", Recipient: "r@example.org"},
				{ClientAddress: "192.0.2.2", ClientName: "mail.outlook.com", Sender: "w@a.example", Recipient: "r@example.org"},
				{ClientAddress: "192.0.2.3", ClientName: "unknown", Sender: "awl@a.example", Recipient: "r@example.org"},
				{ClientAddress: "::ffff:192.0.2.1", ClientName: "unknown", Sender: "pending@a.example", Recipient: "r@example.org"},
				{ClientAddress: "not-an-address", Sender: "a@b", Recipient: "r@example.org"},
				{ClientAddress: "192.0.2.1", Sender: "a@b\nrecipient=x", Recipient: "r@example.org"},
				{ClientAddress: "192.0.2.1", Sender: "a@b"},
			}
			type got struct {
				found, passed      bool
				first, last        int64
				subnet, subnetPass bool
				err                string
			}
			want := []got{
				{true, false, now - 1000, now - 900, false, false, ""},
				{true, true, now - 1000, now - 600, false, false, ""},
				{true, false, now - 1000, now - 1000, false, false, ""},
				{true, false, now - 1000, now - 1000, false, false, ""},
				{false, false, 0, 0, false, false, ""},
				{false, false, 0, 0, true, true, ""},
				{false, false, 0, 0, true, false, ""},
				{true, false, now - 1000, now - 990, false, false, ""},
				{true, false, now - 1000, now - 900, false, false, ""},
				{false, false, 0, 0, false, false, "client_address is not an IP address: 'not-an-address'"},
				{false, false, 0, 0, false, false, `attribute values cannot contain line breaks: "a@b\nrecipient=x"`},
				{false, false, 0, 0, false, false, "a triplet needs client_address and recipient"},
			}
			var answers [2][]TripletAnswer
			for i, old := range []bool{false, true} {
				c, e := tripletsDaemon(t, snap, db, old)
				as, perTriplet, err := c.Triplets(context.Background(), qs)
				if err != nil {
					t.Fatalf("old=%v: %v", old, err)
				}
				if perTriplet != old {
					t.Errorf("old=%v: asked triplet by triplet: %v", old, perTriplet)
				}
				answers[i] = as
				for j, a := range as {
					var g got
					g.err = a.Error
					if tr := a.Triplet; tr != nil {
						g.found, g.passed, g.first, g.last = tr.Found, tr.Passed, tr.First, tr.Last
						if tr.Subnet != nil {
							g.subnet, g.subnetPass = tr.Subnet.Found, tr.Subnet.Passed
						}
					}
					if old && j == len(qs)-1 {
						// explain says it in its own words
						g.err = strings.Replace(g.err, "explain needs client_address, client_name, sender and recipient", "a triplet needs client_address and recipient", 1)
					}
					if g != want[j] {
						t.Errorf("old=%v, %d %+v:\n got %+v\nwant %+v", old, j, qs[j], g, want[j])
					}
				}
				// Read-only: nothing written, nothing counted.
				if after := entries(t, db); !reflect.DeepEqual(after, before) {
					t.Errorf("old=%v: the store changed:\nbefore %+v\nafter  %+v", old, before, after)
				}
				if s, p, fp, g, f := e.Counts(); s+p+fp+g+f != 0 {
					t.Errorf("old=%v: requests counted: %d %d %d %d %d", old, s, p, fp, g, f)
				}
			}
			// The triplet-by-triplet answers are explain's: the same.
			for j := range qs[:len(qs)-2] {
				if !reflect.DeepEqual(answers[0][j], answers[1][j]) {
					t.Errorf("%d: batched %+v, by explain %+v", j, answers[0][j], answers[1][j])
				}
			}
		})
	}
}

func TestTripletsRefused(t *testing.T) {
	db := memDB(t)
	c, _ := tripletsDaemon(t, testSnap(t, false), db, false)
	ctx := context.Background()
	var ae *APIError
	many := make([]TripletQuery, MaxTriplets+1)
	if _, _, err := c.Triplets(ctx, many); !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "at most 10000 per request") {
		t.Errorf("too many: %v", err)
	}
	resp, err := c.do(ctx, "POST", "/v1/triplets", nil, strings.NewReader(`{"triplets": [{"client_address": "192.0.2.1", "recipient": "r@x", "helo": "x"}]}`))
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, `unknown field "helo"`) {
		t.Errorf("unknown field: %v %v", resp, err)
	}
	resp, err = c.do(ctx, "POST", "/v1/triplets", nil, bytes.NewReader([]byte("{")))
	if !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("cut short: %v %v", resp, err)
	}
	// A store that fails fails the whole answer.
	db.Close()
	_, _, err = c.Triplets(ctx, []TripletQuery{{ClientAddress: "192.0.2.1", Sender: "a@b", Recipient: "r@x"}})
	if !errors.As(err, &ae) || ae.Status != 503 || !strings.Contains(ae.Message, "looking up triplet 1: ") {
		t.Errorf("closed store: %v", err)
	}
}
