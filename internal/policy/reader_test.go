package policy

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReaderErrors(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"request=x\n", ErrUnexpectedEOF},
		{"request=x", ErrUnexpectedEOF},
		{"a=" + strings.Repeat("b", 100) + "\n\n", ErrLineTooLong},
		{strings.Repeat("a=b\n", 4) + "\n", ErrTooManyAttributes},
	}
	for i, tc := range tests {
		r := NewReader(strings.NewReader(tc.in), 64, 3)
		var req Request
		if err := r.Read(&req); !errors.Is(err, tc.want) {
			t.Errorf("%d: Read(%q) = %v, want %v", i, tc.in, err, tc.want)
		}
	}
}

func TestReaderReuse(t *testing.T) {
	r := NewReader(strings.NewReader("sender=a@x\nrequest=r\n\nsender=b@x\n\n"), 64, 10)
	var one, two Request
	if err := r.Read(&one); err != nil {
		t.Fatal(err)
	}
	if err := r.Read(&two); err != nil {
		t.Fatal(err)
	}
	// Strings of an earlier request stay valid after the next Read.
	if one.Sender != "a@x" || one.Request != "r" || two.Sender != "b@x" || two.Has(AttrRequest) {
		t.Errorf("got %+v and %+v", one, two)
	}
	if one.Attributes != 2 {
		t.Errorf("attributes = %d, want 2", one.Attributes)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte(rcpt))
	f.Add([]byte("a=b\r\n\r\nc\n=\n\n"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(strings.NewReader(string(in)), 128, 20)
		for i := 0; i < 100; i++ {
			var req Request
			if err := r.Read(&req); err != nil {
				return
			}
			if req.Attributes > 20 {
				t.Fatalf("%d attributes accepted with a limit of 20", req.Attributes)
			}
		}
	})
}

func BenchmarkReadRequest(b *testing.B) {
	// The full attribute set Postfix 3.7 sends.
	one := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nhelo_name=mail.example.net\nqueue_id=8045F2AB23\nsender=foo@example.net\nrecipient=bar@example.org\nrecipient_count=0\nclient_address=192.0.2.1\nclient_name=mail.example.net\nreverse_client_name=mail.example.net\ninstance=123.456.7\nsasl_method=\nsasl_username=\nsasl_sender=\nsize=12345\nccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\netrn_domain=\nstress=\nclient_port=54321\npolicy_context=\nserver_address=198.51.100.25\nserver_port=25\n\n"
	src := strings.NewReader("")
	r := NewReader(src, 8192, 100)
	var req Request
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	for i := 0; i < b.N; i++ {
		src.Reset(one)
		if err := r.Read(&req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParseAttributes: each attribute greyd reads lands in its own field
// and presence bit, whatever else the request holds and in whatever
// order; a duplicate's last value wins; values greyd ignores are not
// kept (the one string holds only the read values).
func TestParseAttributes(t *testing.T) {
	fields := []struct {
		name string
		attr Attr
		get  func(*Request) string
	}{
		{"request", AttrRequest, func(r *Request) string { return r.Request }},
		{"protocol_state", AttrProtocolState, func(r *Request) string { return r.ProtocolState }},
		{"client_address", AttrClientAddress, func(r *Request) string { return r.ClientAddress }},
		{"client_name", AttrClientName, func(r *Request) string { return r.ClientName }},
		{"sender", AttrSender, func(r *Request) string { return r.Sender }},
		{"recipient", AttrRecipient, func(r *Request) string { return r.Recipient }},
		{"instance", AttrInstance, func(r *Request) string { return r.Instance }},
		{"queue_id", AttrQueueID, func(r *Request) string { return r.QueueID }},
		{"etrn_domain", AttrETRNDomain, func(r *Request) string { return r.ETRNDomain }},
		{"policy_test_time", AttrPolicyTestTime, func(r *Request) string { return r.PolicyTestTime }},
		{"helo_name", AttrHELOName, func(r *Request) string { return r.HELOName }},
		{"recipient_count", AttrRecipientCount, func(r *Request) string { return r.RecipientCount }},
		{"stress", AttrStress, func(r *Request) string { return r.Stress }},
	}
	for i, f := range fields {
		text := "client_port=25\n" + f.name + "=first\nccert_subject=x=y\n" + f.name + "=v" + f.name + "\nnoequals\n"
		r := ParseRequest(text)
		for j, g := range fields {
			want, has := "", false
			if i == j {
				want, has = "v"+f.name, true
			}
			if got := g.get(r); got != want || r.Has(g.attr) != has {
				t.Errorf("%s sent: %s = %q (present %v); want %q (%v)", f.name, g.name, got, r.Has(g.attr), want, has)
			}
		}
		if r.Attributes != 4 || r.Garbage != 1 {
			t.Errorf("%s: Attributes %d, Garbage %d; want 4, 1", f.name, r.Attributes, r.Garbage)
		}
	}
	r := ParseRequest("sender=\nrecipient=r@example\n")
	if !r.Has(AttrSender) || r.Sender != "" || r.Recipient != "r@example" {
		t.Errorf("empty sender: %+v", r)
	}
}
