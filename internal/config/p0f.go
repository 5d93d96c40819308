package config

import (
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"greyd/internal/signals"
)

// P0f is the p0f block (issue 24): the client's operating system, as the
// passive fingerprinter p0f saw it, as signals of selective greylisting.
//
//	p0f {
//	  socket  = "/run/p0f/p0f.sock"  # p0f -s; reloadable
//	  timeout = "50ms"               # per query, within dns.budget; at most 1s
//	  os "windows" {                 # repeatable: the signal p0f.windows
//	    name   = "^Windows"          # regular expression on p0f's os_name
//	    flavor = ""                  # optional regular expression on os_flavor
//	    weight = 3
//	  }
//	}
//
// Layers: a later file's p0f block overrides socket and timeout, and an
// os block with a label seen before overrides that block's settings one
// by one; a new label is added after the others. One label twice in one
// file is an error.
type P0f struct {
	Socket  string
	Timeout time.Duration
	OS      []P0fOS // in configuration order
}

// P0fOS is one os block.
type P0fOS struct {
	Label  string
	Name   string // regular expression on os_name
	Flavor string // regular expression on os_flavor; "": any
	Weight int
}

type rawP0f struct {
	DefRange     hcl.Range
	Socket       string     `hcl:"socket,optional"`
	SocketRange  hcl.Range  `hcl:"socket,attr_value_range"`
	Timeout      string     `hcl:"timeout,optional"`
	TimeoutRange hcl.Range  `hcl:"timeout,attr_value_range"`
	OS           []rawP0fOS // decoded by decodeP0f
}

type rawP0fOS struct {
	DefRange    hcl.Range
	Label       string
	LabelRange  hcl.Range
	Name        *string   `hcl:"name,optional"`
	NameRange   hcl.Range `hcl:"name,attr_value_range"`
	Flavor      string    `hcl:"flavor,optional"`
	FlavorRange hcl.Range `hcl:"flavor,attr_value_range"`
	Weight      *int      `hcl:"weight,optional"`
	WeightRange hcl.Range `hcl:"weight,attr_value_range"`
}

func newRawP0f(def hcl.Range) *rawP0f {
	return &rawP0f{DefRange: def, Socket: signals.DefaultP0fSocket, Timeout: FormatDuration(signals.DefaultP0fTimeout)}
}

var p0fSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "socket"}, {Name: "timeout"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "os", LabelNames: []string{"label"}}},
}

// decodeP0f decodes one p0f block of a file into raw.P0f. A file may
// split its p0f settings over several blocks; a setting or an os label
// given twice in the file is an error.
func (raw *rawConfig) decodeP0f(b *hcl.Block) hcl.Diagnostics {
	if raw.P0f == nil {
		raw.P0f = &rawP0f{DefRange: b.DefRange}
	}
	p := raw.P0f
	content, diags := b.Body.Content(p0fSchema)
	for _, a := range []struct {
		name string
		dst  *string
		rng  *hcl.Range
	}{{"socket", &p.Socket, &p.SocketRange}, {"timeout", &p.Timeout, &p.TimeoutRange}} {
		attr := content.Attributes[a.name]
		if attr == nil {
			continue
		}
		rng := attr.Expr.Range()
		if given(*a.rng) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate argument",
				Detail: fmt.Sprintf("p0f.%s is already given at %s", a.name, posString(*a.rng)), Subject: &rng})
			continue
		}
		ds := gohcl.DecodeExpression(attr.Expr, nil, a.dst)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			*a.rng = rng
		}
	}
	for _, ob := range content.Blocks {
		label, lrng := ob.Labels[0], ob.LabelRanges[0]
		if i := p.osIndex(label); i >= 0 {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate os block",
				Detail:  fmt.Sprintf("p0f os %q is already defined at %s; a later file may override its settings", label, posString(p.OS[i].LabelRange)),
				Subject: &lrng})
			continue
		}
		o := rawP0fOS{DefRange: ob.DefRange, Label: label, LabelRange: lrng}
		diags = append(diags, nameTypeErrors(gohcl.DecodeBody(ob.Body, nil, &o), ob.Body)...)
		p.OS = append(p.OS, o)
	}
	return diags
}

func (p *rawP0f) osIndex(label string) int {
	for i := range p.OS {
		if p.OS[i].Label == label {
			return i
		}
	}
	return -1
}

// mergeP0f lays a file's p0f block over dst (see Layers).
func mergeP0f(dst, src *rawP0f, failed spots) *rawP0f {
	if src == nil {
		return dst
	}
	if dst == nil {
		dst = newRawP0f(src.DefRange)
	}
	mergeSettings(dst, src, failed)
	for i := range src.OS {
		if j := dst.osIndex(src.OS[i].Label); j >= 0 {
			mergeSettings(&dst.OS[j], &src.OS[i], failed)
			continue
		}
		dst.OS = append(dst.OS, src.OS[i])
	}
	return dst
}

// p0fOrigins adds the p0f settings to origins' add.
func (p *rawP0f) origins(add func(prefix string, block any)) {
	if p == nil {
		return
	}
	add("p0f.", p)
	for i := range p.OS {
		add("p0f.os."+p.OS[i].Label+".", &p.OS[i])
	}
}

// p0f checks a p0f block.
func (v *validator) p0f(rp *rawP0f) *P0f {
	p := &P0f{Socket: v.unixPath("p0f.socket", rp.Socket, rp.SocketRange)}
	n := len(v.ps)
	p.Timeout = v.duration("p0f.timeout", rp.Timeout, rp.TimeoutRange, "ms", "", time.Millisecond)
	if len(v.ps) == n {
		if err := signals.CheckP0fTimeout(p.Timeout); err != nil {
			v.errorf(rp.TimeoutRange, "Invalid duration", "p0f.timeout %s", err)
		}
	}
	for _, o := range rp.OS {
		n := len(v.ps)
		out := P0fOS{Label: o.Label, Flavor: o.Flavor}
		if err := signals.CheckP0fLabel(o.Label); err != nil {
			v.errorf(o.LabelRange, "Invalid os label", "p0f os %q: the label %s", o.Label, err)
		}
		if o.Name == nil || *o.Name == "" {
			rng := o.NameRange
			if !given(rng) {
				rng = o.DefRange
			}
			v.errorf(rng, "Incomplete os block", `p0f os %q needs name = "<regular expression on p0f's os_name>", e.g. "^Windows"`, o.Label)
		} else {
			out.Name = *o.Name
			if _, err := signals.CompileP0fPattern(out.Name); err != nil {
				v.errorf(o.NameRange, "Invalid regular expression", "p0f os %q: name %s", o.Label, err)
			}
		}
		if out.Flavor != "" {
			if _, err := signals.CompileP0fPattern(out.Flavor); err != nil {
				v.errorf(o.FlavorRange, "Invalid regular expression", "p0f os %q: flavor %s", o.Label, err)
			}
		}
		if o.Weight == nil {
			v.errorf(o.DefRange, "Incomplete os block", "p0f os %q needs weight = N, the score a match adds (a few points at most: fingerprints are coarse)", o.Label)
		} else {
			out.Weight = v.intRange("p0f.os."+o.Label+".weight", *o.Weight, o.WeightRange, -maxWeight, maxWeight)
		}
		if len(v.ps) == n {
			p.OS = append(p.OS, out)
		}
	}
	if len(rp.OS) == 0 {
		v.warnf(rp.DefRange, "p0f without os blocks", `a p0f block without os "label" { name = "...", weight = N } blocks computes nothing`)
	}
	return p
}

// P0fSpec is the p0f part of a signals.Spec; nil without a p0f block.
func (c *Config) P0fSpec() *signals.P0fSpec {
	if c.P0f == nil {
		return nil
	}
	s := &signals.P0fSpec{Socket: c.P0f.Socket, Timeout: c.P0f.Timeout}
	for _, o := range c.P0f.OS {
		s.OS = append(s.OS, signals.P0fOSSpec{Label: o.Label, Name: o.Name, Flavor: o.Flavor, Weight: o.Weight})
	}
	return s
}

// writeP0f writes the p0f block for WriteHCL.
func (wr *hclWriter) writeP0f(root *hclwrite.Body, c *Config) {
	if c.P0f == nil {
		return
	}
	b := wr.block(root, "p0f", "p0f.")
	b.str("socket", c.P0f.Socket)
	b.str("timeout", FormatDuration(c.P0f.Timeout))
	for _, o := range c.P0f.OS {
		ob := blockWriter{wr, b.body.AppendNewBlock("os", []string{o.Label}).Body(), "p0f.os." + o.Label + "."}
		ob.str("name", o.Name)
		if o.Flavor != "" {
			ob.str("flavor", o.Flavor)
		}
		ob.num("weight", o.Weight)
	}
	root.AppendNewline()
}
