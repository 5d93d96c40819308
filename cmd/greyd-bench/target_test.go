package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		unix, tcp string
		want      string // target.String(), "" if refused
	}{
		{unix: "/run/greyd/policy.sock", want: "unix:/run/greyd/policy.sock"},
		{unix: "relative.sock", want: "unix:relative.sock"},
		{tcp: "127.0.0.1:10023", want: "tcp:127.0.0.1:10023"},
		{tcp: "127.1.2.3:10023", want: "tcp:127.1.2.3:10023"},
		{tcp: "[::1]:10023", want: "tcp:[::1]:10023"},
		{tcp: "localhost:10023", want: "tcp:127.0.0.1:10023"},
		{tcp: "LocalHost:0", want: "tcp:127.0.0.1:0"},
		{tcp: "[::ffff:127.0.0.1]:25", want: "tcp:[::ffff:127.0.0.1]:25"},

		{tcp: "10.0.0.1:10023"},
		{tcp: "example.com:25"},
		{tcp: "localhost.example.com:25"},
		{tcp: "0.0.0.0:10023"},
		{tcp: "[::]:10023"},
		{tcp: ":10023"},
		{tcp: "192.0.2.1:25"},
		{tcp: "[2001:db8::1]:25"},
		{tcp: "[::ffff:10.0.0.1]:25"},
		{tcp: "127.0.0.1"},
		{tcp: "127.0.0.1:smtp"},
		{tcp: "127.0.0.1:99999"},
		{},
		{unix: "/x.sock", tcp: "127.0.0.1:1"},
	}
	for i, tc := range tests {
		got, err := parseTarget(tc.unix, tc.tcp)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%d: parseTarget(%q, %q) = %v, want refusal", i, tc.unix, tc.tcp, got)
		case tc.want != "" && err != nil:
			t.Errorf("%d: parseTarget(%q, %q): %v", i, tc.unix, tc.tcp, err)
		case tc.want != "" && got.String() != tc.want:
			t.Errorf("%d: parseTarget(%q, %q) = %v, want %v", i, tc.unix, tc.tcp, got, tc.want)
		}
	}
}

func TestNonLoopbackRefusedBeforeDialling(t *testing.T) {
	for _, addr := range []string{"10.0.0.1:10023", "example.com:25", "[2001:db8::1]:25"} {
		for _, extra := range [][]string{nil, {"-serve-null"}} {
			var out, errOut bytes.Buffer
			args := append([]string{"-tcp", addr, "-n", "1"}, extra...)
			code := realMain(args, &out, &errOut)
			if code != 2 {
				t.Errorf("greyd-bench %v: exit %d, want 2 (refused as usage error, before any run)", args, code)
			}
			if !strings.Contains(errOut.String(), "refused") || !strings.Contains(errOut.String(), "loopback") {
				t.Errorf("greyd-bench %v: stderr %q, want a clear loopback refusal", args, errOut.String())
			}
			if out.Len() != 0 {
				t.Errorf("greyd-bench %v: printed a report %q", args, out.String())
			}
		}
	}
	_, err := parseTarget("", "example.com:25")
	if !errors.Is(err, errNotLoopback) {
		t.Errorf("error %v does not wrap errNotLoopback", err)
	}
}
