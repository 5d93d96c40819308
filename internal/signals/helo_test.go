package signals

import (
	"net/netip"
	"strings"
	"testing"
)

func TestHELOCheck(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::25")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	tests := []struct {
		helo    string
		client  netip.Addr
		invalid bool
		why     string
	}{
		{"mail.example.com", v4, false, heloValid},
		{"MAIL.Example.COM", v4, false, heloValid},
		{"mail.example.com.", v4, false, heloValid},
		{"mail-1.a-b.example", v4, false, heloValid},
		{"localhost.localdomain", v4, false, heloValid}, // two labels: the rule holds it valid
		{"1mail.123.example.com", v4, false, heloValid},
		{"xn--bcher-kva.example", v4, false, heloValid},
		{"a." + strings.Repeat("b", 63) + ".com", v4, false, heloValid},
		{"[192.0.2.1]", v4, false, heloClientLiteral},
		{"[192.0.2.1]", mapped, false, heloClientLiteral},
		{"[IPv6:2001:db8::25]", v6, false, heloClientLiteral},
		{"[ipv6:2001:DB8:0::25]", v6, false, heloClientLiteral},

		{"", v4, true, heloEmpty},
		{"localhost", v4, true, heloSingleLabel},
		{"mail", v4, true, heloSingleLabel},
		{"mail.", v4, true, heloSingleLabel},
		{"192.0.2.1", v4, true, heloBareAddress},
		{"192.0.2.300", v4, true, heloNumericTLD},
		{"mail.123", v4, true, heloNumericTLD},
		{"123", v4, true, heloNumericTLD},
		{"[192.0.2.2]", v4, true, heloOtherLiteral},
		{"[IPv6:2001:db8::26]", v6, true, heloOtherLiteral},
		{"[192.0.2.1]", v6, true, heloOtherLiteral},
		{"[2001:db8::25]", v6, true, heloBadLiteral}, // no IPv6: tag
		{"[IPv6:192.0.2.1]", v4, true, heloBadLiteral},
		{"[IPv6:fe80::1%eth0]", netip.MustParseAddr("fe80::1"), true, heloBadLiteral},
		{"[192.0.2.1", v4, true, heloBadLiteral},
		{"[]", v4, true, heloBadLiteral},
		{"[", v4, true, heloBadLiteral},
		{"[mail.example.com]", v4, true, heloBadLiteral},
		{"mail..example.com", v4, true, heloNotAHostname},
		{".example.com", v4, true, heloNotAHostname},
		{"-mail.example.com", v4, true, heloNotAHostname},
		{"mail-.example.com", v4, true, heloNotAHostname},
		{"mail_1.example.com", v4, true, heloNotAHostname},
		{"mail example.com", v4, true, heloNotAHostname},
		{"mail.example.com..", v4, true, heloNotAHostname},
		{"2001:db8::25", v6, true, heloNotAHostname},
		{"a." + strings.Repeat("b", 64) + ".com", v4, true, heloNotAHostname},
		{strings.Repeat("abcdefghi.", 26) + "com", v4, true, heloNotAHostname}, // 263 characters
		{"mail.exämple.com", v4, true, heloNotAHostname},
		{".", v4, true, heloNotAHostname},
	}
	for _, tc := range tests {
		invalid, why := heloCheck(tc.helo, tc.client)
		if invalid != tc.invalid || why != tc.why {
			t.Errorf("heloCheck(%q, %v) = %v, %q; want %v, %q", tc.helo, tc.client, invalid, why, tc.invalid, tc.why)
		}
	}
}

func FuzzHELOCheck(f *testing.F) {
	for _, s := range []string{"mail.example.com", "[192.0.2.1]", "[IPv6:2001:db8::1]", "", "a..b", "1.2.3.4"} {
		f.Add(s)
	}
	client := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, helo string) {
		invalid, why := heloCheck(helo, client)
		if invalid == (why == heloValid || why == heloClientLiteral) {
			t.Errorf("heloCheck(%q) = %v, %q: the verdict and the reason disagree", helo, invalid, why)
		}
		if !invalid && strings.HasPrefix(helo, "[") && helo != "[192.0.2.1]" && !strings.HasPrefix(strings.ToLower(helo), "[ipv6:") {
			t.Errorf("heloCheck(%q) valid: only the client's literal may be", helo)
		}
	})
}
