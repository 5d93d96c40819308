//go:build race

package greylist

// raceEnabled: built with -race, whose sync.Pool drops items on purpose.
const raceEnabled = true
