package reload

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"greyd/internal/config"
	"greyd/internal/greylist"
)

// Reloader re-reads the configuration and applies it when, and only when,
// it loaded without problems. What greyd reads only at start (sockets,
// database, privacy key) keeps its running value, with a warning per
// changed setting; a reload never reads or creates the key file. It is
// safe for concurrent use; reloads are serialised.
type Reloader struct {
	path  string
	opts  Options
	log   *slog.Logger
	apply func(*Loaded)

	mu        sync.Mutex
	current   *config.Config // running configuration
	attempted *config.Config // last one loaded, even if rejected
	seen      fingerprint    // inputs as of the last attempt

	// Read at start only: the privacy key's hasher (nil without
	// privacy), and the Redis password file with its content.
	privacy      *greylist.Hasher
	passwordFile string
	password     [sha256.Size]byte

	ok, failed atomic.Uint64
	last       atomic.Int64 // unix nanoseconds of the last attempt
	lastOK     atomic.Bool
}

// NewReloader returns a Reloader for path whose running configuration is
// initial; apply installs a new snapshot (and the settings that go with it).
func NewReloader(path string, o Options, initial *Loaded, log *slog.Logger, apply func(*Loaded)) *Reloader {
	r := &Reloader{path: path, opts: o, log: log, apply: apply, current: initial.Config}
	// As of the initial load, not now: an edit in between (the daemon
	// opens its store and sockets first) is a change to reload.
	r.seen = initial.seen
	if r.seen == nil {
		r.seen = takeFingerprint(inputs(path, initial.Config))
	}
	if initial.Snapshot != nil {
		r.privacy = initial.Snapshot.Privacy
	}
	if rd := initial.Config.Database.Redis; rd != nil && rd.PasswordFile != "" {
		r.passwordFile = rd.PasswordFile
		r.password = r.seen[rd.PasswordFile]
	}
	return r
}

// Changed lists the input files whose content differs from the last load
// (appeared, vanished, edited), sorted; empty when nothing changed.
func (r *Reloader) Changed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return changed(r.seen, takeFingerprint(inputs(r.path, r.current, r.attempted)))
}

// watchTargets returns what a file watcher must watch (see watchDirs).
func (r *Reloader) watchTargets() (dirs, names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return watchDirs(r.path, r.current, r.attempted)
}

// Stats are the reload counters the status line and metrics export.
type Stats struct {
	OK, Failed uint64
	Last       time.Time // zero before the first reload
	LastOK     bool
}

// Stats returns the counters.
func (r *Reloader) Stats() Stats {
	s := Stats{OK: r.ok.Load(), Failed: r.failed.Load(), LastOK: r.lastOK.Load()}
	if n := r.last.Load(); n != 0 {
		s.Last = time.Unix(0, n)
	}
	return s
}

// Reload loads everything again. why says what triggered it ("SIGHUP",
// "changed: /etc/greyd/whitelist_clients.local"). On any problem the
// running snapshot stays, each problem is logged with its file:line, and
// Reload returns false.
func (r *Reloader) Reload(why string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Fingerprint before reading: an edit racing with this load shows up
	// as a change at the next check.
	before := takeFingerprint(inputs(r.path, r.current, r.attempted))
	// Never the key file: the key belongs to the running database.
	l := load(r.path, r.opts, func(*config.Config) (*greylist.Hasher, error) { return r.privacy, nil })
	r.attempted = l.Config
	r.seen = before
	for p, h := range l.seen {
		if _, ok := r.seen[p]; !ok {
			r.seen[p] = h
		}
	}
	r.last.Store(time.Now().UnixNano())
	for _, w := range l.Config.Warnings {
		r.log.Warn(w.Error())
	}
	if !l.OK() || l.Snapshot == nil {
		r.failed.Add(1)
		r.lastOK.Store(false)
		for _, p := range l.Problems() {
			r.log.Error(p.Error())
		}
		r.log.Error(fmt.Sprintf("reload (%s) failed with %d problem(s): still running the previous configuration; fix the files and save again (or run greyd check-config)", why, len(l.Problems())))
		return false
	}
	// Sockets, the database and the privacy key are opened once.
	restart := keepRunning(r.current, l.Config)
	if pw := r.passwordFile; pw != "" && r.seen[pw] != r.password {
		restart = append(restart, fmt.Sprintf("database.redis.password_file %s changed: restart greyd to apply it (running with the password read at start)", pw))
	}
	r.apply(l)
	r.current = l.Config
	r.ok.Add(1)
	r.lastOK.Store(true)
	for _, w := range restart {
		r.log.Warn(w)
	}
	msg := fmt.Sprintf("reload (%s): ok, %d client and %d recipient whitelist entries", why, l.Snapshot.Clients.Len(), l.Snapshot.Recipients.Len())
	if len(restart) > 0 {
		msg += fmt.Sprintf("; %d changed setting(s) keep their running value until greyd restarts", len(restart))
	}
	r.log.Info(msg)
	return true
}
