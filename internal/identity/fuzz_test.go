package identity

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzOf checks the promises of Of for any input: no panic, never an
// organisation without a verified name, and the key is always a suffix of
// the lower-cased name that starts on a label boundary.
func FuzzOf(f *testing.F) {
	seeds := []struct{ addr, name string }{
		{"209.85.214.173", "mail-pl1-f173.google.com"},
		{"2607:f8b0:4864:20::62a", "mail-pl1-x62a.google.com"},
		{"73.15.220.11", "c-73-15-220-11.hsd1.ca.comcast.net"},
		{"91.10.18.52", "P5B0A1234.dip0.t-ipconnect.de."},
		{"54.1.2.3", "ec2-54-1-2-3.compute-1.amazonaws.com"},
		{"203.205.221.190", "out203-205-221-190.mail.qq.com"},
		{"192.0.2.1", "unknown"},
		{"192.0.2.1", ""},
		{"192.0.2.1", "a..b"},
		{"::ffff:192.0.2.1", "mail.city.kawasaki.jp"},
		{"", "mx.outlook.com"},
		{"2003:e1:a712:3400:b1c2:d3e4:f5a6:b7c8", "p200300e1a7123400b1c2d3e4f5a6b7c8.dip0.t-ipconnect.de"},
	}
	for _, s := range seeds {
		f.Add(s.addr, s.name)
	}
	m := New(Config{
		PoolDomains:    []string{"outlook.com", "mail.qq.com"},
		DynamicDomains: []string{"dyn.example.org"},
	})
	f.Fuzz(func(t *testing.T, addr, name string) {
		ip, _ := netip.ParseAddr(addr) // the zero Addr when addr is not one
		org, rule, ok := m.Of(ip, name)
		org2, rule2, ok2 := m.Of(ip, name)
		if org != org2 || rule != rule2 || ok != ok2 {
			t.Fatalf("Of(%s, %q) not deterministic: (%q, %v, %v) then (%q, %v, %v)", addr, name, org, rule, ok, org2, rule2, ok2)
		}
		if strings.HasPrefix(rule.String(), "rule(") {
			t.Fatalf("Of(%s, %q): undefined rule %v", addr, name, rule)
		}
		if !ok {
			if org != "" || rule == PoolDomain || rule == OrgDomain {
				t.Fatalf("Of(%s, %q) = (%q, %v, false): subnet with a key or a key rule", addr, name, org, rule)
			}
			return
		}
		if name == "" || strings.EqualFold(name, "unknown") {
			t.Fatalf("Of(%s, %q) = (%q, %v, true): aggregated an unverified client", addr, name, org, rule)
		}
		if rule != PoolDomain && rule != OrgDomain {
			t.Fatalf("Of(%s, %q) = (%q, %v, true): key from a subnet rule", addr, name, org, rule)
		}
		low := strings.ToLower(strings.TrimSuffix(name, "."))
		if org == "" || !strings.HasSuffix(low, org) || len(org) < len(low) && low[len(low)-len(org)-1] != '.' {
			t.Fatalf("Of(%s, %q) = %q: not a suffix of %q on a label boundary", addr, name, org, low)
		}
		if _, valid := hostname(name); !valid {
			t.Fatalf("Of(%s, %q) = %q: aggregated an invalid name", addr, name, org)
		}
	})
}
