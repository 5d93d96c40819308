package signals

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"greyd/internal/dns"
	"greyd/internal/dns/dnstest"
	"greyd/internal/p0f"
	"greyd/internal/p0f/p0ftest"
)

var (
	winClient   = client
	linuxClient = other
	unseen      = client6
)

func p0fSpec(socket string, timeout time.Duration) *P0fSpec {
	return &P0fSpec{Socket: socket, Timeout: timeout, OS: []P0fOSSpec{
		{Label: "windows", Name: "^Windows", Weight: 3},
		{Label: "win_xp", Name: "^Windows", Flavor: "XP", Weight: 1},
		{Label: "unix", Name: "^(Linux|FreeBSD|OpenBSD|Solaris)", Weight: -1},
	}}
}

func newP0f(t *testing.T) (*p0ftest.Server, *p0f.Client) {
	srv := p0ftest.Start(t)
	srv.Set(winClient, p0f.Answer{OSName: "Windows", OSFlavor: "7 or 8", Distance: 8})
	srv.Set(linuxClient, p0f.Answer{OSName: "Linux", OSFlavor: "3.11 and newer", Distance: 1})
	cl := p0f.New(p0f.Options{})
	t.Cleanup(func() { cl.Close() })
	return srv, cl
}

func TestEvaluateP0f(t *testing.T) {
	srv, cl := newP0f(t)
	srv.Set(netip6("2001:db8::7"), p0f.Answer{OSName: "", Distance: 3}) // a SYN seen, no signature matched
	srv.Delay = 2 * time.Second
	tests := []struct {
		name   string
		how    p0ftest.Behaviour
		in     Input
		client *p0f.Client
		total  int
		want   []sig
		lookup string
	}{
		{"windows", p0ftest.Normal, Input{Addr: winClient}, cl, 3,
			[]sig{{"p0f.windows", 3, Match, false}, {"p0f.win_xp", 0, NoMatch, false}, {"p0f.unix", 0, NoMatch, false}}, p0f.ResultOK},
		{"linux", p0ftest.Normal, Input{Addr: linuxClient}, cl, -1,
			[]sig{{"p0f.windows", 0, NoMatch, false}, {"p0f.win_xp", 0, NoMatch, false}, {"p0f.unix", -1, Match, false}}, p0f.ResultOK},
		{"ipv4-mapped", p0ftest.Normal, Input{Addr: netip6("::ffff:192.0.2.1")}, cl, 3,
			[]sig{{"p0f.windows", 3, Match, false}, {"p0f.win_xp", 0, NoMatch, false}, {"p0f.unix", 0, NoMatch, false}}, p0f.ResultOK},
		{"no match: unknown, at worst", p0ftest.Normal, Input{Addr: unseen}, cl, 4,
			[]sig{{"p0f.windows", 3, UnknownOS, true}, {"p0f.win_xp", 1, UnknownOS, true}, {"p0f.unix", 0, UnknownOS, true}}, p0f.ResultNoMatch},
		{"no OS name", p0ftest.Normal, Input{Addr: netip6("2001:db8::7")}, cl, 4,
			[]sig{{"p0f.windows", 3, UnknownOS, true}, {"p0f.win_xp", 1, UnknownOS, true}, {"p0f.unix", 0, UnknownOS, true}}, p0f.ResultOK},
		{"slow", p0ftest.Slow, Input{Addr: winClient}, cl, 4,
			[]sig{{"p0f.windows", 3, TimedOut, true}, {"p0f.win_xp", 1, TimedOut, true}, {"p0f.unix", 0, TimedOut, true}}, p0f.ResultTimeout},
		{"garbage", p0ftest.Garbage, Input{Addr: linuxClient}, cl, 4,
			[]sig{{"p0f.windows", 3, Failed, true}, {"p0f.win_xp", 1, Failed, true}, {"p0f.unix", 0, Failed, true}}, p0f.ResultGarbage},
		{"bad query", p0ftest.BadQuery, Input{Addr: linuxClient}, cl, 4,
			[]sig{{"p0f.windows", 3, Failed, true}, {"p0f.win_xp", 1, Failed, true}, {"p0f.unix", 0, Failed, true}}, p0f.ResultBadQuery},
		{"no client", p0ftest.Normal, Input{Addr: winClient}, nil, 4,
			[]sig{{"p0f.windows", 3, Failed, true}, {"p0f.win_xp", 1, Failed, true}, {"p0f.unix", 0, Failed, true}}, p0f.ResultError},
		{"no address", p0ftest.Normal, Input{}, cl, 4,
			[]sig{{"p0f.windows", 3, Failed, true}, {"p0f.win_xp", 1, Failed, true}, {"p0f.unix", 0, Failed, true}}, p0f.ResultError},
	}
	const timeout = 100 * time.Millisecond
	c := mustConfig(t, Spec{P0f: p0fSpec(srv.Path, timeout)})
	for _, tc := range tests {
		srv.Behave(tc.how)
		start := time.Now()
		sc := evaluate(t, &Evaluator{P0f: tc.client}, c, tc.in)
		took := time.Since(start)
		if sc.Total != tc.total || !slices.Equal(sigs(sc), tc.want) || sc.P0f.Result != tc.lookup {
			t.Errorf("%s: got %s, lookup %s (%s)\nwant total %d: %v, lookup %s", tc.name, show(sc), sc.P0f.Result, sc.P0f.String(), tc.total, tc.want, tc.lookup)
		}
		if took > timeout+400*time.Millisecond {
			t.Errorf("%s: took %v with p0f's timeout %v", tc.name, took, timeout)
		}
	}
}

func netip6(s string) netip.Addr { return netip.MustParseAddr(s) }

// p0f's answer in explain's words.
func TestP0fLookupString(t *testing.T) {
	srv, cl := newP0f(t)
	c := mustConfig(t, Spec{P0f: p0fSpec(srv.Path, 0)})
	sc := evaluate(t, &Evaluator{P0f: cl}, c, Input{Addr: winClient})
	want := `os_name="Windows" os_flavor="7 or 8" distance=8`
	if got := sc.P0f.String(); got != want || sc.Signals[0].Answer != want || !sc.P0f.Asked {
		t.Errorf("String() = %q, answer %q; want %q", got, sc.Signals[0].Answer, want)
	}
	if got := sc.Format(); got != "p0f.windows:3" {
		t.Errorf("Format() = %q", got)
	}
	srv.Stop()
	sc = evaluate(t, &Evaluator{P0f: cl}, c, Input{Addr: winClient})
	if got := sc.P0f.String(); !strings.Contains(got, "not reachable") || sc.Format() != "p0f.windows:3?,p0f.win_xp:1?" {
		t.Errorf("p0f down: %q, %q", got, sc.Format())
	}
}

// p0f runs beside the DNS lookups, within the one budget: a slow list
// and a slow p0f cost the budget once, not twice; a p0f slower than its
// own timeout costs that timeout, not the budget.
func TestEvaluateP0fConcurrent(t *testing.T) {
	s := dnstest.Start(t)
	s.Set(bl, dnstest.Drop)
	srv, cl := newP0f(t)
	srv.Behave(p0ftest.Slow)
	srv.Delay = 150 * time.Millisecond
	const budget = 300 * time.Millisecond
	c := mustConfig(t, Spec{Budget: budget, DNSBLs: []DNSBLSpec{{Zone: bl, Weight: 2}}, P0f: p0fSpec(srv.Path, 250*time.Millisecond)})
	e := &Evaluator{Resolver: newResolver(t, s, dns.Config{}), P0f: cl}
	start := time.Now()
	sc := evaluate(t, e, c, Input{Addr: winClient})
	took := time.Since(start)
	want := []sig{{"dnsbl." + bl, 2, TimedOut, true}, {"p0f.windows", 3, Match, false}, {"p0f.win_xp", 0, NoMatch, false}, {"p0f.unix", 0, NoMatch, false}}
	if !slices.Equal(sigs(sc), want) || sc.Total != 5 {
		t.Errorf("got %s\nwant %v", show(sc), want)
	}
	if took < budget || took > budget+500*time.Millisecond {
		t.Errorf("took %v with a budget of %v", took, budget)
	}

	// Only p0f, slower than its timeout: the timeout ends it.
	srv.Delay = 2 * time.Second
	c = mustConfig(t, Spec{Budget: 5 * time.Second, P0f: p0fSpec(srv.Path, 100*time.Millisecond)})
	start = time.Now()
	sc = evaluate(t, e, c, Input{Addr: winClient})
	if took := time.Since(start); took > time.Second || sc.P0f.Result != p0f.ResultTimeout || sc.Total != 4 {
		t.Errorf("took %v, %s (%s)", took, show(sc), sc.P0f.Result)
	}
}

func TestNewConfigP0f(t *testing.T) {
	tests := []struct {
		name string
		spec P0fSpec
		err  string // "" valid
	}{
		{"defaults", P0fSpec{OS: []P0fOSSpec{{Label: "windows", Name: "^Windows", Weight: 3}}}, ""},
		{"timeout", P0fSpec{Timeout: 2 * time.Second}, "p0f: timeout 2s is out of range"},
		{"negative timeout", P0fSpec{Timeout: -time.Millisecond}, "out of range"},
		{"twice", P0fSpec{OS: []P0fOSSpec{{Label: "w", Name: "a"}, {Label: "w", Name: "b"}}}, `p0f: os "w": defined twice`},
		{"label", P0fSpec{OS: []P0fOSSpec{{Label: "a b", Name: "a"}}}, `the label has ' '`},
		{"empty name", P0fSpec{OS: []P0fOSSpec{{Label: "w"}}}, `name is empty`},
		{"bad name", P0fSpec{OS: []P0fOSSpec{{Label: "w", Name: "(Windows"}}}, `name is not a regular expression`},
		{"bad flavor", P0fSpec{OS: []P0fOSSpec{{Label: "w", Name: "W", Flavor: "[x"}}}, `flavor is not a regular expression`},
	}
	for _, tc := range tests {
		sp := tc.spec
		c, err := NewConfig(Spec{P0f: &sp})
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if got := c.String(); !strings.Contains(got, "p0f.windows=3 p0f.socket=/run/p0f/p0f.sock p0f.timeout=50ms") {
				t.Errorf("%s: String() = %q", tc.name, got)
			}
			if !slices.Equal(c.Names(), []string{"p0f.windows"}) || !c.Lookups() {
				t.Errorf("%s: Names() = %q, Lookups() = %v", tc.name, c.Names(), c.Lookups())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}
