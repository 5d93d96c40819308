package dns

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"

	"greyd/internal/dns/dnstest"
)

// SPF decided by blitiri.com.ar/go/spf over NetResolver against dnstest
// zones: every lookup of the library goes through the cached resolver,
// and its errors read as net's would.
func TestSPF(t *testing.T) {
	s := dnstest.Start(t)
	s.TXT("pass.example", 300, "v=spf1 ip4:192.0.2.0/24 -all")
	s.TXT("fail.example", 300, "v=spf1 -all")
	s.TXT("softfail.example", 300, "v=spf1 ~all")
	s.TXT("servfail.example", 300, "v=spf1 +all")
	s.Set("servfail.example", dnstest.ServFail)
	s.TXT("mx.example", 300, "v=spf1 mx -all")
	s.MX("mx.example", 300, 20, "mx2.mx.example")
	s.MX("mx.example", 300, 10, "mx1.mx.example")
	s.A("mx1.mx.example", 300, "198.51.100.1")
	s.A("mx2.mx.example", 300, "198.51.100.2")
	s.TXT("a.example", 300, "v=spf1 a:host.a.example -all")
	s.AAAA("host.a.example", 300, "2001:db8::5")
	s.TXT("ptr.example", 300, "v=spf1 ptr -all")
	s.PTR("30.2.0.192.in-addr.arpa", 300, "mail.ptr.example")
	s.A("mail.ptr.example", 300, "192.0.2.30")
	s.TXT("include.example", 300, "v=spf1 include:dead.example -all")
	s.Set("dead.example", dnstest.Drop)
	s.TXT("mxnx.example", 300, "v=spf1 mx:nx.mxnx.example ~all")
	r := newResolver(t, Config{Timeout: time.Second, Attempts: 1}, s)
	nr := NetResolver{Resolver: r, Label: "spf"}

	tests := []struct {
		ip, domain string
		want       spf.Result
	}{
		{"192.0.2.10", "pass.example", spf.Pass},
		{"198.51.100.10", "pass.example", spf.Fail},
		{"192.0.2.10", "fail.example", spf.Fail},
		{"192.0.2.10", "softfail.example", spf.SoftFail},
		{"192.0.2.10", "servfail.example", spf.TempError},
		{"192.0.2.10", "none.example", spf.None},
		{"198.51.100.2", "mx.example", spf.Pass},
		{"198.51.100.3", "mx.example", spf.Fail},
		{"2001:db8::5", "a.example", spf.Pass},
		{"2001:db8::6", "a.example", spf.Fail},
		{"192.0.2.30", "ptr.example", spf.Pass},
		{"192.0.2.31", "ptr.example", spf.Fail},
		{"192.0.2.10", "include.example", spf.TempError},
		{"192.0.2.10", "mxnx.example", spf.SoftFail},
	}
	for i, tc := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := spf.CheckHostWithSender(net.ParseIP(tc.ip), "helo.example", "someone@"+tc.domain,
			spf.WithResolver(nr), spf.WithContext(ctx))
		cancel()
		if got != tc.want {
			t.Errorf("%d: %s from %s: %v (%v), want %v", i, tc.domain, tc.ip, got, err, tc.want)
		}
	}
	if n := s.Queries("pass.example"); n != 1 {
		t.Errorf("pass.example asked %d times, want 1 (then cached)", n)
	}
}

func TestNetResolverErrors(t *testing.T) {
	s := dnstest.Start(t)
	s.A("v4.example", 300, "192.0.2.1")
	s.AAAA("v6.example", 300, "2001:db8::1")
	s.A("both.example", 300, "192.0.2.2")
	s.AAAA("both.example", 300, "2001:db8::2")
	s.Set("servfail.example", dnstest.ServFail)
	s.Set("refused.example", dnstest.Refused)
	s.Set("drop.example", dnstest.Drop)
	r := newResolver(t, Config{Timeout: 500 * time.Millisecond, Attempts: 1}, s)
	nr := NetResolver{Resolver: r}
	ctx := context.Background()

	type kind int
	const (
		ok kind = iota
		notFound
		temporary
		timeout
	)
	check := func(what string, err error, want kind) {
		t.Helper()
		if want == ok {
			if err != nil {
				t.Errorf("%s: %v, want no error", what, err)
			}
			return
		}
		var de *net.DNSError
		if !errors.As(err, &de) {
			t.Errorf("%s: %v (%T), want a *net.DNSError", what, err, err)
			return
		}
		if de.IsNotFound != (want == notFound) || de.Temporary() != (want >= temporary) || de.IsTimeout != (want == timeout) {
			t.Errorf("%s: %+v, want kind %d", what, de, want)
		}
	}

	for _, tc := range []struct {
		host string
		want []string
		kind kind
	}{
		{"v4.example", []string{"192.0.2.1"}, ok},
		{"v6.example", []string{"2001:db8::1"}, ok},
		{"both.example", []string{"192.0.2.2", "2001:db8::2"}, ok},
		{"192.0.2.99", []string{"192.0.2.99"}, ok},
		{"nx.example", nil, notFound},
		{"servfail.example", nil, temporary},
		{"refused.example", nil, temporary},
		{"drop.example", nil, timeout},
		{"a..example", nil, notFound},
	} {
		addrs, err := nr.LookupIPAddr(ctx, tc.host)
		var got []string
		for _, a := range addrs {
			got = append(got, a.IP.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("LookupIPAddr(%s) = %q, want %q", tc.host, got, tc.want)
		}
		check("LookupIPAddr("+tc.host+")", err, tc.kind)
	}

	txts, err := nr.LookupTXT(ctx, "v4.example")
	check("LookupTXT(v4.example)", err, notFound)
	if txts != nil {
		t.Errorf("LookupTXT of NODATA: %q", txts)
	}
	_, err = nr.LookupMX(ctx, "servfail.example")
	check("LookupMX(servfail.example)", err, temporary)
	_, err = nr.LookupAddr(ctx, "not an address")
	if err == nil {
		t.Errorf("LookupAddr of a non-address: no error")
	}
	s.PTR("1.2.0.192.in-addr.arpa", 300, "a.example", "b.example")
	names, err := nr.LookupAddr(ctx, "192.0.2.1")
	check("LookupAddr(192.0.2.1)", err, ok)
	if !slices.Equal(names, []string{"a.example.", "b.example."}) {
		t.Errorf("LookupAddr(192.0.2.1) = %q, want fully qualified names", names)
	}
	s.MX("mx.example", 300, 20, "b.mx.example")
	s.MX("mx.example", 300, 10, "a.mx.example")
	mxs, err := nr.LookupMX(ctx, "mx.example")
	check("LookupMX(mx.example)", err, ok)
	if len(mxs) != 2 || *mxs[0] != (net.MX{Host: "a.mx.example.", Pref: 10}) || *mxs[1] != (net.MX{Host: "b.mx.example.", Pref: 20}) {
		t.Errorf("LookupMX(mx.example) = %v, want sorted by preference", mxs)
	}
}
