package identity

import (
	"net/netip"
	"testing"
)

// BenchmarkOf measures the per-request cost of the identity decision.
// The names that reach the Public Suffix List cost one allocation inside
// golang.org/x/net/publicsuffix (see README.md); the others none.
func BenchmarkOf(b *testing.B) {
	m := New(Defaults())
	cases := []struct {
		bench, addr, name string
	}{
		{"org", "209.85.214.173", "mail-pl1-f173.google.com"},
		{"org-long", "40.107.93.57", "mail-dm6nam10on2057.outbound.protection.outlook.com"},
		{"org-v6", "2607:f8b0:4864:20::62a", "mail-pl1-x62a.google.com"},
		{"dynamic", "73.15.220.11", "c-73-15-220-11.hsd1.ca.comcast.net"},
		{"keyword", "24.80.1.2", "s0106aabbccddeeff.vc.shawcable.net"},
		{"pool", "203.205.221.190", "out203-205-221-190.mail.qq.com"},
		{"unknown", "192.0.2.1", "unknown"},
		{"upper", "209.85.214.173", "Mail-PL1-F173.Google.COM"},
	}
	for _, c := range cases {
		addr := netip.MustParseAddr(c.addr)
		b.Run(c.bench, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Of(addr, c.name)
			}
		})
	}
}
