package logging

import (
	"sync"
	"time"
)

// Limiter lets one log line of a kind through per interval and counts the
// ones it holds back, so that a failure hit by every request (a dead disk,
// a flood of refused connections) writes a line every few seconds instead
// of flooding the journal. The zero value lets everything through.
type Limiter struct {
	Interval time.Duration

	mu      sync.Mutex
	next    time.Time // no line before this
	dropped int       // held back since the last line
}

// Allow reports whether a line may be written at now and, if so, how many
// were held back since the previous one (to be mentioned in it).
func (l *Limiter) Allow(now time.Time) (ok bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.dropped++
		return false, 0
	}
	dropped, l.dropped = l.dropped, 0
	l.next = now.Add(l.Interval)
	return true, dropped
}

// Reset forgets the interval and returns the number of lines held back
// since the last one let through, so that the next Allow passes at once.
func (l *Limiter) Reset() (dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	dropped, l.dropped = l.dropped, 0
	l.next = time.Time{}
	return dropped
}
