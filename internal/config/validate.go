package config

import (
	"greyd/internal/identity"

	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// maxUnixPath is the longest unix socket path Linux can bind (sun_path is
// 108 bytes including the terminating NUL).
const maxUnixPath = 107

// validator collects problems while converting raw values into a Config.
type validator struct {
	dir      string
	ps       Problems
	warnings Problems
}

// at returns rng, or nil for a value that was not in any file (a default).
func at(rng hcl.Range) *hcl.Range {
	if rng.Filename == "" {
		return nil
	}
	return &rng
}

func (v *validator) errorf(rng hcl.Range, summary, format string, args ...any) {
	v.ps = append(v.ps, problemAt(at(rng), summary, fmt.Sprintf(format, args...)))
}

func (v *validator) warnf(rng hcl.Range, summary, format string, args ...any) {
	v.warnings = append(v.warnings, problemAt(at(rng), summary, fmt.Sprintf(format, args...)))
}

// validate checks raw and stores the result in cfg.
func validate(raw rawConfig, cfg *Config) Problems {
	v := &validator{dir: cfg.Dir}

	seen := map[string]hcl.Range{}
	for _, rl := range raw.Listen {
		if l, ok := v.listen(rl, seen); ok {
			cfg.Listen = append(cfg.Listen, l)
		}
	}

	db := &cfg.Database
	db.Path = v.path("database.path", raw.Database.Path, raw.Database.PathRange)
	db.Sync = v.oneOf("sync", raw.Database.Sync, raw.Database.SyncRange, SyncNever, SyncEverySecond, SyncAlways)
	if rr := raw.Database.Redis; rr != nil {
		db.Redis = v.redis(rr)
	}

	rg, g := raw.Greylist, &cfg.Greylist
	g.Delay = v.seconds("delay", rg.Delay, rg.DelayRange, "s", "Postgrey's --delay counted seconds", 0)
	g.RetryWindow = v.seconds("retry_window", rg.RetryWindow, rg.RetryWindowRange, "d", "Postgrey's --retry-window counted days", 0)
	g.MaxAge = v.seconds("max_age", rg.MaxAge, rg.MaxAgeRange, "d", "Postgrey's --max-age counted days", time.Second)
	g.LookupBy = v.oneOf("lookup_by", rg.LookupBy, rg.LookupByRange, LookupBySubnet, LookupByHost, LookupByAuto)
	g.LookupByHost = g.LookupBy == LookupByHost
	g.PoolDomains = v.domains("pool_domains", rg.PoolDomains, rg.PoolDomainsRange, identity.CheckPoolDomain)
	g.DynamicDomains = v.domains("dynamic_domains", rg.DynamicDomains, rg.DynamicDomainsRange, identity.CheckDynamicDomain)
	g.IPv4Prefix = v.intRange("ipv4_prefix", rg.IPv4Prefix, rg.IPv4PrefixRange, 0, 32)
	g.IPv6Prefix = v.intRange("ipv6_prefix", rg.IPv6Prefix, rg.IPv6PrefixRange, 0, 128)
	g.Action = v.action(rg.Action, rg.ActionRange)
	g.Text = v.line("text", rg.Text, rg.TextRange)
	g.XGreylistHeader = rg.XGreylistHeader
	g.HeaderText = v.header(rg.HeaderText, rg.HeaderTextRange)
	g.Hostname = v.hostname(rg.Hostname, rg.HostnameRange)
	g.Privacy = rg.Privacy
	g.OnStoreError = v.oneOf("on_store_error", rg.OnStoreError, rg.OnStoreErrorRange, OnStoreErrorDunno, OnStoreErrorDefer)
	g.StoreErrorText = v.line("store_error_text", rg.StoreErrorText, rg.StoreErrorTextRange)
	g.DryRun = rg.DryRun
	g.PolicyTestTime = rg.PolicyTestTime

	aw := raw.AutoWhitelist
	cfg.AutoWhitelist.Clients = v.intRange("auto_whitelist.clients", aw.Clients, aw.ClientsRange, 0, 1<<31-1)

	wl := raw.Whitelist
	cfg.Whitelist.Clients = v.paths("whitelist.clients", wl.Clients, wl.ClientsRange)
	cfg.Whitelist.Recipients = v.paths("whitelist.recipients", wl.Recipients, wl.RecipientsRange)

	rl, l := raw.Limits, &cfg.Limits
	l.MaxLineLength = v.intRange("max_line_length", rl.MaxLineLength, rl.MaxLineLengthRange, 1, 1<<31-1)
	l.MaxAttributes = v.intRange("max_attributes", rl.MaxAttributes, rl.MaxAttributesRange, 1, 1<<31-1)
	l.MaxRequestSize = v.intRange("max_request_size", rl.MaxRequestSize, rl.MaxRequestSizeRange, 1024, 1<<31-1)
	l.MaxConnections = v.intRange("max_connections", rl.MaxConnections, rl.MaxConnectionsRange, 1, 1<<31-1)
	l.RequestTimeout = v.duration("request_timeout", rl.RequestTimeout, rl.RequestTimeoutRange, "s", "", time.Second)
	l.IdleTimeout = v.duration("idle_timeout", rl.IdleTimeout, rl.IdleTimeoutRange, "s", "", time.Second)
	l.StoreTimeout = v.duration("store_timeout", rl.StoreTimeout, rl.StoreTimeoutRange, "s", "", time.Millisecond)
	if l.StoreTimeout >= MaxStoreTimeout {
		v.errorf(rl.StoreTimeoutRange, "Invalid duration",
			"store_timeout must be shorter than Postfix's smtpd_policy_service_timeout (%ds by default), or Postfix gives up first and defers the mail itself; got %q",
			int(MaxStoreTimeout/time.Second), rl.StoreTimeout)
	}

	if s := raw.Control.Socket; s != "" {
		cfg.Control.Socket = v.unixPath("control.socket", s, raw.Control.SocketRange)
	} else {
		cfg.Control.Socket = ""
	}
	if rm := raw.Metrics; rm != nil {
		addr, err := parseInet(rm.Listen)
		if err != nil {
			v.errorf(rm.ListenRange, "Invalid metrics listen address", "%s", err)
		}
		cfg.Metrics = &Metrics{Listen: addr}
	}
	if rt := raw.Trap; rt != nil {
		cfg.Trap = v.trap(rt)
	}
	if rt := raw.Tarpit; rt != nil {
		cfg.Tarpit = v.tarpit(rt, cfg.Greylist.RetryWindow)
	}
	cfg.Log.Decisions = v.oneOf("decisions", raw.Log.Decisions, raw.Log.DecisionsRange, DecisionsAll, DecisionsGreylist, DecisionsNone)
	if raw.P0f != nil {
		cfg.P0f = v.p0f(raw.P0f)
	}
	v.validateSelective(raw, cfg)

	cfg.Warnings = append(cfg.Warnings, v.warnings...)
	return v.ps
}

// redis checks a redis block: the URL, and the password file, which must
// exist; one that others may read is a warning.
func (v *validator) redis(rr *rawRedis) *Redis {
	if rr.URL == "" {
		if given(rr.URLRange) {
			v.errorf(rr.URLRange, "Invalid redis url", `url must not be empty; want redis://host:port/db, rediss://host:port/db or unix:///path/to/redis.sock`)
		} else {
			v.errorf(rr.DefRange, "Incomplete redis block", `a redis block needs url = "redis://host:port/db" (or rediss://, or unix:///path/to/redis.sock)`)
		}
		return &Redis{KeyPrefix: rr.KeyPrefix}
	}
	r, err := parseRedisURL(rr.URL)
	if err != nil {
		v.errorf(rr.URLRange, "Invalid redis url", "%s", err)
	}
	r.KeyPrefix = rr.KeyPrefix
	if strings.ContainsFunc(rr.KeyPrefix, isSpaceOrControl) || strings.ContainsAny(rr.KeyPrefix, "{}") || !utf8.ValidString(rr.KeyPrefix) {
		v.errorf(rr.KeyPrefixRange, "Invalid value",
			`key_prefix must not contain spaces, control characters or braces (greyd uses {...} for Redis Cluster hash tags), got %q`, rr.KeyPrefix)
	}
	if rr.PasswordFile != "" {
		r.PasswordFile = v.path("password_file", rr.PasswordFile, rr.PasswordFileRange)
		if fi, err := os.Stat(r.PasswordFile); err != nil {
			v.errorf(rr.PasswordFileRange, "Cannot read password_file", "%s: %s", r.PasswordFile, pathErr(err))
		} else if fi.IsDir() {
			v.errorf(rr.PasswordFileRange, "Cannot read password_file", "%s is a directory; name the file holding the Redis password", r.PasswordFile)
		} else if w := r.CheckPasswordFile(); w != "" {
			v.warnf(rr.PasswordFileRange, "Password file readable by others", "%s", w)
		}
	}
	return &r
}

// domains checks pool_domains and dynamic_domains: domain names of at
// least two labels, stored in lower case without leading or trailing dots
// (".example.com" and "example.com." mean example.com).
func (v *validator) domains(name string, ds []string, rng hcl.Range, check func(string) error) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		n := strings.TrimSuffix(strings.TrimLeft(strings.ToLower(d), "."), ".")
		if err := checkDomain(n); err != "" {
			v.errorf(rng, "Invalid domain", "%s: %q %s", name, d, err)
			continue
		}
		if err := check(n); err != nil {
			v.errorf(rng, "Invalid domain", "%s: %q %v", name, d, err)
			continue
		}
		out = append(out, n)
	}
	return out
}

// checkDomain says what is wrong with a lower-case domain name, or "".
func checkDomain(d string) string {
	if len(d) > 253 {
		return "is longer than 253 characters"
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return `needs at least two labels, like "example.com"`
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "has an empty label or one longer than 63 characters"
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "has a label that starts or ends with a hyphen"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "is not a domain name: labels are letters, digits and hyphens (write IDNs as xn--)"
			}
		}
	}
	return ""
}

func (v *validator) listen(rl rawListen, seen map[string]hcl.Range) (Listen, bool) {
	n := len(v.ps)
	l := Listen{SocketGroup: rl.SocketGroup, Exim: rl.Exim}
	if rl.Unix == "" && rl.Inet == "" && !rl.decodeFailed {
		v.errorf(rl.DefRange, "Incomplete listen block",
			`a listen block needs unix = "/path/to/socket" or inet = "host:port" (or both)`)
	}
	if rl.Unix != "" {
		l.Unix = v.unixPath("unix", rl.Unix, rl.UnixRange)
	}
	if rl.Inet != "" {
		addr, err := parseInet(rl.Inet)
		if err != nil {
			v.errorf(rl.InetRange, "Invalid inet address", "%s", err)
		}
		l.Inet = addr
		if err == nil {
			l.Allow = v.allow(rl, addr)
		}
	} else if rl.Allow != nil {
		v.errorf(rl.AllowRange, "Invalid allow", "allow only applies to inet; remove it from a listen block without inet (a unix socket is guarded by socket_mode and socket_group)")
	}
	if !given(rl.SocketModeRange) {
		rl.SocketMode = formatMode(DefaultSocketMode)
	}
	mode, err := parseMode(rl.SocketMode)
	if err != nil {
		v.errorf(rl.SocketModeRange, "Invalid socket_mode", "%s", err)
	}
	l.SocketMode = mode
	if strings.ContainsFunc(rl.SocketGroup, isSpaceOrControl) {
		v.errorf(rl.SocketGroupRange, "Invalid socket_group", "%q: a group name or number cannot contain spaces or control characters", rl.SocketGroup)
	}
	for _, k := range []struct {
		key string
		rng hcl.Range
	}{{"unix " + l.Unix, rl.UnixRange}, {"inet " + l.Inet, rl.InetRange}} {
		if k.key == "unix " || k.key == "inet " {
			continue
		}
		if prev, dup := seen[k.key]; dup {
			hint := ""
			if prev.Filename != k.rng.Filename {
				hint = "; listen_reset = true in this file drops the listen blocks of the files before it"
			}
			v.errorf(k.rng, "Duplicate listen address", "%s is already listed at %s%s", k.key, posString(prev), hint)
			continue
		}
		seen[k.key] = k.rng
	}
	return l, len(v.ps) == n
}

// posString formats a range as file:line:col, like Problem.Error.
func posString(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// allow returns the client networks of an inet listener: the allow list,
// or loopback for a loopback address. Any other address needs the list:
// greylisting state and decisions are not for the whole network to probe.
func (v *validator) allow(rl rawListen, addr string) []netip.Prefix {
	if rl.Allow == nil {
		if isLoopback(addr) {
			return slices.Clone(LoopbackNets)
		}
		v.errorf(rl.InetRange, "Listening beyond this host",
			`inet = %q accepts connections from other hosts: add allow = ["192.0.2.0/24", "2001:db8::25"] listing the client networks that may connect (your Postfix servers), or listen on 127.0.0.1`, rl.Inet)
		return nil
	}
	if len(*rl.Allow) == 0 {
		v.errorf(rl.AllowRange, "Invalid allow", `allow = [] lets no client connect; list the client networks, like ["192.0.2.0/24", "2001:db8::25"]`)
		return nil
	}
	nets := make([]netip.Prefix, 0, len(*rl.Allow))
	for _, s := range *rl.Allow {
		p, err := ParseNet(s)
		if err != nil {
			v.errorf(rl.AllowRange, "Invalid allow entry", "%s", err)
			continue
		}
		nets = append(nets, p)
	}
	return nets
}

// isLoopback reports whether a "host:port" from parseInet binds loopback
// only. Host names other than localhost are resolved when binding and
// could be anything.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// ParseNet parses an allow entry: an address ("192.0.2.25", "::1") or a
// network in CIDR notation ("192.0.2.0/24", "2001:db8::/32") without host
// bits. IPv4-mapped IPv6 entries are stored as IPv4, as client addresses
// are compared unmapped.
func ParseNet(s string) (netip.Prefix, error) {
	if strings.ContainsRune(s, '/') {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf(`%q is not a network like "192.0.2.0/24" or "2001:db8::/32"`, s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf(`%q has bits set after the /%d; did you mean %q?`, s, p.Bits(), m.String())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf(`%q is not an IP address or a network like "192.0.2.0/24"`, s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// formatNet writes a network as ParseNet reads it: a lone address without
// its /32 or /128.
func formatNet(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// parseInet accepts "host:port", "[v6]:port", ":port" (all addresses) and
// a bare port, which means 127.0.0.1:port (Postgrey's --inet=PORT meant
// localhost). Hosts are not resolved here.
func parseInet(s string) (string, error) {
	host, port := "127.0.0.1", s
	if !isDigits(s) {
		var err error
		host, port, err = net.SplitHostPort(s)
		if err != nil {
			return "", fmt.Errorf(`%q: want "host:port", like "127.0.0.1:10023" or "[::1]:10023", or a bare port like "10023"`, s)
		}
		if strings.ContainsFunc(host, isSpaceOrControl) || strings.ContainsAny(host, "/[]") {
			return "", fmt.Errorf("%q: invalid host %q", s, host)
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || !isDigits(port) {
		return "", fmt.Errorf("%q: the port must be a number from 1 to 65535", s)
	}
	return net.JoinHostPort(host, strconv.FormatUint(n, 10)), nil
}

// parseMode parses an octal permission like "0660" or "660".
func parseMode(s string) (os.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 || s == "" || s[0] == '+' {
		return 0, fmt.Errorf(`%q: want octal permission bits from "0000" to "0777", like "0660"`, s)
	}
	return os.FileMode(n), nil
}

func formatMode(m os.FileMode) string { return fmt.Sprintf("%04o", uint32(m.Perm())) }

func (v *validator) duration(name, s string, rng hcl.Range, unit, why string, atLeast time.Duration) time.Duration {
	d, err := ParseDuration(s)
	switch {
	case err != nil && isDigits(s):
		if why != "" {
			why = " (" + why + ")"
		}
		v.errorf(rng, "Invalid duration", `%s = %q has no unit; did you mean "%s%s"?%s Units are ms, s, m, h, d and w.`, name, s, s, unit, why)
		return 0
	case err != nil:
		v.errorf(rng, "Invalid duration", "%s: %s", name, err)
		return 0
	case d < atLeast:
		v.errorf(rng, "Invalid duration", "%s must be at least %s, got %q", name, FormatDuration(atLeast), s)
	}
	return d
}

// seconds is duration for the greylisting times, which Postfix's policy
// protocol and the store count in whole seconds.
func (v *validator) seconds(name, s string, rng hcl.Range, unit, why string, atLeast time.Duration) time.Duration {
	n := len(v.ps)
	d := v.duration(name, s, rng, unit, why, atLeast)
	if len(v.ps) == n && d%time.Second != 0 {
		v.errorf(rng, "Invalid duration", "%s must be whole seconds, got %q", name, s)
	}
	return d
}

func (v *validator) oneOf(name, s string, rng hcl.Range, allowed ...string) string {
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	list := strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
	v.errorf(rng, "Invalid value", "%s must be %s, got %q", name, list, s)
	return allowed[0]
}

func (v *validator) intRange(name string, n int, rng hcl.Range, lo, hi int) int {
	if n < lo || n > hi {
		if hi == 1<<31-1 {
			v.errorf(rng, "Value out of range", "%s must be at least %d, got %d", name, lo, n)
		} else {
			v.errorf(rng, "Value out of range", "%s must be between %d and %d, got %d", name, lo, hi, n)
		}
	}
	return n
}

// line checks a string that ends up inside one policy reply or header line.
func (v *validator) line(name, s string, rng hcl.Range) string {
	switch {
	case !utf8.ValidString(s):
		v.errorf(rng, "Invalid value", "%s is not valid UTF-8", name)
	case strings.ContainsAny(s, "\r\n"):
		v.errorf(rng, "Invalid value", `%s must be a single line; remove the "\n"`, name)
	case strings.ContainsFunc(s, isControl):
		v.errorf(rng, "Invalid value", "%s must not contain control characters, got %q", name, s)
	}
	return s
}

func (v *validator) action(s string, rng hcl.Range) string {
	n := len(v.ps)
	v.line("action", s, rng)
	if len(v.ps) == n {
		switch {
		case strings.TrimSpace(s) == "":
			v.errorf(rng, "Invalid value", `action must not be empty; Postgrey's default is "DEFER_IF_PERMIT"`)
		case strings.ContainsRune(s, '\t'):
			v.errorf(rng, "Invalid value", "action must not contain tabs, got %q", s)
		}
	}
	return s
}

// header checks header_text, which Postfix PREPENDs as a header line.
func (v *validator) header(s string, rng hcl.Range) string {
	n := len(v.ps)
	v.line("header_text", s, rng)
	if len(v.ps) == n {
		name, _, ok := strings.Cut(s, ":")
		if !ok || name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			v.errorf(rng, "Invalid value", `header_text must start with a header name and a colon, like "X-Greylist: ...", got %q`, s)
		}
	}
	return s
}

func (v *validator) hostname(s string, rng hcl.Range) string {
	if strings.ContainsFunc(s, isSpaceOrControl) || !utf8.ValidString(s) {
		v.errorf(rng, "Invalid value", "hostname must be one word without spaces or control characters, got %q", s)
	}
	return s
}

// path resolves p against the config directory.
func (v *validator) path(name, p string, rng hcl.Range) string {
	switch {
	case p == "":
		v.errorf(rng, "Invalid value", "%s must not be empty", name)
		return ""
	case strings.ContainsRune(p, 0):
		v.errorf(rng, "Invalid value", "%s contains a NUL byte: %q", name, p)
		return p
	case filepath.IsAbs(p):
		return filepath.Clean(p)
	}
	return filepath.Join(v.dir, p)
}

// unixPath is path for a unix socket, whose path Linux limits.
func (v *validator) unixPath(name, p string, rng hcl.Range) string {
	p = v.path(name, p, rng)
	if len(p) > maxUnixPath {
		v.errorf(rng, "Invalid unix socket path",
			"%q is %d bytes long, but a unix socket path can have at most %d; choose a shorter path",
			p, len(p), maxUnixPath)
	}
	return p
}

func (v *validator) paths(name string, ps []string, rng hcl.Range) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, v.path(name, p, rng))
	}
	return out
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }
