package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/logging"
	"greyd/internal/store"
)

// Options are what the server works with.
type Options struct {
	Engine *greylist.Engine
	Admin  store.Admin
	Log    *slog.Logger
	// WhitelistFiles returns the whitelist files of the running
	// configuration (for whitelist list and explain's file:line).
	WhitelistFiles func() (clients, recipients []string)
	// Daemon returns the counters the daemon keeps.
	Daemon func() DaemonStats
	// StoreLatency returns the number of store steps timed and their
	// mean duration; nil: unknown.
	StoreLatency func() (uint64, time.Duration)
	// StoreStatus, if set, says how a networked store's connection is
	// doing ("redis: UNREACHABLE since ..."): CheckStore only asks
	// greyd's own side, which stays healthy while Redis is down.
	StoreStatus func() string
	// LogDropped returns how many log lines were dropped; nil: none.
	LogDropped func() uint64
	// Now is the server's clock; nil: time.Now.
	Now     func() time.Time
	Version string
	Started time.Time
}

// DaemonStats are the counters of the daemon outside the engine.
type DaemonStats struct {
	Requests    uint64
	Connections int64
	Reload      ReloadStats
}

// Server serves the admin API.
type Server struct {
	opts    Options
	access  *access
	http    *http.Server
	refused logging.Limiter
	states  *stateCounter
	// stop ends what outlives a request (a count of entries).
	stop context.CancelFunc
}

// refusedEvery is how often a refused peer is logged: a script run by
// the wrong user in a loop must not flood the journal.
const refusedEvery = 10 * time.Second

// NewServer returns a server for opts.
func NewServer(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.WhitelistFiles == nil {
		opts.WhitelistFiles = func() ([]string, []string) { return nil, nil }
	}
	if opts.Daemon == nil {
		opts.Daemon = func() DaemonStats { return DaemonStats{} }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.states = &stateCounter{ttl: countTTL, now: opts.Now, count: s.countStates, ctx: ctx}
	s.refused.Interval = refusedEvery
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/explain", s.explain)
	mux.HandleFunc("GET /v1/entries", s.list)
	mux.HandleFunc("DELETE /v1/entries", s.delete)
	mux.HandleFunc("GET /v1/whitelist", s.whitelistList)
	mux.HandleFunc("POST /v1/whitelist", s.whitelistAdd)
	mux.HandleFunc("DELETE /v1/whitelist", s.whitelistRemove)
	mux.HandleFunc("GET /v1/stats", s.stats)
	mux.HandleFunc("GET /v1/export", s.export)
	mux.HandleFunc("POST /v1/import", s.importEntries)
	mux.HandleFunc("POST /v1/triplets", s.triplets)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no endpoint %s %s; greyd(8) lists the API", r.Method, r.URL.Path)
	})
	s.http = &http.Server{
		Handler:           s.guard(mux),
		ConnContext:       connContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(opts.Log.Handler(), slog.LevelWarn),
	}
	return s
}

// Serve serves the API on ln, a unix listener made by Listen, until
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.access == nil { // set by tests
		s.access = newAccess(ln.Addr().String())
	}
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server: no new connections, and the requests in
// progress get until ctx ends (a listing streaming to a stalled reader is
// then cut off).
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.stop()
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	return err
}

// Handler returns the API without the peer check, for tests.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// guard refuses peers that are neither root, nor greyd's user, nor in
// group greyd.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.access != nil {
			p := peerFrom(r.Context())
			if ok, why := s.access.allow(p); !ok {
				if ok, dropped := s.refused.Allow(time.Now()); ok {
					msg := fmt.Sprintf("control socket: refused %s: %s", p, why)
					if dropped > 0 {
						msg += fmt.Sprintf(" [%d more refused since the previous line]", dropped)
					}
					s.opts.Log.Warn(msg)
				}
				writeError(w, http.StatusForbidden, "permission denied: %s is %s; run greyd's commands %s", p, why, s.access.hint())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, apiError{Error: fmt.Sprintf(format, args...)})
}

// storeError answers a failed store operation.
func storeError(w http.ResponseWriter, what string, err error) {
	storeFailure(what, err).write(w)
}

// failure is an error answer decided away from the handler.
type failure struct {
	status int
	msg    string
}

func (f *failure) write(w http.ResponseWriter) { writeError(w, f.status, "%s", f.msg) }

// storeFailure is the answer to a failed store operation.
func storeFailure(what string, err error) *failure {
	return &failure{http.StatusServiceUnavailable, fmt.Sprintf("%s: %v (greyd stats shows the store's health)", what, err)}
}
