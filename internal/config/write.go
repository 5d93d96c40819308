package config

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// WriteHCL writes c as a complete HCL configuration, every setting spelled
// out, that Load reads back into the same values (paths come out
// absolute). A value that is not a built-in default ends with a comment
// saying where it was given, relative to the configuration directory
// (`delay = "10m" # conf.d/50-local.hcl:2`), and a warning about it, if
// any. It is what `greyd check-config` shows.
func (c *Config) WriteHCL(w io.Writer) error {
	wr := &hclWriter{c: c, warnings: map[string][]string{}}
	for _, p := range c.Warnings {
		k := fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
		wr.warnings[k] = append(wr.warnings[k], p.Summary)
	}
	f := hclwrite.NewEmptyFile()
	root := f.Body()

	for i, l := range c.Listen {
		b := wr.block(root, "listen", fmt.Sprintf("listen.%d.", i))
		if l.Unix != "" {
			b.str("unix", l.Unix)
		}
		if l.Inet != "" {
			b.str("inet", l.Inet)
			allow := make([]string, len(l.Allow))
			for i, p := range l.Allow {
				allow[i] = formatNet(p)
			}
			b.list("allow", allow)
		}
		b.str("socket_mode", formatMode(l.SocketMode))
		b.str("socket_group", l.SocketGroup)
		b.boolean("exim", l.Exim)
		root.AppendNewline()
	}

	b := wr.block(root, "database", "database.")
	b.str("path", c.Database.Path)
	b.str("sync", c.Database.Sync)
	if r := c.Database.Redis; r != nil {
		b.body.AppendNewline()
		rb := wr.block(b.body, "redis", "database.redis.")
		rb.str("url", r.URL)
		rb.str("password_file", r.PasswordFile)
		rb.str("key_prefix", r.KeyPrefix)
	}
	root.AppendNewline()

	g := c.Greylist
	b = wr.block(root, "greylist", "greylist.")
	b.str("delay", FormatDuration(g.Delay))
	b.str("retry_window", FormatDuration(g.RetryWindow))
	b.str("max_age", FormatDuration(g.MaxAge))
	b.str("lookup_by", g.LookupBy)
	b.list("pool_domains", g.PoolDomains)
	b.list("dynamic_domains", g.DynamicDomains)
	b.num("ipv4_prefix", g.IPv4Prefix)
	b.num("ipv6_prefix", g.IPv6Prefix)
	b.str("action", g.Action)
	b.str("text", g.Text)
	b.boolean("x_greylist_header", g.XGreylistHeader)
	b.str("header_text", g.HeaderText)
	b.str("hostname", g.Hostname)
	b.boolean("privacy", g.Privacy)
	b.str("on_store_error", g.OnStoreError)
	b.str("store_error_text", g.StoreErrorText)
	b.boolean("dry_run", g.DryRun)
	b.boolean("policy_test_time", g.PolicyTestTime)
	root.AppendNewline()

	b = wr.block(root, "auto_whitelist", "auto_whitelist.")
	b.num("clients", c.AutoWhitelist.Clients)
	root.AppendNewline()

	b = wr.block(root, "whitelist", "whitelist.")
	b.list("clients", c.Whitelist.Clients)
	b.list("recipients", c.Whitelist.Recipients)
	root.AppendNewline()

	l := c.Limits
	b = wr.block(root, "limits", "limits.")
	b.num("max_line_length", l.MaxLineLength)
	b.num("max_attributes", l.MaxAttributes)
	b.num("max_request_size", l.MaxRequestSize)
	b.num("max_connections", l.MaxConnections)
	b.str("request_timeout", FormatDuration(l.RequestTimeout))
	b.str("idle_timeout", FormatDuration(l.IdleTimeout))
	b.str("store_timeout", FormatDuration(l.StoreTimeout))
	root.AppendNewline()

	wr.writeSelective(root, c)
	wr.writeP0f(root, c)

	b = wr.block(root, "control", "control.")
	b.str("socket", c.Control.Socket)
	root.AppendNewline()

	if c.Trap != nil {
		b = wr.block(root, "trap", "trap.")
		b.list("recipients", c.Trap.Recipients)
		b.str("duration", FormatDuration(c.Trap.Duration))
		root.AppendNewline()
	}
	if c.Tarpit != nil {
		b = wr.block(root, "tarpit", "tarpit.")
		b.str("duration", FormatDuration(c.Tarpit.Duration))
		b.num("max_concurrent", c.Tarpit.MaxConcurrent)
		b.str("abandon_delay", FormatDuration(c.Tarpit.AbandonDelay))
		root.AppendNewline()
	}
	if c.Metrics != nil {
		b = wr.block(root, "metrics", "metrics.")
		b.str("listen", c.Metrics.Listen)
		root.AppendNewline()
	}

	b = wr.block(root, "log", "log.")
	b.str("decisions", c.Log.Decisions)

	_, err := w.Write(hclwrite.Format(f.Bytes()))
	return err
}

type hclWriter struct {
	c        *Config
	warnings map[string][]string // "file:line:col" → summaries
}

// blockWriter sets the attributes of one block; prefix names its settings
// for Config.Origin.
type blockWriter struct {
	*hclWriter
	body   *hclwrite.Body
	prefix string
}

func (w *hclWriter) block(parent *hclwrite.Body, typ, prefix string) blockWriter {
	return blockWriter{w, parent.AppendNewBlock(typ, nil).Body(), prefix}
}

func (b blockWriter) str(name, s string)          { b.set(name, cty.StringVal(s)) }
func (b blockWriter) num(name string, n int)      { b.set(name, cty.NumberIntVal(int64(n))) }
func (b blockWriter) boolean(name string, v bool) { b.set(name, cty.BoolVal(v)) }

func (b blockWriter) list(name string, ss []string) {
	if len(ss) == 0 {
		b.set(name, cty.ListValEmpty(cty.String))
		return
	}
	vals := make([]cty.Value, len(ss))
	for i, s := range ss {
		vals[i] = cty.StringVal(s)
	}
	b.set(name, cty.ListVal(vals))
}

// set writes name = v, followed by the value's origin and warnings.
func (b blockWriter) set(name string, v cty.Value) {
	toks := hclwrite.TokensForValue(v)
	if comment := b.comment(b.prefix + name); comment != "" {
		toks = append(toks, &hclwrite.Token{Type: hclsyntax.TokenComment, Bytes: []byte("# " + comment)})
	}
	b.body.SetAttributeRaw(name, toks)
}

func (b blockWriter) comment(setting string) string {
	origin := b.c.Origin(setting)
	if origin == "" {
		return ""
	}
	r := b.c.origins[setting]
	parts := []string{origin}
	for _, s := range b.warnings[fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)] {
		parts = append(parts, "warning: "+s)
	}
	// A comment ends at the line's end; keep it on one line.
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, strings.Join(parts, "; "))
}
