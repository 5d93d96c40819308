package control

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/store"
	"greyd/internal/whitelist"
)

// TestStateByRecipientPolicy: list, stats and import judge a stored
// triplet with the delay its recipient's policy sets, as decisions do;
// under privacy (hashed recipients) greylist's delay judges all.
func TestStateByRecipientPolicy(t *testing.T) {
	for _, privacy := range []bool{false, true} {
		snap := testSnap(t, privacy) // delay 300 s
		billing, _ := whitelist.ParseRecipients("policy", strings.NewReader("@billing.example\n"))
		minute := time.Minute
		snap.Selective = &greylist.Selective{Mode: greylist.ModeAlways, GreylistAt: 3,
			Policies: []greylist.RecipientPolicy{{Name: "billing", Recipients: billing, Mode: greylist.ModeAlways, Delay: &minute}}}
		ip := netip.MustParseAddr("198.51.100.7")
		tests := []struct {
			rcpt        string
			first, last int64
			want        string
		}{
			{"pay@billing.example", 1000, 1090, "passed"}, // 90 s >= the policy's 60 s
			{"pay@billing.example", 1000, 1030, "pending"},
			{"bob@example.org", 1000, 1090, "pending"}, // greylist's 300 s
			{"bob@example.org", 1000, 1300, "passed"},
		}
		im := &importer{snap: snap, maxAge: 1000000, retry: 100000}
		for _, tc := range tests {
			e := store.StoredEntry(store.KindTriplet, snap.TripletKey(ip, "a@b.example", tc.rcpt), tc.first, tc.last, 0)
			want := tc.want
			if privacy && strings.HasSuffix(tc.rcpt, "@billing.example") {
				want = map[bool]string{true: "passed", false: "pending"}[tc.last-tc.first >= 300]
			}
			if got := stateOf(snap, e); got != want {
				t.Errorf("privacy %v: %s, waited %d s: %s, want %s", privacy, tc.rcpt, tc.last-tc.first, got, want)
			}
			// An imported triplet without a deadline gets a passed
			// triplet's (last + max_age) or a pending one's.
			wantExp := tc.first + im.retry + 1
			if want == "passed" {
				wantExp = tc.last + im.maxAge + 1
			}
			if got := im.deadline(e); got != wantExp {
				t.Errorf("privacy %v: %s, waited %d s: import deadline %d, want %d", privacy, tc.rcpt, tc.last-tc.first, got, wantExp)
			}
		}
	}
}
