package main

import (
	"bytes"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// postfix37Attrs is the attribute set Postfix 3.7 sends (SMTPD_POLICY_README).
var postfix37Attrs = []string{
	"request", "protocol_state", "protocol_name", "helo_name", "queue_id",
	"sender", "recipient", "recipient_count", "client_address", "client_name",
	"reverse_client_name", "instance",
	"sasl_method", "sasl_username", "sasl_sender", "size",
	"ccert_subject", "ccert_issuer", "ccert_fingerprint",
	"encryption_protocol", "encryption_cipher", "encryption_keysize", "etrn_domain",
	"stress", "ccert_pubkey_fingerprint", "client_port", "policy_context",
	"server_address", "server_port",
}

// parseRequest splits one generated request into attributes, failing on
// anything Postfix would not send.
func parseRequest(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	if !bytes.HasSuffix(raw, []byte("\n\n")) || bytes.Count(raw, []byte("\n\n")) != 1 {
		t.Fatalf("request does not end with exactly one empty line:\n%s", raw)
	}
	if bytes.IndexByte(raw, 0) >= 0 || bytes.IndexByte(raw, '\r') >= 0 {
		t.Fatalf("request contains NUL or CR:\n%s", raw)
	}
	attrs := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok || name == "" {
			t.Fatalf("bad line %q in request:\n%s", line, raw)
		}
		if _, dup := attrs[name]; dup {
			t.Fatalf("duplicate attribute %q in request:\n%s", name, raw)
		}
		attrs[name] = value
	}
	return attrs
}

// triplet key as greylisting sees it: client network, sender, recipient.
func tripletKey(a map[string]string) string {
	return a["client_address"] + "/" + a["sender"] + "/" + a["recipient"]
}

var allDigitWord = regexp.MustCompile(`\b\d+\b`)

func TestWorkloadAttributes(t *testing.T) {
	for name, kind := range workloadNames {
		t.Run(name, func(t *testing.T) {
			g := newGenerator(kind, 7, 50)
			for i := range uint64(500) {
				a := parseRequest(t, g.appendRequest(nil, i))
				for _, n := range postfix37Attrs {
					if _, ok := a[n]; !ok {
						t.Fatalf("request %d lacks %s: %v", i, n, a)
					}
				}
				if len(a) != len(postfix37Attrs) {
					t.Fatalf("request %d has %d attributes, want %d: %v", i, len(a), len(postfix37Attrs), a)
				}
				fixed := map[string]string{
					"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
					"recipient_count": "0", "etrn_domain": "", "stress": "", "server_port": "25",
				}
				for k, v := range fixed {
					if a[k] != v {
						t.Fatalf("request %d: %s=%q, want %q", i, k, a[k], v)
					}
				}
				ip, err := netip.ParseAddr(a["client_address"])
				if err != nil {
					t.Fatalf("request %d: client_address %q: %v", i, a["client_address"], err)
				}
				bench4 := netip.MustParsePrefix("198.18.0.0/15")
				doc6 := netip.MustParsePrefix("2001:db8::/32")
				if !bench4.Contains(ip) && !doc6.Contains(ip) {
					t.Fatalf("request %d: client_address %s outside 198.18.0.0/15 and 2001:db8::/32", i, ip)
				}
				if local, _, _ := strings.Cut(a["sender"], "@"); allDigitWord.MatchString(local) {
					t.Fatalf("request %d: sender %q has an all-digit word (VERP normalisation would merge senders)", i, a["sender"])
				}
			}
		})
	}
}

func TestNewNeverRepeatsTriplet(t *testing.T) {
	const n = 20000
	g := newGenerator(wNew, 1, 1000)
	seen := make(map[string]uint64, n)     // triplet -> request
	seenRcpt := make(map[string]uint64, n) // recipient -> request
	var v4, v6 int
	var buf []byte
	for i := range uint64(n) {
		buf = g.appendRequest(buf[:0], i)
		a := parseRequest(t, buf)
		k := strings.ToLower(tripletKey(a))
		if j, dup := seen[k]; dup {
			t.Fatalf("requests %d and %d share triplet %s", j, i, k)
		}
		seen[k] = i
		rcpt := strings.ToLower(a["recipient"])
		if j, dup := seenRcpt[rcpt]; dup {
			t.Fatalf("requests %d and %d share recipient %s", j, i, rcpt)
		}
		seenRcpt[rcpt] = i
		if strings.Contains(a["client_address"], ":") {
			v6++
			if i%2 == 0 {
				t.Fatalf("request %d is IPv6, want IPv4 on even requests", i)
			}
		} else {
			v4++
		}
	}
	if v4 != n/2 || v6 != n/2 {
		t.Errorf("IPv4 %d, IPv6 %d, want %d each", v4, v6, n/2)
	}
	// Another seed gives other triplets (the bench script uses one seed per row).
	other := newGenerator(wNew, 2, 1000)
	for i := range uint64(1000) {
		k := strings.ToLower(tripletKey(parseRequest(t, other.appendRequest(nil, i))))
		if _, dup := seen[k]; dup {
			t.Fatalf("seed 2 request %d repeats a seed 1 triplet %s", i, k)
		}
	}
}

func TestRepeatCyclesPool(t *testing.T) {
	const k = 100
	g := newGenerator(wRepeat, 3, k)
	first := make([]string, k)
	distinct := make(map[string]bool)
	for i := range uint64(5 * k) {
		a := parseRequest(t, g.appendRequest(nil, i))
		key := tripletKey(a)
		distinct[key] = true
		if i < k {
			first[i] = key
		} else if key != first[i%k] {
			t.Fatalf("request %d triplet %s, want pool entry %d = %s", i, key, i%k, first[i%k])
		}
	}
	if len(distinct) != k {
		t.Errorf("%d distinct triplets, want pool size %d", len(distinct), k)
	}
	// Priming sends exactly the pool.
	for j := range uint64(k) {
		if key := tripletKey(parseRequest(t, g.appendPrime(nil, j))); key != first[j] {
			t.Fatalf("prime %d = %s, want %s", j, key, first[j])
		}
	}
}

func TestWhitelistedMatchesDefaultWhitelist(t *testing.T) {
	g := newGenerator(wWhitelisted, 4, 1000)
	var outlook, google, postmaster int
	for i := range uint64(3000) {
		a := parseRequest(t, g.appendRequest(nil, i))
		switch name, rcpt := a["client_name"], a["recipient"]; {
		case strings.HasSuffix(name, ".outlook.com"):
			outlook++
		case strings.HasSuffix(name, ".google.com"):
			google++
		case strings.HasPrefix(rcpt, "postmaster@") && name == "unknown":
			postmaster++
		default:
			t.Fatalf("request %d is not whitelisted by default lists: client_name=%s recipient=%s", i, name, rcpt)
		}
	}
	if outlook != 1000 || google != 1000 || postmaster != 1000 {
		t.Errorf("outlook %d, google %d, postmaster %d; want 1000 each", outlook, google, postmaster)
	}
}

func TestMixedShares(t *testing.T) {
	const n = 20000
	g := newGenerator(wMixed, 5, 1000)
	var counts [3]int
	for i := range uint64(n) {
		counts[g.classOf(i)]++
		a := parseRequest(t, g.appendRequest(nil, i))
		isWL := strings.HasSuffix(a["client_name"], ".outlook.com") ||
			strings.HasSuffix(a["client_name"], ".google.com") ||
			strings.HasPrefix(a["recipient"], "postmaster@")
		if isWL != (g.classOf(i) == classWhitelisted) {
			t.Fatalf("request %d class %d, but whitelisted-looking = %v: %v", i, g.classOf(i), isWL, a)
		}
	}
	want := [3]int{mixNewPct, mixRepeatPct, 100 - mixNewPct - mixRepeatPct}
	for c, got := range counts {
		pct := 100 * got / n
		if pct < want[c]-2 || pct > want[c]+2 {
			t.Errorf("class %d: %d%% of requests, want %d%% ± 2", c, pct, want[c])
		}
	}
}

func TestSeedReproducible(t *testing.T) {
	a := newGenerator(wMixed, 9, 1000)
	b := newGenerator(wMixed, 9, 1000)
	c := newGenerator(wMixed, 10, 1000)
	same := 0
	for i := range uint64(100) {
		ra, rb, rc := a.appendRequest(nil, i), b.appendRequest(nil, i), c.appendRequest(nil, i)
		if !bytes.Equal(ra, rb) {
			t.Fatalf("seed 9 request %d differs between generators:\n%s\n%s", i, ra, rb)
		}
		if bytes.Equal(ra, rc) {
			same++
		}
	}
	if same != 0 {
		t.Errorf("%d of 100 requests identical for seeds 9 and 10", same)
	}
}

func TestAppendRequestDoesNotAllocate(t *testing.T) {
	g := newGenerator(wMixed, 1, 1000)
	buf := make([]byte, 0, 4096)
	i := uint64(0)
	if n := testing.AllocsPerRun(1000, func() {
		buf = g.appendRequest(buf[:0], i)
		i++
	}); n != 0 {
		t.Errorf("appendRequest allocates %v times per request", n)
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	b.ReportAllocs()
	g := newGenerator(wMixed, 1, 1000)
	buf := make([]byte, 0, 4096)
	for i := range uint64(b.N) {
		buf = g.appendRequest(buf[:0], i)
	}
	b.SetBytes(int64(len(buf)))
}

// With -clients the new triplets come from a fixed set of clients, the
// same for every seed, and are still never repeated.
func TestNewFromClients(t *testing.T) {
	const n, clients = 5000, 100
	seenTriplet := make(map[string]bool, 2*n)
	clientsOf := func(seed uint64) map[string]bool {
		g := newGenerator(wNew, seed, 1000)
		g.clients = clients
		addrs := make(map[string]bool)
		for i := range uint64(n) {
			a := parseRequest(t, g.appendRequest(nil, i))
			k := strings.ToLower(tripletKey(a))
			if seenTriplet[k] {
				t.Fatalf("seed %d request %d repeats triplet %s", seed, i, k)
			}
			seenTriplet[k] = true
			addrs[a["client_address"]+" "+a["client_name"]+" "+a["sender"]] = true
		}
		return addrs
	}
	one, two := clientsOf(1), clientsOf(2)
	if len(one) != clients {
		t.Errorf("%d distinct clients (address, name, sender), want %d", len(one), clients)
	}
	for c := range two {
		if !one[c] {
			t.Errorf("seed 2 has client %q that seed 1 has not", c)
		}
	}
}
