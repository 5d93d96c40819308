package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"greyd/internal/config"
)

// Watcher notices edits of the configuration and whitelist files and asks
// for a reload. It watches directories, never files: editors and sed -i
// replace a file by renaming another over it, configuration managers swap
// symlinks, and a watch on the file itself would silently stay on the old
// inode. Events only wake it up; what changed is decided by comparing file
// contents, so bursts, unrelated files and events that change nothing
// cost a few reads, never a reload.
type Watcher struct {
	rl     *Reloader
	reload func(why string)
	log    *slog.Logger

	// Debounce waits for a burst of events to end (an editor's save is
	// several events; cp writes a file in several steps).
	Debounce time.Duration
	// Poll is the interval of the content check that catches what inotify
	// misses (NFS, some container mounts).
	Poll time.Duration

	fw      *fsnotify.Watcher
	content map[string]bool // watched directories whose entries matter
	names   map[string]bool // entries of parent directories that matter
	missing int             // wanted directories that do not exist now
}

// NewWatcher returns a Watcher that calls reload (which should call
// rl.Reload) with a description of what changed.
func NewWatcher(rl *Reloader, reload func(why string), log *slog.Logger) *Watcher {
	return &Watcher{rl: rl, reload: reload, log: log, Debounce: 300 * time.Millisecond, Poll: time.Minute}
}

// Run watches until ctx ends. Without inotify it still runs the periodic
// check, and SIGHUP keeps working.
func (w *Watcher) Run(ctx context.Context) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.log.Warn(fmt.Sprintf("cannot watch configuration files (%v): changes are noticed only by the check every %v, or at once with SIGHUP (systemctl reload greyd)", err, w.Poll))
	} else {
		w.fw = fw
		defer fw.Close()
		w.sync()
	}
	var events chan fsnotify.Event
	var errs chan error
	if w.fw != nil {
		events, errs = w.fw.Events, w.fw.Errors
	}
	// An edit between the Reloader's first fingerprint and the watches
	// above raised no event: look once now.
	w.check("changed")
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	poll := time.NewTicker(w.Poll)
	defer poll.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if w.relevant(ev) {
				debounce.Reset(w.Debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("too many file events at once (inotify queue overflow): checking every file")
			} else {
				w.log.Warn(fmt.Sprintf("watching configuration files: %v", err))
			}
			debounce.Reset(w.Debounce)
		case <-debounce.C:
			w.check("changed")
		case <-poll.C:
			w.check("periodic check found changes")
		case <-retry.C:
			// A watched directory was removed: watch it again once it
			// is back, and look at what it holds now.
			if w.missing > 0 && w.sync() {
				debounce.Reset(w.Debounce)
			}
		}
	}
}

func (w *Watcher) check(what string) {
	if files := w.rl.Changed(); len(files) > 0 {
		w.reload(what + ": " + strings.Join(files, ", "))
	}
	w.sync()
}

// relevant filters out what can never change the configuration: chmod
// alone and editor droppings. Kubernetes-style "..data" symlink swaps
// start with a dot but matter.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	if config.IsEditorDropping(base) && !strings.HasPrefix(base, "..") {
		return false
	}
	return w.content[filepath.Dir(ev.Name)] || w.names[ev.Name] || w.content[ev.Name]
}

// sync makes the watch list match what the configurations need, following
// symlinks as they are now. It reports whether it added a watch.
func (w *Watcher) sync() (added bool) {
	if w.fw == nil {
		return false
	}
	dirs, names := w.rl.watchTargets()
	want := map[string]bool{}
	content := map[string]bool{}
	nameSet := map[string]bool{}
	missing := 0
	for _, d := range dirs {
		r, err := filepath.EvalSymlinks(d)
		if err != nil {
			missing++
			// Its parent shows it coming back.
			if p, err := filepath.EvalSymlinks(filepath.Dir(d)); err == nil {
				want[p] = true
				nameSet[filepath.Join(p, filepath.Base(d))] = true
			}
			continue
		}
		want[r], content[r] = true, true
	}
	for _, n := range names {
		if p, err := filepath.EvalSymlinks(filepath.Dir(n)); err == nil {
			want[p] = true
			nameSet[filepath.Join(p, filepath.Base(n))] = true
		}
	}
	have := map[string]bool{}
	for _, d := range w.fw.WatchList() {
		have[d] = true
		if !want[d] {
			w.fw.Remove(d)
		}
	}
	for d := range want {
		if have[d] {
			continue
		}
		if err := w.fw.Add(d); err != nil {
			w.log.Warn(fmt.Sprintf("cannot watch %s for changes: %v", d, err))
			missing++
			continue
		}
		added = true
	}
	w.content, w.names, w.missing = content, nameSet, missing
	return added
}
