package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"greyd/internal/config"
	"greyd/internal/store"
	"greyd/internal/store/buntdb"
	"greyd/internal/store/redis"
)

// openStore opens the database: Redis when the configuration has a redis
// block, else buntdb at c.Path. If buntdb cannot be opened for a reason
// other than another greyd holding it, greyd still serves, with an
// in-memory store: greylisting state is disposable, availability is not.
// Redis never holds up start-up: while it cannot be reached, the store
// fails every request at once (answered as store failures) and connects
// in the background.
func openStore(c config.Database, log *slog.Logger) (store.Store, error) {
	if c.Redis != nil {
		return openRedis(c.Redis, log)
	}
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
	mem, merr := buntdb.Open(buntdb.Memory, o)
	if merr != nil {
		return nil, merr
	}
	return &memoryStore{DB: mem, cause: err, since: time.Now()}, nil
}

// memoryStore is the in-memory database greyd serves with when the
// configured one cannot be opened. It says so wherever greyd reports on
// its store, for as long as it lasts: a warning logged once is soon out
// of sight.
type memoryStore struct {
	*buntdb.DB
	cause error // why the database could not be opened
	since time.Time
}

// memoryWarningEvery repeats the in-memory warning.
var memoryWarningEvery = time.Hour

// Status is the store's line in systemd's STATUS= and in greyd stats.
func (m *memoryStore) Status() string {
	return fmt.Sprintf("IN MEMORY since %s (%v): state is lost at restart", m.since.Format("2006-01-02 15:04:05"), m.cause)
}

// remind logs the warning every interval until ctx ends.
func (m *memoryStore) remind(ctx context.Context, log *slog.Logger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			log.Error(fmt.Sprintf("%v: STILL SERVING WITH AN IN-MEMORY DATABASE since %s; greylisting state will be lost at the next restart. Fix the state directory (owner, permissions, free space) and restart greyd",
				m.cause, m.since.Format("2006-01-02 15:04:05")))
		}
	}
}

// persistent reports whether db keeps its state across restarts.
func persistent(db store.Store) bool {
	_, mem := db.(*memoryStore)
	return !mem
}

// openRedis opens the Redis store of r. The store's deadline is
// redis.DefaultTimeout, limits.store_timeout's default with Redis; the
// daemon sets the configured one (SetTimeout).
func openRedis(r *config.Redis, log *slog.Logger) (store.Store, error) {
	o := redis.Options{
		Network:   r.Network,
		Addrs:     r.Addrs,
		DB:        r.DB,
		TLS:       r.TLS,
		MasterSet: r.MasterSet,
		Username:  r.Username,
		KeyPrefix: r.KeyPrefix,
		Logger:    log,
	}
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("redis password_file: %w", err)
		}
		// The file's one line; an editor's final newline is not part of
		// the password.
		o.Password = strings.TrimRight(string(b), "\r\n")
	}
	return redis.Open(o)
}

// setStoreTimeout gives a store that has its own per-request deadline
// (Redis) the configured limits.store_timeout.
func setStoreTimeout(db store.Store, d time.Duration) {
	if ts, ok := db.(interface{ SetTimeout(time.Duration) }); ok {
		ts.SetTimeout(d)
	}
}

// describeStore names the database for the start-up line: the buntdb file,
// the Redis URL (it never holds a password: that is in password_file), or
// the memory that stands in for the file.
func describeStore(c config.Database, db store.Store) string {
	switch {
	case !persistent(db):
		return "in-memory database: state is lost at restart (" + c.Path + " could not be opened)"
	case c.Redis != nil:
		return "database redis " + c.Redis.URL
	}
	return "database " + c.Path
}
