package main

// The daemon side of operating greyd: the metrics (always kept, served
// when configured), the control socket, the runtime whitelist kept
// current, and the dry-run warnings. None of it may stop greyd from
// answering Postfix: a socket or a port that cannot be opened is logged
// and greyd serves without it.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"greyd/internal/config"
	"greyd/internal/control"
	"greyd/internal/greylist"
	"greyd/internal/logging"
	"greyd/internal/metrics"
	"greyd/internal/policy"
	"greyd/internal/reload"
	"greyd/internal/store"
)

// Intervals of the background work, variables for tests.
var (
	// runtimePoll is how often the store's runtime whitelist version is
	// compared with the one in effect (another host may change it) and
	// expired entries dropped.
	runtimePoll = 5 * time.Second
	// dryRunEvery repeats the dry-run warning.
	dryRunEvery = time.Hour
)

type operations struct {
	log     *slog.Logger
	engine  *greylist.Engine
	metrics *metrics.Metrics
	ctrl    *control.Server
	httpSrv *http.Server
	lastOK  atomic.Int64 // unix nanoseconds of the last successful (re)load
	cfg     atomic.Pointer[config.Config]
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped sync.Once
}

// startOperations starts everything admins use. Call it before the policy
// server serves: the engine's observer must be in place first.
func startOperations(cfg *config.Config, engine *greylist.Engine, db store.Store, srv *policy.Server, rl *reload.Reloader, log *slog.Logger) *operations {
	o := &operations{log: log, engine: engine}
	o.lastOK.Store(time.Now().UnixNano())
	o.cfg.Store(cfg)
	admin := control.AdminOf(db)
	started := time.Now()

	o.metrics = metrics.New(metrics.Sources{
		Version:     version,
		Requests:    func() uint64 { return srv.Stats().Requests },
		Connections: func() int64 { return srv.Stats().Connections },
		Decisions: func(add func(action, reason string, n uint64)) {
			for _, c := range engine.DecisionCounts() {
				add(c.Action, c.Reason, c.N)
			}
		},
		StoreErrors: func() uint64 {
			_, _, _, _, failed := engine.Counts()
			return failed
		},
		Entries: admin.Counts,
		Reloads: func() (uint64, uint64) {
			s := rl.Stats()
			return s.OK, s.Failed
		},
		LastReloadSuccess: func() time.Time { return time.Unix(0, o.lastOK.Load()) },
		DryRun:            func() bool { return engine.Snapshot().DryRun },
		StorePersistent:   func() bool { return persistent(db) },
		LogDropped:        logDropped(log),
		Selective: func(add func(class string, n uint64)) {
			for _, c := range engine.SelectiveCounts() {
				add(c.Class, c.N)
			}
		},
		Traps:         engine.TrapCounts,
		Tarpits:       engine.TarpitCounts,
		TarpitsActive: func() int { return engine.TarpitStatus().Active },
	})
	engine.SetObserver(o.metrics)

	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	if err := engine.RefreshRuntime(ctx, admin); err != nil {
		log.Warn(fmt.Sprintf("%v: starting without runtime whitelist entries; retrying every %v", err, runtimePoll))
	}
	o.wg.Go(func() { engine.WatchRuntime(ctx, admin, runtimePoll) })
	o.wg.Go(func() { o.dryRunReminder(ctx) })
	if engine.Snapshot().DryRun {
		o.warnDryRun()
	}

	if path := cfg.Control.Socket; path != "" {
		ln, warning, err := control.Listen(path)
		if warning != "" {
			log.Warn(warning)
		}
		if err != nil {
			log.Error(fmt.Sprintf("%v; serving without the control socket (greyd explain, list, whitelist... will not work until greyd restarts)", err))
		} else {
			o.ctrl = control.NewServer(control.Options{
				Engine:     engine,
				Admin:      admin,
				Log:        log,
				LogDropped: logDropped(log),
				WhitelistFiles: func() ([]string, []string) {
					c := o.cfg.Load()
					return c.Whitelist.Clients, c.Whitelist.Recipients
				},
				Daemon: func() control.DaemonStats {
					st, r := srv.Stats(), rl.Stats()
					d := control.DaemonStats{Requests: st.Requests, Connections: st.Connections,
						Reload: control.ReloadStats{OK: r.OK, Failed: r.Failed, LastOK: r.LastOK}}
					if !r.Last.IsZero() {
						d.Reload.Last = r.Last.Unix()
					}
					return d
				},
				StoreLatency: o.metrics.StoreLatency,
				StoreStatus:  storeStatus(db),
				Version:      version,
				Started:      started,
			})
			o.wg.Go(func() {
				if err := o.ctrl.Serve(ln); err != nil {
					log.Error(fmt.Sprintf("control socket %s: %v", path, err))
				}
			})
			log.Info(fmt.Sprintf("control socket %s", path))
		}
	}

	if m := cfg.Metrics; m != nil {
		ln, err := net.Listen("tcp", m.Listen)
		if err != nil {
			log.Error(fmt.Sprintf("metrics listener %s: %v; serving without metrics (under systemd, the unit must allow AF_INET: see greyd(8))", m.Listen, err))
		} else {
			o.httpSrv = &http.Server{
				Handler:           o.metrics.Handler(),
				ReadHeaderTimeout: 10 * time.Second,
				WriteTimeout:      30 * time.Second,
				IdleTimeout:       2 * time.Minute,
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}
			o.wg.Go(func() {
				if err := o.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error(fmt.Sprintf("metrics listener %s: %v", m.Listen, err))
				}
			})
			log.Info(fmt.Sprintf("metrics on http://%s/metrics", ln.Addr()))
		}
	}
	return o
}

// reloaded records a configuration that was applied: for the metrics,
// the whitelist files explain reads, and the dry-run warning when a
// reload turns it on.
func (o *operations) reloaded(n *reload.Loaded) {
	old := o.cfg.Swap(n.Config)
	o.lastOK.Store(time.Now().UnixNano())
	if n.Config.Greylist.DryRun && !old.Greylist.DryRun {
		o.warnDryRun()
	}
	if !n.Config.Greylist.DryRun && old.Greylist.DryRun {
		o.log.Warn("dry run is over: greylisting is enforced again")
	}
}

func (o *operations) warnDryRun() {
	o.log.Warn("DRY RUN: greylisting is NOT enforced (greylist { dry_run = true }): every request is answered DUNNO; what greyd would have done is logged with \"(dry run)\"")
}

// dryRunReminder repeats the dry-run warning once an hour, so that a
// forgotten dry run shows in every log excerpt.
func (o *operations) dryRunReminder(ctx context.Context) {
	t := time.NewTicker(dryRunEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if o.engine.Snapshot().DryRun {
				o.warnDryRun()
			}
		}
	}
}

// stop ends the control socket, the metrics listener and the background
// work; requests still running on them get two seconds.
func (o *operations) stop() { o.stopped.Do(o.stopNow) }

func (o *operations) stopNow() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if o.ctrl != nil {
		o.ctrl.Shutdown(ctx)
	}
	if o.httpSrv != nil {
		if o.httpSrv.Shutdown(ctx) != nil {
			o.httpSrv.Close()
		}
	}
	o.cancel()
	o.wg.Wait()
}

// storeStatus returns the connection state of a store that has one (Redis).
func storeStatus(db store.Store) func() string {
	if st, ok := db.(interface{ Status() string }); ok {
		return st.Status
	}
	return nil
}

// logDropped counts the log lines the daemon's handler dropped; nil (no
// metric) when it logs through another handler.
func logDropped(log *slog.Logger) func() uint64 {
	if lh, ok := log.Handler().(*logging.Handler); ok {
		return lh.Dropped
	}
	return nil
}
