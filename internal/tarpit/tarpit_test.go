package tarpit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"greyd/internal/store"
)

var settings = &Settings{Duration: 10 * time.Second, MaxConcurrent: 2, AbandonDelay: time.Minute}

// TestReserve: max_concurrent counts the tarpits of the last duration;
// a place released or older than the duration is free again.
func TestReserve(t *testing.T) {
	tb := New(1000, nil)
	for _, step := range []struct {
		now  int64
		op   string // reserve, release
		want bool
	}{
		{1000, "reserve", true},
		{1001, "reserve", true},
		{1002, "reserve", false}, // two within 10 s
		{1002, "release", false},
		{1003, "reserve", true}, // the released place
		{1009, "reserve", false},
		{1010, "reserve", true}, // 1000's is 10 s old: gone
		{1011, "reserve", false},
	} {
		if step.op == "release" {
			tb.Release()
			continue
		}
		if got := tb.Reserve(step.now, settings); got != step.want {
			t.Fatalf("Reserve at %d = %v, want %v", step.now, got, step.want)
		}
	}
	if st := tb.Status(1011, settings); st.Active != 2 {
		t.Errorf("Status.Active = %d, want 2", st.Active)
	}
}

// TestSessions: a session's triplets are kept once each, taken once (or
// peeked), and bounded.
func TestSessions(t *testing.T) {
	tb := New(0, nil)
	a, b := Keys{"t1", ""}, Keys{"t2", "alt2"}
	tb.Begin("S", 100, a)
	tb.Add("S", b)
	tb.Add("S", a)
	tb.Add("other", a) // not tarpitted: ignored
	if got := tb.Take("S", true); fmt.Sprint(got) != fmt.Sprint([]Keys{a, b}) {
		t.Fatalf("peek = %v, want [a b]", got)
	}
	if got := tb.Take("S", false); len(got) != 2 {
		t.Fatalf("take = %v, want two", got)
	}
	if got := tb.Take("S", false); got != nil {
		t.Fatalf("second take = %v, want nil", got)
	}
	if tb.Take("other", false) != nil {
		t.Fatal("a session never begun has triplets")
	}

	tb.Begin("big", 100, Keys{"k0", ""})
	for i := 1; i < MaxSessionTriplets+10; i++ {
		tb.Add("big", Keys{fmt.Sprint("k", i), ""})
	}
	if got := len(tb.Take("big", false)); got != MaxSessionTriplets {
		t.Errorf("a session holds %d triplets, want the bound %d", got, MaxSessionTriplets)
	}

	for i := range MaxSessions + 1 {
		tb.Begin(fmt.Sprint("s", i), int64(200+i), a)
	}
	if tb.Take("s0", true) != nil {
		t.Error("the oldest session was kept beyond MaxSessions")
	}
	if tb.Take(fmt.Sprint("s", MaxSessions), true) == nil {
		t.Error("the newest session was dropped")
	}
	if st := tb.Status(300, settings); st.Sessions != MaxSessions {
		t.Errorf("Status.Sessions = %d, want %d", st.Sessions, MaxSessions)
	}
}

// TestMissedData: sessions that outlive duration + margin without DATA
// count as missed; at WarnAfter in a row greyd warns once; a DATA resets.
func TestMissedData(t *testing.T) {
	var warnings []string
	tb := New(0, func(msg string) { warnings = append(warnings, msg) })
	now := int64(1000)
	life := int64(settings.Duration/time.Second) + SessionMargin + 1
	for i := range WarnAfter {
		tb.Begin(fmt.Sprint("s", i), now, Keys{"t", ""})
		now += life
		st := tb.Status(now, settings)
		if st.Missed != i+1 {
			t.Fatalf("after %d sessions: missed %d", i+1, st.Missed)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "smtpd_data_restrictions") {
		t.Fatalf("warnings = %q, want one naming smtpd_data_restrictions", warnings)
	}
	tb.Begin("again", now, Keys{"t", ""})
	now += life
	if st := tb.Status(now, settings); !st.Warned || len(warnings) != 1 {
		t.Fatalf("status %+v, %d warnings: want warned once", st, len(warnings))
	}
	tb.Reached()
	if st := tb.Status(now, settings); st.Missed != 0 || st.Warned {
		t.Errorf("after a DATA: %+v, want reset", st)
	}
}

func TestRecent(t *testing.T) {
	tb := New(1000, nil)
	life := int64(settings.Duration/time.Second) + SessionMargin
	if !tb.Recent(1000+life, settings) || tb.Recent(1000+life+1, settings) {
		t.Errorf("Recent: want true up to %d s after the start, false after", life)
	}
}

func TestSessionOf(t *testing.T) {
	if SessionOf("") != -1 {
		t.Errorf("no instance: %d, want -1", SessionOf(""))
	}
	a, b := SessionOf("2f3c.5e6a8b1c.1a2b3.0"), SessionOf("2f3c.5e6a8b1c.1a2b3.1")
	if a == b || a < 0 || b < 0 || a > store.MaxValue || b > store.MaxValue {
		t.Errorf("sessions %d, %d: want distinct numbers in 0..2^53-1", a, b)
	}
	if SessionOf("2f3c.5e6a8b1c.1a2b3.0") != a {
		t.Error("not a function of the instance")
	}
}
