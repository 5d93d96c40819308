package logging

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	l := &Limiter{Interval: 10 * time.Second}
	steps := []struct {
		at      time.Duration
		ok      bool
		dropped int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2}, // the interval is inclusive
		{10 * time.Second, false, 0},
		{time.Hour, true, 1},
		{time.Hour + time.Second, false, 0},
	}
	for i, s := range steps {
		ok, dropped := l.Allow(t0.Add(s.at))
		if ok != s.ok || dropped != s.dropped {
			t.Errorf("step %d at +%v: Allow = %v, %d; want %v, %d", i, s.at, ok, dropped, s.ok, s.dropped)
		}
	}
	if n := l.Reset(); n != 1 {
		t.Errorf("Reset = %d, want the 1 line held back", n)
	}
	if ok, dropped := l.Allow(t0.Add(time.Hour + 2*time.Second)); !ok || dropped != 0 {
		t.Errorf("after Reset: Allow = %v, %d; want true, 0", ok, dropped)
	}

	var zero Limiter
	for i := 0; i < 3; i++ {
		if ok, _ := zero.Allow(t0); !ok {
			t.Fatal("zero Limiter held a line back")
		}
	}
}
