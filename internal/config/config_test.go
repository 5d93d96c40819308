package config

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeFiles creates files (name → content) in a new temporary directory
// and returns it. A content of "<symlink>" makes a dangling symlink, "<dir>"
// a directory.
// wantOneProblem loads src as a.hcl and wants exactly the problem want,
// with the directory written as DIR.
func wantOneProblem(t *testing.T, src, want string) {
	t.Helper()
	dir := writeFiles(t, map[string]string{"a.hcl": src})
	_, ps := Load(dir)
	var got []string
	for _, p := range ps {
		got = append(got, strings.ReplaceAll(p.Error(), dir, "DIR"))
	}
	if len(got) != 1 || got[0] != want {
		t.Errorf("%s: problems\n  %s\nwant\n  %s", src, strings.Join(got, "\n  "), want)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		err := os.MkdirAll(filepath.Dir(p), 0o755) // "conf.d/x.hcl" in any order
		switch {
		case err != nil:
		case content == "<symlink>":
			err = os.Symlink(filepath.Join(dir, "does-not-exist"), p)
		case content == "<dir>":
			err = os.MkdirAll(p, 0o755)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mustLoad loads path and fails the test on any problem.
func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	cfg, ps := Load(path)
	if len(ps) > 0 {
		var b bytes.Buffer
		WriteProblems(&b, ps, cfg)
		t.Fatalf("Load(%s): unexpected problems:\n%s", path, b.String())
	}
	return cfg
}

// settings strips what depends on where the config was read from, so
// that two configs can be compared.
func settings(c *Config) Config {
	s := *c
	s.Dir, s.Files, s.sources, s.origins, s.Warnings = "", nil, nil, nil, nil
	return s
}

func checkConfig(t *testing.T, got, want *Config) {
	t.Helper()
	if g, w := settings(got), settings(want); !reflect.DeepEqual(g, w) {
		t.Errorf("config mismatch\n got: %+v\nwant: %+v", g, w)
	}
}

func TestDefaults(t *testing.T) {
	dir := writeFiles(t, map[string]string{"greyd.hcl": "# nothing set\n"})
	cfg := mustLoad(t, dir)

	if cfg.Dir != dir {
		t.Errorf("Dir = %q, want %q", cfg.Dir, dir)
	}
	if want := []string{filepath.Join(dir, "greyd.hcl")}; !reflect.DeepEqual(cfg.Files, want) {
		t.Errorf("Files = %q, want %q", cfg.Files, want)
	}
	checkConfig(t, cfg, Default(dir))

	// Spelled out once, against Postgrey's documented defaults.
	want := &Config{
		Database: Database{Path: "/var/lib/greyd/greyd.db", Sync: "everysecond"},
		Greylist: Greylist{
			Delay:           300 * time.Second,
			RetryWindow:     48 * time.Hour,
			MaxAge:          35 * 24 * time.Hour,
			LookupBy:        "auto",
			PoolDomains:     []string{},
			DynamicDomains:  []string{},
			IPv4Prefix:      24,
			IPv6Prefix:      64,
			Action:          "DEFER_IF_PERMIT",
			Text:            "Greylisted, see http://postgrey.schweikert.ch/help/%r.html",
			XGreylistHeader: true,
			HeaderText:      "X-Greylist: delayed %t seconds by greyd-%v at %h; %d",
			OnStoreError:    "dunno",
			StoreErrorText:  "4.3.0 Greylisting database unavailable, try again later",
		},
		AutoWhitelist: AutoWhitelist{Clients: 5},
		Whitelist: Whitelist{
			Clients:    []string{dir + "/whitelist_clients", dir + "/whitelist_clients.local"},
			Recipients: []string{dir + "/whitelist_recipients", dir + "/whitelist_recipients.local"},
		},
		Limits: Limits{
			MaxLineLength:  8192,
			MaxAttributes:  100,
			MaxRequestSize: 65536,
			MaxConnections: 1000,
			RequestTimeout: 10 * time.Second,
			IdleTimeout:    330 * time.Second,
			StoreTimeout:   2 * time.Second,
		},
		Control:   Control{Socket: "/run/greyd/control.sock"},
		Log:       Log{Decisions: "all"},
		Selective: Selective{Mode: "always", GreylistAt: 3},
		DNS:       DNS{Servers: []string{}, Budget: 800 * time.Millisecond},
	}
	checkConfig(t, cfg, want)

	if d := Default(""); d.Dir != "/etc/greyd" || d.Whitelist.Clients[0] != "/etc/greyd/whitelist_clients" {
		t.Errorf(`Default("") = Dir %q, clients %q; want /etc/greyd`, d.Dir, d.Whitelist.Clients)
	}
}

const allSettings = `
listen {
  unix         = "/run/greyd/policy.sock"
  socket_mode  = "0600"
  socket_group = "postfix"
}
listen {
  inet = "10023"
}
listen {
  unix = "rel.sock"
  inet = "[::1]:10024"
  exim = true
}
listen {
  inet  = "0.0.0.0:10025"
  allow = ["192.0.2.0/24", "2001:db8::25", "::ffff:198.51.100.0/120", "127.0.0.1"]
}
database {
  path = "state/greyd.db"
  sync = "always"
  redis {
    url        = "redis://s1.example.net/2?master_set=mymaster&addr=[2001:db8::1]:26380&addr=s3.example.net"
    key_prefix = "site1:"
  }
}
greylist {
  delay             = "1m30s"
  retry_window      = "12h"
  max_age           = "2w"
  lookup_by         = "host"
  pool_domains      = [".Outlook.com", "mail.example.org."]
  dynamic_domains   = ["dyn.example.net"]
  ipv4_prefix       = 32
  ipv6_prefix       = 128
  action            = "451"
  text              = "4.7.1 Try later (%s s, %r)"
  x_greylist_header = false
  header_text       = "X-Greylist: by %h"
  hostname          = "mx1.example.org"
  privacy           = true
  on_store_error    = "defer"
  store_error_text  = "4.3.0 Try again later"
  dry_run           = true
  policy_test_time  = true
}
auto_whitelist {
  clients = 0
}
whitelist {
  clients    = ["clients.txt", "/srv/extra_clients"]
  recipients = []
}
limits {
  max_line_length = 2048
  max_attributes  = 50
  max_request_size = 4096
  max_connections = 10
  request_timeout = "5s"
  idle_timeout    = "1m"
  store_timeout   = "1s500ms"
}
control {
  socket = "run/control.sock"
}
metrics {
  listen = "[::1]:9100"
}
log {
  decisions = "greylist"
}
selective {
  mode        = "score"
  greylist_at = 4
  shadow      = true
}
signals {
  rdns_missing = 3
  rdns_dynamic = 2
  helo_invalid = 1
  spf_fail     = 2
  spf_softfail = 1
  spf_pass     = -1
}
dnsbl "zen.spamhaus.org" {
  weight = 3
}
dnsbl "BL.Example.NET." {
  weight = 2
  listed = ["127.0.0.2", "127.0.1.0/24"]
}
dnswl "list.dnswl.org" {
  weight    = -3
  min_trust = 2
}
recipient_policy "billing" {
  recipients  = ["@billing.example.com", "login@example.com"]
  mode        = "score"
  greylist_at = 5
  delay       = "1m"
}
recipient_policy "abuse" {
  recipients = ["abuse@"]
  mode       = "never"
}
dns {
  servers = ["127.0.0.1", "[::1]:5353"]
  budget  = "500ms"
}
`

func TestAllSettings(t *testing.T) {
	dir := writeFiles(t, map[string]string{"greyd.hcl": allSettings})
	cfg := mustLoad(t, filepath.Join(dir, "greyd.hcl")) // a file: its directory is the config dir
	if cfg.Dir != dir {
		t.Errorf("Dir = %q, want %q", cfg.Dir, dir)
	}
	want := &Config{
		Listen: []Listen{
			{Unix: "/run/greyd/policy.sock", SocketMode: 0o600, SocketGroup: "postfix"},
			{Inet: "127.0.0.1:10023", SocketMode: 0o660, Allow: LoopbackNets},
			{Unix: dir + "/rel.sock", Inet: "[::1]:10024", SocketMode: 0o660, Allow: LoopbackNets, Exim: true},
			{Inet: "0.0.0.0:10025", SocketMode: 0o660, Allow: []netip.Prefix{
				netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::25/128"),
				netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("127.0.0.1/32"),
			}},
		},
		Database: Database{Path: dir + "/state/greyd.db", Sync: "always", Redis: &Redis{
			URL:       "redis://s1.example.net/2?master_set=mymaster&addr=[2001:db8::1]:26380&addr=s3.example.net",
			KeyPrefix: "site1:",
			Network:   "tcp",
			Addrs:     []string{"s1.example.net:26379", "[2001:db8::1]:26380", "s3.example.net:26379"},
			DB:        2,
			MasterSet: "mymaster",
		}},
		Greylist: Greylist{
			Delay:           90 * time.Second,
			RetryWindow:     12 * time.Hour,
			MaxAge:          14 * 24 * time.Hour,
			LookupBy:        "host",
			LookupByHost:    true,
			PoolDomains:     []string{"outlook.com", "mail.example.org"},
			DynamicDomains:  []string{"dyn.example.net"},
			IPv4Prefix:      32,
			IPv6Prefix:      128,
			Action:          "451",
			Text:            "4.7.1 Try later (%s s, %r)",
			XGreylistHeader: false,
			HeaderText:      "X-Greylist: by %h",
			Hostname:        "mx1.example.org",
			Privacy:         true,
			OnStoreError:    "defer",
			StoreErrorText:  "4.3.0 Try again later",
			DryRun:          true,
			PolicyTestTime:  true,
		},
		AutoWhitelist: AutoWhitelist{Clients: 0},
		Whitelist: Whitelist{
			Clients:    []string{dir + "/clients.txt", "/srv/extra_clients"},
			Recipients: []string{},
		},
		Limits: Limits{
			MaxLineLength:  2048,
			MaxAttributes:  50,
			MaxRequestSize: 4096,
			MaxConnections: 10,
			RequestTimeout: 5 * time.Second,
			IdleTimeout:    time.Minute,
			StoreTimeout:   1500 * time.Millisecond,
		},
		Control:   Control{Socket: dir + "/run/control.sock"},
		Metrics:   &Metrics{Listen: "[::1]:9100"},
		Log:       Log{Decisions: "greylist"},
		Selective: Selective{Mode: "score", GreylistAt: 4, Shadow: true},
		Signals: Signals{RDNSMissing: intp(3), RDNSDynamic: intp(2), HELOInvalid: intp(1),
			SPFFail: intp(2), SPFSoftfail: intp(1), SPFPass: intp(-1)},
		DNSBLs: []DNSBL{
			{Zone: "zen.spamhaus.org", Weight: 3, Listed: []string{"127.0.0.2-127.0.0.255"}},
			{Zone: "bl.example.net", Weight: 2, Listed: []string{"127.0.0.2", "127.0.1.0/24"}},
		},
		DNSWLs: []DNSWL{{Zone: "list.dnswl.org", Weight: -3, MinTrust: 2}},
		RecipientPolicies: []RecipientPolicy{
			{Name: "billing", Recipients: []string{"@billing.example.com", "login@example.com"}, Mode: "score", GreylistAt: intp(5), Delay: durp(time.Minute)},
			{Name: "abuse", Recipients: []string{"abuse@"}, Mode: "never"},
		},
		DNS: DNS{Servers: []string{"127.0.0.1:53", "[::1]:5353"}, Budget: 500 * time.Millisecond},
	}
	checkConfig(t, cfg, want)
}

func intp(n int) *int                     { return &n }
func durp(d time.Duration) *time.Duration { return &d }

// Zero means zero, unlike Postgrey's `--delay=0` which fell back to 300.
func TestZeroValues(t *testing.T) {
	dir := writeFiles(t, map[string]string{"greyd.hcl": `
greylist {
  delay        = "0s"
  retry_window = "0d"
  ipv4_prefix  = 0
  ipv6_prefix  = 0
}
auto_whitelist { clients = 0 }
`})
	g := mustLoad(t, dir).Greylist
	if g.Delay != 0 || g.RetryWindow != 0 || g.IPv4Prefix != 0 || g.IPv6Prefix != 0 {
		t.Errorf("zero values not kept: %+v", g)
	}
}

// Files that set different settings combine (override is in layers_test.go).
func TestDirectoryMerge(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"10-main.hcl": `
listen { unix = "/run/greyd.sock" }
greylist { delay = "10m" }
`,
		"20-local.hcl": `
listen { inet = "127.0.0.1:10023" }
greylist { max_age = "60d" }
limits { max_connections = 5 }
`,
		// None of these may be read: each would be an error.
		".hidden.hcl":    "bogus",
		"#20-local.hcl#": "bogus",
		"20-local.hcl~":  "bogus",
		".#20-local.hcl": "bogus",
		"20-local.swp":   "bogus",
		"notes.txt":      "bogus",
		"sub.hcl":        "<dir>",
	})
	cfg := mustLoad(t, dir)

	wantFiles := []string{dir + "/10-main.hcl", dir + "/20-local.hcl"}
	if !reflect.DeepEqual(cfg.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", cfg.Files, wantFiles)
	}
	want := Default(dir)
	want.Listen = []Listen{
		{Unix: "/run/greyd.sock", SocketMode: 0o660},
		{Inet: "127.0.0.1:10023", SocketMode: 0o660, Allow: LoopbackNets},
	}
	want.Greylist.Delay = 10 * time.Minute
	want.Greylist.MaxAge = 60 * 24 * time.Hour
	want.Limits.MaxConnections = 5
	checkConfig(t, cfg, want)
}

func TestWhitelistPaths(t *testing.T) {
	// A development config in a checkout finds its neighbouring whitelists.
	dir := writeFiles(t, map[string]string{"dev.hcl": ""})
	cfg := mustLoad(t, filepath.Join(dir, "dev.hcl"))
	want := []string{dir + "/whitelist_clients", dir + "/whitelist_clients.local"}
	if !reflect.DeepEqual(cfg.Whitelist.Clients, want) {
		t.Errorf("clients = %q, want %q", cfg.Whitelist.Clients, want)
	}

	// A relative config path still yields absolute paths.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	cfg = mustLoad(t, "dev.hcl")
	t.Chdir(wd)
	if cfg.Dir != dir || cfg.Files[0] != dir+"/dev.hcl" || cfg.Whitelist.Recipients[0] != dir+"/whitelist_recipients" {
		t.Errorf("relative load: Dir %q, Files %q, recipients %q", cfg.Dir, cfg.Files, cfg.Whitelist.Recipients)
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		path  string   // relative to the temp dir; "" = the dir itself
		want  []string // Problem.Error(), with DIR for the temp dir
	}{
		{
			name:  "syntax error, unclosed brace",
			files: map[string]string{"a.hcl": "greylist {\n  delay = \"5m\"\n"},
			want: []string{`DIR/a.hcl:1:10: Unclosed configuration block: There is no closing brace for this block before the end of the file. ` +
				`This may be caused by incorrect brace nesting elsewhere in this file.`},
		},
		{
			name: "syntax errors in two files are all reported",
			files: map[string]string{
				"a.hcl": "greylist {\n  delay = \n}\n",
				"b.hcl": "limits {\n  max_attributes = 5 5\n}\n",
			},
			want: []string{
				`DIR/a.hcl:2:11: Invalid expression: Expected the start of an expression, but found an invalid expression token.`,
				`DIR/b.hcl:2:22: Missing newline after argument: An argument definition must end with a newline.`,
			},
		},
		{
			name:  "unknown key with suggestion",
			files: map[string]string{"a.hcl": "greylist {\n  dealy = \"5m\"\n}\n"},
			want:  []string{`DIR/a.hcl:2:3: Unsupported argument: An argument named "dealy" is not expected here. Did you mean "delay"?`},
		},
		{
			name:  "unknown block",
			files: map[string]string{"a.hcl": "\ngreylst {\n}\n"},
			want:  []string{`DIR/a.hcl:2:1: Unsupported block type: Blocks of type "greylst" are not expected here. Did you mean "greylist"?`},
		},
		{
			name:  "top-level setting instead of block",
			files: map[string]string{"a.hcl": `delay = "5m"` + "\n"},
			want:  []string{`DIR/a.hcl:1:1: Unsupported argument: An argument named "delay" is not expected here.`},
		},
		{
			name:  "block given as attribute",
			files: map[string]string{"a.hcl": `greylist = {}` + "\n"},
			want:  []string{`DIR/a.hcl:1:1: Unsupported argument: An argument named "greylist" is not expected here. Did you mean to define a block of type "greylist"?`},
		},
		{
			name:  "block with a label",
			files: map[string]string{"a.hcl": `listen "x" { inet = "10023" }` + "\n"},
			want:  []string{`DIR/a.hcl:1:8: Extraneous label for listen: No labels are expected for listen blocks.`},
		},
		{
			name:  "wrong type",
			files: map[string]string{"a.hcl": "greylist {\n  ipv4_prefix = \"x\"\n}\n"},
			want:  []string{`DIR/a.hcl:2:18: Unsuitable value type: ipv4_prefix: a number is required`},
		},
		{
			name:  "wrong type, list",
			files: map[string]string{"a.hcl": "whitelist {\n  clients = \"/etc/x\"\n}\n"},
			want:  []string{`DIR/a.hcl:2:14: Unsuitable value type: clients: list of string required, but have string`},
		},
		{
			name:  "wrong type in a listen block is reported once",
			files: map[string]string{"a.hcl": "listen {\n  inet = [\"x\"]\n}\n"},
			want:  []string{`DIR/a.hcl:2:10: Unsuitable value type: inet: string required, but have tuple`},
		},
		{
			name:  "no variables or functions",
			files: map[string]string{"a.hcl": "greylist {\n  action = upper(\"x\")\n  text = \"${x}\"\n}\n"},
			want: []string{
				`DIR/a.hcl:2:12: Function calls not allowed: Functions may not be called here.`,
				`DIR/a.hcl:3:13: Variables not allowed: Variables may not be used here.`,
			},
		},
		{
			name:  "null",
			files: map[string]string{"a.hcl": "greylist {\n  hostname = null\n}\n"},
			want:  []string{`DIR/a.hcl:2:14: Unsuitable value type: hostname: null value is not allowed`},
		},
		{
			name:  "bad duration",
			files: map[string]string{"a.hcl": "greylist {\n  max_age = \"35x\"\n}\n"},
			want:  []string{`DIR/a.hcl:2:13: Invalid duration: max_age: "35x": unknown unit "x"; use ms, s, m, h, d or w`},
		},
		{
			name:  "bare number duration",
			files: map[string]string{"a.hcl": "greylist {\n  delay = 300\n}\n"},
			want: []string{`DIR/a.hcl:2:11: Invalid duration: delay = "300" has no unit; did you mean "300s"? ` +
				`(Postgrey's --delay counted seconds) Units are ms, s, m, h, d and w.`},
		},
		{
			name:  "bare number retry_window suggests days",
			files: map[string]string{"a.hcl": "greylist {\n  retry_window = \"2\"\n}\n"},
			want: []string{`DIR/a.hcl:2:18: Invalid duration: retry_window = "2" has no unit; did you mean "2d"? ` +
				`(Postgrey's --retry-window counted days) Units are ms, s, m, h, d and w.`},
		},
		{
			name:  "negative duration",
			files: map[string]string{"a.hcl": "limits {\n  idle_timeout = \"-5m\"\n}\n"},
			want:  []string{`DIR/a.hcl:2:18: Invalid duration: idle_timeout: "-5m": negative durations are not allowed`},
		},
		{
			name:  "zero where positive is needed",
			files: map[string]string{"a.hcl": "greylist {\n  max_age = \"0d\"\n}\nlimits {\n  store_timeout = \"0s\"\n}\n"},
			want: []string{
				`DIR/a.hcl:2:13: Invalid duration: max_age must be at least 1s, got "0d"`,
				`DIR/a.hcl:5:19: Invalid duration: store_timeout must be at least 1ms, got "0s"`,
			},
		},
		{
			name:  "out-of-range prefixes",
			files: map[string]string{"a.hcl": "greylist {\n  ipv4_prefix = 33\n  ipv6_prefix = -1\n}\n"},
			want: []string{
				`DIR/a.hcl:2:17: Value out of range: ipv4_prefix must be between 0 and 32, got 33`,
				`DIR/a.hcl:3:17: Value out of range: ipv6_prefix must be between 0 and 128, got -1`,
			},
		},
		{
			name:  "bad sync",
			files: map[string]string{"a.hcl": "database {\n  sync = \"sometimes\"\n}\n"},
			want:  []string{`DIR/a.hcl:2:10: Invalid value: sync must be "never", "everysecond" or "always", got "sometimes"`},
		},
		{
			name:  "bad lookup_by",
			files: map[string]string{"a.hcl": "greylist {\n  lookup_by = \"network\"\n}\n"},
			want:  []string{`DIR/a.hcl:2:15: Invalid value: lookup_by must be "subnet", "host" or "auto", got "network"`},
		},
		{
			name: "negative counts and limits",
			files: map[string]string{"a.hcl": "auto_whitelist {\n  clients = -1\n}\n" +
				"limits {\n  max_line_length = 0\n  max_attributes = 0\n  max_connections = -3\n}\n"},
			want: []string{
				`DIR/a.hcl:2:13: Value out of range: auto_whitelist.clients must be at least 0, got -1`,
				`DIR/a.hcl:5:21: Value out of range: max_line_length must be at least 1, got 0`,
				`DIR/a.hcl:6:20: Value out of range: max_attributes must be at least 1, got 0`,
				`DIR/a.hcl:7:21: Value out of range: max_connections must be at least 1, got -3`,
			},
		},
		{
			name: "reply texts",
			files: map[string]string{"a.hcl": "greylist {\n  action = \" \"\n  text = \"a\\nb\"\n" +
				"  header_text = \"no colon\"\n  hostname = \"mx 1\"\n}\n"},
			want: []string{
				`DIR/a.hcl:2:12: Invalid value: action must not be empty; Postgrey's default is "DEFER_IF_PERMIT"`,
				`DIR/a.hcl:3:10: Invalid value: text must be a single line; remove the "\n"`,
				`DIR/a.hcl:4:17: Invalid value: header_text must start with a header name and a colon, like "X-Greylist: ...", got "no colon"`,
				`DIR/a.hcl:5:14: Invalid value: hostname must be one word without spaces or control characters, got "mx 1"`,
			},
		},
		{
			name:  "action with a control character",
			files: map[string]string{"a.hcl": "greylist {\n  action = \"DEFER\\u0000\"\n}\n"},
			want:  []string{`DIR/a.hcl:2:12: Invalid value: action must not contain control characters, got "DEFER\x00"`},
		},
		{
			name: "listen blocks",
			files: map[string]string{"a.hcl": `listen {}
listen { inet = "localhost" }
listen { inet = "127.0.0.1:99999" }
listen {
  unix        = "/run/x.sock"
  socket_mode = "0999"
}
listen {
  unix        = "/run/y.sock"
  socket_mode = "1777"
}
listen { unix = "/` + strings.Repeat("x", 120) + `" }
listen { inet = "::1:10023" }
`},
			want: []string{
				`DIR/a.hcl:1:1: Incomplete listen block: a listen block needs unix = "/path/to/socket" or inet = "host:port" (or both)`,
				`DIR/a.hcl:2:17: Invalid inet address: "localhost": want "host:port", like "127.0.0.1:10023" or "[::1]:10023", or a bare port like "10023"`,
				`DIR/a.hcl:3:17: Invalid inet address: "127.0.0.1:99999": the port must be a number from 1 to 65535`,
				`DIR/a.hcl:6:17: Invalid socket_mode: "0999": want octal permission bits from "0000" to "0777", like "0660"`,
				`DIR/a.hcl:10:17: Invalid socket_mode: "1777": want octal permission bits from "0000" to "0777", like "0660"`,
				`DIR/a.hcl:12:17: Invalid unix socket path: "/` + strings.Repeat("x", 120) + `" is 121 bytes long, but a unix socket path can have at most 107; choose a shorter path`,
				`DIR/a.hcl:13:17: Invalid inet address: "::1:10023": want "host:port", like "127.0.0.1:10023" or "[::1]:10023", or a bare port like "10023"`,
			},
		},
		{
			name: "duplicate listen address across files",
			files: map[string]string{
				"a.hcl": "listen {\n  inet = \"10023\"\n}\n",
				"b.hcl": "listen {\n  inet = \"127.0.0.1:10023\"\n}\n",
			},
			want: []string{`DIR/b.hcl:2:10: Duplicate listen address: inet 127.0.0.1:10023 is already listed at DIR/a.hcl:2:10; ` +
				`listen_reset = true in this file drops the listen blocks of the files before it`},
		},
		{
			name:  "duplicate setting in one file",
			files: map[string]string{"a.hcl": "limits {\n  store_timeout = \"1s\"\n}\nlimits {\n  store_timeout = \"2s\"\n}\n"},
			want:  []string{`DIR/a.hcl:5:3: Duplicate argument: Argument "store_timeout" was already set at DIR/a.hcl:2:3; a setting may be given only once in a file (a later file may override it)`},
		},
		{
			name: "all problems are collected",
			files: map[string]string{
				"a.hcl": "greylist {\n  delay = \"5\"\n  dealy = \"5m\"\n}\n",
				"b.hcl": "database {\n  sync = \"no\"\n}\nwhitelist {\n  clients = [\"\"]\n}\n",
			},
			want: []string{
				`DIR/a.hcl:2:11: Invalid duration: delay = "5" has no unit; did you mean "5s"? (Postgrey's --delay counted seconds) Units are ms, s, m, h, d and w.`,
				`DIR/a.hcl:3:3: Unsupported argument: An argument named "dealy" is not expected here.`,
				`DIR/b.hcl:2:10: Invalid value: sync must be "never", "everysecond" or "always", got "no"`,
				`DIR/b.hcl:5:13: Invalid value: whitelist.clients must not be empty`,
			},
		},
		{
			name:  "empty directory",
			files: map[string]string{"README": "not config", ".x.hcl": "", "sub.hcl": "<dir>"},
			want:  []string{`DIR: No configuration files: the directory has no *.hcl file; greyd reads every *.hcl file of a configuration directory and of its conf.d subdirectory`},
		},
		{
			name:  "missing path",
			files: map[string]string{},
			path:  "nope.hcl",
			want:  []string{`DIR/nope.hcl: Cannot read configuration: no such file or directory`},
		},
		{
			name:  "unreadable file",
			files: map[string]string{"a.hcl": "<symlink>", "b.hcl": "greylist {\n"},
			want: []string{
				`DIR/a.hcl: Cannot read file: no such file or directory`,
				`DIR/b.hcl:1:10: Unclosed configuration block: There is no closing brace for this block before the end of the file. ` +
					`This may be caused by incorrect brace nesting elsewhere in this file.`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			cfg, ps := Load(filepath.Join(dir, tc.path))
			var got []string
			for _, p := range ps {
				got = append(got, strings.ReplaceAll(p.Error(), dir, "DIR"))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("files:\n%s\ngot problems:\n  %s\nwant:\n  %s",
					dumpFiles(tc.files), strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if ps.Err() == nil {
				t.Errorf("Err() = nil with %d problems", len(ps))
			}
			if cfg == nil {
				t.Errorf("Load returned a nil Config")
			}
		})
	}
}

func dumpFiles(files map[string]string) string {
	var b strings.Builder
	for name, content := range files {
		b.WriteString("--- " + name + "\n" + content + "\n")
	}
	return b.String()
}

func TestRoundTrip(t *testing.T) {
	tests := []string{
		"",
		allSettings,
		`greylist {
  text        = "Try again: $${x} %%{y} \"quoted\" back\\slash \u00e9"
  header_text = "X-Greylist: %t\tseconds"
  delay       = "1d1h1m1s"
}
whitelist {
  clients = []
}
`,
	}
	for i, src := range tests {
		dir := writeFiles(t, map[string]string{"greyd.hcl": src})
		cfg := mustLoad(t, dir)

		cfg2, out := readBack(t, cfg)
		if !reflect.DeepEqual(settings(cfg), settings(cfg2)) {
			t.Errorf("%d: round trip changed the config\nsource:\n%s\nwritten:\n%s\n got: %+v\nwant: %+v",
				i, src, out, settings(cfg2), settings(cfg))
		}

		// Writing is deterministic.
		var again bytes.Buffer
		cfg.WriteHCL(&again)
		if again.String() != out {
			t.Errorf("%d: second WriteHCL differs:\n%s\nvs\n%s", i, again.String(), out)
		}
	}
}

func TestSampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "etc", "greyd", "greyd.hcl")
	cfg := mustLoad(t, path)

	// The sample documents the defaults: only the listen block differs
	// (the whitelist paths are relative, so they follow the directory).
	want := Default(cfg.Dir)
	want.Listen = []Listen{{Unix: "/var/spool/postfix/greyd/socket", SocketMode: 0o660, SocketGroup: "postfix"}}
	checkConfig(t, cfg, want)
}

func TestProblemError(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.hcl", Line: 3, Col: 7, Summary: "S", Detail: "D"}, "a.hcl:3:7: S: D"},
		{Problem{File: "a.hcl", Line: 3, Summary: "S", Detail: "D"}, "a.hcl:3: S: D"},
		{Problem{File: "a.hcl", Summary: "S", Detail: "D"}, "a.hcl: S: D"},
		{Problem{Summary: "S", Detail: "D"}, "S: D"},
		{Problem{File: "a.hcl", Line: 1, Col: 1, Summary: "S"}, "a.hcl:1:1: S"},
	}
	for i, tc := range tests {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("%d: Error() = %q, want %q", i, got, tc.want)
		}
	}
	if err := Problems(nil).Err(); err != nil {
		t.Errorf("empty Problems.Err() = %v, want nil", err)
	}
	ps := Problems{tests[0].p, tests[3].p}
	if got, want := ps.Err().Error(), "a.hcl:3:7: S: D\nS: D"; got != want {
		t.Errorf("Problems.Err() = %q, want %q", got, want)
	}
}

func TestWriteProblems(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.hcl": "greylist {\n\tdealy = \"5m\"\n}\nfrobnicate {}\n"})
	cfg, ps := Load(dir)
	var b bytes.Buffer
	if err := WriteProblems(&b, ps, cfg); err != nil {
		t.Fatal(err)
	}
	want := `DIR/a.hcl:2:2: Unsupported argument: An argument named "dealy" is not expected here. Did you mean "delay"?
    2 | 	dealy = "5m"
      | 	^^^^^
DIR/a.hcl:4:1: Unsupported block type: Blocks of type "frobnicate" are not expected here.
    4 | frobnicate {}
      | ^^^^^^^^^^
`
	if got := strings.ReplaceAll(b.String(), dir, "DIR"); got != want {
		t.Errorf("WriteProblems:\n%s\nwant:\n%s", got, want)
	}

	// Without a Config, only the one-line form.
	b.Reset()
	WriteProblems(&b, ps, nil)
	if got := strings.Count(b.String(), "\n"); got != 2 {
		t.Errorf("WriteProblems(nil cfg) wrote %d lines, want 2:\n%s", got, b.String())
	}
}

// readBack writes cfg as check-config does and loads what it wrote: the
// configuration read back and the text.
func readBack(t *testing.T, cfg *Config) (*Config, string) {
	t.Helper()
	var out bytes.Buffer
	if err := cfg.WriteHCL(&out); err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, filepath.Join(writeFiles(t, map[string]string{"x.hcl": out.String()}), "x.hcl")), out.String()
}
