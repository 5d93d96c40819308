package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReverseName(t *testing.T) {
	tests := []struct {
		addr, zone, want string
	}{
		{"192.0.2.1", "zen.example", "1.2.0.192.zen.example"},
		{"192.0.2.1", "zen.example.", "1.2.0.192.zen.example"},
		{"10.0.0.255", "", "255.0.0.10"},
		{"::ffff:192.0.2.1", "zen.example", "1.2.0.192.zen.example"},
		// RFC 5782 section 2.4's example.
		{"2001:db8:1:2:3:4:567:89ab", "ugly.example.com",
			"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"},
		{"::1", "", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"},
		{"fe80::1%eth0", "z", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.z"},
	}
	for i, tc := range tests {
		if got := ReverseName(netip.MustParseAddr(tc.addr), tc.zone); got != tc.want {
			t.Errorf("%d: ReverseName(%s, %q) = %q, want %q", i, tc.addr, tc.zone, got, tc.want)
		}
	}
	if got := ReverseName(netip.Addr{}, "zen.example"); got != "" {
		t.Errorf("ReverseName(invalid) = %q, want \"\"", got)
	}
}

func TestPTRName(t *testing.T) {
	tests := []struct {
		addr, want string
	}{
		{"192.0.2.1", "1.2.0.192.in-addr.arpa"},
		{"::ffff:192.0.2.1", "1.2.0.192.in-addr.arpa"},
		{"2001:db8::567:89ab", "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
	}
	for i, tc := range tests {
		if got := PTRName(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("%d: PTRName(%s) = %q, want %q", i, tc.addr, got, tc.want)
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadResolvConf(t *testing.T) {
	tests := []struct {
		content string
		want    []string
	}{
		{"nameserver 192.0.2.53\n", []string{"192.0.2.53:53"}},
		{"# comment\nsearch example.com\nnameserver 192.0.2.1 # first\n  nameserver\t2001:db8::1\noptions rotate timeout:1\nnameserver 192.0.2.3\n",
			[]string{"192.0.2.1:53", "[2001:db8::1]:53", "192.0.2.3:53"}},
		{"nameserver fe80::1%eth0\n", []string{"[fe80::1%eth0]:53"}},
		{"; comment\nnameserver dns.example\nnameserver\nnameserver 192.0.2.1;x\n", []string{"192.0.2.1:53"}},
		{"#nameserver 192.0.2.1\nsearch example\n", []string{"127.0.0.1:53", "[::1]:53"}},
		{"", []string{"127.0.0.1:53", "[::1]:53"}},
	}
	for i, tc := range tests {
		got, err := ReadResolvConf(writeFile(t, tc.content))
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%d: %q: got %q, %v; want %q", i, tc.content, got, err, tc.want)
		}
	}
	got, err := ReadResolvConf(filepath.Join(t.TempDir(), "missing"))
	if err != nil || !slices.Equal(got, defaultServers) {
		t.Errorf("missing file: got %q, %v; want %q", got, err, defaultServers)
	}
	if _, err := ReadResolvConf(t.TempDir()); err == nil {
		t.Errorf("a directory as resolv.conf: no error")
	}
}

func TestCheckServer(t *testing.T) {
	tests := []struct {
		in, want string // want "" for an error
	}{
		{"192.0.2.53", "192.0.2.53:53"},
		{"192.0.2.53:5353", "192.0.2.53:5353"},
		{"2001:db8::53", "[2001:db8::53]:53"},
		{"[2001:db8::53]:53", "[2001:db8::53]:53"},
		{"127.0.0.1:0", ""},
		{"dns.example", ""},
		{"dns.example:53", ""},
		{"192.0.2.53:dns", ""},
		{"[2001:db8::53]", ""},
		{"", ""},
	}
	for i, tc := range tests {
		got, err := CheckServer(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("%d: CheckServer(%q) = %q, %v; want %q", i, tc.in, got, err, tc.want)
		}
	}
}
