package config

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Problems of the settings that bound what failures cost: who may connect,
// what a store failure answers, how long the store may take.
func TestReliabilityProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // Problem.Error(), with FILE for the file
	}{
		{
			name: "inet beyond loopback without allow",
			src:  "listen { inet = \"0.0.0.0:10023\" }\nlisten { inet = \":10024\" }\nlisten { inet = \"mx.example.org:10025\" }\nlisten { inet = \"[::]:10026\" }\n",
			want: []string{
				`FILE:1:17: Listening beyond this host: inet = "0.0.0.0:10023" accepts connections from other hosts: add allow = ["192.0.2.0/24", "2001:db8::25"] listing the client networks that may connect (your Postfix servers), or listen on 127.0.0.1`,
				`FILE:2:17: Listening beyond this host: inet = ":10024" accepts connections from other hosts: add allow = ["192.0.2.0/24", "2001:db8::25"] listing the client networks that may connect (your Postfix servers), or listen on 127.0.0.1`,
				`FILE:3:17: Listening beyond this host: inet = "mx.example.org:10025" accepts connections from other hosts: add allow = ["192.0.2.0/24", "2001:db8::25"] listing the client networks that may connect (your Postfix servers), or listen on 127.0.0.1`,
				`FILE:4:17: Listening beyond this host: inet = "[::]:10026" accepts connections from other hosts: add allow = ["192.0.2.0/24", "2001:db8::25"] listing the client networks that may connect (your Postfix servers), or listen on 127.0.0.1`,
			},
		},
		{
			name: "bad allow entries",
			src: "listen {\n  inet  = \"0.0.0.0:10023\"\n  allow = [\"192.0.2.1/24\", \"nonsense\", \"fe80::1%eth0\", \"10.0.0.0/33\"]\n}\n" +
				"listen {\n  inet  = \"0.0.0.0:10024\"\n  allow = []\n}\n" +
				"listen {\n  unix  = \"/run/x.sock\"\n  allow = [\"::1\"]\n}\n",
			want: []string{
				`FILE:3:11: Invalid allow entry: "192.0.2.1/24" has bits set after the /24; did you mean "192.0.2.0/24"?`,
				`FILE:3:11: Invalid allow entry: "nonsense" is not an IP address or a network like "192.0.2.0/24"`,
				`FILE:3:11: Invalid allow entry: "fe80::1%eth0" is not an IP address or a network like "192.0.2.0/24"`,
				`FILE:3:11: Invalid allow entry: "10.0.0.0/33" is not a network like "192.0.2.0/24" or "2001:db8::/32"`,
				`FILE:7:11: Invalid allow: allow = [] lets no client connect; list the client networks, like ["192.0.2.0/24", "2001:db8::25"]`,
				`FILE:11:11: Invalid allow: allow only applies to inet; remove it from a listen block without inet (a unix socket is guarded by socket_mode and socket_group)`,
			},
		},
		{
			name: "store failure settings",
			src:  "greylist {\n  on_store_error = \"reject\"\n  store_error_text = \"a\\nb\"\n}\nlimits {\n  store_timeout = \"100s\"\n  max_request_size = 1000\n}\n",
			want: []string{
				`FILE:2:20: Invalid value: on_store_error must be "dunno" or "defer", got "reject"`,
				`FILE:3:22: Invalid value: store_error_text must be a single line; remove the "\n"`,
				`FILE:6:19: Invalid duration: store_timeout must be shorter than Postfix's smtpd_policy_service_timeout (100s by default), or Postfix gives up first and defers the mail itself; got "100s"`,
				`FILE:7:22: Value out of range: max_request_size must be at least 1024, got 1000`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"a.hcl": tc.src})
			file := filepath.Join(dir, "a.hcl")
			_, ps := Load(file)
			var got []string
			for _, p := range ps {
				got = append(got, strings.ReplaceAll(p.Error(), file, "FILE"))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("source:\n%s\ngot problems:\n  %s\nwant:\n  %s", tc.src, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestAllowDefaults(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.hcl": `
listen { inet = "10023" }
listen { inet = "localhost:10024" }
listen { inet = "[::1]:10025" }
listen { inet = "[::ffff:127.0.0.1]:10026" }
listen {
  inet  = "127.0.0.1:10027"
  allow = ["127.0.0.1"]
}
listen { unix = "/run/greyd.sock" }
`})
	cfg := mustLoad(t, dir)
	want := [][]netip.Prefix{LoopbackNets, LoopbackNets, LoopbackNets, LoopbackNets, {netip.MustParsePrefix("127.0.0.1/32")}, nil}
	for i, l := range cfg.Listen {
		if !reflect.DeepEqual(l.Allow, want[i]) {
			t.Errorf("listen %d (%s%s): allow = %v, want %v", i, l.Inet, l.Unix, l.Allow, want[i])
		}
	}
}

func TestParseNet(t *testing.T) {
	tests := []struct{ in, want, back string }{
		{"192.0.2.25", "192.0.2.25/32", "192.0.2.25"},
		{"192.0.2.0/24", "192.0.2.0/24", "192.0.2.0/24"},
		{"::1", "::1/128", "::1"},
		{"2001:db8::/32", "2001:db8::/32", "2001:db8::/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32", "192.0.2.1"},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24", "192.0.2.0/24"},
		{"0.0.0.0/0", "0.0.0.0/0", "0.0.0.0/0"},
	}
	for _, tc := range tests {
		p, err := ParseNet(tc.in)
		if err != nil || p.String() != tc.want || formatNet(p) != tc.back {
			t.Errorf("ParseNet(%q) = %v, %v (written %q); want %s, written %q", tc.in, p, err, formatNet(p), tc.want, tc.back)
		}
	}
}

// FuzzParseNet: whatever ParseNet accepts is a valid, masked network that
// its written form parses back to.
func FuzzParseNet(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "::1", "::ffff:1.2.3.0/120", "fe80::1%eth0", "1.2.3.4/33", "", "/", "1.2.3.4/-1", "::ffff:0:0/95"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseNet(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Errorf("ParseNet(%q): error %q does not name the entry", s, err)
			}
			return
		}
		if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("ParseNet(%q) = %v: not a valid masked unmapped network", s, p)
		}
		if back, err := ParseNet(formatNet(p)); err != nil || back != p {
			t.Fatalf("ParseNet(%q) = %v, written %q, read back %v, %v", s, p, formatNet(p), back, err)
		}
	})
}
