package signals

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func w(n int) *int { return &n }

func TestNewConfig(t *testing.T) {
	tests := []struct {
		spec Spec
		want string // Config.String(), or the error's text
		err  bool
	}{
		{Spec{}, "budget=800ms", false},
		{Spec{RDNSMissing: w(3), RDNSDynamic: w(0), SPFPass: w(-1), Budget: time.Second},
			"rdns_missing=3 rdns_dynamic=0 spf_pass=-1 budget=1s", false},
		{Spec{
			DNSBLs: []DNSBLSpec{{Zone: "Zen.Spamhaus.org.", Weight: 3}, {Zone: "b.barracudacentral.org", Weight: 0}},
			DNSWLs: []DNSWLSpec{{Zone: "list.dnswl.org", Weight: -3, MinTrust: w(0)}},
		}, "dnsbl.zen.spamhaus.org=3 dnsbl.b.barracudacentral.org=0 dnswl.list.dnswl.org=-3 budget=800ms", false},
		// The same zone as a block list and a white list is one query.
		{Spec{DNSBLs: []DNSBLSpec{{Zone: "hostkarma.example", Weight: 2, Listed: []string{"127.0.0.2"}}},
			DNSWLs: []DNSWLSpec{{Zone: "hostkarma.example", Weight: -2}}},
			"dnsbl.hostkarma.example=2 dnswl.hostkarma.example=-2 budget=800ms", false},

		{Spec{Budget: -time.Second}, "dns: budget -1s is out of range", true},
		{Spec{Budget: time.Minute}, "dns: budget 1m0s is out of range", true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: "zen"}}}, `dnsbl "zen": zone is a single label`, true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: ""}}}, `dnsbl "": zone is empty`, true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: "a..b"}}}, `dnsbl "a..b": zone has an empty label`, true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: "127.0.0.1"}}}, `dnsbl "127.0.0.1": zone ends in a numeric label`, true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: "zen spamhaus.org"}}}, `dnsbl "zen spamhaus.org": zone has ' '`, true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: strings.Repeat("a.", 95) + "org"}}}, "characters long", true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: "zen.spamhaus.org"}, {Zone: "ZEN.spamhaus.org."}}}, `dnsbl "zen.spamhaus.org": listed twice`, true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: "zen.spamhaus.org", Weight: -1}}}, `dnsbl "zen.spamhaus.org": weight -1 is negative`, true},
		{Spec{DNSBLs: []DNSBLSpec{{Zone: "zen.spamhaus.org", Listed: []string{"127.0.0.300"}}}}, `dnsbl "zen.spamhaus.org": listed "127.0.0.300" is not an address`, true},
		{Spec{DNSWLs: []DNSWLSpec{{Zone: "list.dnswl.org", Weight: 1}}}, `dnswl "list.dnswl.org": weight 1 is positive`, true},
		{Spec{DNSWLs: []DNSWLSpec{{Zone: "list.dnswl.org", MinTrust: w(255)}}}, `dnswl "list.dnswl.org": min_trust 255 is out of range`, true},
		{Spec{DNSWLs: []DNSWLSpec{{Zone: "list.dnswl.org"}, {Zone: "list.dnswl.org"}}}, `dnswl "list.dnswl.org": listed twice`, true},
	}
	for i, tc := range tests {
		c, err := NewConfig(tc.spec)
		switch {
		case tc.err && err == nil:
			t.Errorf("%d: NewConfig(%+v) = %v, want an error with %q", i, tc.spec, c, tc.want)
		case tc.err && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%d: NewConfig(%+v): error %q, want it to contain %q", i, tc.spec, err, tc.want)
		case !tc.err && err != nil:
			t.Errorf("%d: NewConfig(%+v): %v", i, tc.spec, err)
		case !tc.err && c.String() != tc.want:
			t.Errorf("%d: NewConfig(%+v) = %q, want %q", i, tc.spec, c, tc.want)
		}
	}
}

// Every mistake is reported, not only the first.
func TestNewConfigJoinsErrors(t *testing.T) {
	_, err := NewConfig(Spec{
		Budget: time.Hour,
		DNSBLs: []DNSBLSpec{{Zone: "x", Listed: []string{"a", "127.0.0.3-127.0.0.2"}}},
		DNSWLs: []DNSWLSpec{{Zone: "list.dnswl.org", MinTrust: w(-1)}},
	})
	if err == nil {
		t.Fatal("no error")
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 5 {
		t.Errorf("%d errors, want 5:\n%v", n, err)
	}
}

func TestParseRange(t *testing.T) {
	r := func(lo, hi string) Range { return Range{netip.MustParseAddr(lo), netip.MustParseAddr(hi)} }
	tests := []struct {
		in   string
		want Range
		err  string
	}{
		{"127.0.0.2-127.0.0.255", r("127.0.0.2", "127.0.0.255"), ""},
		{" 127.0.0.2 - 127.0.0.11 ", r("127.0.0.2", "127.0.0.11"), ""},
		{"127.0.0.4", r("127.0.0.4", "127.0.0.4"), ""},
		{"127.0.1.0/24", r("127.0.1.0", "127.0.1.255"), ""},
		{"127.0.1.7/30", r("127.0.1.4", "127.0.1.7"), ""},
		{"127.0.0.0/32", r("127.0.0.0", "127.0.0.0"), ""},
		{"127.0.0.3-127.0.0.2", Range{}, "ends below its start"},
		{"::1", Range{}, "not an address"},
		{"127.0.0.2-::1", Range{}, "not an IPv4 address"},
		{"2001:db8::/32", Range{}, "not an IPv4 network"},
		{"127.0.0.0/33", Range{}, "not an IPv4 network"},
		{"", Range{}, "not an address"},
	}
	for _, tc := range tests {
		got, err := ParseRange(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRange(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if s := r("127.0.0.2", "127.0.0.255").String(); s != DefaultListed {
		t.Errorf("String() = %q, want %q", s, DefaultListed)
	}
}

func TestConfigNames(t *testing.T) {
	c, err := NewConfig(Spec{
		RDNSMissing: w(3), HELOInvalid: w(1), SPFFail: w(2),
		DNSBLs: []DNSBLSpec{{Zone: "zen.spamhaus.org", Weight: 3}},
		DNSWLs: []DNSWLSpec{{Zone: "list.dnswl.org", Weight: -3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rdns_missing", "helo_invalid",
		"spf_pass", "spf_fail", "spf_softfail", "spf_neutral", "spf_none", "spf_temperror", "spf_permerror",
		"dnsbl.zen.spamhaus.org", "dnswl.list.dnswl.org"}
	if got := c.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if !c.Lookups() || c.Budget() != DefaultBudget {
		t.Errorf("Lookups() = %v, Budget() = %v; want true, %v", c.Lookups(), c.Budget(), DefaultBudget)
	}
	local, _ := NewConfig(Spec{RDNSMissing: w(3)})
	var none *Config
	if local.Lookups() || none.Lookups() || none.Names() != nil {
		t.Errorf("a config without lists or SPF, or none, says it looks up")
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		t     Thresholds
		score int
		want  Class
	}{
		{Thresholds{GreylistAt: 3}, 2, Pass},
		{Thresholds{GreylistAt: 3}, 3, Greylist},
		{Thresholds{GreylistAt: 3}, -5, Pass},
		{Thresholds{GreylistAt: 0}, 0, Greylist},
		{Thresholds{TarpitAt: w(1), GreylistAt: 3}, 0, Pass},
		{Thresholds{TarpitAt: w(1), GreylistAt: 3}, 1, Tarpit},
		{Thresholds{TarpitAt: w(1), GreylistAt: 3}, 2, Tarpit},
		{Thresholds{TarpitAt: w(1), GreylistAt: 3}, 3, Greylist},
	}
	for _, tc := range tests {
		if got := tc.t.Classify(tc.score); got != tc.want {
			t.Errorf("%+v.Classify(%d) = %v, want %v", tc.t, tc.score, got, tc.want)
		}
		if tc.t.TarpitAt == nil {
			if got := Classify(tc.score, tc.t.GreylistAt); got != tc.want {
				t.Errorf("Classify(%d, %d) = %v, want %v", tc.score, tc.t.GreylistAt, got, tc.want)
			}
		}
	}
	if err := (Thresholds{TarpitAt: w(3), GreylistAt: 3}).Check(); err == nil {
		t.Errorf("tarpit_at = greylist_at accepted")
	}
	if err := (Thresholds{TarpitAt: w(2), GreylistAt: 3}).Check(); err != nil {
		t.Errorf("tarpit_at below greylist_at: %v", err)
	}
	for c, s := range map[Class]string{Pass: "pass", Tarpit: "tarpit", Greylist: "greylist", 9: "class(9)"} {
		if c.String() != s {
			t.Errorf("Class(%d).String() = %q, want %q", c, c.String(), s)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{DefaultListed, "127.0.0.2", "127.0.0.0/24", "::1", "1-2", "127.0.0.3-127.0.0.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			return
		}
		if !r.Lo.Is4() || !r.Hi.Is4() || r.Hi.Less(r.Lo) || !r.Contains(r.Lo) || !r.Contains(r.Hi) {
			t.Fatalf("ParseRange(%q) = %v: not an IPv4 range", s, r)
		}
		if again, err := ParseRange(r.String()); err != nil || again != r {
			t.Fatalf("ParseRange(%q) = %v, but ParseRange(%q) = %v, %v", s, r, r.String(), again, err)
		}
	})
}

// TestShownZone: an access key in a zone (Spamhaus DQS) is hidden from
// the names that reach logs, explain and metric labels; the lookups
// still use the whole zone.
func TestShownZone(t *testing.T) {
	for _, tc := range []struct{ zone, want string }{
		{"zen.spamhaus.org", "zen.spamhaus.org"},
		{"list.dnswl.org", "list.dnswl.org"},
		{"aaaabbbbcccc1234dddd5678ee.zen.dq.spamhaus.net", "KEY.zen.dq.spamhaus.net"},
		{"0123456789abcdef0123456789abcdef.combined.mail.abusix.zone", "KEY.combined.mail.abusix.zone"},
		{"bl.spamcop.net", "bl.spamcop.net"},
		{"b.barracudacentral.org", "b.barracudacentral.org"},
		{"hostkarma.junkemailfilter.com", "hostkarma.junkemailfilter.com"}, // long, but no digit
		{"abcdefghijklmnop1.dnsbl.example", "KEY.dnsbl.example"},
		{"abcdefghijklmno1.dnsbl.example", "KEY.dnsbl.example"},
		{"abcdefghijklmn1.dnsbl.example", "abcdefghijklmn1.dnsbl.example"}, // 15: too short for a key
		{"abcdefghij-klmnop1.dnsbl.example", "abcdefghij-klmnop1.dnsbl.example"},
		{"aaaabbbbcccc1234dddd5678ee.org", "aaaabbbbcccc1234dddd5678ee.org"}, // the key would be the name
	} {
		if got := ShownZone(tc.zone); got != tc.want {
			t.Errorf("ShownZone(%q) = %q, want %q", tc.zone, got, tc.want)
		}
	}
	c, err := NewConfig(Spec{
		DNSBLs: []DNSBLSpec{{Zone: "aaaabbbbcccc1234dddd5678ee.zen.dq.spamhaus.net", Weight: 3}},
		DNSWLs: []DNSWLSpec{{Zone: "aaaabbbbcccc1234dddd5678ee.swl.dq.spamhaus.net", Weight: -3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Names(), []string{"dnsbl.KEY.zen.dq.spamhaus.net", "dnswl.KEY.swl.dq.spamhaus.net"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}
