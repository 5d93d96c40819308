// Package control is greyd's admin API: HTTP/1.1 with JSON over a unix
// socket (the control socket), served by the daemon and used by the greyd
// subcommands (explain, list, delete, whitelist, stats, export, import),
// which never open the database themselves. Paths are versioned (/v1/...),
// long listings are NDJSON streams, and every error is a JSON object
// {"error": "..."} whose message says what to do. Only root, the daemon's
// own user and members of group greyd may use it: the socket is mode 0660,
// group greyd, and each connection's peer credentials (SO_PEERCRED) are
// checked again. A greyd that may not give the socket to group greyd
// (started by hand by a user outside it) keeps it to its own user and
// root: mode 0600, and the peer check admits no group member.
//
// Endpoints (all answers are JSON unless said otherwise):
//
//	GET    /v1/explain?client_address=&client_name=&sender=&recipient=
//	GET    /v1/entries?kind=&client=&sender=&recipient=&state=   NDJSON
//	DELETE /v1/entries?client=&sender=&recipient=&dry_run=1
//	GET    /v1/whitelist
//	POST   /v1/whitelist            {"kind","value","comment","ttl_seconds"}
//	DELETE /v1/whitelist?kind=&value=
//	GET    /v1/stats
//	GET    /v1/export                                           NDJSON
//	POST   /v1/import               NDJSON body
//	POST   /v1/triplets             {"triplets":[{client_address,client_name,sender,recipient}]}: what the store holds for each, read-only
//
// Try it: curl --unix-socket /run/greyd/control.sock http://greyd/v1/stats
package control

// Explanation is the answer of /v1/explain: what greyd would answer to
// the request right now, and each step that led there.
type Explanation struct {
	// Action is the reply greyd would send, without "action=".
	Action string `json:"action"`
	// EnforcedAction is the reply once a dry run ends (Action otherwise).
	EnforcedAction string `json:"enforced_action"`
	// Reason is in the log's vocabulary: "new", "early-retry", "triplet
	// found", "client whitelist", "recipient whitelist", "client AWL",
	// "greytrap", "trapped", "tarpit", "tarpit-session",
	// "tarpit-abandoned"; "malformed" for a request greyd cannot
	// judge, "store error".
	Reason string `json:"reason"`
	// Decision is the log's action: "pass", "greylist", "tarpit",
	// "skip", "error".
	Decision string `json:"decision"`
	// Greylisted: the reply defers the mail (greyd explain exits 1).
	Greylisted bool  `json:"greylisted"`
	DryRun     bool  `json:"dry_run"`
	Privacy    bool  `json:"privacy"`
	Time       int64 `json:"time"`
	// MissingSeconds is what an early retry still has to wait;
	// WaitedSeconds what a first pass waited.
	MissingSeconds int64  `json:"missing_seconds,omitempty"`
	WaitedSeconds  int64  `json:"waited_seconds,omitempty"`
	Warning        string `json:"warning,omitempty"`
	StoreError     string `json:"store_error,omitempty"`

	ClientWhitelist    WhitelistCheck `json:"client_whitelist"`
	RecipientWhitelist WhitelistCheck `json:"recipient_whitelist"`
	RuntimeWhitelist   WhitelistCheck `json:"runtime_whitelist"`
	AutoWhitelist      *AWLState      `json:"auto_whitelist,omitempty"`
	Trap               *TrapState     `json:"trap,omitempty"`
	Tarpit             *TarpitState   `json:"tarpit,omitempty"`
	Triplet            *TripletState  `json:"triplet,omitempty"`
	// Selective is selective greylisting's part; nil when it is off
	// (mode "always", no recipient policy) or a whitelist decided.
	Selective *SelectiveState `json:"selective,omitempty"`
}

// SelectiveState is what selective greylisting did with a request.
type SelectiveState struct {
	// Mode is the one that applied: "always", "score" or "never".
	Mode string `json:"mode"`
	// RecipientPolicy is the recipient_policy block that applied.
	RecipientPolicy string `json:"recipient_policy,omitempty"`
	// Shadow: the class is only computed; the decision is mode always's.
	Shadow bool `json:"shadow,omitempty"`
	// Scored: the request was scored; a request the store would pass
	// (auto-whitelisted, a known triplet) is not, and costs no lookup.
	Scored     bool          `json:"scored"`
	Score      int           `json:"score"`
	GreylistAt int           `json:"greylist_at"`
	TarpitAt   *int          `json:"tarpit_at,omitempty"`
	Class      string        `json:"class,omitempty"`
	TookMS     float64       `json:"took_ms"`
	Signals    []SignalState `json:"signals,omitempty"`
	// P0f is p0f's answer, when the configuration has p0f signals.
	P0f *P0fState `json:"p0f,omitempty"`
}

// P0fState is what p0f answered about the client.
type P0fState struct {
	// Result: ok, no_match, timeout, down, bad_query, garbage, error.
	Result   string  `json:"result"`
	OSName   string  `json:"os_name,omitempty"`
	OSFlavor string  `json:"os_flavor,omitempty"`
	Distance int     `json:"distance"` // hops; -1: unknown
	MatchQ   int     `json:"os_match_q"`
	Error    string  `json:"error,omitempty"`
	TookMS   float64 `json:"took_ms"`
}

// SignalState is one signal of a score.
type SignalState struct {
	Name    string  `json:"name"`
	Weight  int     `json:"weight"` // what it added
	Result  string  `json:"result"`
	Unknown bool    `json:"unknown,omitempty"` // counted at its worst
	Answer  string  `json:"answer,omitempty"`
	Cached  bool    `json:"cached"`
	TookMS  float64 `json:"took_ms"`
}

// TrapState is the greytrap state of the request's client, when the
// configuration has a trap block.
type TrapState struct {
	// Recipient: the request's recipient is a trap address.
	Recipient bool   `json:"recipient"`
	Key       string `json:"key"`
	Found     bool   `json:"found"`
	Since     int64  `json:"since,omitempty"`
	Until     int64  `json:"until,omitempty"`
	// Trapped: the trap holds the client now.
	Trapped bool `json:"trapped"`
}

// TarpitState is the client's tarpit mark and the tarpit's state on
// this host, when there is a tarpit.
type TarpitState struct {
	Key string `json:"key"`
	// Found: a mark is stored, set at Since: the client left during
	// that wait (explain asks as a session of its own), and is greylisted
	// with AbandonDelay while the mark lives.
	Found bool  `json:"found"`
	Since int64 `json:"since,omitempty"`
	// The settings, and this host's state: tarpits issued within the
	// last duration, sessions waiting for their DATA, and tarpitted
	// sessions in a row that never reached DATA (Warned: greyd warned
	// that smtpd_data_restrictions probably lacks greyd).
	DurationSeconds     int64 `json:"duration_seconds"`
	AbandonDelaySeconds int64 `json:"abandon_delay_seconds"`
	MaxConcurrent       int   `json:"max_concurrent"`
	Active              int   `json:"active"`
	Sessions            int   `json:"sessions"`
	MissedData          int   `json:"missed_data"`
	Warned              bool  `json:"warned,omitempty"`
}

// WhitelistCheck is one whitelist step of an explanation.
type WhitelistCheck struct {
	// Reached: the decision got to this step (an earlier one decides
	// otherwise).
	Reached bool `json:"reached"`
	Matched bool `json:"matched"`
	// Entries is how many entries the list has.
	Entries int `json:"entries"`
	// The matching entry, with where it is written (file entries) or its
	// comment and expiry (runtime entries).
	Entry   string `json:"entry,omitempty"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Comment string `json:"comment,omitempty"`
	Expires int64  `json:"expires,omitempty"`
}

// AWLState is the auto-whitelist entry of the request's client.
type AWLState struct {
	Enabled   bool   `json:"enabled"`
	Threshold int64  `json:"threshold"`
	Key       string `json:"key,omitempty"`
	Found     bool   `json:"found"`
	Count     int64  `json:"count,omitempty"`
	Last      int64  `json:"last,omitempty"`
	Expires   int64  `json:"expires,omitempty"`
}

// TripletState is the request's triplet: its key, in parts, and what the
// store holds (times in Unix seconds; Expires computed from the rules).
type TripletState struct {
	Key string `json:"key"`
	// Network is the client part of the key: the client's network, or
	// under lookup_by "auto" the organisation of a verified mail server
	// (hashed under privacy, as the other parts).
	Network   string `json:"network"`
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	// Identity is the lookup_by "auto" rule that chose the client part.
	Identity string `json:"identity,omitempty"`
	Found    bool   `json:"found"`
	First    int64  `json:"first,omitempty"`
	Last     int64  `json:"last,omitempty"`
	Expires  int64  `json:"expires,omitempty"`
	Passed   bool   `json:"passed"`
	// Subnet is the network's key, read alongside an organisation's
	// (lookup_by "auto"): a triplet that passed under it passes.
	Subnet *TripletState `json:"subnet,omitempty"`
}

// Record is one line of a listing, an export or an import. Kind says
// which fields are used:
//
//	"triplet":   key (or key_base64), first, last, expires (client,
//	             sender, recipient and state in listings)
//	"client":    key, count, last, expires (client and state in listings)
//	"trap":      key, first (when the trap was set), until (when it
//	             stops holding the client), expires (client and state,
//	             "trapped" or "released", in listings)
//	"tarpit":    key, first (when the client was made to wait), session
//	             (its SMTP session's number), expires (client and state
//	             "marked" in listings): the session has not reached DATA
//	"whitelist": list ("client" or "recipient"), value, comment, added,
//	             expires
//	"header":    format, version, exported, privacy, privacy_key (the
//	             first line of an export; an import that does not start
//	             with one is refused, nothing stored)
//
// Times are Unix seconds; expires 0 (or absent) means: in an import,
// computed from the rules; in a listing, never. An import skips a line
// whose deadline is negative or more than 10 years ahead, and a runtime
// whitelist comment that whitelist add would refuse.
type Record struct {
	Kind string `json:"kind"`
	Key  string `json:"key,omitempty"`
	// KeyBase64 replaces Key when the key is not valid UTF-8.
	KeyBase64 string `json:"key_base64,omitempty"`
	Client    string `json:"client,omitempty"`
	Sender    string `json:"sender,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	State     string `json:"state,omitempty"`
	First     int64  `json:"first,omitempty"`
	Count     int64  `json:"count,omitempty"`
	Last      int64  `json:"last,omitempty"`
	Until     int64  `json:"until,omitempty"`
	Session   int64  `json:"session,omitempty"`
	Expires   int64  `json:"expires,omitempty"`

	List    string `json:"list,omitempty"`
	Value   string `json:"value,omitempty"`
	Comment string `json:"comment,omitempty"`
	Added   int64  `json:"added,omitempty"`

	Format     string `json:"format,omitempty"`
	Version    string `json:"version,omitempty"`
	Exported   int64  `json:"exported,omitempty"`
	Privacy    bool   `json:"privacy,omitempty"`
	PrivacyKey string `json:"privacy_key,omitempty"`
}

// ExportFormat names the export format in its header line.
const ExportFormat = "greyd-export/1"

// DeleteResult is the answer of DELETE /v1/entries.
type DeleteResult struct {
	Triplets int  `json:"triplets"`
	Clients  int  `json:"clients"`
	Traps    int  `json:"traps"`
	Tarpits  int  `json:"tarpits"`
	DryRun   bool `json:"dry_run"`
	// Warning says what could not be matched (under privacy, a network
	// too large to hash address by address).
	Warning string `json:"warning,omitempty"`
}

// WhitelistAdd is the body of POST /v1/whitelist.
type WhitelistAdd struct {
	Kind       string `json:"kind"` // "client" or "recipient"
	Value      string `json:"value"`
	Comment    string `json:"comment,omitempty"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"` // 0: no expiry
}

// WhitelistEntry is a runtime whitelist entry, or a file entry (File and
// Line set).
type WhitelistEntry struct {
	Kind    string `json:"kind"`
	Value   string `json:"value"`
	Comment string `json:"comment,omitempty"`
	Added   int64  `json:"added,omitempty"`
	Expires int64  `json:"expires,omitempty"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
}

// WhitelistAdded is the answer of POST /v1/whitelist.
type WhitelistAdded struct {
	Entry    WhitelistEntry `json:"entry"`
	Replaced bool           `json:"replaced"`
}

// WhitelistList is the answer of GET /v1/whitelist.
type WhitelistList struct {
	Runtime []WhitelistEntry `json:"runtime"`
	Files   []WhitelistEntry `json:"files"`
	// Problems are file entries greyd ignores (file:line: why).
	Problems []string `json:"problems,omitempty"`
}

// Stats is the answer of /v1/stats.
type Stats struct {
	Version       string `json:"version"`
	Started       int64  `json:"started"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	DryRun        bool   `json:"dry_run"`
	Privacy       bool   `json:"privacy"`

	Requests    uint64          `json:"requests"`
	Connections int64           `json:"connections"`
	Decisions   []DecisionCount `json:"decisions"`
	// Selective is present when selective greylisting scores (mode score
	// in the configuration or a recipient policy, shadow included).
	Selective *SelectiveStats `json:"selective,omitempty"`

	Entries EntryCounts `json:"entries"`
	Store   StoreStats  `json:"store"`
	Reload  ReloadStats `json:"reload"`

	RuntimeWhitelist int `json:"runtime_whitelist_entries"`
	// LogDropped counts the log lines dropped since start because the
	// log could not keep up (greyd never waits for its log).
	LogDropped uint64 `json:"log_dropped"`
}

// SelectiveStats count selective greylisting's work since greyd started.
type SelectiveStats struct {
	Mode   string `json:"mode"`
	Shadow bool   `json:"shadow"`
	// Classes: the scored requests by class, every class even at zero
	// (tarpit only with tarpit_at set, or once counted).
	Classes []ClassCount `json:"classes"`
	// DNSLookups are the resolver's lookups, DNSCacheHits those its
	// cache answered.
	DNSLookups   uint64 `json:"dns_lookups"`
	DNSCacheHits uint64 `json:"dns_cache_hits"`
}

// ClassCount is the number of scored requests of one class.
type ClassCount struct {
	Class string `json:"class"`
	Count uint64 `json:"count"`
}

// DecisionCount is the number of requests answered with one action and
// reason since greyd started.
type DecisionCount struct {
	Action string `json:"action"`
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// EntryCounts are the store's entries by kind and state. The counts by
// state need a pass over every entry: they are reused for a few seconds,
// and a pass that failed leaves them 0 with Error saying why.
type EntryCounts struct {
	Triplets        int `json:"triplets"`
	TripletsPending int `json:"triplets_pending"`
	TripletsPassed  int `json:"triplets_passed"`
	Clients         int `json:"clients"`
	// ClientsWhitelisted have reached the auto-whitelist threshold.
	ClientsWhitelisted int `json:"clients_whitelisted"`
	// Traps counts the trap entries (trapped clients, and released ones
	// whose entry is kept for the retry window), from the same pass.
	Traps int `json:"traps"`
	// Error: the counts by state are unknown.
	Error string `json:"error,omitempty"`
}

// StoreStats say how the store is doing.
type StoreStats struct {
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
	// Status is a networked store's connection state ("redis: connected
	// to ..."), empty for buntdb.
	Status string `json:"status,omitempty"`
	// CheckSeconds is how long the health check (a lookup) took now.
	CheckSeconds float64 `json:"check_seconds"`
	// Steps and StepMeanSeconds describe the store steps of requests
	// since start; Errors counts the failed ones.
	Steps           uint64  `json:"steps"`
	StepMeanSeconds float64 `json:"step_mean_seconds"`
	Errors          uint64  `json:"errors"`
}

// ReloadStats describe configuration reloads since start.
type ReloadStats struct {
	OK     uint64 `json:"ok"`
	Failed uint64 `json:"failed"`
	// Last is the time of the last reload (0: none since start) and
	// LastOK its outcome.
	Last   int64 `json:"last,omitempty"`
	LastOK bool  `json:"last_ok"`
}

// ImportResult is the answer of POST /v1/import.
type ImportResult struct {
	Read     int `json:"read"`
	Imported int `json:"imported"`
	Merged   int `json:"merged"`
	Expired  int `json:"expired"`
	// Whitelist counts runtime whitelist entries added.
	Whitelist int `json:"whitelist"`
	// Skipped lines could not be used; Errors says why (the first ones,
	// with their line numbers).
	Skipped int      `json:"skipped"`
	Errors  []string `json:"errors,omitempty"`
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}
