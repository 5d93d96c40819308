package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"greyd/internal/config"
	"greyd/internal/store"
	"greyd/internal/store/buntdb"
)

// openStore opens the database. If it cannot be opened for a reason other
// than another greyd holding it, greyd still serves, with an in-memory
// store: greylisting state is disposable, availability is not.
func openStore(c config.Database, log *slog.Logger) (store.Store, error) {
	sync, err := buntdb.ParseSync(c.Sync)
	if err != nil {
		return nil, err
	}
	o := buntdb.Options{Sync: sync, Logger: log}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o750); err != nil {
		log.Error(fmt.Sprintf("create state directory: %v", err))
	}
	db, err := buntdb.Open(c.Path, o)
	if err == nil {
		return db, nil
	}
	if errors.Is(err, store.ErrLocked) {
		return nil, err
	}
	log.Error(fmt.Sprintf("%v: SERVING WITH AN IN-MEMORY DATABASE; greylisting state will be lost at the next restart. Fix the state directory (owner, permissions, free space) and restart greyd", err))
	return buntdb.Open(buntdb.Memory, o)
}
