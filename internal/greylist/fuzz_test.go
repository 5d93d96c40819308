package greylist

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"greyd/internal/logging"
	"greyd/internal/policy"
	"greyd/internal/store/buntdb"
)

// postfixRequest is what Postfix 3.7 sends at RCPT time.
const postfixRequest = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nhelo_name=mail.example.net\nqueue_id=8045F2AB23\nsender=foo@example.net\nrecipient=bar@example.org\nrecipient_count=0\nclient_address=198.51.100.1\nclient_name=mail.example.net\nreverse_client_name=mail.example.net\ninstance=123.456.7\nsasl_method=\nsasl_username=\nsasl_sender=\nsize=12345\nccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\netrn_domain=\nstress=\nclient_port=54321\npolicy_context=\nserver_address=198.51.100.25\nserver_port=25\n\n"

// FuzzDecide drives the whole decision path, from the bytes Postfix sends
// to the reply line, against a real buntdb store: parse with the server's
// Reader, decide and log with the Engine, and check what the reply may
// look like. flags pick settings: bit 0 privacy, bit 1 lookup by host,
// bit 2 policy_test_time ignored, bit 3 auto-whitelist off, bit 4 fail
// closed; prefixes come from the next bits.
func FuzzDecide(f *testing.F) {
	f.Add([]byte(postfixRequest), int64(0), uint16(0))
	f.Add([]byte(strings.Replace(postfixRequest, "198.51.100.1", "2001:db8::25", 1)), int64(300), uint16(1))
	f.Add([]byte(strings.Replace(postfixRequest, "198.51.100.1", "::ffff:192.0.2.7", 1)), int64(0), uint16(2))
	f.Add([]byte(strings.Replace(postfixRequest, "foo@example.net", "SRS1=x=fwd.example==y=zz=orig.example=Bob+tag@relay.example", 1)), int64(86400), uint16(4))
	f.Add([]byte(strings.Replace(postfixRequest, "foo@example.net", "prvs=1234567890=bounce-123-456@lists.example.com", 1)), int64(-1), uint16(8))
	f.Add([]byte("request=smtpd_access_policy\nclient_address=198.51.100.1\nclient_name=x\nsender=a@b\nrecipient=c@%s%r\npolicy_test_time=9223372036854775807\n\n"), int64(0), uint16(0))
	f.Add([]byte("request=smtpd_access_policy\nclient_address=198.51.100.1\nclient_name=x\nsender=\nrecipient=postmaster@example.org\n\n"), int64(0), uint16(16))
	f.Add([]byte("request=smtpd_access_policy\nclient_address=not-an-ip\nclient_name=\nsender=\nrecipient=\n\n"), int64(0), uint16(0))
	f.Add([]byte("request=junk\n\n"), int64(0), uint16(0))
	f.Add([]byte("\n"), int64(0), uint16(0))
	f.Add([]byte("request=smtpd_access_policy\nclient_address=fe80::1%eth0\nclient_name=mx1.example.net\nsender=a@b\nrecipient=c\xff@d\r\n\r\n"), int64(1), uint16(0xffff))

	f.Fuzz(func(t *testing.T, raw []byte, offset int64, flags uint16) {
		var req policy.Request
		if err := policy.NewReader(bytes.NewReader(raw), 8192, 100).Read(&req); err != nil {
			return // the server closes the connection; FuzzReader covers that
		}
		st, err := buntdb.Open(buntdb.Memory, buntdb.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		snap := testSnapshot(t)
		if flags&1 != 0 {
			snap.Privacy = NewHasher([]byte("0123456789abcdef0123456789abcdef"))
		}
		snap.LookupByHost = flags&2 != 0
		snap.UseTestTime = flags&4 == 0
		if flags&8 != 0 {
			snap.AutoWhitelistClients = 0
		}
		snap.DeferOnStoreError = flags&16 != 0
		snap.IPv4Prefix = int(flags>>5) % 33
		snap.IPv6Prefix = int(flags>>5) % 129
		now := t0.Add(time.Duration(offset%(1<<40)) * time.Second)

		var logs bytes.Buffer
		e := NewEngine(st, snap, func() time.Time { return now }, slog.New(logging.New(&logs, logging.Options{Journal: true})))
		for i := 0; i < 2; i++ {
			reply := e.ServePolicy(context.Background(), &req)
			checkReply(t, raw, reply)
		}
		for _, line := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
			if !strings.HasPrefix(line, "<") {
				t.Fatalf("request %q: log line %q is not a whole line (forged line?):\n%s", raw, line, logs.String())
			}
		}

		d := Decide(context.Background(), &req, snap, st, now)
		switch d.Action {
		case Skip:
			if d.Warning == "" {
				t.Fatalf("request %q: Skip without a warning", raw)
			}
			return
		case Failed:
			t.Fatalf("request %q: healthy store, but Failed: %v", raw, d.Err)
		case Greylist:
			if delay := int64(snap.Delay / time.Second); d.Missing <= 0 || d.Missing > delay {
				t.Fatalf("request %q: greylisted with %d s missing, delay %d s", raw, d.Missing, delay)
			}
		case FirstPass:
			if d.Waited < int64(snap.Delay/time.Second) {
				t.Fatalf("request %q: first pass after %d s, delay %v", raw, d.Waited, snap.Delay)
			}
		}
		if d.Err != nil {
			t.Fatalf("request %q: healthy store, but Err %v", raw, d.Err)
		}
		// Greylisting works: the same triplet, asked again once the
		// delay is over (and within the retry window), passes.
		if d.Action == Greylist && !snap.UseTestTime {
			later := Decide(context.Background(), &req, snap, st, d.Now.Add(snap.Delay))
			if later.Action != FirstPass && later.Action != Pass {
				t.Fatalf("request %q: greylisted at %v, but still not passed %v later: %+v", raw, d.Now, snap.Delay, later)
			}
		}
	})
}

// checkReply: one line, printable, a known action.
func checkReply(t *testing.T, raw []byte, reply string) {
	t.Helper()
	for i := 0; i < len(reply); i++ {
		if c := reply[i]; c < ' ' || c == 0x7f {
			t.Fatalf("request %q: reply %q has control character %#x: Postfix would misread it", raw, reply, c)
		}
	}
	for _, a := range []string{"DUNNO", "DEFER_IF_PERMIT", "PREPEND X-Greylist: "} {
		if strings.HasPrefix(reply, a) {
			return
		}
	}
	t.Fatalf("request %q: unexpected reply %q", raw, reply)
}

// Found by FuzzDecide (testdata/fuzz/FuzzDecide/recipient-with-nul): the
// recipient's domain went into the reply as it was, control characters
// included.
func TestReplyControlCharacters(t *testing.T) {
	snap := testSnapshot(t)
	for _, rcpt := range []string{"a@x\x00y", "a@x\ry", "a@x\x7fy", "a@x\ty"} {
		got := greylistReply(snap, req("198.51.100.1", "", "a@b", rcpt), 300)
		if want := "DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/help/x?y.html"; got != want {
			t.Errorf("recipient %q: reply %q, want %q", rcpt, got, want)
		}
	}
}
