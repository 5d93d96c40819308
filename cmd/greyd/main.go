// Command greyd is a greylisting policy server for Postfix, compatible
// with Postgrey. This file only wires the internal packages together:
// flags, configuration, store, sockets, signals and systemd notification.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"greyd/internal/config"
	"greyd/internal/dns"
	"greyd/internal/gcpace"
	"greyd/internal/greylist"
	"greyd/internal/listen"
	"greyd/internal/logging"
	"greyd/internal/p0f"
	"greyd/internal/policy"
	"greyd/internal/reload"
	"greyd/internal/store"
	"greyd/internal/store/redis"
)

// version is set at build time: -ldflags "-X main.version=$(cat VERSION)".
var version = "dev"

// Exit statuses. 2 means "fix the configuration"; the systemd unit does
// not restart-loop on it (RestartPreventExitStatus=2). The admin
// subcommands also exit 1 for "would be greylisted" (explain) and 3 when
// the daemon cannot be reached (admin.go).
const (
	exitOK      = 0
	exitFailure = 1
	exitConfig  = 2
)

const defaultConfig = "/etc/greyd"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if args[0] == "help" {
			return help(args[1:], stdout, stderr)
		}
		if c, ok := findCommand(args[0]); ok {
			if len(args) == 2 && isHelp(args[1]) {
				return c.run(c.helpArgs, stdout, stderr)
			}
			return c.run(args[1:], stdout, stderr)
		}
	}
	f := newDaemonFlags(stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "greyd: unknown command %q\n", f.fs.Arg(0))
		f.fs.Usage()
		return exitConfig
	}
	switch {
	case *f.version:
		fmt.Fprintf(stdout, "greyd %s\n", version)
		return exitOK
	case *f.check:
		return checkConfig([]string{"-config", *f.path}, stdout, stderr)
	}
	return serve(*f.path, stderr)
}

// checkConfig validates everything the daemon would read, prints the
// effective configuration, and exits 0; or prints every problem and exits 2.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("greyd check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "configuration `path`: a file, or a directory whose *.hcl and conf.d/*.hcl files are read (later files override earlier ones)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: greyd check-config [-config PATH]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "greyd check-config: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitConfig
	}
	host, _ := os.Hostname()
	// Run by systemctl reload (ExecReload=), stderr is the journal: a
	// "<N>" prefix gives each line its priority there.
	errPrio, warnPrio := "", ""
	if logging.Detect() {
		errPrio, warnPrio = "<3>", "<4>"
	}
	l := reload.Load(*path, reload.Options{Version: version, Hostname: host})
	if !l.OK() {
		for _, p := range l.Problems() {
			fmt.Fprintln(stderr, errPrio+p.Error())
		}
		fmt.Fprintf(stderr, "%sgreyd check-config: %d problem(s) in %s\n", errPrio, len(l.Problems()), *path)
		return exitConfig
	}
	for _, w := range l.Config.Warnings {
		fmt.Fprintln(stderr, warnPrio+"warning: "+w.Error())
	}
	if err := l.Config.WriteHCL(stdout); err != nil {
		fmt.Fprintf(stderr, "greyd check-config: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "greyd check-config: %s is valid (%d file(s), %d client and %d recipient whitelist entries)\n",
		*path, len(l.Config.Files), l.Snapshot.Clients.Len(), l.Snapshot.Recipients.Len())
	return exitOK
}

func serve(path string, stderr io.Writer) int {
	// First of all: a SIGHUP or SIGTERM that arrives while greyd starts
	// (systemctl reload right after start, a test) must not kill it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)

	// Decision lines wait up to 100 ms to be written in batches; warnings
	// and errors go out at once. A stalled stderr never delays a reply:
	// what 1 MiB cannot hold is dropped and counted.
	lh := logging.New(stderr, logging.Options{Journal: logging.Detect(), FlushAfter: 100 * time.Millisecond, Queue: 1 << 20})
	defer lh.Flush()
	log := slog.New(lh)
	host, _ := os.Hostname()
	opts := reload.Options{Version: version, Hostname: host, CreateKey: true}

	l := loadConfig(path, opts, log)
	if l == nil {
		return exitConfig
	}
	cfg := l.Config
	if os.Geteuid() == 0 {
		log.Warn("running as root: greyd needs no privileges; run it as its own user (the packaged systemd unit uses user greyd)")
	}

	// Listen before the database loads (a million triplets take seconds):
	// clients that connect meanwhile wait in the listen queue and are
	// answered once it is ready, instead of being refused (Postfix would
	// answer 451 4.3.5 for them).
	ls, code := openListeners(path, cfg, log)
	if code != exitOK {
		return code
	}
	notify(log, "STATUS=loading the database; connections wait")

	db, err := openStore(cfg.Database, log)
	if err != nil {
		log.Error(err.Error())
		if errors.Is(err, redis.ErrSchema) {
			return exitConfig // another greyd's data: restarting cannot fix it
		}
		return exitFailure
	}
	defer db.Close()
	setStoreTimeout(db, cfg.Limits.StoreTimeout)

	in := &instance{log: log, db: db}
	in.engine = greylist.NewEngine(db, l.Snapshot, time.Now, log)
	in.engine.SetStoreTimeout(cfg.Limits.StoreTimeout)
	in.srv = policy.NewServer(in.engine, limits(cfg), log)
	in.rl = reload.NewReloader(path, opts, l, log, func(n *reload.Loaded) {
		in.engine.SetSnapshot(n.Snapshot)
		in.engine.SetStoreTimeout(n.Config.Limits.StoreTimeout)
		setStoreTimeout(db, n.Config.Limits.StoreTimeout)
		in.srv.SetLimits(limits(n.Config))
		in.ops.reloaded(n)
	})
	// Before anything serves or reloads: the engine's metrics observer
	// is set here (control.go).
	in.ops = startOperations(cfg, in.engine, db, in.srv, in.rl, log)
	defer in.ops.stop()
	// One resolver for the daemon (selective greylisting's scores): its
	// cache outlives reloads, so dns.servers waits for a restart. It
	// asks nothing until a request is scored.
	resolver, err := dns.New(dns.Config{Servers: cfg.DNS.Servers, Observe: in.engine.ObserveDNS})
	if err != nil {
		log.Error(fmt.Sprintf("dns: %v", err))
		return exitConfig
	}
	defer resolver.Close()
	in.engine.SetResolver(resolver)
	// One p0f client too: its connections outlive reloads, and each
	// snapshot names the socket (so p0f.socket reloads). It connects at
	// the first query.
	p0fClient := p0f.New(p0f.Options{Log: log})
	defer p0fClient.Close()
	in.engine.SetP0f(p0fClient)

	ctx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	go reload.NewWatcher(in.rl, in.reload, log).Run(ctx)
	go gcpace.Pace(ctx, time.Second, log)
	if m, ok := db.(*memoryStore); ok {
		go m.remind(ctx, log, memoryWarningEvery)
	}

	in.deaf = startServing(in.srv, ls, log)
	log.Info(fmt.Sprintf("greyd %s started: listening on %s; %s; %d client and %d recipient whitelist entries",
		version, names(ls), describeStore(cfg.Database, db), l.Snapshot.Clients.Len(), l.Snapshot.Recipients.Len()))
	notify(log, daemon.SdNotifyReady+"\n"+in.status())
	go freeAfterLoad(db)

	return in.loop(sigs, stopBackground)
}

// loadConfig loads the configuration at start and logs what is wrong
// with it; nil means it cannot be used.
func loadConfig(path string, opts reload.Options, log *slog.Logger) *reload.Loaded {
	l := reload.Load(path, opts)
	if len(l.ConfigProblems) > 0 {
		for _, p := range l.ConfigProblems {
			log.Error(p.Error())
		}
		log.Error(fmt.Sprintf("configuration %s has %d problem(s); not starting (greyd check-config -config %s lists them)", path, len(l.ConfigProblems), path))
		return nil
	}
	for _, w := range l.Config.Warnings {
		log.Warn(w.Error())
	}
	for _, p := range l.WhitelistProblems {
		log.Warn(p.Error() + " (line ignored)")
	}
	return l
}

// openListeners returns the sockets systemd passed, else those of the
// listen blocks, and exitOK; or nil and the exit status. A stale socket
// file left by a crash is replaced.
func openListeners(path string, cfg *config.Config, log *slog.Logger) ([]net.Listener, int) {
	ls, ignored, err := listen.Activated()
	if err != nil {
		log.Error(err.Error())
		return nil, exitFailure
	}
	if ignored > 0 {
		log.Warn(fmt.Sprintf("ignoring %d socket(s) passed by systemd that are not listening stream sockets", ignored))
	}
	if len(ls) > 0 {
		if len(cfg.Listen) > 0 {
			log.Debug("sockets passed by systemd: the listen blocks of the configuration only supply the allow lists of TCP sockets")
		}
		return listen.Guard(ls, cfg.Listen, log), exitOK
	}
	if len(cfg.Listen) == 0 {
		log.Error(fmt.Sprintf("nothing to listen on: %s has no listen block and systemd passed no socket", path))
		return nil, exitConfig
	}
	if ls, err = listen.Open(cfg.Listen, log); err != nil {
		log.Error(err.Error())
		return nil, exitFailure
	}
	return ls, exitOK
}

// startServing answers policy requests on every listener. The channel
// closes once every listener has failed for good (a socket that is gone
// or no longer listens), never at a stop.
func startServing(srv *policy.Server, ls []net.Listener, log *slog.Logger) <-chan struct{} {
	deaf := make(chan struct{})
	var left atomic.Int32
	left.Store(int32(len(ls)))
	for _, ln := range ls {
		go func(ln net.Listener) {
			err := srv.Serve(ln)
			if err == nil || errors.Is(err, policy.ErrServerClosed) {
				return
			}
			log.Error(err.Error())
			if left.Add(-1) == 0 {
				close(deaf)
			}
		}(ln)
	}
	return deaf
}

// freeAfterLoad gives the garbage of loading a big database (read
// buffers, the file's strings; as much as it keeps) back to the system
// once the load is over (buntdb finishes a big file in the background),
// rather than carry it in the resident size until the heap grows into it.
func freeAfterLoad(db store.Store) {
	if l, ok := db.(interface{ Loaded() <-chan struct{} }); ok {
		<-l.Loaded()
	}
	debug.FreeOSMemory()
}

// instance is the running daemon, as its signal loop sees it.
type instance struct {
	log    *slog.Logger
	db     store.Store
	engine *greylist.Engine
	srv    *policy.Server
	rl     *reload.Reloader
	ops    *operations
	// deaf closes when no listener is left: greyd then exits with a
	// failure, so that systemd restarts it (greyd.socket keeps the
	// socket) instead of it running on, answering no one.
	deaf <-chan struct{}
}

// reload reloads the configuration, telling systemd.
func (in *instance) reload(why string) {
	notify(in.log, daemon.SdNotifyReloading+"\nSTATUS=reloading")
	in.rl.Reload(why)
	notify(in.log, daemon.SdNotifyReady+"\n"+in.status())
}

// loop handles signals, the systemd watchdog and status until a signal
// stops greyd; it returns the exit status.
func (in *instance) loop(sigs <-chan os.Signal, stopBackground context.CancelFunc) int {
	var watchdog <-chan time.Time
	if iv, err := daemon.SdWatchdogEnabled(false); err == nil && iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		watchdog = t.C
	}
	statusTick := time.NewTicker(30 * time.Second)
	defer statusTick.Stop()

	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				why := "SIGHUP"
				if files := in.rl.Changed(); len(files) > 0 {
					why += ", changed: " + strings.Join(files, ", ")
				}
				in.reload(why)
				continue
			}
			stopBackground()
			in.stop(fmt.Sprintf("%v received", sig))
			return exitOK
		case <-in.deaf:
			in.log.Error("no listener is left: exiting, to be restarted (systemd's Restart=on-failure)")
			stopBackground()
			in.stop("no listener left")
			return exitFailure
		case <-watchdog:
			// Ping only when the store answers: a wedged store should get
			// greyd restarted rather than leave it failing open forever.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := in.engine.CheckStore(ctx)
			cancel()
			if err == nil {
				notify(in.log, daemon.SdNotifyWatchdog)
			} else {
				in.log.Error(fmt.Sprintf("watchdog: database does not answer: %v", err))
			}
		case <-statusTick.C:
			notify(in.log, in.status())
		}
	}
}

// stop ends serving: the requests in progress get 10 seconds, then the
// database is closed.
func (in *instance) stop(why string) {
	in.log.Info(why + ": stopping")
	notify(in.log, daemon.SdNotifyStopping+"\nSTATUS=stopping")
	in.ops.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := in.srv.Shutdown(ctx); err != nil {
		in.log.Warn(fmt.Sprintf("connections still busy after 10s were closed: %v", err))
	}
	cancel()
	if err := in.db.Close(); err != nil {
		in.log.Error(fmt.Sprintf("closing database: %v", err))
	}
	in.log.Info(fmt.Sprintf("stopped after %d requests", in.srv.Stats().Requests))
}

func limits(c *config.Config) policy.Limits {
	return policy.Limits{
		MaxLineLength:  c.Limits.MaxLineLength,
		MaxAttributes:  c.Limits.MaxAttributes,
		MaxRequestSize: c.Limits.MaxRequestSize,
		MaxConnections: c.Limits.MaxConnections,
		RequestTimeout: c.Limits.RequestTimeout,
		IdleTimeout:    c.Limits.IdleTimeout,
		HandlerTimeout: handlerTimeout(c), // the engine answers a late decision as a store failure
	}
}

// handlerTimeout is how long a decision may take before the engine
// answers it as a store failure: the store timeout, and with selective
// greylisting's score a second store step and the DNS budget.
func handlerTimeout(c *config.Config) time.Duration {
	if !c.Scoring() {
		return c.Limits.StoreTimeout
	}
	return 2*c.Limits.StoreTimeout + c.DNS.Budget
}

func names(ls []net.Listener) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.Addr().Network() + ":" + l.Addr().String()
		if o, ok := l.(policy.OneRequestListener); ok && o.OneRequest() {
			s[i] += " (exim: one request per connection)"
		}
	}
	return strings.Join(s, ", ")
}

// status is systemd's STATUS= line.
func (in *instance) status() string {
	st := in.srv.Stats()
	s := fmt.Sprintf("STATUS=%d requests answered, %d connections", st.Requests, st.Connections)
	if r := in.rl.Stats(); !r.Last.IsZero() {
		outcome := "ok"
		if !r.LastOK {
			outcome = "FAILED, running the previous configuration"
		}
		s += fmt.Sprintf("; last reload %s %s", r.Last.Format("2006-01-02 15:04:05"), outcome)
	}
	if st, ok := in.db.(interface{ Status() string }); ok {
		s += "; " + st.Status()
	}
	return s
}

func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn(fmt.Sprintf("sd_notify: %v", err))
	}
}
