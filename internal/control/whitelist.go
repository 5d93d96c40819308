package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"greyd/internal/store"
	"greyd/internal/whitelist"
)

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

// checkComment reports what is wrong with a runtime entry's comment, or
// "": whitelist list prints it on the entry's line.
func checkComment(c string) string {
	if len(c) > maxComment || strings.ContainsFunc(c, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Sprintf("comment: at most %d bytes on one line, without control characters", maxComment)
	}
	return ""
}

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
	if msg := checkComment(in.Comment); msg != "" {
		writeError(w, http.StatusBadRequest, "%s", msg)
		return
	}
	if in.TTLSeconds < 0 {
		writeError(w, http.StatusBadRequest, "ttl: must not be negative")
		return
	}
	now := s.opts.Now().Unix()
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
