// Package reload builds complete configuration snapshots (HCL settings,
// compiled whitelists, privacy key) and keeps the daemon's snapshot current
// when files change: a new snapshot replaces the old one only if it loaded
// without a single problem.
package reload

import (
	"greyd/internal/identity"

	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"greyd/internal/config"
	"greyd/internal/greylist"
	"greyd/internal/whitelist"
)

// Options say how to complete a snapshot.
type Options struct {
	Version string
	// Hostname is used when the configuration leaves it empty.
	Hostname string
	// CreateKey allows creating the privacy key file when missing; off for
	// check-config, which must not create files (possibly as root).
	CreateKey bool
}

// Loaded is everything read from one configuration path.
type Loaded struct {
	Config   *config.Config
	Snapshot *greylist.Snapshot
	// Config problems make the configuration unusable; whitelist problems
	// only drop the offending lines.
	ConfigProblems    config.Problems
	WhitelistProblems []whitelist.Problem

	// seen is every input as it was before it was read, so that an edit
	// racing with the load is a change for the Reloader, never lost.
	seen fingerprint
}

// OK reports whether nothing at all was wrong.
func (l *Loaded) OK() bool { return len(l.ConfigProblems) == 0 && len(l.WhitelistProblems) == 0 }

// Problems returns every problem as an error, config ones first.
func (l *Loaded) Problems() []error {
	var errs []error
	for _, p := range l.ConfigProblems {
		errs = append(errs, p)
	}
	for _, p := range l.WhitelistProblems {
		errs = append(errs, p)
	}
	return errs
}

// Load reads the configuration at path and the files it names. Snapshot
// is nil when ConfigProblems is not empty.
func Load(path string, o Options) *Loaded {
	seen := takeFingerprint(inputs(path))
	cfg, ps := config.Load(path)
	l := &Loaded{Config: cfg, ConfigProblems: ps, seen: seen}
	// The files the configuration names, before they are read.
	for p, h := range takeFingerprint(inputs(path, cfg)) {
		if _, ok := seen[p]; !ok {
			seen[p] = h
		}
	}
	if len(ps) > 0 {
		return l
	}
	clients, cps := whitelist.LoadClients(cfg.Whitelist.Clients)
	rcpts, rps := whitelist.LoadRecipients(cfg.Whitelist.Recipients)
	l.WhitelistProblems = append(cps, rps...)

	g := cfg.Greylist
	host := g.Hostname
	if host == "" {
		host = o.Hostname
	}
	snap := &greylist.Snapshot{
		Settings: greylist.Settings{
			Delay:                g.Delay,
			RetryWindow:          g.RetryWindow,
			MaxAge:               g.MaxAge,
			LookupByHost:         g.LookupByHost,
			IPv4Prefix:           g.IPv4Prefix,
			IPv6Prefix:           g.IPv6Prefix,
			Action:               g.Action,
			Text:                 g.Text,
			XGreylistHeader:      g.XGreylistHeader,
			HeaderText:           g.HeaderText,
			Hostname:             host,
			Version:              o.Version,
			AutoWhitelistClients: cfg.AutoWhitelist.Clients,
			DeferOnStoreError:    g.OnStoreError == config.OnStoreErrorDefer,
			StoreErrorText:       g.StoreErrorText,
			UseTestTime:          g.PolicyTestTime,
			DryRun:               g.DryRun,
			LogDecisions:         greylist.ParseDecisionLog(cfg.Log.Decisions),
		},
		Clients:    clients,
		Recipients: rcpts,
	}
	if g.LookupBy == config.LookupByAuto {
		// The configured lists add to the built-in ones.
		ic := identity.Defaults()
		ic.PoolDomains = append(ic.PoolDomains, g.PoolDomains...)
		ic.DynamicDomains = append(ic.DynamicDomains, g.DynamicDomains...)
		snap.Identity = identity.New(ic)
	}
	if g.Privacy {
		key, err := privacyKey(KeyPath(cfg), o.CreateKey)
		if err != nil {
			l.ConfigProblems = append(l.ConfigProblems, config.Problem{File: KeyPath(cfg), Summary: "Cannot use the privacy key", Detail: err.Error()})
			return l
		}
		snap.Privacy = greylist.NewHasher(key)
	}
	l.Snapshot = snap
	return l
}

// KeyPath is where the privacy secret lives: next to the database, in the
// state directory, which only greyd can read.
func KeyPath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Database.Path), "privacy.key")
}

const keySize = 32

// privacyKey reads the secret, creating it (0600, written to a temporary
// file then renamed, so a crash never leaves half a key) when allowed.
func privacyKey(path string, create bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < keySize {
			return nil, fmt.Errorf("%s is %d bytes, want %d: remove it to create a new one (stored keys then no longer match, so senders are greylisted once more)", path, len(b), keySize)
		}
		return b[:keySize], nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if !create {
		// check-config: the daemon will create it.
		return bytes.Repeat([]byte{0}, keySize), nil
	}
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// The key is read before the database is opened, which creates the
	// state directory otherwise (systemd's StateDirectory= does it for
	// the packaged unit, a first start by hand does not).
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".privacy.key-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	return key, nil
}
