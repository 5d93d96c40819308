package buntdb

import (
	"testing"

	"greyd/internal/store"
	"greyd/internal/store/storetest"
)

// The shared store.Admin suite, on a file and in memory.
func TestAdminSuite(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		storetest.RunAdmin(t, func(t *testing.T) store.Store { return openT(t, dbPath(t), Options{}) })
	})
	t.Run("file-background", func(t *testing.T) {
		asyncAlways(t)
		storetest.RunAdmin(t, func(t *testing.T) store.Store { return openT(t, dbPath(t), Options{}) })
	})
	t.Run("memory", func(t *testing.T) {
		storetest.RunAdmin(t, func(t *testing.T) store.Store { return openT(t, Memory, Options{}) })
	})
}
