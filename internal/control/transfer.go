package control

import (
	"bufio"
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
