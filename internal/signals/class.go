package signals

import (
	"fmt"
	"strconv"
)

// Class is what a score makes of a request. Thresholds are the only knob
// that turns a score into a class.
type Class uint8

const (
	Pass     Class = iota // below every threshold: no delay
	Tarpit                // TarpitAt <= score < GreylistAt: a tarpit instead of a delay
	Greylist              // score >= GreylistAt: today's triplet algorithm
)

var classNames = [...]string{Pass: "pass", Tarpit: "tarpit", Greylist: "greylist"}

// String returns "pass", "tarpit" or "greylist": the action= of the log
// line and a metric label.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Thresholds turn a score into a Class.
type Thresholds struct {
	// TarpitAt, if set, starts the tarpit class below GreylistAt.
	TarpitAt   *int
	GreylistAt int
}

// Check reports why t cannot be used: a tarpit threshold must lie below
// the greylisting one.
func (t Thresholds) Check() error {
	if t.TarpitAt != nil && *t.TarpitAt >= t.GreylistAt {
		return fmt.Errorf("tarpit_at = %d must be below greylist_at = %d", *t.TarpitAt, t.GreylistAt)
	}
	return nil
}

// Classify returns the class of score.
func (t Thresholds) Classify(score int) Class {
	switch {
	case score >= t.GreylistAt:
		return Greylist
	case t.TarpitAt != nil && score >= *t.TarpitAt:
		return Tarpit
	}
	return Pass
}

// Classify returns Greylist when score >= greylistAt, else Pass.
func Classify(score, greylistAt int) Class {
	return Thresholds{GreylistAt: greylistAt}.Classify(score)
}
