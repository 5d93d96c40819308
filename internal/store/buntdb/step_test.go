package buntdb

import (
	"testing"

	"greyd/internal/store"
	"greyd/internal/store/storetest"
)

// TestStoreSuite runs the backend-independent behaviour suite: in memory
// and on a file.
func TestStoreSuite(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return openT(t, Memory, Options{}) })
	})
	t.Run("file", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return openT(t, dbPath(t), Options{}) })
	})
	// Every file loaded in the background (load.go), as big ones are.
	t.Run("file-background", func(t *testing.T) {
		asyncAlways(t)
		storetest.Run(t, func(t *testing.T) store.Store { return openT(t, dbPath(t), Options{}) })
	})
}
