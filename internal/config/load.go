package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Load reads the configuration at path: one file (any name), or a
// directory whose *.hcl files are merged in lexical order. Settings not
// given keep their defaults; a setting given twice, in one file or across
// files, is an error. Relative paths are resolved against the config
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
		if names, err = hclFiles(dir); err != nil {
			return Default(dir), Problems{{File: dir, Summary: "Cannot read configuration directory", Detail: pathErr(err)}}
		}
		if len(names) == 0 {
			return Default(dir), Problems{{File: dir, Summary: "No configuration files",
				Detail: "the directory has no *.hcl file; greyd reads every *.hcl file of a configuration directory"}}
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

	raw, diags := decode(hcl.MergeFiles(files), cfg)
	for _, d := range diags {
		if d.Summary == "Duplicate argument" {
			d.Detail = hclRangeRE.ReplaceAllString(d.Detail, ":$1:$2") +
				"; a setting may be given only once across all configuration files"
		}
	}
	ps = append(fromDiags(diags), validate(raw, cfg)...)
	sortProblems(ps, names)
	return cfg, ps
}

// hclRangeRE matches the end of hcl.Range.String() ("file:3,5-10"), to
// rewrite it as file:line:col like every other position greyd prints.
var hclRangeRE = regexp.MustCompile(`:(\d+),(\d+)-[\d,]+$`)

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
// (gohcl ignores TextUnmarshaler); each value has its range so that
// validate can point at it. They are pre-filled with the defaults, because
// gohcl leaves absent attributes alone.

type rawConfig struct {
	Listen        []rawListen
	Database      rawDatabase
	Greylist      rawGreylist
	AutoWhitelist rawAutoWhitelist
	Whitelist     rawWhitelist
	Limits        rawLimits
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
}

type rawDatabase struct {
	Path      string    `hcl:"path,optional"`
	PathRange hcl.Range `hcl:"path,attr_value_range"`
	Sync      string    `hcl:"sync,optional"`
	SyncRange hcl.Range `hcl:"sync,attr_value_range"`
}

type rawGreylist struct {
	Delay               string    `hcl:"delay,optional"`
	DelayRange          hcl.Range `hcl:"delay,attr_value_range"`
	RetryWindow         string    `hcl:"retry_window,optional"`
	RetryWindowRange    hcl.Range `hcl:"retry_window,attr_value_range"`
	MaxAge              string    `hcl:"max_age,optional"`
	MaxAgeRange         hcl.Range `hcl:"max_age,attr_value_range"`
	LookupBy            string    `hcl:"lookup_by,optional"`
	LookupByRange       hcl.Range `hcl:"lookup_by,attr_value_range"`
	IPv4Prefix          int       `hcl:"ipv4_prefix,optional"`
	IPv4PrefixRange     hcl.Range `hcl:"ipv4_prefix,attr_value_range"`
	IPv6Prefix          int       `hcl:"ipv6_prefix,optional"`
	IPv6PrefixRange     hcl.Range `hcl:"ipv6_prefix,attr_value_range"`
	Action              string    `hcl:"action,optional"`
	ActionRange         hcl.Range `hcl:"action,attr_value_range"`
	Text                string    `hcl:"text,optional"`
	TextRange           hcl.Range `hcl:"text,attr_value_range"`
	XGreylistHeader     bool      `hcl:"x_greylist_header,optional"`
	HeaderText          string    `hcl:"header_text,optional"`
	HeaderTextRange     hcl.Range `hcl:"header_text,attr_value_range"`
	Hostname            string    `hcl:"hostname,optional"`
	HostnameRange       hcl.Range `hcl:"hostname,attr_value_range"`
	Privacy             bool      `hcl:"privacy,optional"`
	OnStoreError        string    `hcl:"on_store_error,optional"`
	OnStoreErrorRange   hcl.Range `hcl:"on_store_error,attr_value_range"`
	StoreErrorText      string    `hcl:"store_error_text,optional"`
	StoreErrorTextRange hcl.Range `hcl:"store_error_text,attr_value_range"`
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

// toRaw renders c as raw values: the starting point of decode.
func toRaw(c *Config) rawConfig {
	g, l := c.Greylist, c.Limits
	lookup := "subnet"
	if g.LookupByHost {
		lookup = "host"
	}
	return rawConfig{
		Database: rawDatabase{Path: c.Database.Path, Sync: c.Database.Sync},
		Greylist: rawGreylist{
			Delay:           FormatDuration(g.Delay),
			RetryWindow:     FormatDuration(g.RetryWindow),
			MaxAge:          FormatDuration(g.MaxAge),
			LookupBy:        lookup,
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
		},
		AutoWhitelist: rawAutoWhitelist{Clients: c.AutoWhitelist.Clients},
		Whitelist: rawWhitelist{
			Clients:    append([]string(nil), c.Whitelist.Clients...),
			Recipients: append([]string(nil), c.Whitelist.Recipients...),
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
	}
}

var topSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "listen"},
	{Type: "database"},
	{Type: "greylist"},
	{Type: "auto_whitelist"},
	{Type: "whitelist"},
	{Type: "limits"},
}}

// decode fills raw values from body, starting from the defaults in cfg.
// Each listen block is its own socket. The other blocks may appear more
// than once (e.g. one per file): their bodies are merged so that a setting
// given twice is reported at both places.
func decode(body hcl.Body, cfg *Config) (rawConfig, hcl.Diagnostics) {
	raw := toRaw(cfg)
	content, diags := body.Content(topSchema)
	bodies := map[string][]hcl.Body{}
	for _, b := range content.Blocks {
		if b.Type == "listen" {
			l := rawListen{DefRange: b.DefRange, SocketMode: formatMode(DefaultSocketMode)}
			ds := nameTypeErrors(gohcl.DecodeBody(b.Body, nil, &l), b.Body)
			l.decodeFailed = ds.HasErrors()
			diags = append(diags, ds...)
			raw.Listen = append(raw.Listen, l)
			continue
		}
		bodies[b.Type] = append(bodies[b.Type], b.Body)
	}
	for typ, dst := range map[string]any{
		"database":       &raw.Database,
		"greylist":       &raw.Greylist,
		"auto_whitelist": &raw.AutoWhitelist,
		"whitelist":      &raw.Whitelist,
		"limits":         &raw.Limits,
	} {
		if bs := bodies[typ]; len(bs) > 0 {
			diags = append(diags, nameTypeErrors(gohcl.DecodeBody(hcl.MergeBodies(bs), nil, dst), bs...)...)
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

// Files lists the configuration files Load reads for path: path itself, or
// the *.hcl files of the directory path.
func Files(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	return hclFiles(path)
}

// IsEditorDropping reports names that editors and tools create next to the
// files they edit and that never hold configuration: hidden files, backups
// ("x~"), Emacs locks (".#x", "#x#"), vim swap files and vim's "4913"
// write probe.
func IsEditorDropping(name string) bool {
	return isTemporary(name) || name == "4913"
}
