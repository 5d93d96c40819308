package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// ConfDir is the subdirectory of a configuration directory whose *.hcl
// files are read after the directory's own: local changes that package
// upgrades never touch.
const ConfDir = "conf.d"

// Load reads the configuration at path: one file (any name), or a
// directory whose *.hcl files, then whose conf.d/*.hcl files, are read in
// lexical order. Each file is decoded on its own and overrides what the
// files before it set, setting by setting; settings no file gives keep
// their defaults. Relative paths are resolved against the config
// directory (path itself, or the directory holding the file).
//
// Load always returns a Config, but when Problems is non-empty that Config
// is incomplete and only good for WriteProblems. Syntax errors stop Load
// before decoding (later errors would be noise); otherwise every problem
// is reported, not just the first.
func Load(path string) (*Config, Problems) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Default(filepath.Dir(path)), Problems{{File: path, Summary: "Cannot read configuration", Detail: pathErr(err)}}
	}

	dir, names := filepath.Dir(path), []string{path}
	if fi.IsDir() {
		dir = path
		var p *Problem
		if names, p = dirFiles(dir); p != nil {
			return Default(dir), Problems{*p}
		}
		if len(names) == 0 {
			return Default(dir), Problems{{File: dir, Summary: "No configuration files",
				Detail: "the directory has no *.hcl file; greyd reads every *.hcl file of a configuration directory and of its conf.d subdirectory"}}
		}
	}

	cfg := Default(dir)
	cfg.Files = names
	cfg.sources = make(map[string][]byte, len(names))

	var ps Problems
	files := make([]*hcl.File, 0, len(names))
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			ps = append(ps, Problem{File: name, Summary: "Cannot read file", Detail: pathErr(err)})
			continue
		}
		cfg.sources[name] = src
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		ps = append(ps, fromDiags(diags)...)
		files = append(files, f)
	}
	if len(ps) > 0 {
		sortProblems(ps, names)
		return cfg, ps
	}

	raw := toRaw(cfg)
	var diags hcl.Diagnostics
	for _, f := range files {
		layer, ds := decodeFile(f.Body)
		for _, d := range ds {
			if d.Summary == "Duplicate argument" {
				d.Detail += "; a setting may be given only once in a file (a later file may override it)"
			}
		}
		diags = append(diags, ds...)
		raw.merge(layer, errorSpots(ds))
	}
	raw.complete()
	ps = append(fromDiags(diags), validate(raw, cfg)...)
	cfg.origins = raw.origins()
	sortProblems(ps, names)
	sortProblems(cfg.Warnings, names)
	return cfg, ps
}

// hclRangeRE matches the end of hcl.Range.String() ("file:3,5-10",
// "file:3,5-4,2") in HCL's messages, to rewrite it as file:line:col like
// every other position greyd prints.
var hclRangeRE = regexp.MustCompile(`:(\d+),(\d+)-\d+(?:,\d+)?`)

// dirFiles lists the configuration files of a directory in reading order:
// its *.hcl files, then those of its conf.d subdirectory, which may be
// missing.
func dirFiles(dir string) ([]string, *Problem) {
	names, err := hclFiles(dir)
	if err != nil {
		return nil, &Problem{File: dir, Summary: "Cannot read configuration directory", Detail: pathErr(err)}
	}
	confd := filepath.Join(dir, ConfDir)
	more, err := hclFiles(confd)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, &Problem{File: confd, Summary: "Cannot read configuration directory", Detail: pathErr(err)}
	}
	return append(names, more...), nil
}

// hclFiles lists the *.hcl files of dir in lexical order, skipping
// dotfiles, editor droppings and directories.
func hclFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".hcl") || isTemporary(n) || e.IsDir() {
			continue
		}
		names = append(names, filepath.Join(dir, n))
	}
	return names, nil
}

// isTemporary reports hidden files and the droppings of editors (Emacs
// backups and lock files, vim swap files), like Nomad and Vault do.
func isTemporary(name string) bool {
	return strings.HasPrefix(name, ".") ||
		strings.HasSuffix(name, "~") ||
		strings.HasSuffix(name, ".swp") ||
		(strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"))
}

// pathErr drops the path and operation from an *fs.PathError: the Problem
// already names the file.
func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// The raw* structs mirror the HCL schema. Durations and modes are strings
// (gohcl ignores TextUnmarshaler). Every setting X has a range XRange,
// which tells where its value was given: decodeFile fills both only for
// the settings a file has, so a non-empty range means "given" (merge
// relies on it), and after the merge it is the value's origin (validate
// points at it, check-config prints it). Defaults have an empty range.

type rawConfig struct {
	ListenReset      bool      // drop the listen blocks of earlier files
	ListenResetRange hcl.Range // unused after the merge
	Listen           []rawListen
	Database         rawDatabase
	Greylist         rawGreylist
	AutoWhitelist    rawAutoWhitelist
	Whitelist        rawWhitelist
	Limits           rawLimits
	Control          rawControl
	Metrics          *rawMetrics // nil: no metrics block
	Log              rawLog

	Selective rawSelective
	Signals   rawSignals
	DNSBLs    []rawList
	DNSWLs    []rawList
	Policies  []rawPolicy
	DNS       rawDNS
	Trap      *rawTrap   // nil: no trap block
	P0f       *rawP0f    // nil: no p0f block (p0f.go)
	Tarpit    *rawTarpit // nil: no tarpit block
}

type rawListen struct {
	DefRange         hcl.Range
	decodeFailed     bool      // already reported; do not pile on
	Unix             string    `hcl:"unix,optional"`
	UnixRange        hcl.Range `hcl:"unix,attr_value_range"`
	Inet             string    `hcl:"inet,optional"`
	InetRange        hcl.Range `hcl:"inet,attr_value_range"`
	Allow            *[]string `hcl:"allow,optional"` // nil: not given
	AllowRange       hcl.Range `hcl:"allow,attr_value_range"`
	SocketMode       string    `hcl:"socket_mode,optional"`
	SocketModeRange  hcl.Range `hcl:"socket_mode,attr_value_range"`
	SocketGroup      string    `hcl:"socket_group,optional"`
	SocketGroupRange hcl.Range `hcl:"socket_group,attr_value_range"`
	Exim             bool      `hcl:"exim,optional"`
	EximRange        hcl.Range `hcl:"exim,attr_value_range"`
}

type rawDatabase struct {
	Path      string    `hcl:"path,optional"`
	PathRange hcl.Range `hcl:"path,attr_value_range"`
	Sync      string    `hcl:"sync,optional"`
	SyncRange hcl.Range `hcl:"sync,attr_value_range"`
	Redis     *rawRedis `hcl:"redis,block"` // nil: no redis block
}

type rawRedis struct {
	DefRange          hcl.Range `hcl:",def_range"`
	URL               string    `hcl:"url,optional"`
	URLRange          hcl.Range `hcl:"url,attr_value_range"`
	PasswordFile      string    `hcl:"password_file,optional"`
	PasswordFileRange hcl.Range `hcl:"password_file,attr_value_range"`
	KeyPrefix         string    `hcl:"key_prefix,optional"`
	KeyPrefixRange    hcl.Range `hcl:"key_prefix,attr_value_range"`
}

type rawGreylist struct {
	Delay                string    `hcl:"delay,optional"`
	DelayRange           hcl.Range `hcl:"delay,attr_value_range"`
	RetryWindow          string    `hcl:"retry_window,optional"`
	RetryWindowRange     hcl.Range `hcl:"retry_window,attr_value_range"`
	MaxAge               string    `hcl:"max_age,optional"`
	MaxAgeRange          hcl.Range `hcl:"max_age,attr_value_range"`
	LookupBy             string    `hcl:"lookup_by,optional"`
	LookupByRange        hcl.Range `hcl:"lookup_by,attr_value_range"`
	PoolDomains          []string  `hcl:"pool_domains,optional"`
	PoolDomainsRange     hcl.Range `hcl:"pool_domains,attr_value_range"`
	DynamicDomains       []string  `hcl:"dynamic_domains,optional"`
	DynamicDomainsRange  hcl.Range `hcl:"dynamic_domains,attr_value_range"`
	IPv4Prefix           int       `hcl:"ipv4_prefix,optional"`
	IPv4PrefixRange      hcl.Range `hcl:"ipv4_prefix,attr_value_range"`
	IPv6Prefix           int       `hcl:"ipv6_prefix,optional"`
	IPv6PrefixRange      hcl.Range `hcl:"ipv6_prefix,attr_value_range"`
	Action               string    `hcl:"action,optional"`
	ActionRange          hcl.Range `hcl:"action,attr_value_range"`
	Text                 string    `hcl:"text,optional"`
	TextRange            hcl.Range `hcl:"text,attr_value_range"`
	XGreylistHeader      bool      `hcl:"x_greylist_header,optional"`
	XGreylistHeaderRange hcl.Range `hcl:"x_greylist_header,attr_value_range"`
	HeaderText           string    `hcl:"header_text,optional"`
	HeaderTextRange      hcl.Range `hcl:"header_text,attr_value_range"`
	Hostname             string    `hcl:"hostname,optional"`
	HostnameRange        hcl.Range `hcl:"hostname,attr_value_range"`
	Privacy              bool      `hcl:"privacy,optional"`
	PrivacyRange         hcl.Range `hcl:"privacy,attr_value_range"`
	OnStoreError         string    `hcl:"on_store_error,optional"`
	OnStoreErrorRange    hcl.Range `hcl:"on_store_error,attr_value_range"`
	StoreErrorText       string    `hcl:"store_error_text,optional"`
	StoreErrorTextRange  hcl.Range `hcl:"store_error_text,attr_value_range"`
	DryRun               bool      `hcl:"dry_run,optional"`
	DryRunRange          hcl.Range `hcl:"dry_run,attr_value_range"`
	PolicyTestTime       bool      `hcl:"policy_test_time,optional"`
	PolicyTestTimeRange  hcl.Range `hcl:"policy_test_time,attr_value_range"`
}

type rawAutoWhitelist struct {
	Clients      int       `hcl:"clients,optional"`
	ClientsRange hcl.Range `hcl:"clients,attr_value_range"`
}

type rawWhitelist struct {
	Clients         []string  `hcl:"clients,optional"`
	ClientsRange    hcl.Range `hcl:"clients,attr_value_range"`
	Recipients      []string  `hcl:"recipients,optional"`
	RecipientsRange hcl.Range `hcl:"recipients,attr_value_range"`
}

type rawLimits struct {
	MaxLineLength       int       `hcl:"max_line_length,optional"`
	MaxLineLengthRange  hcl.Range `hcl:"max_line_length,attr_value_range"`
	MaxAttributes       int       `hcl:"max_attributes,optional"`
	MaxAttributesRange  hcl.Range `hcl:"max_attributes,attr_value_range"`
	MaxRequestSize      int       `hcl:"max_request_size,optional"`
	MaxRequestSizeRange hcl.Range `hcl:"max_request_size,attr_value_range"`
	MaxConnections      int       `hcl:"max_connections,optional"`
	MaxConnectionsRange hcl.Range `hcl:"max_connections,attr_value_range"`
	RequestTimeout      string    `hcl:"request_timeout,optional"`
	RequestTimeoutRange hcl.Range `hcl:"request_timeout,attr_value_range"`
	IdleTimeout         string    `hcl:"idle_timeout,optional"`
	IdleTimeoutRange    hcl.Range `hcl:"idle_timeout,attr_value_range"`
	StoreTimeout        string    `hcl:"store_timeout,optional"`
	StoreTimeoutRange   hcl.Range `hcl:"store_timeout,attr_value_range"`
}

type rawControl struct {
	Socket      string    `hcl:"socket,optional"`
	SocketRange hcl.Range `hcl:"socket,attr_value_range"`
}

type rawMetrics struct {
	DefRange    hcl.Range
	Listen      string    `hcl:"listen,optional"`
	ListenRange hcl.Range `hcl:"listen,attr_value_range"`
}

type rawLog struct {
	Decisions      string    `hcl:"decisions,optional"`
	DecisionsRange hcl.Range `hcl:"decisions,attr_value_range"`
}

// toRaw renders c as raw values without ranges: the defaults the files
// are merged onto.
func toRaw(c *Config) rawConfig {
	g, l := c.Greylist, c.Limits
	return rawConfig{
		Database: rawDatabase{Path: c.Database.Path, Sync: c.Database.Sync},
		Greylist: rawGreylist{
			Delay:           FormatDuration(g.Delay),
			RetryWindow:     FormatDuration(g.RetryWindow),
			MaxAge:          FormatDuration(g.MaxAge),
			LookupBy:        g.LookupBy,
			PoolDomains:     slices.Clone(g.PoolDomains),
			DynamicDomains:  slices.Clone(g.DynamicDomains),
			IPv4Prefix:      g.IPv4Prefix,
			IPv6Prefix:      g.IPv6Prefix,
			Action:          g.Action,
			Text:            g.Text,
			XGreylistHeader: g.XGreylistHeader,
			HeaderText:      g.HeaderText,
			Hostname:        g.Hostname,
			Privacy:         g.Privacy,
			OnStoreError:    g.OnStoreError,
			StoreErrorText:  g.StoreErrorText,
			DryRun:          g.DryRun,
			PolicyTestTime:  g.PolicyTestTime,
		},
		AutoWhitelist: rawAutoWhitelist{Clients: c.AutoWhitelist.Clients},
		Whitelist: rawWhitelist{
			Clients:    slices.Clone(c.Whitelist.Clients),
			Recipients: slices.Clone(c.Whitelist.Recipients),
		},
		Limits: rawLimits{
			MaxLineLength:  l.MaxLineLength,
			MaxAttributes:  l.MaxAttributes,
			MaxRequestSize: l.MaxRequestSize,
			MaxConnections: l.MaxConnections,
			RequestTimeout: FormatDuration(l.RequestTimeout),
			IdleTimeout:    FormatDuration(l.IdleTimeout),
			StoreTimeout:   FormatDuration(l.StoreTimeout),
		},
		Control:   rawControl{Socket: c.Control.Socket},
		Log:       rawLog{Decisions: c.Log.Decisions},
		Selective: rawSelective{Mode: c.Selective.Mode, GreylistAt: c.Selective.GreylistAt, Shadow: c.Selective.Shadow},
		DNS:       rawDNS{Servers: slices.Clone(c.DNS.Servers), Budget: FormatDuration(c.DNS.Budget)},
	}
}

var topSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "listen_reset"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "listen"},
		{Type: "database"},
		{Type: "greylist"},
		{Type: "auto_whitelist"},
		{Type: "whitelist"},
		{Type: "limits"},
		{Type: "control"},
		{Type: "metrics"},
		{Type: "log"},
		{Type: "selective"},
		{Type: "signals"},
		{Type: "dnsbl", LabelNames: []string{"zone"}},
		{Type: "dnswl", LabelNames: []string{"zone"}},
		{Type: "recipient_policy", LabelNames: []string{"name"}},
		{Type: "dns"},
		{Type: "trap"},
		{Type: "p0f"},
		{Type: "tarpit"},
	},
}

// decodeFile decodes the settings one file gives, and only those (see
// rawConfig). Each listen block is its own socket. The other blocks may
// appear more than once in a file: their bodies are merged, so that a
// setting given twice in one file is reported at both places.
func decodeFile(body hcl.Body) (rawConfig, hcl.Diagnostics) {
	var raw rawConfig
	content, diags := body.Content(topSchema)
	if a := content.Attributes["listen_reset"]; a != nil {
		raw.ListenResetRange = a.Expr.Range()
		diags = append(diags, nameTypeErrors(gohcl.DecodeExpression(a.Expr, nil, &raw.ListenReset), body)...)
	}
	bodies := map[string][]hcl.Body{}
	defs := map[string]hcl.Range{}
	labeled := map[string]hcl.Range{}
	for _, b := range content.Blocks {
		switch b.Type {
		case "dnsbl", "dnswl", "recipient_policy":
			diags = append(diags, raw.decodeLabeled(b, labeled)...)
			continue
		case "p0f":
			diags = append(diags, raw.decodeP0f(b)...)
			continue
		}
		if b.Type == "listen" {
			l := rawListen{DefRange: b.DefRange}
			ds := nameTypeErrors(gohcl.DecodeBody(b.Body, nil, &l), b.Body)
			l.decodeFailed = ds.HasErrors()
			diags = append(diags, ds...)
			raw.Listen = append(raw.Listen, l)
			continue
		}
		if _, ok := defs[b.Type]; !ok {
			defs[b.Type] = b.DefRange
		}
		bodies[b.Type] = append(bodies[b.Type], b.Body)
	}
	if _, ok := defs["metrics"]; ok {
		raw.Metrics = &rawMetrics{DefRange: defs["metrics"]}
	}
	if _, ok := defs["trap"]; ok {
		raw.Trap = &rawTrap{DefRange: defs["trap"]}
	}
	if _, ok := defs["tarpit"]; ok {
		raw.Tarpit = &rawTarpit{DefRange: defs["tarpit"]}
	}
	for _, blk := range []struct {
		typ string
		dst any
	}{
		{"database", &raw.Database},
		{"greylist", &raw.Greylist},
		{"auto_whitelist", &raw.AutoWhitelist},
		{"whitelist", &raw.Whitelist},
		{"limits", &raw.Limits},
		{"control", &raw.Control},
		{"metrics", raw.Metrics},
		{"log", &raw.Log},
		{"selective", &raw.Selective},
		{"signals", &raw.Signals},
		{"dns", &raw.DNS},
		{"trap", raw.Trap},
		{"tarpit", raw.Tarpit},
	} {
		if bs := bodies[blk.typ]; len(bs) > 0 {
			diags = append(diags, nameTypeErrors(gohcl.DecodeBody(hcl.MergeBodies(bs), nil, blk.dst), bs...)...)
		}
	}
	return raw, diags
}

// nameTypeErrors puts the setting's name into gohcl's "Unsuitable value
// type" errors, which only say what type was wanted.
// An unknown value only comes from a variable or function call, which HCL
// already reported, so that error is dropped.
func nameTypeErrors(diags hcl.Diagnostics, bodies ...hcl.Body) hcl.Diagnostics {
	out := diags[:0]
	for _, d := range diags {
		if d.Summary != "Unsuitable value type" || d.Subject == nil {
			out = append(out, d)
			continue
		}
		if d.Detail == "Unsuitable value: value must be known" {
			continue
		}
		out = append(out, d)
		for _, b := range bodies {
			sb, ok := b.(*hclsyntax.Body)
			if !ok {
				continue
			}
			for name, a := range sb.Attributes {
				if r := a.Expr.Range(); r.Filename == d.Subject.Filename && r.ContainsOffset(d.Subject.Start.Byte) {
					d.Detail = name + ": " + strings.TrimPrefix(d.Detail, "Unsuitable value: ")
				}
			}
		}
	}
	return out
}

// Files lists the configuration files Load reads for path, in reading
// order: path itself, or the *.hcl files of the directory path and of its
// conf.d subdirectory.
func Files(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	names, p := dirFiles(path)
	if p != nil {
		return names, p
	}
	return names, nil
}

// IsEditorDropping reports names that editors and tools create next to the
// files they edit and that never hold configuration: hidden files, backups
// ("x~"), Emacs locks (".#x", "#x#"), vim swap files and vim's "4913"
// write probe.
func IsEditorDropping(name string) bool {
	return isTemporary(name) || name == "4913"
}
