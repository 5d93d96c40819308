package control

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/normalize"
	"greyd/internal/p0f"
	"greyd/internal/policy"
	"greyd/internal/signals"
	"greyd/internal/store"
	"greyd/internal/whitelist"
)

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addr, name, sender, rcpt, helo := q.Get("client_address"), q.Get("client_name"), q.Get("sender"), q.Get("recipient"), q.Get("helo_name")
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
	if !q.Has("helo_name") && name != "unknown" {
		helo = name // a mail server's HELO is usually its name
	}
	for _, v := range []string{addr, name, sender, rcpt, helo} {
		if strings.ContainsAny(v, "\r\n") {
			writeError(w, http.StatusBadRequest, "attribute values cannot contain line breaks: %q", v)
			return
		}
	}
	// As Postfix sends it at RCPT time; etrn_domain is always there, and
	// decides the reply's "4.2.0 " prefix. A session of its own: a
	// client's tarpit mark reads as one it left.
	req := policy.ParseRequest("request=smtpd_access_policy\nprotocol_state=RCPT\ninstance=greyd-explain\nclient_address=" + addr +
		"\nclient_name=" + name + "\nhelo_name=" + helo + "\nsender=" + sender + "\nrecipient=" + rcpt + "\netrn_domain=\n")
	x := s.opts.Engine.Explain(r.Context(), req)
	writeJSON(w, http.StatusOK, s.explanation(x, name, addr, rcpt))
}

// explanation turns the engine's Explanation into the API's, finding the
// whitelist entry that matched in the files (file:line) or among the
// runtime entries.
func (s *Server) explanation(x greylist.Explanation, clientName, clientAddr, rcpt string) Explanation {
	out := summary(x)
	if x.Decision.Action == greylist.Skip {
		return out
	}
	s.whitelistSteps(&out, x, clientName, clientAddr, rcpt)
	out.Selective = selectiveState(x)
	if x.StoreErr != nil {
		out.StoreError = x.StoreErr.Error()
	}
	if x.Input.TripletKey == "" {
		return out
	}
	out.AutoWhitelist = autoWhitelistState(x)
	out.Trap = trapState(x)
	out.Tarpit = s.tarpitState(x)
	out.Triplet = requestTriplet(x)
	return out
}

// selectiveState is selective greylisting's part of an explanation.
func selectiveState(x greylist.Explanation) *SelectiveState {
	d := x.Decision
	if x.Snapshot.Selective == nil || d.Reason < greylist.ClientAWL {
		return nil
	}
	sc := d.Scoring
	out := &SelectiveState{Mode: sc.Mode.String(), RecipientPolicy: sc.Policy, Shadow: sc.Shadow, Scored: sc.Scored, GreylistAt: sc.GreylistAt}
	if t := x.Snapshot.Selective.TarpitAt; t != nil && x.Snapshot.Tarpit != nil && *t < sc.GreylistAt {
		out.TarpitAt = t
	}
	if !sc.Scored {
		return out
	}
	out.Score, out.Class, out.TookMS = sc.Score.Total, sc.Class.String(), ms(sc.Score.Took)
	for _, g := range sc.Score.Signals {
		out.Signals = append(out.Signals, SignalState{Name: g.Name, Weight: g.Weight, Result: g.Result, Unknown: g.Unknown,
			Answer: g.Answer, Cached: g.Cached, TookMS: ms(g.Took)})
	}
	out.P0f = p0fState(&sc.Score.P0f)
	return out
}

// p0fState is p0f's answer, if p0f was part of the score.
func p0fState(l *signals.P0fLookup) *P0fState {
	if l.Result == "" {
		return nil
	}
	a := &l.Answer
	out := &P0fState{Result: l.Result, OSName: a.OSName, OSFlavor: a.OSFlavor, Distance: int(a.Distance),
		MatchQ: int(a.OSMatchQ), Error: l.Err, TookMS: ms(l.Took)}
	if l.Result != p0f.ResultOK {
		out.Distance = -1
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// trapState is the client's greytrap, when there are traps.
func trapState(x greylist.Explanation) *TrapState {
	in, st := &x.Input, &x.Step
	if in.TrapKey == "" {
		return nil
	}
	t := &TrapState{Recipient: in.TrapHit, Key: in.TrapKey, Found: st.Before.TrapFound, Trapped: st.Trapped}
	if t.Found {
		t.Since, t.Until = st.Before.Trap.Since, st.Before.Trap.Until
	}
	return t
}

// tarpitState is the client's tarpit mark, when there is a tarpit.
func (s *Server) tarpitState(x greylist.Explanation) *TarpitState {
	tp := x.Snapshot.Tarpit
	if tp == nil {
		return nil
	}
	st := s.opts.Engine.TarpitStatus()
	t := &TarpitState{Key: x.Input.TarpitKey, Found: x.Step.Before.TarpitFound,
		DurationSeconds: int64(tp.Duration / time.Second), AbandonDelaySeconds: int64(tp.AbandonDelay / time.Second),
		MaxConcurrent: tp.MaxConcurrent, Active: st.Active, Sessions: st.Sessions, MissedData: st.Missed, Warned: st.Warned}
	if t.Found {
		t.Since = x.Step.Before.Tarpit.Since
	}
	return t
}

// summary is the decision and the reply, without the steps.
func summary(x greylist.Explanation) Explanation {
	snap, d := x.Snapshot, x.Decision
	out := Explanation{
		Action:         x.Reply,
		EnforcedAction: x.Enforced,
		Decision:       d.Action.Label(),
		Reason:         d.Reason.String(),
		DryRun:         snap.DryRun,
		Privacy:        snap.Privacy != nil,
		Time:           d.Now.Unix(),
		MissingSeconds: d.Missing,
		WaitedSeconds:  d.Waited,
		Warning:        d.Warning,
	}
	switch d.Action {
	case greylist.Skip:
		out.Reason = "malformed"
	case greylist.Failed:
		out.Reason = "store error"
		out.StoreError = d.Err.Error()
	}
	out.Greylisted = !snap.DryRun && (d.Action == greylist.Greylist || d.Action == greylist.Failed && snap.DeferOnStoreError)
	return out
}

// whitelistSteps fills in the three whitelist steps: which ones the
// decision reached, and the entry that matched, with its file and line
// or its runtime comment and expiry.
func (s *Server) whitelistSteps(out *Explanation, x greylist.Explanation, clientName, clientAddr, rcpt string) {
	snap, d := x.Snapshot, x.Decision
	ip, _ := normalize.ParseAddr(clientAddr)
	files, rfiles := s.whitelistFiles()
	runtime := s.opts.Engine.RuntimeEntries()
	out.ClientWhitelist = WhitelistCheck{Reached: true, Entries: snap.Clients.Len()}
	out.RecipientWhitelist = WhitelistCheck{Entries: snap.Recipients.Len()}
	out.RuntimeWhitelist = WhitelistCheck{Entries: len(runtime)}
	matchClient := func(c *whitelist.Clients) bool { return c.MatchName(clientName) || c.MatchAddr(ip) }
	matchRcpt := func(r *whitelist.Recipients) bool { return r.Match(rcpt) }
	switch {
	case d.Reason == greylist.ClientWhitelist && !d.Runtime:
		c := &out.ClientWhitelist
		c.Matched = true
		c.Entry, c.File, c.Line = findInFiles(files, func(entry string) bool {
			wl, _ := whitelist.ParseClients("", strings.NewReader(entry))
			return matchClient(wl)
		})
	case d.Reason == greylist.RecipientWhitelist && !d.Runtime:
		c := &out.RecipientWhitelist
		c.Reached, c.Matched = true, true
		c.Entry, c.File, c.Line = findInFiles(rfiles, func(entry string) bool {
			wl, _ := whitelist.ParseRecipients("", strings.NewReader(entry))
			return matchRcpt(wl)
		})
	default:
		out.RecipientWhitelist.Reached = true
		out.RuntimeWhitelist.Reached = true
		if !d.Runtime {
			return
		}
		c := &out.RuntimeWhitelist
		c.Matched = true
		if e, ok := runtimeMatch(runtime, d.Reason, matchClient, matchRcpt); ok {
			c.Entry, c.Comment, c.Expires = string(e.Kind)+" "+e.Value, e.Comment, e.Expires
		}
	}
}

// runtimeMatch finds the runtime entry that whitelisted the request for
// reason.
func runtimeMatch(runtime []store.WhitelistEntry, reason greylist.Reason, client func(*whitelist.Clients) bool, rcpt func(*whitelist.Recipients) bool) (store.WhitelistEntry, bool) {
	for _, e := range runtime {
		switch {
		case e.Kind == store.WhitelistClient && reason == greylist.ClientWhitelist:
			if c, _ := whitelist.ParseClients("", strings.NewReader(e.Value)); client(c) {
				return e, true
			}
		case e.Kind == store.WhitelistRecipient && reason == greylist.RecipientWhitelist:
			if r, _ := whitelist.ParseRecipients("", strings.NewReader(e.Value)); rcpt(r) {
				return e, true
			}
		}
	}
	return store.WhitelistEntry{}, false
}

// autoWhitelistState is the request client's auto-whitelist entry as the
// decision read it.
func autoWhitelistState(x greylist.Explanation) *AWLState {
	snap := x.Snapshot
	a := &AWLState{Enabled: snap.AutoWhitelistClients > 0, Threshold: int64(snap.AutoWhitelistClients), Key: x.Input.ClientKey}
	if b := x.Step.Before; b.ClientFound {
		a.Found, a.Count, a.Last = true, b.Client.Count, b.Client.Last
		a.Expires = b.Client.Last + int64(snap.MaxAge/time.Second) + 1
	}
	return a
}

// requestTriplet is the request's triplet as the decision read it, with
// the subnet key read alongside an organisation's.
func requestTriplet(x greylist.Explanation) *TripletState {
	snap, in, before := x.Snapshot, x.Input, x.Step.Before
	// The parts as stored: split from the key the decision built, so an
	// organisation's key (lookup_by "auto") shows as it is.
	t := tripletState(snap, in.Delay, in.TripletKey, snap.LookupByHost && snap.Privacy == nil && x.Org == "", before.Triplet, before.TripletFound)
	if snap.Identity != nil {
		t.Identity = x.Identity.String()
	}
	if in.AltKey != "" && in.AltKey != in.TripletKey {
		t.Subnet = tripletState(snap, in.Delay, in.AltKey, false, before.Alt, before.AltFound)
	}
	return t
}

// tripletState describes a triplet key and its stored entry, passed
// after delay seconds (a recipient policy's own, or greylist's); Expires
// is the deadline the rules gave it when it was written.
func tripletState(snap *greylist.Snapshot, delay int64, key string, byHost bool, tr store.Triplet, found bool) *TripletState {
	t := &TripletState{Key: key}
	t.Network, t.Sender, t.Recipient, _ = splitTriplet(key, byHost)
	if !found {
		return t
	}
	t.Found, t.First, t.Last = true, tr.First, tr.Last
	t.Passed = tr.Last-tr.First >= delay
	if t.Passed {
		t.Expires = t.Last + int64(snap.MaxAge/time.Second) + 1
	} else {
		t.Expires = t.First + int64(snap.RetryWindow/time.Second) + 1
	}
	return t
}

// findInFiles returns the first entry of files for which match is true,
// with its file and line, reading the files as they are now.
func findInFiles(files []string, match func(entry string) bool) (entry, file string, line int) {
	for _, path := range files {
		found := false
		forEachEntry(path, func(n int, e string) bool {
			if match(e) {
				entry, file, line, found = e, path, n, true
				return false
			}
			return true
		})
		if found {
			return entry, file, line
		}
	}
	return "", "", 0
}

// forEachEntry calls fn with each entry of a whitelist file and its line
// number, as package whitelist reads them: '#' starts a comment, blank
// lines are skipped. A file that cannot be read has no entries.
func forEachEntry(path string, fn func(line int, entry string) bool) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		e := sc.Text()
		if i := strings.IndexByte(e, '#'); i >= 0 {
			e = e[:i]
		}
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if !fn(n, e) {
			return
		}
	}
}

// canonical is the stored form of a runtime whitelist entry: as a file
// line would be read (comment dropped, space trimmed), lower case unless
// it is a /regex/ (whose escapes are case-sensitive: \S is not \s).
func canonical(value string) string {
	if i := strings.IndexByte(value, '#'); i >= 0 {
		value = value[:i]
	}
	value = strings.TrimSpace(value)
	if len(value) >= 2 && value[0] == '/' && value[len(value)-1] == '/' {
		return value
	}
	return strings.ToLower(value)
}

// checkEntry reports what is wrong with a runtime whitelist entry, as
// the whitelist file parser would, or "".
func checkEntry(kind store.WhitelistKind, value string) string {
	if value == "" {
		return "empty entry (or only a # comment)"
	}
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Sprintf("%q: one entry at a time, without line breaks", value)
	}
	var probs []whitelist.Problem
	var n int
	switch kind {
	case store.WhitelistClient:
		var c *whitelist.Clients
		c, probs = whitelist.ParseClients("", strings.NewReader(value))
		n = c.Len()
	case store.WhitelistRecipient:
		var r *whitelist.Recipients
		r, probs = whitelist.ParseRecipients("", strings.NewReader(value))
		n = r.Len()
	}
	if len(probs) > 0 {
		return probs[0].Msg
	}
	if n == 0 {
		return fmt.Sprintf("%q: not a whitelist entry", value)
	}
	return ""
}
