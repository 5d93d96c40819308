package config

import (
	"io"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// WriteHCL writes c as a complete HCL configuration, every setting spelled
// out, that Load reads back into the same values (paths come out absolute).
// It is what `greyd -print-config` shows.
func (c *Config) WriteHCL(w io.Writer) error {
	f := hclwrite.NewEmptyFile()
	root := f.Body()
	str := func(b *hclwrite.Body, name, s string) { b.SetAttributeValue(name, cty.StringVal(s)) }
	num := func(b *hclwrite.Body, name string, n int) { b.SetAttributeValue(name, cty.NumberIntVal(int64(n))) }
	list := func(b *hclwrite.Body, name string, ss []string) {
		if len(ss) == 0 {
			b.SetAttributeValue(name, cty.ListValEmpty(cty.String))
			return
		}
		vals := make([]cty.Value, len(ss))
		for i, s := range ss {
			vals[i] = cty.StringVal(s)
		}
		b.SetAttributeValue(name, cty.ListVal(vals))
	}

	for _, l := range c.Listen {
		b := root.AppendNewBlock("listen", nil).Body()
		if l.Unix != "" {
			str(b, "unix", l.Unix)
		}
		if l.Inet != "" {
			str(b, "inet", l.Inet)
			allow := make([]string, len(l.Allow))
			for i, p := range l.Allow {
				allow[i] = formatNet(p)
			}
			list(b, "allow", allow)
		}
		str(b, "socket_mode", formatMode(l.SocketMode))
		str(b, "socket_group", l.SocketGroup)
		root.AppendNewline()
	}

	b := root.AppendNewBlock("database", nil).Body()
	str(b, "path", c.Database.Path)
	str(b, "sync", c.Database.Sync)
	root.AppendNewline()

	g := c.Greylist
	lookup := "subnet"
	if g.LookupByHost {
		lookup = "host"
	}
	b = root.AppendNewBlock("greylist", nil).Body()
	str(b, "delay", FormatDuration(g.Delay))
	str(b, "retry_window", FormatDuration(g.RetryWindow))
	str(b, "max_age", FormatDuration(g.MaxAge))
	str(b, "lookup_by", lookup)
	num(b, "ipv4_prefix", g.IPv4Prefix)
	num(b, "ipv6_prefix", g.IPv6Prefix)
	str(b, "action", g.Action)
	str(b, "text", g.Text)
	b.SetAttributeValue("x_greylist_header", cty.BoolVal(g.XGreylistHeader))
	str(b, "header_text", g.HeaderText)
	str(b, "hostname", g.Hostname)
	b.SetAttributeValue("privacy", cty.BoolVal(g.Privacy))
	str(b, "on_store_error", g.OnStoreError)
	str(b, "store_error_text", g.StoreErrorText)
	root.AppendNewline()

	b = root.AppendNewBlock("auto_whitelist", nil).Body()
	num(b, "clients", c.AutoWhitelist.Clients)
	root.AppendNewline()

	b = root.AppendNewBlock("whitelist", nil).Body()
	list(b, "clients", c.Whitelist.Clients)
	list(b, "recipients", c.Whitelist.Recipients)
	root.AppendNewline()

	l := c.Limits
	b = root.AppendNewBlock("limits", nil).Body()
	num(b, "max_line_length", l.MaxLineLength)
	num(b, "max_attributes", l.MaxAttributes)
	num(b, "max_request_size", l.MaxRequestSize)
	num(b, "max_connections", l.MaxConnections)
	str(b, "request_timeout", FormatDuration(l.RequestTimeout))
	str(b, "idle_timeout", FormatDuration(l.IdleTimeout))
	str(b, "store_timeout", FormatDuration(l.StoreTimeout))

	_, err := w.Write(hclwrite.Format(f.Bytes()))
	return err
}
