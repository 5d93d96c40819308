package control

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/whitelist"
)

func trapSnap(t *testing.T) *greylist.Snapshot {
	t.Helper()
	s := testSnap(t, false)
	traps, _ := whitelist.ParseRecipients("traps", strings.NewReader("trap@example.org\n"))
	s.Traps = &greylist.Traps{Recipients: traps, For: time.Hour}
	return s
}

// TestTrapAdmin: a trap is listed with its end, explained, exported and
// imported with it, and released by kind and client.
func TestTrapAdmin(t *testing.T) {
	ctx := context.Background()
	d := startServer(t, trapSnap(t), nil)
	start := time.Now().Unix()
	if got := ask(d.engine, "198.51.100.7", "unknown", "a@b.example", "trap@example.org"); got != "DEFER_IF_PERMIT Greylisted" {
		t.Fatalf("to the trap: %q", got)
	}
	var recs []Record
	if _, err := d.client.Entries(ctx, url.Values{"kind": {"trap"}}, func(r Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Client != "198.51.100.7" || recs[0].State != "trapped" || recs[0].Until < start+3600 || recs[0].Until > time.Now().Unix()+3600 {
		t.Errorf("list -kind trap: %+v", recs)
	}
	x, err := d.client.Explain(ctx, "198.51.100.7", "unknown", "a@b.example", "bob@example.org")
	if err != nil || x.Reason != "trapped" || x.Trap == nil || !x.Trap.Trapped || x.Trap.Recipient || x.Trap.Until != recs[0].Until || x.Action != "DEFER_IF_PERMIT 4.2.0 Greylisted" {
		t.Errorf("explain of a trapped client: %+v (trap %+v), %v", x, x.Trap, err)
	}

	var buf bytes.Buffer
	if err := d.client.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	d2 := startServer(t, trapSnap(t), nil)
	if res, err := d2.client.Import(ctx, &buf); err != nil || res.Imported != 1 || res.Skipped != 0 {
		t.Fatalf("import of the export: %+v, %v\n%s", res, err, buf.String())
	}
	if got := ask(d2.engine, "198.51.100.7", "unknown", "a@b.example", "bob@example.org"); got != "DEFER_IF_PERMIT Greylisted" {
		t.Errorf("imported trap: %q", got)
	}
	x, err = d2.client.Explain(ctx, "198.51.100.7", "unknown", "a@b.example", "bob@example.org")
	if err != nil || x.Trap == nil || !x.Trap.Trapped || x.Trap.Until != recs[0].Until {
		t.Errorf("explain after import: %+v, %v; want trapped until %d", x.Trap, err, recs[0].Until)
	}

	del, err := d2.client.Delete(ctx, url.Values{"kind": {"trap"}, "client": {"198.51.100.0/24"}})
	if err != nil || del.Traps != 1 || del.Triplets != 0 || del.Clients != 0 {
		t.Errorf("delete -trap: %+v, %v", del, err)
	}
	x, err = d2.client.Explain(ctx, "198.51.100.7", "unknown", "a@b.example", "bob@example.org")
	if err != nil || x.Reason != "new" || x.Trap == nil || x.Trap.Found {
		t.Errorf("explain after delete -trap: %+v (trap %+v), %v", x, x.Trap, err)
	}
}
