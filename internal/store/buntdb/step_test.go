package buntdb

import (
	"errors"
	"testing"

	bunt "github.com/tidwall/buntdb"

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

// TestStoredSuite: values in the file are read as store.ParseValue reads
// them, whether Open loads the file itself or in the background.
func TestStoredSuite(t *testing.T) {
	open := func(t *testing.T, stored []storetest.Stored) store.Store {
		path := dbPath(t)
		raw, err := bunt.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		err = raw.Update(func(tx *bunt.Tx) error {
			for _, s := range stored {
				ns, err := namespace(s.Kind)
				if err != nil {
					return err
				}
				if _, _, err := tx.Set(string(ns)+":"+s.Key, s.Value, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err := errors.Join(err, raw.Close()); err != nil {
			t.Fatal(err)
		}
		return openT(t, path, Options{})
	}
	t.Run("file", func(t *testing.T) { storetest.RunStored(t, open) })
	t.Run("file-background", func(t *testing.T) {
		asyncAlways(t)
		storetest.RunStored(t, open)
	})
}
