package control

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TestAppendRecord: the hand-written encoding says what encoding/json
// says, and keeps keys that are not UTF-8.
func TestAppendRecord(t *testing.T) {
	recs := []Record{
		{Kind: "triplet", Key: "198.51.100.0/a@b.example/c@d.example", Client: "198.51.100.0", Sender: "a@b.example", Recipient: "c@d.example", State: "pending", First: 1, Last: -2, Expires: 3},
		{Kind: "client", Key: "2001:DB8:0:0:0:0:0:1", Count: 5, Last: 1796034213},
		{Kind: "trap", Key: "198.51.100.7", Client: "198.51.100.7", State: "trapped", First: 1796034213, Until: 1796120613, Expires: 1796293814},
		{Kind: "tarpit", Key: "198.51.100.8", Client: "198.51.100.8", State: "marked", First: 1796034213, Session: 9007199254740991, Expires: 1796208614},
		{Kind: "whitelist", List: "client", Value: `/^mx\d+\.example\.com$/`, Comment: "quote \" backslash \\ tab \t nl \n bell \a del \x7f é ✓", Added: 7},
		{Kind: "header", Format: ExportFormat, Version: "1.0", Exported: 9, Privacy: true, PrivacyKey: "abc"},
		{Kind: "error", Value: "disk on fire"},
		{Kind: "triplet", Sender: "bad \xff\xfe utf8 \xe2\x82"},
	}
	for i, r := range recs {
		got := string(appendRecord(nil, &r))
		want, _ := json.Marshal(r)
		if got != string(want)+"\n" {
			t.Errorf("%d:\n got %s\nwant %s", i, got, want)
		}
	}
	// An invalid UTF-8 key travels as key_base64 and comes back intact.
	r := Record{Kind: "triplet", Key: "198.51.100.0/\xff\x00sender@x/r@y", First: 1, Last: 2}
	line := appendRecord(nil, &r)
	if !strings.Contains(string(line), `"key_base64":"`) {
		t.Fatalf("invalid UTF-8 key: %s", line)
	}
	var back Record
	if err := json.Unmarshal(line, &back); err != nil || back.KeyBase64 == "" || back.Key != "" {
		t.Fatalf("decoding %s: %+v, %v", line, back, err)
	}
}

func BenchmarkAppendRecord(b *testing.B) {
	r := Record{Kind: "triplet", Key: "198.51.100.0/user123@sender.example/rcpt@example.org", Client: "198.51.100.0",
		Sender: "user123@sender.example", Recipient: "rcpt@example.org", State: "pending", First: 1796034213, Last: 1796034213, Expires: 1796207015}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = appendRecord(buf[:0], &r)
	}
}

// FuzzAppendRecord: whatever bytes a key or a field holds, the line is
// valid JSON that decodes to what encoding/json would have written, and
// the key comes back exactly (as key or key_base64).
func FuzzAppendRecord(f *testing.F) {
	f.Add("198.51.100.0/a@b/c@d", "sender", int64(1))
	f.Add("\xff\x00\"\\\n", "\u2028\x7f", int64(-5))
	f.Fuzz(func(t *testing.T, key, field string, n int64) {
		r := Record{Kind: "triplet", Key: key, Sender: field, Comment: field, First: n, Last: -n}
		line := appendRecord(nil, &r)
		want, _ := json.Marshal(r)
		var got, exp Record
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%q: not JSON: %v", line, err)
		}
		json.Unmarshal(want, &exp)
		if got.Sender != exp.Sender || got.Comment != exp.Comment || got.First != n || got.Last != -n {
			t.Fatalf("%q decodes to %+v, encoding/json's to %+v", line, got, exp)
		}
		k := got.Key
		if got.KeyBase64 != "" {
			b, err := base64.StdEncoding.DecodeString(got.KeyBase64)
			if err != nil {
				t.Fatal(err)
			}
			k = string(b)
		}
		if k != key {
			t.Fatalf("key %q came back as %q", key, k)
		}
	})
}
