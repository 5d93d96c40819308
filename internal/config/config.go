// Package config loads and validates greyd's HCL configuration: a file, or
// a directory whose *.hcl files are merged ("union, duplicates are
// errors"). It produces an immutable Config with defaults equal to
// Postgrey's, and reports every problem with file:line:col. Whitelist
// files are only named here; package whitelist parses them.
//
// The schema, with the defaults:
//
//	listen {                  # repeatable; ignored when systemd passes sockets
//	  unix         = "/var/spool/postfix/greyd/socket"  # and/or (relative: to the config directory)
//	  inet         = "127.0.0.1:10023"  # "host:port", "[::1]:10023", or just "10023" (= 127.0.0.1:10023)
//	  allow        = ["127.0.0.0/8", "::1"]  # client networks of inet; required unless inet is loopback
//	  socket_mode  = "0660"             # octal; unix sockets greyd binds itself
//	  socket_group = ""                 # "" = leave the group as created
//	}
//	database {
//	  path = "/var/lib/greyd/greyd.db"  # relative to the config directory if relative
//	  sync = "everysecond"              # never | everysecond | always
//	}
//	greylist {
//	  delay             = "5m"
//	  retry_window      = "2d"
//	  max_age           = "35d"
//	  lookup_by         = "subnet"      # or "host"
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
//	}
//	auto_whitelist { clients = 5 }      # 0 disables
//	whitelist {                         # relative to the config directory if relative
//	  clients    = ["whitelist_clients", "whitelist_clients.local"]
//	  recipients = ["whitelist_recipients", "whitelist_recipients.local"]
//	}
//	limits {
//	  max_line_length = 8192
//	  max_attributes  = 100
//	  max_request_size = 65536
//	  max_connections = 1000
//	  request_timeout = "10s"
//	  idle_timeout    = "330s"
//	  store_timeout   = "2s"            # below Postfix's smtpd_policy_service_timeout (100s)
//	}
//
// Durations are whole numbers with units s, m, h, d, w, combinable ("1h30m").
// Every block is optional; blocks other than listen may be split over several
// files as long as no setting appears twice.
package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"time"
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

	sources map[string][]byte // file name → content, for WriteProblems
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
}

// LoopbackNets are the clients a loopback inet listener allows by default.
var LoopbackNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Database is the triplet store.
type Database struct {
	Path string // absolute
	Sync string // "never", "everysecond" or "always"
}

// Database.Sync values.
const (
	SyncNever       = "never"
	SyncEverySecond = "everysecond"
	SyncAlways      = "always"
)

// Greylist holds the greylisting rules, named after Postgrey's options.
type Greylist struct {
	Delay           time.Duration // --delay
	RetryWindow     time.Duration // --retry-window
	MaxAge          time.Duration // --max-age
	LookupByHost    bool          // lookup_by = "host" (--lookup-by-host)
	IPv4Prefix      int           // --ipv4cidr
	IPv6Prefix      int           // --ipv6cidr
	Action          string        // --greylist-action
	Text            string        // --greylist-text: %s seconds left, %r recipient domain
	XGreylistHeader bool          // add the X-Greylist header to mail that passed
	HeaderText      string        // --x-greylist-header: %t, %v, %h, %d
	Hostname        string        // --hostname; "" means os.Hostname(), the caller fills it in
	Privacy         bool          // --privacy: store keyed hashes (HMAC-SHA256) of the keys
	// OnStoreError is the answer when the database fails or does not
	// answer within limits.store_timeout: "dunno" lets the mail through
	// ungreylisted (fail open, Postgrey's behaviour), "defer" answers
	// DEFER_IF_PERMIT StoreErrorText (fail closed). Whitelisted mail passes
	// either way.
	OnStoreError   string
	StoreErrorText string
}

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

// MaxStoreTimeout bounds Limits.StoreTimeout: Postfix gives up on a policy
// server after smtpd_policy_service_timeout, 100s by default, and then
// defers the mail itself ("451 4.3.5 Server configuration problem").
const MaxStoreTimeout = 100 * time.Second

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
			StoreTimeout:   2 * time.Second,
		},
	}
}

// DefaultSocketMode is the mode of a unix socket greyd binds itself:
// root:postfix (or the greyd user's group) read-write, nobody else.
const DefaultSocketMode os.FileMode = 0o660
