package greylist

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"greyd/internal/logging"
	"greyd/internal/store"
	"greyd/internal/whitelist"
)

// The runtime whitelist: entries added with "greyd whitelist add", kept in
// the store (so they survive restarts and, on a shared store, hold on
// every host), compiled into the snapshot's Runtime lists. The engine
// compiles them at start, after every change made through it, when an
// entry expires, and when the store's WhitelistVersion says another host
// changed them.

// RuntimeSource is where runtime whitelist entries are kept: the part of
// store.Admin the engine needs.
type RuntimeSource interface {
	Whitelist(ctx context.Context) ([]store.WhitelistEntry, error)
	WhitelistVersion(ctx context.Context) (int64, error)
}

// runtimeState is the compiled runtime whitelist and what it was
// compiled from.
type runtimeState struct {
	mu      sync.Mutex // serialises compiles and snapshot swaps
	list    *RuntimeWhitelist
	entries []store.WhitelistEntry // the live entries compiled into list
	version int64
	next    int64 // Unix seconds of the earliest expiry; 0: none
	errs    logging.Limiter
}

// withRuntime returns snap carrying the compiled runtime whitelist: snap
// itself if it already does, else a copy. The caller holds e.rt.mu.
func (e *Engine) withRuntime(snap *Snapshot) *Snapshot {
	if snap.Runtime == e.rt.list && snap.Scorer == e.scorer && (snap.tarpits == e.tarpits || snap.Tarpit == nil) {
		return snap
	}
	s := *snap
	s.Runtime, s.Scorer, s.tarpits = e.rt.list, e.scorer, e.tarpits
	return &s
}

// RefreshRuntime reads the runtime whitelist from src and makes it
// effective for the next request.
func (e *Engine) RefreshRuntime(ctx context.Context, src RuntimeSource) error {
	e.rt.mu.Lock()
	defer e.rt.mu.Unlock()
	// The version first: a change between the two reads shows up as a
	// newer version at the next poll, which reads the entries again.
	v, err := src.WhitelistVersion(ctx)
	if err != nil {
		return fmt.Errorf("runtime whitelist: %w", err)
	}
	entries, err := src.Whitelist(ctx)
	if err != nil {
		return fmt.Errorf("runtime whitelist: %w", err)
	}
	e.installRuntime(entries, v)
	return nil
}

// installRuntime compiles the live entries and swaps the snapshot. The
// caller holds e.rt.mu.
func (e *Engine) installRuntime(entries []store.WhitelistEntry, version int64) {
	now := e.now().Unix()
	var clients, rcpts []string
	var live []store.WhitelistEntry
	next := int64(0)
	for _, en := range entries {
		if !en.Live(now) {
			continue
		}
		live = append(live, en)
		if en.Expires != 0 && (next == 0 || en.Expires < next) {
			next = en.Expires
		}
		switch en.Kind {
		case store.WhitelistClient:
			clients = append(clients, en.Value)
		case store.WhitelistRecipient:
			rcpts = append(rcpts, en.Value)
		}
	}
	var rt *RuntimeWhitelist
	if len(clients) > 0 || len(rcpts) > 0 {
		rt = &RuntimeWhitelist{}
		var probs []whitelist.Problem
		if len(clients) > 0 {
			rt.Clients, probs = whitelist.ParseClients("runtime", strings.NewReader(strings.Join(clients, "\n")))
			e.runtimeProblems(probs, clients)
		}
		if len(rcpts) > 0 {
			rt.Recipients, probs = whitelist.ParseRecipients("runtime", strings.NewReader(strings.Join(rcpts, "\n")))
			e.runtimeProblems(probs, rcpts)
		}
	}
	e.rt.list, e.rt.entries, e.rt.version, e.rt.next = rt, live, version, next
	e.snap.Store(e.withRuntime(e.snap.Load()))
}

// runtimeProblems logs entries that do not compile: the control socket
// checks each entry before it is stored, so these come from another
// host's greyd or an import.
func (e *Engine) runtimeProblems(probs []whitelist.Problem, values []string) {
	for _, p := range probs {
		entry := ""
		if p.Line >= 1 && p.Line <= len(values) {
			entry = values[p.Line-1]
		}
		e.log.Warn(fmt.Sprintf("runtime whitelist entry %q ignored: %s", entry, p.Msg))
	}
}

// RuntimeEntries returns the runtime whitelist entries in effect.
func (e *Engine) RuntimeEntries() []store.WhitelistEntry {
	e.rt.mu.Lock()
	defer e.rt.mu.Unlock()
	return append([]store.WhitelistEntry(nil), e.rt.entries...)
}

// WatchRuntime keeps the runtime whitelist current until ctx ends: every
// interval it compares the store's WhitelistVersion with the one it
// compiled (another host may have changed the entries) and drops expired
// entries. Errors are logged at most once a minute; the entries in
// effect stay.
func (e *Engine) WatchRuntime(ctx context.Context, src RuntimeSource, interval time.Duration) {
	e.rt.errs.Interval = time.Minute
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.pollRuntime(ctx, src); err != nil && ctx.Err() == nil {
			if ok, _ := e.rt.errs.Allow(time.Now()); ok {
				e.log.Warn(fmt.Sprintf("%v; the runtime whitelist in effect stays", err))
			}
		}
	}
}

func (e *Engine) pollRuntime(ctx context.Context, src RuntimeSource) error {
	v, err := src.WhitelistVersion(ctx)
	if err != nil {
		return fmt.Errorf("runtime whitelist: %w", err)
	}
	e.rt.mu.Lock()
	stale := v != e.rt.version || e.rt.next != 0 && e.now().Unix() >= e.rt.next
	e.rt.mu.Unlock()
	if !stale {
		return nil
	}
	return e.RefreshRuntime(ctx, src)
}
