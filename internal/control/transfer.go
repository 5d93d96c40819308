package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/store"
)

// keyID identifies a privacy key without revealing it: an export made
// under one key is useless under another (no stored key would match).
func keyID(snap *greylist.Snapshot) string {
	if snap.Privacy == nil {
		return ""
	}
	return string(snap.Privacy.Append(nil, []byte("greyd export key id")))[:16]
}

// Header is the first line of an export, and must be the first of an
// import: it says how the keys that follow are hashed (snap's privacy
// and key).
func Header(snap *greylist.Snapshot, version string, now time.Time) Record {
	return Record{Kind: "header", Format: ExportFormat, Version: version, Exported: now.Unix(),
		Privacy: snap.Privacy != nil, PrivacyKey: keyID(snap)}
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Engine.Snapshot()
	wl, err := s.opts.Admin.Whitelist(r.Context())
	if err != nil {
		storeError(w, "reading the runtime whitelist", err)
		return
	}
	out := newNDJSON(w)
	hdr := Header(snap, s.opts.Version, s.opts.Now())
	out.write(&hdr)
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

// maxAhead bounds how far in the future an imported deadline may be:
// greyd's own rules never give more than max_age ahead, and a deadline
// is kept in nanoseconds by buntdb, whose int64 ends in 2262.
const maxAhead = 10 * 365 * 24 * time.Hour

func (s *Server) importEntries(w http.ResponseWriter, r *http.Request) {
	im := s.newImporter(r.Context())
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if f := im.line(line, sc.Bytes()); f != nil {
			f.write(w)
			return
		}
	}
	res := &im.res
	if err := sc.Err(); err != nil {
		writeError(w, http.StatusBadRequest, "reading line %d: %v (%d imported, %d merged before)", line+1, err, res.Imported, res.Merged)
		return
	}
	if err := im.flush(); err != nil {
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

// importer is one import in progress: what it counted so far, and the
// entries waiting for the next Admin.Import.
type importer struct {
	ctx   context.Context
	admin store.Admin
	snap  *greylist.Snapshot
	now   int64
	// The rules that give an entry without a deadline the one greyd's
	// own write would, in seconds.
	delay, maxAge, retry int64
	res                  ImportResult
	batch                []store.Entry
	// headed: the first line was the header, so the keys are known to
	// be hashed as this greyd hashes them.
	headed bool
}

func (s *Server) newImporter(ctx context.Context) *importer {
	snap := s.opts.Engine.Snapshot()
	return &importer{
		ctx: ctx, admin: s.opts.Admin, snap: snap, now: s.opts.Now().Unix(),
		delay: int64(snap.Delay / time.Second), maxAge: int64(snap.MaxAge / time.Second), retry: int64(snap.RetryWindow / time.Second),
	}
}

// bad skips a line and says why.
func (im *importer) bad(line int, format string, args ...any) {
	im.res.Skipped++
	if len(im.res.Errors) < maxImportErrors {
		im.res.Errors = append(im.res.Errors, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
	}
}

// flush stores the waiting entries.
func (im *importer) flush() error {
	if len(im.batch) == 0 {
		return nil
	}
	i, m, err := im.admin.Import(im.ctx, im.batch, im.delay)
	im.res.Imported += i
	im.res.Merged += m
	im.batch = im.batch[:0]
	return err
}

// line reads line n of the import; a failure ends the import.
func (im *importer) line(n int, text []byte) *failure {
	text = bytes.TrimSpace(text)
	if len(text) == 0 {
		return nil
	}
	var rec Record
	err := json.Unmarshal(text, &rec)
	if !im.headed && (err != nil || rec.Kind != "header") {
		// Its privacy check must come before anything is stored.
		return &failure{http.StatusBadRequest, fmt.Sprintf("line %d: an import starts with the header line of greyd export "+
			`({"kind":"header","format":%q,...}), which says how its keys are hashed; nothing was imported`, n, ExportFormat)}
	}
	if err != nil {
		im.bad(n, "not a JSON object: %v", err)
		return nil
	}
	switch rec.Kind {
	case "header":
		return im.header(n, &rec)
	case "triplet", "client", "trap", "tarpit":
		return im.entry(n, &rec)
	case "whitelist":
		return im.whitelist(n, &rec)
	case "error":
		im.bad(n, "the export ended with an error: %s", rec.Value)
	default:
		im.bad(n, "unknown kind %q (want triplet, client, trap, whitelist or header)", rec.Kind)
	}
	return nil
}

// header checks that the export's keys can match this greyd's. Exports
// joined into one import each have theirs.
func (im *importer) header(n int, rec *Record) *failure {
	if !strings.HasPrefix(rec.Format, "greyd-export/") {
		return &failure{http.StatusBadRequest, fmt.Sprintf("line %d: unknown export format %q (want %s); %s", n, rec.Format, ExportFormat, im.done(n))}
	}
	if rec.Privacy != (im.snap.Privacy != nil) || rec.PrivacyKey != keyID(im.snap) {
		return &failure{http.StatusConflict, fmt.Sprintf("the export was made with privacy = %v and this greyd runs with privacy = %v (or another privacy key): its keys would never match; %s. Import into a greyd configured like the one that exported, with the same privacy.key", rec.Privacy, im.snap.Privacy != nil, im.done(n))}
	}
	im.headed = true
	return nil
}

// done says what an import that ends at line n stored.
func (im *importer) done(n int) string {
	if im.res.Imported+im.res.Merged+im.res.Whitelist == 0 {
		return "nothing was imported"
	}
	return fmt.Sprintf("%d entries imported, %d merged and %d runtime whitelist entries added before line %d", im.res.Imported, im.res.Merged, im.res.Whitelist, n)
}

// checkExpires reports what is wrong with an imported deadline, or "".
func (im *importer) checkExpires(expires int64) string {
	if limit := im.now + int64(maxAhead/time.Second); expires < 0 || expires > limit {
		return fmt.Sprintf("expires %d is not a time greyd could keep (from 0 to %d, %v from now)", expires, limit, maxAhead)
	}
	return ""
}

// entry queues a triplet or client entry.
func (im *importer) entry(n int, rec *Record) *failure {
	e, ok := im.storeEntry(n, rec)
	if !ok {
		return nil
	}
	im.res.Read++
	if e.Expires <= im.now {
		im.res.Expired++
		return nil
	}
	im.batch = append(im.batch, e)
	if len(im.batch) >= importBatch {
		if err := im.flush(); err != nil {
			return storeFailure(fmt.Sprintf("importing at line %d (%d imported, %d merged before)", n, im.res.Imported, im.res.Merged), err)
		}
	}
	return nil
}

// storeEntry is the entry a triplet or client line stands for; false:
// the line is skipped.
func (im *importer) storeEntry(n int, rec *Record) (store.Entry, bool) {
	if rec.KeyBase64 != "" {
		k, err := base64.StdEncoding.DecodeString(rec.KeyBase64)
		if err != nil {
			im.bad(n, "key_base64: %v", err)
			return store.Entry{}, false
		}
		rec.Key = string(k)
	}
	if rec.Key == "" {
		im.bad(n, "%s without key", rec.Kind)
		return store.Entry{}, false
	}
	e := store.Entry{Kind: store.Kind(rec.Kind), Key: rec.Key, First: rec.First, Last: rec.Last, Expires: rec.Expires}
	switch e.Kind {
	case store.KindClient:
		e.First, e.Count = 0, rec.Count
	case store.KindTrap:
		e.Last, e.Until = 0, rec.Until
	case store.KindTarpit:
		e.Last, e.Session = 0, rec.Session
	}
	// Checked before the deadline is computed from them: a number out of
	// the stores' range would overflow it, and fail the whole batch.
	if err := store.CheckEntry(e); err != nil {
		im.bad(n, "%v", err)
		return store.Entry{}, false
	}
	if e.Expires == 0 {
		e.Expires = im.deadline(e)
	}
	if msg := im.checkExpires(e.Expires); msg != "" {
		im.bad(n, "%s", msg)
		return store.Entry{}, false
	}
	return e, true
}

// deadline is the expiry the rules that set one at every write give e.
func (im *importer) deadline(e store.Entry) int64 {
	if e.Kind == store.KindTrap {
		return e.Until + im.retry + 1
	}
	if e.Kind == store.KindTarpit {
		return e.First + im.retry + 1 // at least the abandon delay and the retry window
	}
	if e.Kind == store.KindClient || e.Kind == store.KindTriplet && e.Last-e.First >= int64(storedDelay(im.snap, e.Key)/time.Second) {
		return e.Last + im.maxAge + 1
	}
	return e.First + im.retry + 1
}

// whitelist stores a runtime whitelist entry.
func (im *importer) whitelist(n int, rec *Record) *failure {
	kind, err := store.ParseWhitelistKind(rec.List)
	if err != nil {
		im.bad(n, "%v", err)
		return nil
	}
	im.res.Read++
	value := canonical(rec.Value)
	if msg := checkEntry(kind, value); msg != "" {
		im.bad(n, "%s whitelist entry: %s", kind, msg)
		return nil
	}
	if msg := checkComment(rec.Comment); msg != "" {
		im.bad(n, "%s", msg)
		return nil
	}
	if msg := im.checkExpires(rec.Expires); msg != "" {
		im.bad(n, "%s", msg)
		return nil
	}
	if rec.Expires != 0 && rec.Expires <= im.now {
		im.res.Expired++
		return nil
	}
	if rec.Added == 0 {
		rec.Added = im.now
	}
	if _, err := im.admin.AddWhitelist(im.ctx, store.WhitelistEntry{Kind: kind, Value: value, Comment: rec.Comment, Added: rec.Added, Expires: rec.Expires}); err != nil {
		return storeFailure(fmt.Sprintf("importing at line %d", n), err)
	}
	im.res.Whitelist++
	return nil
}
