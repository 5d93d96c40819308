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
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"greyd/internal/config"
	"greyd/internal/greylist"
	"greyd/internal/signals"
	"greyd/internal/tarpit"
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

// Load reads the configuration at path and the files it names, and the
// privacy key when the configuration asks for privacy. Snapshot is nil
// when ConfigProblems is not empty.
func Load(path string, o Options) *Loaded {
	return load(path, o, func(cfg *config.Config) (*greylist.Hasher, error) {
		if !cfg.Greylist.Privacy {
			return nil, nil
		}
		key, err := privacyKey(KeyPath(cfg), o.CreateKey)
		if err != nil {
			return nil, err
		}
		return greylist.NewHasher(key), nil
	})
}

// load is Load with the privacy hasher from privacy: the key file's at
// start, the running one at a reload.
func load(path string, o Options, privacy func(*config.Config) (*greylist.Hasher, error)) *Loaded {
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
	sel, sps := selective(cfg, snap.Identity)
	snap.Selective = sel
	if t := cfg.Tarpit; t != nil {
		snap.Tarpit = &tarpit.Settings{Duration: t.Duration, MaxConcurrent: t.MaxConcurrent, AbandonDelay: t.AbandonDelay}
	}
	l.WhitelistProblems = append(l.WhitelistProblems, sps...)
	h, err := privacy(cfg)
	if err != nil {
		l.ConfigProblems = append(l.ConfigProblems, config.Problem{File: KeyPath(cfg), Summary: "Cannot use the privacy key", Detail: err.Error()})
		return l
	}
	if t := cfg.Trap; t != nil {
		// Trap files are recipient lists, read and reloaded like the
		// whitelists; their problems are whitelist problems.
		rcpts, tps := whitelist.LoadRecipients(t.Recipients)
		l.WhitelistProblems = append(l.WhitelistProblems, tps...)
		snap.Traps = &greylist.Traps{Recipients: rcpts, For: t.Duration}
	}
	snap.Privacy = h
	l.Snapshot = snap
	return l
}

// DynamicNames are the dynamic_names files of a configuration: the
// shipped one and the administrator's, in the configuration directory.
func DynamicNames(cfg *config.Config) []string {
	return []string{filepath.Join(cfg.Dir, "dynamic_names"), filepath.Join(cfg.Dir, "dynamic_names.local")}
}

// selective compiles selective greylisting; nil when nothing is ever
// scored or exempted (mode "always" and no recipient policy). The
// dynamic_names files are read only when rdns_dynamic has a weight; their
// problems only drop lines, like the whitelists'.
func selective(cfg *config.Config, ident *identity.Matcher) (*greylist.Selective, []whitelist.Problem) {
	if cfg.Selective.Mode == config.SelectiveAlways && len(cfg.RecipientPolicies) == 0 {
		return nil, nil
	}
	s := &greylist.Selective{
		Mode:       greylist.ParseMode(cfg.Selective.Mode),
		GreylistAt: cfg.Selective.GreylistAt,
		TarpitAt:   cfg.Selective.TarpitAt,
		Shadow:     cfg.Selective.Shadow,
	}
	var probs []whitelist.Problem
	for _, p := range cfg.RecipientPolicies {
		r, _ := whitelist.ParseRecipients("", strings.NewReader(strings.Join(p.Recipients, "\n"))) // checked by config
		s.Policies = append(s.Policies, greylist.RecipientPolicy{
			Name: p.Name, Recipients: r, Mode: greylist.ParseMode(p.Mode), GreylistAt: p.GreylistAt, Delay: p.Delay,
		})
	}
	if !cfg.Scoring() {
		return s, nil
	}
	spec := cfg.SignalsSpec()
	if ident == nil {
		// lookup_by is not "auto": rdns_dynamic still uses the built-in rules.
		ident = identity.New(identity.Defaults())
	}
	spec.Identity = ident
	if spec.RDNSDynamic != nil {
		spec.DynamicNames, probs = signals.LoadDynamicNames(DynamicNames(cfg))
	}
	sc, err := signals.NewConfig(spec)
	if err != nil {
		// The configuration layer checked every value; this is a bug.
		probs = append(probs, whitelist.Problem{File: cfg.Dir, Msg: fmt.Sprintf("signals: %v (nothing is scored)", err)})
		return s, probs
	}
	s.Signals = sc
	return s, probs
}

// KeyPath is where the privacy secret lives: next to the database, in the
// state directory, which only greyd can read.
func KeyPath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Database.Path), "privacy.key")
}

const keySize = 32

// privacyKey reads the secret, creating it when allowed. The daemon and
// greyd import-postgrey may create it at the same moment: the key is
// written in full to a temporary file and linked to its name, which
// fails if the other one was first, and then its key is the one used.
func privacyKey(path string, create bool) ([]byte, error) {
	key, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if !create {
		// check-config: the daemon will create it.
		return bytes.Repeat([]byte{0}, keySize), nil
	}
	key = make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// The key is read before the database is opened, which creates the
	// state directory otherwise (systemd's StateDirectory= does it for
	// the packaged unit, a first start by hand does not).
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".privacy.key-*") // mode 0600
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
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return readKey(path) // created meanwhile, complete: it was linked the same way
	} else if err != nil {
		return nil, err
	}
	// The new name must survive a crash: entries stored under the key
	// would be lost with it.
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return key, nil
}

// readKey reads an existing key; one that other users could read is no
// secret and refused.
func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %#o: group or other users can access the privacy key; make it readable by greyd only (chmod 600 %s) and keep the file: a new key would greylist every sender once more", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<10))
	if err != nil {
		return nil, err
	}
	if len(b) < keySize {
		return nil, fmt.Errorf("%s is %d bytes, want %d: remove it to create a new one (stored keys then no longer match, so senders are greylisted once more)", path, len(b), keySize)
	}
	return b[:keySize], nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
