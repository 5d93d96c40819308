package control

import (
	"context"
	"errors"

	"greyd/internal/store"
)

// ErrNoAdmin is the error of admin operations on a store that does not
// implement store.Admin. Both backends do (buntdb, redis); a store
// wrapped by a test or a future backend gets a clear refusal, not a crash.
var ErrNoAdmin = errors.New("this store does not support listing, deleting, importing or runtime whitelist entries")

// noAdmin stands in for a backend without store.Admin: explain and stats
// still work, the rest says why not.
type noAdmin struct{}

func (noAdmin) Scan(context.Context, []store.Kind, func(store.Entry) bool) error { return ErrNoAdmin }
func (noAdmin) Delete(context.Context, store.Kind, []string) (int, error)        { return 0, ErrNoAdmin }
func (noAdmin) Import(context.Context, []store.Entry, int64) (int, int, error) {
	return 0, 0, ErrNoAdmin
}
func (noAdmin) Counts() (int, int)                                        { return 0, 0 }
func (noAdmin) Whitelist(context.Context) ([]store.WhitelistEntry, error) { return nil, nil }
func (noAdmin) AddWhitelist(context.Context, store.WhitelistEntry) (bool, error) {
	return false, ErrNoAdmin
}
func (noAdmin) RemoveWhitelist(context.Context, store.WhitelistKind, string) (bool, error) {
	return false, ErrNoAdmin
}
func (noAdmin) WhitelistVersion(context.Context) (int64, error) { return 0, nil }

// AdminOf returns st's store.Admin, or a stand-in whose operations fail
// with ErrNoAdmin.
func AdminOf(st store.Store) store.Admin {
	if a, ok := st.(store.Admin); ok {
		return a
	}
	return noAdmin{}
}
