package dns

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func mustQuestion(t testing.TB, name string, typ Type) dnsmessage.Question {
	t.Helper()
	q, err := question(name, typ)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func rrHeader(name string, typ dnsmessage.Type, ttl uint32) dnsmessage.ResourceHeader {
	return dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET, TTL: ttl}
}

func aRR(name string, ttl uint32, a [4]byte) dnsmessage.Resource {
	return dnsmessage.Resource{Header: rrHeader(name, dnsmessage.TypeA, ttl), Body: &dnsmessage.AResource{A: a}}
}

func soaRR(name string, ttl, min uint32) dnsmessage.Resource {
	return dnsmessage.Resource{Header: rrHeader(name, dnsmessage.TypeSOA, ttl), Body: &dnsmessage.SOAResource{
		NS: dnsmessage.MustNewName("ns." + name), MBox: dnsmessage.MustNewName("h." + name), MinTTL: min,
	}}
}

// response packs an answer to q with id 7, changed by edit.
func response(t testing.TB, q dnsmessage.Question, edit func(*dnsmessage.Message)) []byte {
	t.Helper()
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 7, Response: true, RecursionAvailable: true},
		Questions: []dnsmessage.Question{q},
	}
	if edit != nil {
		edit(&m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseResponse(t *testing.T) {
	q := mustQuestion(t, "x.example", TypeA)
	ip := [4]byte{192, 0, 2, 1}
	tests := []struct {
		name      string
		edit      func(*dnsmessage.Message)
		want      Result
		truncated bool
		notOurs   bool
	}{
		{"answer", func(m *dnsmessage.Message) {
			m.Answers = []dnsmessage.Resource{aRR("x.example.", 300, ip), aRR("x.example.", 200, [4]byte{192, 0, 2, 2})}
		}, Result{Status: Found, TTL: 200 * time.Second, Addrs: addrs("192.0.2.1", "192.0.2.2")}, false, false},
		{"owner in another case", func(m *dnsmessage.Message) {
			m.Answers = []dnsmessage.Resource{aRR("X.Example.", 300, ip)}
		}, Result{Status: Found, TTL: 300 * time.Second, Addrs: addrs("192.0.2.1")}, false, false},
		{"TTL with the top bit set is 0", func(m *dnsmessage.Message) {
			m.Answers = []dnsmessage.Resource{aRR("x.example.", 1<<31, ip)}
		}, Result{Status: Found, Addrs: addrs("192.0.2.1")}, false, false},
		{"records of another name are not the answer", func(m *dnsmessage.Message) {
			m.Answers = []dnsmessage.Resource{aRR("y.example.", 300, ip)}
		}, Result{Status: NoData}, false, false},
		{"records of another class are not the answer", func(m *dnsmessage.Message) {
			rr := aRR("x.example.", 300, ip)
			rr.Header.Class = dnsmessage.ClassCHAOS
			m.Answers = []dnsmessage.Resource{rr}
		}, Result{Status: NoData}, false, false},
		{"NXDOMAIN: negative TTL is the SOA's minimum", func(m *dnsmessage.Message) {
			m.RCode = dnsmessage.RCodeNameError
			m.Authorities = []dnsmessage.Resource{soaRR("example.", 3600, 60)}
		}, Result{Status: NXDomain, TTL: time.Minute}, false, false},
		{"NODATA: negative TTL is the SOA's TTL when lower", func(m *dnsmessage.Message) {
			m.Authorities = []dnsmessage.Resource{soaRR("example.", 30, 600)}
		}, Result{Status: NoData, TTL: 30 * time.Second}, false, false},
		{"SERVFAIL", func(m *dnsmessage.Message) { m.RCode = dnsmessage.RCodeServerFailure }, Result{Status: ServFail}, false, false},
		{"REFUSED", func(m *dnsmessage.Message) { m.RCode = dnsmessage.RCodeRefused }, Result{Status: Refused}, false, false},
		{"FORMERR", func(m *dnsmessage.Message) { m.RCode = dnsmessage.RCodeFormatError }, Result{Status: Error}, false, false},
		{"truncated", func(m *dnsmessage.Message) {
			m.Truncated = true
			m.Answers = []dnsmessage.Resource{aRR("x.example.", 300, ip)}
		}, Result{}, true, false},
		{"truncated without the question", func(m *dnsmessage.Message) {
			m.Truncated, m.Questions = true, nil
		}, Result{}, true, false},
		{"another ID", func(m *dnsmessage.Message) { m.ID = 8 }, Result{}, false, true},
		{"a query", func(m *dnsmessage.Message) { m.Response = false }, Result{}, false, true},
		{"another opcode", func(m *dnsmessage.Message) { m.OpCode = 4 }, Result{}, false, true},
		{"another name", func(m *dnsmessage.Message) {
			m.Questions[0].Name = dnsmessage.MustNewName("y.example.")
			m.Answers = []dnsmessage.Resource{aRR("y.example.", 300, ip)}
		}, Result{}, false, true},
		{"another type", func(m *dnsmessage.Message) { m.Questions[0].Type = dnsmessage.TypeAAAA }, Result{}, false, true},
		{"no question", func(m *dnsmessage.Message) { m.Questions = nil }, Result{}, false, true},
		{"two questions", func(m *dnsmessage.Message) {
			m.Questions = append(m.Questions, m.Questions[0])
		}, Result{}, false, true},
	}
	for _, tc := range tests {
		got, truncated, err := parseResponse(response(t, q, tc.edit), 7, q)
		if tc.notOurs {
			if !errors.Is(err, errNotOurs) {
				t.Errorf("%s: got %s, %v, want errNotOurs", tc.name, show(got), err)
			}
			continue
		}
		if err != nil || truncated != tc.truncated || !same(got, tc.want) {
			t.Errorf("%s: got %s, truncated %v, %v; want %s, truncated %v", tc.name, show(got), truncated, err, show(tc.want), tc.truncated)
		}
	}
	if _, _, err := parseResponse([]byte{0, 7, 0x80}, 7, q); !errors.Is(err, errNotOurs) {
		t.Errorf("a short message: %v, want errNotOurs", err)
	}
}

func TestBuildQuery(t *testing.T) {
	q := mustQuestion(t, "x.example", TypeTXT)
	msg, err := buildQuery(0x1234, q)
	if err != nil {
		t.Fatal(err)
	}
	if l := int(binary.BigEndian.Uint16(msg)); l != len(msg)-2 {
		t.Errorf("length prefix %d, message %d bytes", l, len(msg)-2)
	}
	var m dnsmessage.Message
	if err := m.Unpack(msg[2:]); err != nil {
		t.Fatal(err)
	}
	if m.ID != 0x1234 || m.Response || !m.RecursionDesired || len(m.Questions) != 1 || m.Questions[0] != q {
		t.Errorf("query %+v, want ID 0x1234, RD and the question %+v", m, q)
	}
	if len(m.Additionals) != 1 || m.Additionals[0].Header.Type != dnsmessage.TypeOPT || m.Additionals[0].Header.Class != ednsSize {
		t.Errorf("additionals %+v, want one OPT with UDP size %d", m.Additionals, ednsSize)
	}
}

var fuzzTypes = []Type{TypeA, TypeAAAA, TypePTR, TypeTXT, TypeMX}

// FuzzParseResponse feeds arbitrary messages to the parser of answers. The
// first byte chooses the query type; the message's own ID is taken as the
// query's so that the parser reads past the header.
func FuzzParseResponse(f *testing.F) {
	for _, typ := range fuzzTypes {
		q := mustQuestion(f, "x.example", typ)
		msg := response(f, q, func(m *dnsmessage.Message) {
			h := rrHeader("x.example.", dnsmessage.Type(typ), 300)
			var body dnsmessage.ResourceBody
			switch typ {
			case TypeA:
				body = &dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}}
			case TypeAAAA:
				body = &dnsmessage.AAAAResource{AAAA: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}}
			case TypePTR:
				body = &dnsmessage.PTRResource{PTR: dnsmessage.MustNewName("host.example.")}
			case TypeTXT:
				body = &dnsmessage.TXTResource{TXT: []string{"v=spf1 ", "-all"}}
			case TypeMX:
				body = &dnsmessage.MXResource{Pref: 10, MX: dnsmessage.MustNewName("mx.example.")}
			}
			cname := dnsmessage.Resource{
				Header: rrHeader("x.example.", dnsmessage.TypeCNAME, 60),
				Body:   &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("y.example.")},
			}
			h.Name = dnsmessage.MustNewName("y.example.")
			m.Answers = []dnsmessage.Resource{cname, {Header: h, Body: body}}
			m.Authorities = []dnsmessage.Resource{soaRR("example.", 60, 30)}
		})
		f.Add(append([]byte{byte(typ)}, msg...))
	}
	q := mustQuestion(f, "x.example", TypeA)
	f.Add(append([]byte{1}, response(f, q, func(m *dnsmessage.Message) {
		m.RCode = dnsmessage.RCodeNameError
		m.Authorities = []dnsmessage.Resource{soaRR("example.", 60, 30)}
	})...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		typ := fuzzTypes[int(data[0])%len(fuzzTypes)]
		msg := data[1:]
		q := mustQuestion(t, "x.example", typ)
		res, truncated, err := parseResponse(msg, binary.BigEndian.Uint16(msg), q)
		if err != nil || truncated {
			if res.Status != Error || res.Addrs != nil || res.Texts != nil {
				t.Fatalf("failed parse (truncated %v, %v) with a result %s", truncated, err, show(res))
			}
			return
		}
		n := len(res.Addrs) + len(res.Names) + len(res.Texts) + len(res.MX)
		if (res.Status == Found) != (n > 0) {
			t.Fatalf("status %v with %d records", res.Status, n)
		}
		if res.TTL < 0 || res.TTL > (1<<31-1)*time.Second {
			t.Fatalf("TTL %v", res.TTL)
		}
		for _, a := range res.Addrs {
			if a.Is4() != (typ == TypeA) {
				t.Fatalf("%v answer has address %v", typ, a)
			}
		}
		if typ != TypeA && typ != TypeAAAA && len(res.Addrs) > 0 ||
			typ != TypePTR && len(res.Names) > 0 || typ != TypeTXT && len(res.Texts) > 0 || typ != TypeMX && len(res.MX) > 0 {
			t.Fatalf("%v answer with records of another type: %s", typ, show(res))
		}
	})
}
