package buntdb

import (
	"strings"
	"testing"
	"time"

	bunt "github.com/tidwall/buntdb"
)

// TestCloseBounded holds buntdb's lock, as a write stuck on a hung disk
// does, and checks that Close gives up instead of hanging greyd's exit.
func TestCloseBounded(t *testing.T) {
	defer func(d time.Duration) { closeTimeout = d }(closeTimeout)
	closeTimeout = 50 * time.Millisecond
	d := openT(t, dbPath(t), Options{})
	held, release := make(chan struct{}), make(chan struct{})
	go d.db.Update(func(*bunt.Tx) error { close(held); <-release; return nil })
	<-held
	errc := make(chan error, 1)
	go func() { errc <- d.Close() }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "still busy after 50ms") {
			t.Errorf("Close with the lock held = %v; want still busy after 50ms", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a held lock")
	}
	close(release)
}
