package normalize

import (
	"net/netip"
	"testing"
)

func TestSender(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		// Rows of the reference (Postgrey 1.37, verified).
		{"", ""},
		{"Alice+list@Foo.COM", "alice@foo.com"},
		{"prvs=1234567890=bounce@foo.com", "bounce@foo.com"},
		{"prvs=bounce=1234567890@foo.com", "bounce@foo.com"},
		{"prvs=abc=def@foo.com", "def@foo.com"},
		{"bounce-123-456@lists.foo.com", "bounce-#-#@lists.foo.com"},
		{"user.2023@foo.com", "user.#@foo.com"},
		{"user2023@foo.com", "user2023@foo.com"},
		{"bounces+12345-abcd-me=x.org@sendgrid.net", "bounces@sendgrid.net"},
		{"msprvs1=19ABCDEF=bounces-123@foo.com", "msprvs1=19abcdef=bounces-#@foo.com"},
		{"a@b@c.com", "a@b@c.com"},
		{"no-at-sign", "no-at-sign"},
		{"MixedCase", "mixedcase"},
		// Perl word boundaries: '_' is a word character.
		{"a_123@x", "a_123@x"},
		{"123@x", "#@x"},
		{"12ab@x", "12ab@x"},
		{"x.1.22.333@x", "x.#.#.#@x"},
		// BATV corner cases as Postgrey's split: exactly three fields.
		{"prvs=a=b=c@x", "prvs=a=b=c@x"},
		{"prvs=abc=@x", "prvs=abc=@x"},
		{"prvs==y@x", "y@x"},
		{"prvs=0123456789=abcdefghij@x", "abcdefghij@x"},
		// Better than Postgrey: BATV in any case.
		{"PRVS=ABCDEF1234=Bounce@Foo.com", "bounce@foo.com"},
		{"Prvs=bounce=ABCDEF1234@foo.com", "bounce@foo.com"},
		// Better than Postgrey: SRS reduced to the original sender.
		{"SRS0=HHH=TT=domain.com=user@srs.example", "user@domain.com"},
		{"srs0+HHH=TT=Domain.com=User@srs.example", "user@domain.com"},
		{"SRS0-HHH=TT=domain.com=bounce-42@srs.example", "bounce-#@domain.com"},
		{"SRS0=HHH=TT=domain.com=a=b@srs.example", "a=b@domain.com"},
		{"SRS1=HHH=first.example==HHH=TT=domain.com=user@second.example", "user@domain.com"},
		{"SRS1=HHH=first.example=+HHH=TT=domain.com=user+tag@second.example", "user@domain.com"},
		// Malformed SRS is kept as an ordinary address.
		{"SRS0=HHH@srs.example", "srs0=hhh@srs.example"},
		{"SRS0=HHH=TT=domain.com=@srs.example", "srs0=hhh=tt=domain.com=@srs.example"},
		{"SRS2=HHH=TT=d=u@x", "srs2=hhh=tt=d=u@x"},
		{"SRS1=HHH=first.example=HHH@x", "srs1=hhh=first.example=hhh@x"},
	}
	for i, tc := range tests {
		got := string(AppendSender(nil, tc.in))
		if got != tc.want {
			t.Errorf("%d: AppendSender(%q) = %q, want %q", i, tc.in, got, tc.want)
		}
	}
}

func TestClientNet(t *testing.T) {
	tests := []struct {
		addr   string
		byHost bool
		v4, v6 int
		want   string
		awl    string
	}{
		{"198.51.100.60", false, 24, 64, "198.51.100.0", "198.51.100.60"},
		{"198.51.100.60", true, 24, 64, "198.51.100.60/32", "198.51.100.60"},
		{"198.51.100.60", false, 16, 64, "198.51.0.0", "198.51.100.60"},
		{"2001:db8:1:2:3:4:5:6", false, 24, 64, "2001:db8:1:2:0:0:0:0", "2001:DB8:1:2:3:4:5:6"},
		{"2001:db8::1", true, 24, 64, "2001:db8:0:0:0:0:0:1/128", "2001:DB8:0:0:0:0:0:1"},
		{"2001:db8:abcd:ef01::1", false, 24, 48, "2001:db8:abcd:0:0:0:0:0", "2001:DB8:ABCD:EF01:0:0:0:1"},
		// Fixed: IPv4-mapped IPv6 is IPv4.
		{"::ffff:192.0.2.200", false, 24, 64, "192.0.2.0", "192.0.2.200"},
		{"fe80::1%eth0", true, 24, 64, "fe80:0:0:0:0:0:0:1/128", "FE80:0:0:0:0:0:0:1"},
	}
	for i, tc := range tests {
		ip, ok := ParseAddr(tc.addr)
		if !ok {
			t.Fatalf("%d: ParseAddr(%q) failed", i, tc.addr)
		}
		if got := string(AppendClientNet(nil, ip, tc.byHost, tc.v4, tc.v6)); got != tc.want {
			t.Errorf("%d: AppendClientNet(%q, host=%v) = %q, want %q", i, tc.addr, tc.byHost, got, tc.want)
		}
		if got := string(AppendClientAddr(nil, ip)); got != tc.awl {
			t.Errorf("%d: AppendClientAddr(%q) = %q, want %q", i, tc.addr, got, tc.awl)
		}
	}
}

func TestParseAddrRejects(t *testing.T) {
	for _, s := range []string{"", "localhost", "1.2.3", "1.2.3.4.5", "300.1.1.1", "::g", "1.2.3.4/24"} {
		if ip, ok := ParseAddr(s); ok {
			t.Errorf("ParseAddr(%q) = %v, want failure", s, ip)
		}
	}
}

func FuzzSender(f *testing.F) {
	for _, s := range []string{"", "a@b", "prvs=1234567890=x@y", "SRS0=a=b=c=d@e", "SRS1=a=b==c=d=e=f@g", "x-1-2@y", "prvs=", "SRS1=", "SRS0=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendSender(nil, s)
		// Normalising must be idempotent on its output's case and never
		// grow the input by more than the '@' it may keep.
		if len(out) > len(s) {
			t.Fatalf("AppendSender(%q) = %q: longer than input", s, out)
		}
	})
}

func FuzzClientNet(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::1", "::ffff:1.2.3.4", "fe80::1%eth0", "2001:db8::"} {
		f.Add(s, uint8(24), uint8(64))
	}
	f.Fuzz(func(t *testing.T, s string, v4, v6 uint8) {
		ip, ok := ParseAddr(s)
		if !ok {
			return
		}
		AppendClientNet(nil, ip, false, int(v4), int(v6))
		AppendClientNet(nil, ip, true, int(v4), int(v6))
		if _, err := netip.ParseAddr(string(AppendClientAddr(nil, ip))); err != nil {
			t.Fatalf("AppendClientAddr(%q) does not parse back: %v", s, err)
		}
	})
}

func BenchmarkSender(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 256)
	for i := 0; i < b.N; i++ {
		buf = AppendSender(buf[:0], "prvs=1234567890=Bounce-123-456+tag@Lists.Example.COM")
	}
}

func BenchmarkClientNet(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 64)
	ip := netip.MustParseAddr("2001:db8:1:2:3:4:5:6")
	for i := 0; i < b.N; i++ {
		buf = AppendClientNet(buf[:0], ip, false, 24, 64)
	}
}
