package signals

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"greyd/internal/p0f"
)

// p0f (issue 24): the client's operating system as the passive
// fingerprinter p0f saw it in the SYN of the SMTP connection. One query
// per scored request answers every os block; each block is a signal
// "p0f.<label>".

// Defaults and bounds of the p0f block.
const (
	DefaultP0fSocket  = "/run/p0f/p0f.sock"
	DefaultP0fTimeout = 50 * time.Millisecond
	// MaxP0fTimeout: p0f answers from memory in microseconds; a p0f
	// slower than this is stuck, and the client waits meanwhile.
	MaxP0fTimeout = time.Second
)

// The results of a p0f signal.
const (
	Match     = "match"      // p0f's OS matches the block's name and flavor
	NoMatch   = "no_match"   // p0f knows the OS; it is another one
	UnknownOS = "unknown_os" // p0f has no fingerprint of the client, or no OS name
)

// P0fSpec is the p0f block.
type P0fSpec struct {
	Socket  string        // "": DefaultP0fSocket
	Timeout time.Duration // 0: DefaultP0fTimeout
	OS      []P0fOSSpec   // in configuration order
}

// P0fOSSpec is one os block: the signal "p0f.<Label>" holds when p0f's
// os_name matches Name and, if Flavor is set, os_flavor matches Flavor
// (RE2 regular expressions, unanchored).
type P0fOSSpec struct {
	Label        string
	Name, Flavor string
	Weight       int
}

// p0fConfig is a compiled P0fSpec.
type p0fConfig struct {
	socket  string
	timeout time.Duration
	rules   []p0fRule
}

type p0fRule struct {
	name       string // "p0f." + label
	weight     int
	os, flavor *regexp.Regexp // flavor nil: any
}

// CheckP0fTimeout reports why d cannot be p0f's timeout.
func CheckP0fTimeout(d time.Duration) error {
	if d <= 0 || d > MaxP0fTimeout {
		return fmt.Errorf("%v is out of range: more than 0 and at most %v (p0f answers from memory; the client waits meanwhile)", d, MaxP0fTimeout)
	}
	return nil
}

// CheckP0fLabel reports why l cannot label an os block: it is part of
// the signal's name, in the log line and a metric label.
func CheckP0fLabel(l string) error {
	if l == "" || len(l) > 63 {
		return errors.New("must be 1 to 63 characters")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("has %q: only letters, digits, '-' and '_' (it names the signal p0f.<label>)", c)
		}
	}
	return nil
}

// CompileP0fPattern compiles a name or flavor expression.
func CompileP0fPattern(s string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, fmt.Errorf("is not a regular expression (RE2 syntax): %w", err)
	}
	return re, nil
}

// compileP0f compiles s, appending what is wrong to errs.
func compileP0f(s *P0fSpec, errs *[]error) *p0fConfig {
	if s == nil {
		return nil
	}
	c := &p0fConfig{socket: s.Socket, timeout: s.Timeout}
	if c.socket == "" {
		c.socket = DefaultP0fSocket
	}
	if c.timeout == 0 {
		c.timeout = DefaultP0fTimeout
	} else if err := CheckP0fTimeout(c.timeout); err != nil {
		*errs = append(*errs, fmt.Errorf("p0f: timeout %w", err))
	}
	seen := map[string]bool{}
	for _, o := range s.OS {
		ok := true
		fail := func(err error) { *errs = append(*errs, err); ok = false }
		if err := CheckP0fLabel(o.Label); err != nil {
			fail(fmt.Errorf("p0f: os %q: the label %w", o.Label, err))
		}
		if seen[o.Label] {
			fail(fmt.Errorf("p0f: os %q: defined twice", o.Label))
		}
		seen[o.Label] = true
		r := p0fRule{name: "p0f." + o.Label, weight: o.Weight}
		var err error
		if o.Name == "" {
			fail(fmt.Errorf("p0f: os %q: name is empty: write a regular expression on p0f's os_name, e.g. \"^Windows\"", o.Label))
		} else if r.os, err = CompileP0fPattern(o.Name); err != nil {
			fail(fmt.Errorf("p0f: os %q: name %w", o.Label, err))
		}
		if o.Flavor != "" {
			if r.flavor, err = CompileP0fPattern(o.Flavor); err != nil {
				fail(fmt.Errorf("p0f: os %q: flavor %w", o.Label, err))
			}
		}
		if ok {
			c.rules = append(c.rules, r)
		}
	}
	return c
}

// P0fLookup is what p0f answered for a scored request, for explain and
// metrics.
type P0fLookup struct {
	Asked  bool          // a query was made (or its start refused: p0f down)
	Result string        // p0f.ResultOf's vocabulary
	Answer p0f.Answer    // when Result is p0f.ResultOK
	Err    string        // why not, otherwise
	Took   time.Duration // the query's time
}

// String is p0f's answer in a few words: `os_name="Windows"
// os_flavor="7 or 8" distance=8`, "no match", or the failure.
func (l *P0fLookup) String() string {
	switch l.Result {
	case p0f.ResultOK:
		a := &l.Answer
		s := "os_name=" + strconv.Quote(a.OSName) + " os_flavor=" + strconv.Quote(a.OSFlavor) + " distance=" + strconv.Itoa(int(a.Distance))
		switch a.OSMatchQ {
		case 1:
			s += " match=fuzzy"
		case 2:
			s += " match=generic"
		case 3:
			s += " match=fuzzy,generic"
		}
		return s
	case p0f.ResultNoMatch:
		return "no match: p0f saw no SYN of this client"
	}
	return l.Err
}

type p0fReply struct {
	a    p0f.Answer
	err  error
	took time.Duration
}

// startP0f asks p0f about in's client in the background, within the
// budget and p0f's own timeout; the reply arrives on the channel.
func (c *p0fConfig) start(ev *evaluation, cl *p0f.Client, in Input, now func() time.Time) <-chan p0fReply {
	ch := make(chan p0fReply, 1)
	ctx, cancel := context.WithTimeout(ev.budgetCtx(), c.timeout)
	go func() {
		defer cancel()
		t := now()
		a, err := cl.Query(ctx, c.socket, in.Addr)
		ch <- p0fReply{a, err, now().Sub(t)}
	}()
	return ch
}

// read sets lk and the signals of the rules (out, one per rule) from a
// reply.
func (c *p0fConfig) read(out []Signal, lk *P0fLookup, r p0fReply) {
	lk.Result, lk.Took = p0f.ResultOf(r.a, r.err), r.took
	if r.err != nil {
		lk.Err = r.err.Error()
	}
	if lk.Result == p0f.ResultOK {
		lk.Answer = r.a
	}
	answer := lk.String()
	for i := range c.rules {
		rule, s := &c.rules[i], &out[i]
		s.Took, s.Answer = r.took, answer
		switch {
		case lk.Result == p0f.ResultOK && r.a.OSName != "":
			s.Result = NoMatch
			if rule.os.MatchString(r.a.OSName) && (rule.flavor == nil || rule.flavor.MatchString(r.a.OSFlavor)) {
				s.Result, s.Weight = Match, rule.weight
			}
			continue
		case lk.Result == p0f.ResultOK, lk.Result == p0f.ResultNoMatch:
			s.Result = UnknownOS
			if r.a.OSName == "" && lk.Result == p0f.ResultOK {
				s.Answer = answer + " (no OS name)"
			}
		case lk.Result == p0f.ResultTimeout:
			s.Result = TimedOut
		default:
			s.Result = Failed
		}
		s.Unknown, s.Weight = true, atWorst(rule.weight)
	}
}

// p0fString is the p0f part of Config.String.
func (c *p0fConfig) String() string {
	var b strings.Builder
	for _, r := range c.rules {
		b.WriteString(" " + r.name + "=" + strconv.Itoa(r.weight))
	}
	fmt.Fprintf(&b, " p0f.socket=%s p0f.timeout=%v", c.socket, c.timeout)
	return b.String()
}
