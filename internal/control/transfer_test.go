package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestImportChecks: an import starts with its header (which says how its
// keys are hashed), and each line's deadline and comment are checked
// before anything of that line is stored.
func TestImportChecks(t *testing.T) {
	now := time.Now().Unix()
	header := `{"kind":"header","format":"greyd-export/1"}`
	triplet := fmt.Sprintf(`{"kind":"triplet","key":"198.51.100.0/a@b.example/r@example.org","first":%d,"last":%d,"expires":%d}`, now-600, now-100, now+3600)
	wl := func(extra string) string {
		return `{"kind":"whitelist","list":"client","value":"partner.example"` + extra + `}`
	}
	tests := []struct {
		name  string
		lines []string
		// want: "" for success, or part of the error that ends the
		// import, or "skip:" and part of the one line's error.
		want string
		// stored: triplets and runtime whitelist entries written.
		trips, wls int
	}{
		{"header, triplet, whitelist", []string{header, triplet, wl(`,"comment":"ticket 42"`)}, "", 1, 1},
		{"no header", []string{triplet}, "line 1: an import starts with the header line of greyd export", 0, 0},
		{"whitelist before the header", []string{wl(""), header}, "line 1: an import starts with the header", 0, 0},
		{"header after an entry", []string{"", triplet, header}, "line 2: an import starts with the header", 0, 0},
		{"first line not JSON", []string{"garbage", header, triplet}, "line 1: an import starts with the header", 0, 0},
		{"header of an unknown format", []string{`{"kind":"header","format":"other/1"}`, triplet}, `line 1: unknown export format "other/1"`, 0, 0},
		{"privacy mismatch", []string{`{"kind":"header","format":"greyd-export/1","privacy":true,"privacy_key":"0123456789abcdef"}`, triplet}, "privacy", 0, 0},
		{"negative expires", []string{header, `{"kind":"triplet","key":"k","first":1,"last":2,"expires":-5}`}, "skip:line 2: expires -5 ", 0, 0},
		{"expires in 20 years", []string{header, fmt.Sprintf(`{"kind":"client","key":"198.51.100.7","count":1,"last":%d,"expires":%d}`, now, now+20*365*86400)}, "skip:line 2: expires ", 0, 0},
		{"deadline from an absurd last", []string{header, `{"kind":"client","key":"198.51.100.7","count":1,"last":9223372036854775000}`}, "skip:line 2: number out of range", 0, 0},
		{"first past 2^53 with a deadline", []string{header, fmt.Sprintf(`{"kind":"triplet","key":"k","first":9007199254740993,"last":2,"expires":%d}`, now+3600)}, "skip:line 2: number out of range", 0, 0},
		{"whitelist expiring long ago", []string{header, wl(`,"expires":-1`)}, "skip:line 2: expires -1 ", 0, 0},
		{"whitelist expiring in 20 years", []string{header, wl(fmt.Sprintf(`,"expires":%d`, now+20*365*86400))}, "skip:line 2: expires ", 0, 0},
		{"comment with a control character", []string{header, wl(`,"comment":"a\u0007b"`)}, "skip:line 2: comment: at most 500 bytes on one line, without control characters", 0, 0},
		{"comment on two lines", []string{header, wl(`,"comment":"a\nb"`)}, "skip:line 2: comment: ", 0, 0},
		{"comment too long", []string{header, wl(`,"comment":"` + strings.Repeat("x", 501) + `"`)}, "skip:line 2: comment: ", 0, 0},
	}
	ctx := context.Background()
	for i, tc := range tests {
		d := startServer(t, testSnap(t, false), nil)
		body := strings.Join(tc.lines, "\n") + "\n"
		res, err := d.client.Import(ctx, strings.NewReader(body))
		var ae *APIError
		switch skip, isSkip := strings.CutPrefix(tc.want, "skip:"); {
		case tc.want == "":
			if err != nil || res.Skipped != 0 {
				t.Errorf("%d %s: %+v, %v; want no error\n%s", i, tc.name, res, err, body)
			}
		case isSkip:
			if err != nil || res.Skipped != 1 || len(res.Errors) != 1 || !strings.HasPrefix(res.Errors[0], skip) {
				t.Errorf("%d %s: %+v, %v; want the line skipped with %q\n%s", i, tc.name, res, err, skip, body)
			}
		case !errors.As(err, &ae) || ae.Status/100 != 4 || !strings.Contains(ae.Message, tc.want):
			t.Errorf("%d %s: %+v, %v; want a refusal with %q\n%s", i, tc.name, res, err, tc.want, body)
		}
		trips, _ := d.db.Counts()
		wls, err := d.db.Whitelist(ctx)
		if err != nil || trips != tc.trips || len(wls) != tc.wls {
			t.Errorf("%d %s: stored %d triplets and %d whitelist entries (%v); want %d and %d", i, tc.name, trips, len(wls), err, tc.trips, tc.wls)
		}
	}
}
