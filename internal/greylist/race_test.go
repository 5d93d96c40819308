//go:build race

package greylist

// raceEnabled: the race detector makes sync.Pool drop a quarter of what is
// put back, so pooled objects are sometimes allocated again.
const raceEnabled = true
