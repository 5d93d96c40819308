package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestServeDNS(t *testing.T) {
	zone := filepath.Join(t.TempDir(), "bench.zone")
	os.WriteFile(zone, []byte(`example SOA 60
*.example 3600 TXT "v=spf1 ip4:198.18.0.0/15 -all"
1.0.19.198.dnsbl.test A 127.0.0.2
mail.example A 192.0.2.10
10.2.0.192.in-addr.arpa PTR mail.example
`), 0o644)
	var stdout bytes.Buffer
	var stderr lockedBuffer
	done := make(chan int, 1)
	// Port 0, and the address read back from the server's own line: a
	// port found free and closed again can be taken by another package's
	// test server before ours binds it (seen once in CI).
	go func() {
		done <- realMain([]string{"-serve-dns", "-tcp", "127.0.0.1:0", "-zone", zone, "-dns-log", "-d", "3s"}, &stdout, &stderr)
	}()
	var addr string
	for deadline := time.Now().Add(2 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if _, rest, ok := strings.Cut(stderr.String(), "DNS server listening on "); ok {
			addr, _, _ = strings.Cut(rest, " ")
		} else if time.Now().After(deadline) {
			t.Fatalf("no listening line; stderr: %s", stderr.String())
		}
	}

	ask := func(netw, name string, qtype uint16) (*mdns.Msg, error) {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), qtype)
		c := &mdns.Client{Net: netw, Timeout: 200 * time.Millisecond}
		r, _, err := c.Exchange(m, addr)
		return r, err
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := ask("udp", "mail.example", mdns.TypeA); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no answer from %s: %v; stderr: %s", addr, err, stderr.String())
		}
	}
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  string
	}{
		{"s7.example", mdns.TypeTXT, mdns.RcodeSuccess, `s7.example. 3600 IN TXT "v=spf1 ip4:198.18.0.0/15 -all"`},
		{"1.0.19.198.dnsbl.test", mdns.TypeA, mdns.RcodeSuccess, "1.0.19.198.dnsbl.test. 300 IN A 127.0.0.2"},
		{"2.0.19.198.dnsbl.test", mdns.TypeA, mdns.RcodeNameError, ""},
		{"10.2.0.192.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, "10.2.0.192.in-addr.arpa. 300 IN PTR mail.example."},
	}
	for _, tc := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			r, err := ask(netw, tc.name, tc.qtype)
			if err != nil {
				t.Errorf("%s %s: %v", netw, tc.name, err)
				continue
			}
			got := ""
			if len(r.Answer) > 0 {
				got = strings.ReplaceAll(r.Answer[0].String(), "\t", " ")
			}
			if r.Rcode != tc.rcode || got != tc.want || len(r.Answer) > 1 {
				t.Errorf("%s %s: rcode %d, answers %v; want %d, %q", netw, tc.name, r.Rcode, r.Answer, tc.rcode, tc.want)
			}
		}
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d, want 0 after -d; stderr: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the DNS server did not stop after -d 3s")
	}
	for _, want := range []string{
		"DNS server listening on " + addr,
		"dnstest: tcp TXT s7.example: Success, 1 answer(s)",
		"dnstest: udp A 2.0.19.198.dnsbl.test: NameError, 0 answer(s)",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", stdout.String())
	}
	if _, err := ask("udp", "mail.example", mdns.TypeA); err == nil {
		t.Error("the server still answers after it stopped")
	}
}

func TestServeDNSRefusals(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.zone")
	os.WriteFile(bad, []byte("ok.example A 192.0.2.1\nx.example A not-an-address\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-serve-dns", "-tcp", "127.0.0.1:0"}, 2, "-serve-dns and -zone FILE go together"},
		{[]string{"-zone", bad, "-tcp", "127.0.0.1:0"}, 2, "-serve-dns and -zone FILE go together"},
		{[]string{"-serve-dns", "-zone", bad, "-unix", "/tmp/x.sock"}, 2, "not on a unix socket"},
		{[]string{"-serve-dns", "-serve-null", "-zone", bad, "-tcp", "127.0.0.1:0"}, 2, "not both"},
		{[]string{"-serve-dns", "-zone", bad, "-tcp", "192.0.2.1:53"}, 2, "not loopback"},
		{[]string{"-serve-dns", "-zone", bad, "-tcp", "127.0.0.1:0", "-d", "1s"}, 1, bad + ":2: x.example A: \"not-an-address\" is not an IPv4 address"},
		{[]string{"-serve-dns", "-zone", bad + ".missing", "-tcp", "127.0.0.1:0", "-d", "1s"}, 1, "no such file"},
	}
	for i, tc := range tests {
		var out, errOut bytes.Buffer
		if code := realMain(tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%d: greyd-bench %v: exit %d, stderr %q; want exit %d and %q", i, tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
