package control

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"greyd/internal/greylist"
	"greyd/internal/store"
)

// record renders an entry for a listing (parts split) or an export.
func record(snap *greylist.Snapshot, e store.Entry, listing bool) Record {
	rec := Record{Kind: string(e.Kind), Key: e.Key, Last: e.Last, Expires: e.Expires}
	switch e.Kind {
	case store.KindTriplet:
		rec.First = e.First
	case store.KindTrap:
		rec.First, rec.Until = e.First, e.Until
	case store.KindTarpit:
		rec.First, rec.Session = e.First, e.Session
	default:
		rec.Count = e.Count
	}
	if !listing {
		return rec
	}
	rec.State = stateOf(snap, e)
	if e.Kind != store.KindTriplet {
		rec.Client = e.Key
		return rec
	}
	if n, sn, rc, ok := splitTriplet(e.Key, snap.LookupByHost && snap.Privacy == nil); ok {
		rec.Client, rec.Sender, rec.Recipient = n, sn, rc
	}
	return rec
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
	count := map[store.Kind]*int{store.KindTriplet: &res.Triplets, store.KindClient: &res.Clients, store.KindTrap: &res.Traps, store.KindTarpit: &res.Tarpits}
	if res.DryRun {
		for _, kind := range store.Kinds {
			*count[kind] = len(keys[kind])
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	for _, kind := range store.Kinds {
		ks := keys[kind]
		for len(ks) > 0 {
			batch := ks[:min(len(ks), deleteBatch)]
			ks = ks[len(batch):]
			n, err := s.opts.Admin.Delete(r.Context(), kind, batch)
			*count[kind] += n
			if err != nil {
				storeError(w, fmt.Sprintf("deleting (%d triplets, %d clients and %d traps deleted before the error)", res.Triplets, res.Clients, res.Traps), err)
				return
			}
		}
	}
	msg := fmt.Sprintf("control: deleted %d triplet(s) and %d auto-whitelist entr(ies) matching %s", res.Triplets, res.Clients, describeFilter(q))
	switch {
	case res.Tarpits > 0:
		msg = fmt.Sprintf("control: deleted %d triplet(s), %d auto-whitelist entr(ies), %d trap(s) and %d tarpit mark(s) matching %s", res.Triplets, res.Clients, res.Traps, res.Tarpits, describeFilter(q))
	case res.Traps > 0:
		msg = fmt.Sprintf("control: deleted %d triplet(s), %d auto-whitelist entr(ies) and %d trap(s) matching %s", res.Triplets, res.Clients, res.Traps, describeFilter(q))
	}
	s.opts.Log.Info(msg)
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
