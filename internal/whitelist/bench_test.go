package whitelist

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extraEntries is how many generated entries the benchmarks add to the
// shipped lists.
const extraEntries = 100_000

// genClients writes extraEntries client entries: IPv4 hosts, IPv4 networks
// of every length from /8 to /31, IPv6 networks of the lengths seen in
// practice, and domains.
func genClients(b *testing.B) string {
	rng := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	v6lens := []int{32, 36, 40, 44, 48, 52, 56, 60, 64, 128}
	for i := 0; i < extraEntries; i++ {
		switch i % 10 {
		case 0, 1, 2, 3:
			fmt.Fprintf(&sb, "%d.%d.%d.%d\n", 11+rng.IntN(100), rng.IntN(256), rng.IntN(256), rng.IntN(256))
		case 4, 5:
			fmt.Fprintf(&sb, "%d.%d.%d.%d/%d\n", 11+rng.IntN(100), rng.IntN(256), rng.IntN(256), rng.IntN(256), 8+rng.IntN(24))
		case 6:
			fmt.Fprintf(&sb, "2a0%x:%x:%x::/%d\n", rng.IntN(16), rng.IntN(0x10000), rng.IntN(0x10000), v6lens[rng.IntN(len(v6lens))])
		default:
			fmt.Fprintf(&sb, "mx%d.host%d.example%d.com\n", rng.IntN(10), rng.IntN(1_000_000), rng.IntN(1000))
		}
	}
	path := filepath.Join(b.TempDir(), "whitelist_clients.local")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

func loadBenchClients(b *testing.B) *Clients {
	b.Helper()
	c, probs := LoadClients([]string{shippedClients, genClients(b)})
	if len(probs) > 0 {
		b.Fatalf("problems: %v", probs[:min(len(probs), 5)])
	}
	if c.Len() < extraEntries*9/10 {
		b.Fatalf("Len() = %d, want about %d", c.Len(), extraEntries)
	}
	return c
}

func BenchmarkMatchName(b *testing.B) {
	c := loadBenchClients(b)
	cases := []struct {
		label, name string
		want        bool
	}{
		{"hit-domain", "mail-eopbgr80052.outbound.protection.outlook.com", true},
		{"hit-regex", "smtp12-g21.free.fr", true},
		{"miss", "host-203-0-113-7.dynamic.example-isp.net", false},
		{"unknown", "unknown", false},
	}
	for _, tc := range cases {
		b.Run(tc.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.MatchName(tc.name) != tc.want {
					b.Fatalf("MatchName(%q) != %v", tc.name, tc.want)
				}
			}
		})
	}
}

func BenchmarkMatchAddr(b *testing.B) {
	c := loadBenchClients(b)
	cases := []struct {
		label, addr string
		want        bool
	}{
		{"hit-v4-net", "205.201.130.17", true},
		{"miss-v4", "203.0.113.7", false},
		{"miss-v4-mapped", "::ffff:203.0.113.7", false},
		{"hit-v6-net", "2a01:4180:4050:400::25", true},
		{"miss-v6", "2001:db8:1234:5678::1", false},
	}
	for _, tc := range cases {
		ip := netip.MustParseAddr(tc.addr)
		b.Run(tc.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.MatchAddr(ip) != tc.want {
					b.Fatalf("MatchAddr(%s) != %v", ip, tc.want)
				}
			}
		})
	}
}

func BenchmarkRecipients(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	var sb strings.Builder
	for i := 0; i < extraEntries; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&sb, "user%d@example%d.org\n", rng.IntN(1_000_000), rng.IntN(1000))
		case 1:
			fmt.Fprintf(&sb, "role%d@\n", rng.IntN(1_000_000))
		case 2:
			fmt.Fprintf(&sb, "@dept%d.example%d.net\n", rng.IntN(1000), rng.IntN(1000))
		default:
			fmt.Fprintf(&sb, "corp%d.example\n", rng.IntN(1_000_000))
		}
	}
	path := filepath.Join(b.TempDir(), "whitelist_recipients.local")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	r, probs := LoadRecipients([]string{shippedRecipients, path})
	if len(probs) > 0 {
		b.Fatalf("problems: %v", probs[:min(len(probs), 5)])
	}
	cases := []struct {
		label, rcpt string
		want        bool
	}{
		{"hit-local", "Postmaster+test@example.org", true},
		{"miss", "bob.smith+lists@mail.example-corp.com", false},
		{"miss-long-local", strings.Repeat("x+", 40) + "y@a.b.c.d.example.com", false},
	}
	for _, tc := range cases {
		b.Run(tc.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r.Match(tc.rcpt) != tc.want {
					b.Fatalf("Match(%q) != %v", tc.rcpt, tc.want)
				}
			}
		})
	}
}
