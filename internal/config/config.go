// Package config loads and validates greyd's HCL configuration and
// reports every problem with file:line:col. It produces an immutable Config
// with defaults equal to Postgrey's, and remembers which file and line gave
// each value (check-config prints it). Whitelist files are only named here;
// package whitelist parses them.
//
// Layers. Given a directory (/etc/greyd), Load reads its *.hcl files in
// lexical order, then those of its conf.d subdirectory in lexical order;
// given a file, only that file. Each file is decoded on its own, then the
// files are merged in that order, setting by setting: a later file
// overrides a value an earlier one gave and leaves every other setting
// alone. Lists (whitelist files, allow, pool_domains) are replaced, never
// appended to. listen blocks accumulate: every file adds its own, and a file
// with the top-level setting listen_reset = true first drops the listen
// blocks of the files before it. A setting given twice in one file is an
// error. Validation looks at the merged result: a value that a later file
// overrides is only checked for its type. The packaged greyd.hcl spells
// out the defaults; local changes go into conf.d/*.hcl, which package
// upgrades never touch. Relative paths are resolved against the
// configuration directory, also in conf.d files.
//
// The schema, with the defaults:
//
//	listen_reset = false          # true: drop the listen blocks of earlier files
//	listen {                      # repeatable; ignored when systemd passes sockets
//	  unix         = "/var/spool/postfix/greyd/socket"  # and/or
//	  inet         = "127.0.0.1:10023"  # "host:port", "[::1]:10023", or just "10023" (= 127.0.0.1:10023)
//	  allow        = ["127.0.0.0/8", "::1"]  # client networks of inet; required unless inet is loopback
//	  socket_mode  = "0660"             # octal; unix sockets greyd binds itself
//	  socket_group = ""                 # "" = leave the group as created
//	  exim         = false              # true: one request per connection, for Exim's ${readsocket}
//	}
//	database {
//	  path = "/var/lib/greyd/greyd.db"
//	  sync = "everysecond"              # never | everysecond | always
//	  redis {                           # optional: selects the Redis backend instead of path
//	    url           = "redis://127.0.0.1:6379/0"  # no default; see Redis for every form
//	    password_file = ""              # "" = no password; warned about when others may read it
//	    key_prefix    = "greyd:"
//	  }
//	}
//	greylist {
//	  delay             = "5m"
//	  retry_window      = "2d"
//	  max_age           = "35d"
//	  lookup_by         = "auto"        # or "subnet" (Postgrey), "host"
//	  pool_domains      = []            # for lookup_by = "auto": domains whose hosts are one sender
//	  dynamic_domains   = []            # for lookup_by = "auto": domains never aggregated
//	  ipv4_prefix       = 24
//	  ipv6_prefix       = 64
//	  action            = "DEFER_IF_PERMIT"
//	  text              = "Greylisted, see http://postgrey.schweikert.ch/help/%r.html"
//	  x_greylist_header = true
//	  header_text       = "X-Greylist: delayed %t seconds by greyd-%v at %h; %d"
//	  hostname          = ""            # "" = os.Hostname(), filled in by the caller
//	  privacy           = false
//	  on_store_error    = "dunno"       # or "defer": DEFER_IF_PERMIT store_error_text
//	  store_error_text  = "4.3.0 Greylisting database unavailable, try again later"
//	  dry_run           = false         # decide and learn, log, but always answer DUNNO
//	  policy_test_time  = false         # true: honour the policy_test_time attribute (test suites)
//	}
//	auto_whitelist { clients = 5 }      # 0 disables
//	whitelist {
//	  clients    = ["whitelist_clients", "whitelist_clients.local"]
//	  recipients = ["whitelist_recipients", "whitelist_recipients.local"]
//	}
//	limits {
//	  max_line_length  = 8192
//	  max_attributes   = 100
//	  max_request_size = 65536
//	  max_connections  = 1000
//	  request_timeout  = "10s"
//	  idle_timeout     = "330s"
//	  store_timeout    = "2s"           # "250ms" with a redis block; below Postfix's 100s
//	}
//	control { socket = "/run/greyd/control.sock" }  # "" = no control socket
//	metrics { listen = "127.0.0.1:9386" }  # no metrics block = no metrics listener
//	trap {                              # no trap block = no greytraps
//	  recipients = ["trap_recipients"]  # whitelist_recipients syntax, reloaded like the whitelists
//	  duration   = "24h"                # at most 30d
//	}
//	log { decisions = "all" }           # or "greylist", "none"
//	selective { mode = "always" }       # selective greylisting: see selective.go
//	signals {}, dnsbl "zone" {}, dnswl "zone" {}, recipient_policy "name" {}, dns {}
//	p0f { os "label" {} }               # the client's OS as signals: see p0f.go
//
// Durations are whole numbers with units ms, s, m, h, d, w, combinable
// ("1h30m", "1s500ms"); the greylist durations take whole seconds.
//
// Warnings. Some findings do not make a configuration unusable (a Redis
// password file that others may read): Load puts them in Config.Warnings
// instead of its Problems, and WriteHCL shows them next to the value.
package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"

	"greyd/internal/signals"
)

// DefaultDir is the configuration directory of an installed greyd.
const DefaultDir = "/etc/greyd"

// Config is one complete, validated configuration. Treat it as immutable:
// a reload builds a new one.
type Config struct {
	Dir   string   // config directory (for relative paths), absolute after Load
	Files []string // the .hcl files read, in order

	Listen        []Listen // may be empty: systemd may pass the sockets
	Database      Database
	Greylist      Greylist
	AutoWhitelist AutoWhitelist
	Whitelist     Whitelist
	Limits        Limits
	Control       Control
	Metrics       *Metrics // nil: no metrics listener
	Trap          *Trap    // nil: no greytraps (trap.go)
	P0f           *P0f     // nil: no p0f signals (p0f.go)
	Tarpit        *Tarpit  // nil: no tarpit (tarpit.go)
	Log           Log

	// Selective greylisting (selective.go).
	Selective         Selective
	Signals           Signals
	DNSBLs            []DNSBL
	DNSWLs            []DNSWL
	RecipientPolicies []RecipientPolicy
	DNS               DNS

	// Warnings are findings that do not stop greyd, located like
	// problems. The daemon and check-config print them.
	Warnings Problems

	sources map[string][]byte    // file name → content, for WriteProblems
	origins map[string]hcl.Range // setting ("greylist.delay", "listen.0.inet") → where its value was given
}

// Listen is one socket greyd binds when not socket-activated. At least one
// of Unix and Inet is set.
type Listen struct {
	Unix        string      // absolute path of a unix socket (relative ones are resolved against Dir)
	Inet        string      // "host:port"; a bare port is stored as "127.0.0.1:port"
	SocketMode  os.FileMode // permission bits of Unix, default 0660
	SocketGroup string      // group of Unix; "" leaves it as created
	// Allow lists the client networks Inet accepts connections from;
	// others are closed and logged. It is required for an Inet that is
	// not loopback, and defaults to loopback (LoopbackNets) for one that
	// is. Nil when there is no Inet.
	Allow []netip.Prefix
	// Exim closes each connection after its reply: Exim's ${readsocket}
	// sends one request and reads until the server closes (Postgrey's
	// --exim).
	Exim bool
}

// LoopbackNets are the clients a loopback inet listener allows by default.
var LoopbackNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Database is the triplet store: buntdb at Path, or Redis when Redis is
// set.
type Database struct {
	Path  string // absolute
	Sync  string // "never", "everysecond" or "always"
	Redis *Redis // nil: no redis block, buntdb at Path
}

// Database.Sync values.
const (
	SyncNever       = "never"
	SyncEverySecond = "everysecond"
	SyncAlways      = "always"
)

// Greylist holds the greylisting rules, named after Postgrey's options.
type Greylist struct {
	Delay        time.Duration // --delay
	RetryWindow  time.Duration // --retry-window
	MaxAge       time.Duration // --max-age
	LookupBy     string        // LookupBySubnet, LookupByHost or LookupByAuto
	LookupByHost bool          // LookupBy == LookupByHost (--lookup-by-host)
	// PoolDomains and DynamicDomains steer lookup_by = "auto": a verified
	// client name under a pool domain is keyed by that domain, one under a
	// dynamic domain by its subnet. Lower case, without leading or
	// trailing dots; never nil.
	PoolDomains     []string
	DynamicDomains  []string
	IPv4Prefix      int    // --ipv4cidr
	IPv6Prefix      int    // --ipv6cidr
	Action          string // --greylist-action
	Text            string // --greylist-text: %s seconds left, %r recipient domain
	XGreylistHeader bool   // add the X-Greylist header to mail that passed
	HeaderText      string // --x-greylist-header: %t, %v, %h, %d
	Hostname        string // --hostname; "" means os.Hostname(), the caller fills it in
	Privacy         bool   // --privacy: store keyed hashes (HMAC-SHA256) of the keys
	// OnStoreError is the answer when the database fails or does not
	// answer within limits.store_timeout: "dunno" lets the mail through
	// ungreylisted (fail open, Postgrey's behaviour), "defer" answers
	// DEFER_IF_PERMIT StoreErrorText (fail closed). Whitelisted mail passes
	// either way.
	OnStoreError   string
	StoreErrorText string
	// DryRun decides and learns as usual and logs what it would have done,
	// but always answers DUNNO.
	DryRun bool
	// PolicyTestTime honours Postgrey's policy_test_time request
	// attribute as the decision's clock, for test suites. Off, any client
	// of the policy socket could move the clock of the shared state.
	PolicyTestTime bool
}

// Greylist.LookupBy values.
const (
	LookupBySubnet = "subnet" // the client's network (ipv4_prefix, ipv6_prefix), as Postgrey
	LookupByHost   = "host"   // the client's address (--lookup-by-host)
	LookupByAuto   = "auto"   // the organisation of a verified client name, else the subnet
)

// Greylist.OnStoreError values.
const (
	OnStoreErrorDunno = "dunno"
	OnStoreErrorDefer = "defer"
)

// AutoWhitelist is Postgrey's client auto-whitelist.
type AutoWhitelist struct {
	Clients int // triplets that must pass before a client is whitelisted; 0 disables
}

// Whitelist names the whitelist files, as absolute paths. Missing *.local
// files are the whitelist package's business, not a config error.
type Whitelist struct {
	Clients    []string
	Recipients []string
}

// Limits bound what one Postfix connection may cost.
type Limits struct {
	MaxLineLength  int           // bytes per request line
	MaxAttributes  int           // attribute lines per request
	MaxRequestSize int           // bytes per request
	MaxConnections int           // concurrent connections
	RequestTimeout time.Duration // to read one complete request
	IdleTimeout    time.Duration // between requests on a kept-alive connection
	StoreTimeout   time.Duration // longest a request waits for the database
}

// Control is the admin API's unix socket.
type Control struct {
	Socket string // absolute; "" = no control socket
}

// DefaultControlSocket is where greyd's CLI finds the daemon; the packaged
// unit provides /run/greyd.
const DefaultControlSocket = "/run/greyd/control.sock"

// Metrics is the Prometheus listener, present only when configured.
type Metrics struct {
	Listen string // "host:port"
}

// DefaultMetricsListen is the address of a metrics block without listen.
const DefaultMetricsListen = "127.0.0.1:9386"

// Log says which lines greyd writes.
type Log struct {
	Decisions string // DecisionsAll, DecisionsGreylist or DecisionsNone
}

// Log.Decisions values. Warnings and errors are always logged.
const (
	DecisionsAll      = "all"      // every decision line, as Postgrey
	DecisionsGreylist = "greylist" // only lines of greylisted (deferred) requests
	DecisionsNone     = "none"     // no decision lines
)

// MaxStoreTimeout bounds Limits.StoreTimeout: Postfix gives up on a policy
// server after smtpd_policy_service_timeout, 100s by default, and then
// defers the mail itself ("451 4.3.5 Server configuration problem").
const MaxStoreTimeout = 100 * time.Second

// Default store timeouts. A networked store that has not answered in a
// quarter of a second is in trouble, and every request waits for it.
const (
	DefaultStoreTimeout      = 2 * time.Second
	DefaultRedisStoreTimeout = 250 * time.Millisecond
)

// Default returns the configuration used when nothing is set, with the
// whitelist files in dir ("" means DefaultDir).
func Default(dir string) *Config {
	if dir == "" {
		dir = DefaultDir
	}
	return &Config{
		Dir: dir,
		Database: Database{
			Path: "/var/lib/greyd/greyd.db",
			Sync: SyncEverySecond,
		},
		Greylist: Greylist{
			Delay:           5 * time.Minute,
			RetryWindow:     2 * Day,
			MaxAge:          35 * Day,
			LookupBy:        LookupByAuto,
			PoolDomains:     []string{},
			DynamicDomains:  []string{},
			IPv4Prefix:      24,
			IPv6Prefix:      64,
			Action:          "DEFER_IF_PERMIT",
			Text:            "Greylisted, see http://postgrey.schweikert.ch/help/%r.html",
			XGreylistHeader: true,
			HeaderText:      "X-Greylist: delayed %t seconds by greyd-%v at %h; %d",
			OnStoreError:    OnStoreErrorDunno,
			StoreErrorText:  "4.3.0 Greylisting database unavailable, try again later",
		},
		AutoWhitelist: AutoWhitelist{Clients: 5},
		Whitelist: Whitelist{
			Clients: []string{
				filepath.Join(dir, "whitelist_clients"),
				filepath.Join(dir, "whitelist_clients.local"),
			},
			Recipients: []string{
				filepath.Join(dir, "whitelist_recipients"),
				filepath.Join(dir, "whitelist_recipients.local"),
			},
		},
		Limits: Limits{
			MaxLineLength:  8192,
			MaxAttributes:  100,
			MaxRequestSize: 64 << 10,
			MaxConnections: 1000,
			RequestTimeout: 10 * time.Second,
			IdleTimeout:    330 * time.Second,
			StoreTimeout:   DefaultStoreTimeout,
		},
		Control:   Control{Socket: DefaultControlSocket},
		Log:       Log{Decisions: DecisionsAll},
		Selective: Selective{Mode: SelectiveAlways, GreylistAt: DefaultGreylistAt},
		DNS:       DNS{Servers: []string{}, Budget: signals.DefaultBudget},
	}
}

// DefaultSocketMode is the mode of a unix socket greyd binds itself:
// root:postfix (or the greyd user's group) read-write, nobody else.
const DefaultSocketMode os.FileMode = 0o660
