package control

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/logging"
	"greyd/internal/policy"
	"greyd/internal/store"
	"greyd/internal/whitelist"
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
	Version     string
	Started     time.Time
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
	s := &Server{opts: opts}
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
	s.access = newAccess(ln.Addr().String())
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
				writeError(w, http.StatusForbidden, "permission denied: %s is %s; run greyd's commands as root or as a member of group %s", p, why, Group)
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
	writeError(w, http.StatusServiceUnavailable, "%s: %v (greyd stats shows the store's health)", what, err)
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addr, name, sender, rcpt := q.Get("client_address"), q.Get("client_name"), q.Get("sender"), q.Get("recipient")
	if addr == "" || rcpt == "" {
		writeError(w, http.StatusBadRequest, "explain needs client_address, client_name, sender and recipient")
		return
	}
	if name == "" {
		name = "unknown" // what Postfix sends for a client without a verified name
	}
	if sender == "<>" {
		sender = ""
	}
	for _, v := range []string{addr, name, sender, rcpt} {
		if strings.ContainsAny(v, "\r\n") {
			writeError(w, http.StatusBadRequest, "attribute values cannot contain line breaks: %q", v)
			return
		}
	}
	// As Postfix sends it at RCPT time; etrn_domain is always there, and
	// decides the reply's "4.2.0 " prefix.
	req := policy.ParseRequest("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=" + addr +
		"\nclient_name=" + name + "\nsender=" + sender + "\nrecipient=" + rcpt + "\netrn_domain=\n")
	x := s.opts.Engine.Explain(r.Context(), req)
	writeJSON(w, http.StatusOK, s.explanation(x, name, addr, sender, rcpt))
}

// record renders an entry for a listing (parts split) or an export.
func record(snap *greylist.Snapshot, e store.Entry, listing bool) Record {
	rec := Record{Kind: string(e.Kind), Key: e.Key, Last: e.B, Expires: e.Expires}
	if e.Kind == store.KindTriplet {
		rec.First = e.A
	} else {
		rec.Count = e.A
	}
	if !listing {
		return rec
	}
	rec.State = stateOf(snap, e)
	if e.Kind == store.KindClient {
		rec.Client = e.Key
		return rec
	}
	if n, sn, rc, ok := splitTriplet(e.Key, snap.LookupByHost && snap.Privacy == nil); ok {
		rec.Client, rec.Sender, rec.Recipient = n, sn, rc
	}
	return rec
}

// ndjson starts a streamed answer: records are written by appendRecord
// into one reused buffer, flushed every 32 KiB.
type ndjson struct {
	w   http.ResponseWriter
	buf []byte
	err error
}

func newNDJSON(w http.ResponseWriter) *ndjson {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &ndjson{w: w, buf: make([]byte, 0, 40<<10)}
}

func (n *ndjson) write(r *Record) error {
	if n.err != nil {
		return n.err
	}
	n.buf = appendRecord(n.buf, r)
	if len(n.buf) >= 32<<10 {
		n.flush()
	}
	return n.err
}

func (n *ndjson) flush() {
	if n.err == nil && len(n.buf) > 0 {
		_, n.err = n.w.Write(n.buf)
	}
	n.buf = n.buf[:0]
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Engine.Snapshot()
	f, err := parseFilter(r.URL.Query(), snap)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if f.warning != "" && (f.kinds == nil || slices.Contains(f.kinds, store.KindClient)) {
		w.Header().Set("Greyd-Warning", f.warning)
	}
	out := newNDJSON(w)
	var werr error
	err = s.opts.Admin.Scan(r.Context(), f.scanKinds(), func(e store.Entry) bool {
		if f.match(e) {
			rec := record(snap, e, true)
			werr = out.write(&rec)
		}
		return werr == nil
	})
	if err != nil && werr == nil {
		// The status is sent already: the last line says it failed.
		out.write(&Record{Kind: "error", Value: err.Error()})
	}
	out.flush()
}

// deleteBatch is how many keys one Admin.Delete call gets.
const deleteBatch = 10000

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	snap := s.opts.Engine.Snapshot()
	f, err := parseFilter(q, snap)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if f.empty() {
		writeError(w, http.StatusBadRequest, "delete needs at least one of -client, -sender, -recipient (to forget everything, stop greyd and remove its database)")
		return
	}
	res := DeleteResult{DryRun: q.Get("dry_run") == "1" || q.Get("dry_run") == "true"}
	if f.warning != "" && (f.kinds == nil || slices.Contains(f.kinds, store.KindClient)) {
		res.Warning = f.warning
	}
	keys := map[store.Kind][]string{}
	err = s.opts.Admin.Scan(r.Context(), f.scanKinds(), func(e store.Entry) bool {
		if f.match(e) {
			keys[e.Kind] = append(keys[e.Kind], e.Key)
		}
		return true
	})
	if err != nil {
		storeError(w, "listing the entries to delete", err)
		return
	}
	if res.DryRun {
		res.Triplets, res.Clients = len(keys[store.KindTriplet]), len(keys[store.KindClient])
		writeJSON(w, http.StatusOK, res)
		return
	}
	for _, kind := range []store.Kind{store.KindTriplet, store.KindClient} {
		ks := keys[kind]
		for len(ks) > 0 {
			batch := ks[:min(len(ks), deleteBatch)]
			ks = ks[len(batch):]
			n, err := s.opts.Admin.Delete(r.Context(), kind, batch)
			if kind == store.KindTriplet {
				res.Triplets += n
			} else {
				res.Clients += n
			}
			if err != nil {
				storeError(w, fmt.Sprintf("deleting (%d triplets and %d clients deleted before the error)", res.Triplets, res.Clients), err)
				return
			}
		}
	}
	s.opts.Log.Info(fmt.Sprintf("control: deleted %d triplet(s) and %d auto-whitelist entr(ies) matching %s", res.Triplets, res.Clients, describeFilter(q)))
	writeJSON(w, http.StatusOK, res)
}

// describeFilter names the filters of a delete for its log line.
func describeFilter(q map[string][]string) string {
	var parts []string
	for _, k := range []string{"client", "sender", "recipient", "kind", "state"} {
		if v, ok := q[k]; ok && len(v) > 0 {
			parts = append(parts, k+"="+strconv.Quote(v[0]))
		}
	}
	return strings.Join(parts, " ")
}

func apiWhitelist(e store.WhitelistEntry) WhitelistEntry {
	return WhitelistEntry{Kind: string(e.Kind), Value: e.Value, Comment: e.Comment, Added: e.Added, Expires: e.Expires}
}

func (s *Server) whitelistList(w http.ResponseWriter, r *http.Request) {
	entries, err := s.opts.Admin.Whitelist(r.Context())
	if err != nil {
		storeError(w, "reading the runtime whitelist", err)
		return
	}
	out := WhitelistList{Runtime: []WhitelistEntry{}, Files: []WhitelistEntry{}}
	for _, e := range entries {
		out.Runtime = append(out.Runtime, apiWhitelist(e))
	}
	slices.SortFunc(out.Runtime, func(a, b WhitelistEntry) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	clients, rcpts := s.whitelistFiles()
	for _, l := range []struct {
		kind  string
		files []string
	}{{"client", clients}, {"recipient", rcpts}} {
		for _, path := range l.files {
			forEachEntry(path, func(line int, e string) bool {
				out.Files = append(out.Files, WhitelistEntry{Kind: l.kind, Value: e, File: path, Line: line})
				return true
			})
		}
	}
	_, cps := whitelist.LoadClients(clients)
	_, rps := whitelist.LoadRecipients(rcpts)
	for _, p := range append(cps, rps...) {
		out.Problems = append(out.Problems, p.Error())
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) whitelistFiles() (clients, rcpts []string) { return s.opts.WhitelistFiles() }

// maxComment bounds a runtime entry's comment.
const maxComment = 500

func (s *Server) whitelistAdd(w http.ResponseWriter, r *http.Request) {
	var in WhitelistAdd
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body: %v", err)
		return
	}
	kind, err := store.ParseWhitelistKind(in.Kind)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	value := canonical(in.Value)
	if msg := checkEntry(kind, value); msg != "" {
		writeError(w, http.StatusBadRequest, "%s whitelist entry: %s", kind, msg)
		return
	}
	if len(in.Comment) > maxComment || strings.ContainsFunc(in.Comment, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		writeError(w, http.StatusBadRequest, "comment: at most %d bytes on one line, without control characters", maxComment)
		return
	}
	if in.TTLSeconds < 0 {
		writeError(w, http.StatusBadRequest, "ttl: must not be negative")
		return
	}
	now := time.Now().Unix()
	e := store.WhitelistEntry{Kind: kind, Value: value, Comment: in.Comment, Added: now}
	if in.TTLSeconds > 0 {
		e.Expires = now + in.TTLSeconds
	}
	replaced, err := s.opts.Admin.AddWhitelist(r.Context(), e)
	if err != nil {
		storeError(w, "storing the entry", err)
		return
	}
	if !s.refresh(w, r.Context(), "stored") {
		return
	}
	s.opts.Log.Info(fmt.Sprintf("control: runtime %s whitelist entry %q added%s", kind, value, ttlText(in.TTLSeconds)))
	writeJSON(w, http.StatusOK, WhitelistAdded{Entry: apiWhitelist(e), Replaced: replaced})
}

func ttlText(ttl int64) string {
	if ttl <= 0 {
		return ""
	}
	return fmt.Sprintf(" for %v", time.Duration(ttl)*time.Second)
}

// refresh makes the runtime whitelist in the store effective for the
// next request. A failure leaves the change stored; the engine's poll
// retries it.
func (s *Server) refresh(w http.ResponseWriter, ctx context.Context, done string) bool {
	if err := s.opts.Engine.RefreshRuntime(ctx, s.opts.Admin); err != nil {
		writeError(w, http.StatusServiceUnavailable, "%s, but not in effect yet: %v (greyd retries every few seconds)", done, err)
		return false
	}
	return true
}

func (s *Server) whitelistRemove(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, err := store.ParseWhitelistKind(q.Get("kind"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	value := canonical(q.Get("value"))
	found, err := s.opts.Admin.RemoveWhitelist(r.Context(), kind, value)
	if err != nil {
		storeError(w, "removing the entry", err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "no runtime %s whitelist entry %q (greyd whitelist list shows them; entries of the files are removed by editing the file)", kind, value)
		return
	}
	if !s.refresh(w, r.Context(), "removed") {
		return
	}
	s.opts.Log.Info(fmt.Sprintf("control: runtime %s whitelist entry %q removed", kind, value))
	writeJSON(w, http.StatusOK, map[string]bool{"removed": true})
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Engine.Snapshot()
	d := s.opts.Daemon()
	now := time.Now()
	out := Stats{
		Version:       s.opts.Version,
		Started:       s.opts.Started.Unix(),
		UptimeSeconds: int64(now.Sub(s.opts.Started) / time.Second),
		DryRun:        snap.DryRun,
		Privacy:       snap.Privacy != nil,
		Requests:      d.Requests,
		Connections:   d.Connections,
		Reload:        d.Reload,
	}
	for _, c := range s.opts.Engine.DecisionCounts() {
		out.Decisions = append(out.Decisions, DecisionCount{Action: c.Action, Reason: c.Reason, Count: c.N})
		if c.Action == "error" {
			out.Store.Errors += c.N
		}
	}
	// Entries by state need a pass over them; it holds nothing up (the
	// scan copies a piece at a time) and costs about a second per
	// million entries.
	out.Entries.Triplets, out.Entries.Clients = s.opts.Admin.Counts()
	s.opts.Admin.Scan(r.Context(), nil, func(e store.Entry) bool {
		passed := stateOf(snap, e) == "passed"
		switch {
		case e.Kind == store.KindTriplet && passed:
			out.Entries.TripletsPassed++
		case e.Kind == store.KindTriplet:
			out.Entries.TripletsPending++
		case passed:
			out.Entries.ClientsWhitelisted++
		}
		return true
	})
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	err := s.opts.Engine.CheckStore(ctx)
	cancel()
	out.Store.CheckSeconds = time.Since(start).Seconds()
	out.Store.Healthy = err == nil
	if err != nil {
		out.Store.Error = err.Error()
	}
	if s.opts.StoreStatus != nil {
		out.Store.Status = s.opts.StoreStatus()
	}
	if s.opts.StoreLatency != nil {
		n, mean := s.opts.StoreLatency()
		out.Store.Steps, out.Store.StepMeanSeconds = n, mean.Seconds()
	}
	out.RuntimeWhitelist = len(s.opts.Engine.RuntimeEntries())
	writeJSON(w, http.StatusOK, out)
}

// keyID identifies a privacy key without revealing it: an export made
// under one key is useless under another (no stored key would match).
func keyID(snap *greylist.Snapshot) string {
	if snap.Privacy == nil {
		return ""
	}
	return string(snap.Privacy.Append(nil, []byte("greyd export key id")))[:16]
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Engine.Snapshot()
	wl, err := s.opts.Admin.Whitelist(r.Context())
	if err != nil {
		storeError(w, "reading the runtime whitelist", err)
		return
	}
	out := newNDJSON(w)
	out.write(&Record{Kind: "header", Format: ExportFormat, Version: s.opts.Version, Exported: time.Now().Unix(),
		Privacy: snap.Privacy != nil, PrivacyKey: keyID(snap)})
	var werr error
	err = s.opts.Admin.Scan(r.Context(), nil, func(e store.Entry) bool {
		rec := record(snap, e, false)
		werr = out.write(&rec)
		return werr == nil
	})
	if err == nil && werr == nil {
		for _, e := range wl {
			if werr = out.write(&Record{Kind: "whitelist", List: string(e.Kind), Value: e.Value, Comment: e.Comment, Added: e.Added, Expires: e.Expires}); werr != nil {
				break
			}
		}
	}
	if err != nil && werr == nil {
		out.write(&Record{Kind: "error", Value: err.Error()})
	}
	out.flush()
}

// importBatch is how many entries one Admin.Import call gets.
const importBatch = 1000

// maxImportErrors bounds the error messages an import answers with.
const maxImportErrors = 20

func (s *Server) importEntries(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Engine.Snapshot()
	delay := int64(snap.Delay / time.Second)
	maxAge, retry := int64(snap.MaxAge/time.Second), int64(snap.RetryWindow/time.Second)
	now := time.Now().Unix()
	var res ImportResult
	bad := func(line int, format string, args ...any) {
		res.Skipped++
		if len(res.Errors) < maxImportErrors {
			res.Errors = append(res.Errors, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
		}
	}
	var batch []store.Entry
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		i, m, err := s.opts.Admin.Import(r.Context(), batch, delay)
		res.Imported += i
		res.Merged += m
		batch = batch[:0]
		return err
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(text), &rec); err != nil {
			bad(line, "not a JSON object: %v", err)
			continue
		}
		switch rec.Kind {
		case "header":
			if !strings.HasPrefix(rec.Format, "greyd-export/") {
				bad(line, "unknown format %q", rec.Format)
				continue
			}
			if rec.Privacy != (snap.Privacy != nil) || rec.PrivacyKey != keyID(snap) {
				writeError(w, http.StatusConflict, "the export was made with privacy = %v and this greyd runs with privacy = %v (or another privacy key): its keys would never match; nothing was imported. Import into a greyd configured like the one that exported, with the same privacy.key", rec.Privacy, snap.Privacy != nil)
				return
			}
			continue
		case "triplet", "client":
			if rec.KeyBase64 != "" {
				k, err := base64.StdEncoding.DecodeString(rec.KeyBase64)
				if err != nil {
					bad(line, "key_base64: %v", err)
					continue
				}
				rec.Key = string(k)
			}
			if rec.Key == "" {
				bad(line, "%s without key", rec.Kind)
				continue
			}
			e := store.Entry{Kind: store.Kind(rec.Kind), Key: rec.Key, A: rec.First, B: rec.Last, Expires: rec.Expires}
			if e.Kind == store.KindClient {
				e.A = rec.Count
			}
			if e.Expires == 0 {
				// By the rules that set a deadline at every write.
				switch {
				case e.Kind == store.KindClient, e.B-e.A >= delay:
					e.Expires = e.B + maxAge + 1
				default:
					e.Expires = e.A + retry + 1
				}
			}
			res.Read++
			if e.Expires <= now {
				res.Expired++
				continue
			}
			batch = append(batch, e)
			if len(batch) >= importBatch {
				if err := flush(); err != nil {
					storeError(w, fmt.Sprintf("importing at line %d (%d imported, %d merged before)", line, res.Imported, res.Merged), err)
					return
				}
			}
		case "whitelist":
			kind, err := store.ParseWhitelistKind(rec.List)
			if err != nil {
				bad(line, "%v", err)
				continue
			}
			res.Read++
			value := canonical(rec.Value)
			if msg := checkEntry(kind, value); msg != "" {
				bad(line, "%s whitelist entry: %s", kind, msg)
				continue
			}
			if rec.Expires != 0 && rec.Expires <= now {
				res.Expired++
				continue
			}
			if rec.Added == 0 {
				rec.Added = now
			}
			if _, err := s.opts.Admin.AddWhitelist(r.Context(), store.WhitelistEntry{Kind: kind, Value: value, Comment: rec.Comment, Added: rec.Added, Expires: rec.Expires}); err != nil {
				storeError(w, fmt.Sprintf("importing at line %d", line), err)
				return
			}
			res.Whitelist++
		case "error":
			bad(line, "the export ended with an error: %s", rec.Value)
		default:
			bad(line, "unknown kind %q (want triplet, client, whitelist or header)", rec.Kind)
		}
	}
	if err := sc.Err(); err != nil {
		writeError(w, http.StatusBadRequest, "reading line %d: %v (%d imported, %d merged before)", line+1, err, res.Imported, res.Merged)
		return
	}
	if err := flush(); err != nil {
		storeError(w, "importing", err)
		return
	}
	if res.Whitelist > 0 && !s.refresh(w, r.Context(), "imported") {
		return
	}
	s.opts.Log.Info(fmt.Sprintf("control: imported %d entries, merged %d, %d expired, %d runtime whitelist entries, %d lines skipped",
		res.Imported, res.Merged, res.Expired, res.Whitelist, res.Skipped))
	writeJSON(w, http.StatusOK, res)
}
