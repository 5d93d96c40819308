package dns

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ednsSize is the UDP payload size greyd advertises: the DNS Flag Day
// 2020 value, which avoids IP fragmentation on every common path.
const ednsSize = 1232

// maxCNAMEs bounds a CNAME chain in an answer.
const maxCNAMEs = 8

// errNotOurs marks a message that is not the answer to our query: another
// ID, another question, not a response, or garbage. Over UDP it is
// ignored (it may be spoofed) and the wait goes on.
var errNotOurs = errors.New("not an answer to the query")

// question returns the question for name, which is canonical.
func question(name string, t Type) (dnsmessage.Question, error) {
	if name == "" || len(name) > 253 {
		return dnsmessage.Question{}, fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for l := range strings.SplitSeq(name, ".") {
		if l == "" || len(l) > 63 {
			return dnsmessage.Question{}, fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	n, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return dnsmessage.Question{}, fmt.Errorf("%w: %q: %v", ErrInvalidName, name, err)
	}
	return dnsmessage.Question{Name: n, Type: dnsmessage.Type(t), Class: dnsmessage.ClassINET}, nil
}

// buildQuery packs a recursive query for q with an EDNS0 OPT record.
func buildQuery(id uint16, q dnsmessage.Question) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 2, 2+q.Name.Length+32), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	var opt dnsmessage.ResourceHeader
	if err := opt.SetEDNS0(ednsSize, dnsmessage.RCodeSuccess, false); err != nil {
		return nil, err
	}
	if err := b.OPTResource(opt, dnsmessage.OPTResource{}); err != nil {
		return nil, err
	}
	msg, err := b.Finish()
	if err != nil {
		return nil, err
	}
	// The first two bytes are room for the TCP length prefix.
	l := len(msg) - 2
	msg[0], msg[1] = byte(l>>8), byte(l)
	return msg, nil
}

// record is one answer record of the type asked, or a CNAME.
type record struct {
	owner  dnsmessage.Name
	ttl    uint32
	cname  bool
	target dnsmessage.Name // CNAME
	addr   netip.Addr      // A, AAAA
	text   string          // PTR, TXT, MX
	pref   uint16          // MX
}

// parseResponse reads msg as the answer to the query id for q. It
// returns errNotOurs (wrapped) for anything that is not that answer, and
// truncated for an answer with the TC bit, whose content is not read.
func parseResponse(msg []byte, id uint16, q dnsmessage.Question) (res Result, truncated bool, err error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return Result{}, false, fmt.Errorf("%w: %v", errNotOurs, err)
	}
	if !h.Response || h.ID != id || h.OpCode != 0 {
		return Result{}, false, errNotOurs
	}
	got, err := p.Question()
	switch {
	case err == dnsmessage.ErrSectionDone && h.Truncated:
		// Some servers send a truncated answer without the question.
		return Result{}, true, nil
	case err != nil:
		return Result{}, false, fmt.Errorf("%w: question: %v", errNotOurs, err)
	case got.Type != q.Type || got.Class != q.Class || !sameName(got.Name, q.Name):
		return Result{}, false, errNotOurs
	}
	if h.Truncated {
		return Result{}, true, nil
	}
	if _, err := p.Question(); err != dnsmessage.ErrSectionDone {
		return Result{}, false, fmt.Errorf("%w: not one question", errNotOurs)
	}

	switch h.RCode {
	case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
	case dnsmessage.RCodeServerFailure:
		return Result{Status: ServFail, Err: errors.New("SERVFAIL")}, false, nil
	case dnsmessage.RCodeRefused:
		return Result{Status: Refused, Err: errors.New("REFUSED")}, false, nil
	default:
		return Result{Status: Error, Err: fmt.Errorf("RCODE %d", h.RCode)}, false, nil
	}

	var rrs []record
	for {
		rh, err := p.AnswerHeader()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil {
			return Result{}, false, fmt.Errorf("%w: answer: %v", errNotOurs, err)
		}
		rec, ok, err := parseRecord(&p, rh, q.Type)
		if err != nil {
			return Result{}, false, fmt.Errorf("%w: answer %v: %v", errNotOurs, rh.Type, err)
		}
		if ok {
			rrs = append(rrs, rec)
		}
	}

	negTTL, hasSOA := uint32(0), false
	for {
		rh, err := p.AuthorityHeader()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil {
			return Result{}, false, fmt.Errorf("%w: authority: %v", errNotOurs, err)
		}
		if rh.Type != dnsmessage.TypeSOA || hasSOA {
			if err := p.SkipAuthority(); err != nil {
				return Result{}, false, fmt.Errorf("%w: authority: %v", errNotOurs, err)
			}
			continue
		}
		soa, err := p.SOAResource()
		if err != nil {
			return Result{}, false, fmt.Errorf("%w: SOA: %v", errNotOurs, err)
		}
		negTTL, hasSOA = min(ttlOf(rh.TTL), ttlOf(soa.MinTTL)), true
	}

	if h.RCode == dnsmessage.RCodeNameError {
		return Result{Status: NXDomain, TTL: seconds(negTTL)}, false, nil
	}
	res = follow(rrs, q)
	if res.Status == NoData {
		res.TTL = seconds(negTTL)
	}
	return res, false, nil
}

// parseRecord reads the body of an answer record of type want or a
// CNAME; ok is false for a record skipped.
func parseRecord(p *dnsmessage.Parser, rh dnsmessage.ResourceHeader, want dnsmessage.Type) (rec record, ok bool, err error) {
	rec = record{owner: rh.Name, ttl: ttlOf(rh.TTL)}
	if rh.Class != dnsmessage.ClassINET || (rh.Type != want && rh.Type != dnsmessage.TypeCNAME) {
		return rec, false, p.SkipAnswer()
	}
	switch rh.Type {
	case dnsmessage.TypeCNAME:
		r, err := p.CNAMEResource()
		rec.cname, rec.target = true, r.CNAME
		return rec, err == nil, err
	case dnsmessage.TypeA:
		r, err := p.AResource()
		rec.addr = netip.AddrFrom4(r.A)
		return rec, err == nil, err
	case dnsmessage.TypeAAAA:
		r, err := p.AAAAResource()
		rec.addr = netip.AddrFrom16(r.AAAA)
		return rec, err == nil, err
	case dnsmessage.TypePTR:
		r, err := p.PTRResource()
		rec.text = nameString(r.PTR)
		return rec, err == nil, err
	case dnsmessage.TypeMX:
		r, err := p.MXResource()
		rec.text, rec.pref = nameString(r.MX), r.Pref
		return rec, err == nil, err
	case dnsmessage.TypeTXT:
		r, err := p.TXTResource()
		rec.text = strings.Join(r.TXT, "")
		return rec, err == nil, err
	}
	return rec, false, p.SkipAnswer()
}

// follow finds the records answering q in rrs, through CNAMEs from the
// name asked; their absence at the end of the chain is NODATA.
func follow(rrs []record, q dnsmessage.Question) Result {
	cur := q.Name
	ttl := uint32(1<<31 - 1)
	res := Result{Status: NoData}
	for hop := 0; hop <= maxCNAMEs; hop++ {
		found := false
		for i := range rrs {
			rr := &rrs[i]
			if rr.cname || !sameName(rr.owner, cur) {
				continue
			}
			found = true
			ttl = min(ttl, rr.ttl)
			switch q.Type {
			case dnsmessage.TypeA, dnsmessage.TypeAAAA:
				res.Addrs = append(res.Addrs, rr.addr)
			case dnsmessage.TypePTR:
				res.Names = append(res.Names, rr.text)
			case dnsmessage.TypeTXT:
				res.Texts = append(res.Texts, rr.text)
			case dnsmessage.TypeMX:
				res.MX = append(res.MX, MX{Host: rr.text, Pref: rr.pref})
			}
		}
		if found {
			res.Status, res.TTL = Found, seconds(ttl)
			return res
		}
		next := -1
		for i := range rrs {
			if rrs[i].cname && sameName(rrs[i].owner, cur) {
				next = i
				break
			}
		}
		if next < 0 {
			return res
		}
		ttl = min(ttl, rrs[next].ttl)
		cur = rrs[next].target
	}
	return Result{Status: Error, Err: fmt.Errorf("CNAME chain longer than %d", maxCNAMEs)}
}

func sameName(a, b dnsmessage.Name) bool {
	return bytes.EqualFold(a.Data[:a.Length], b.Data[:b.Length])
}

func nameString(n dnsmessage.Name) string {
	return strings.TrimSuffix(string(n.Data[:n.Length]), ".")
}

// ttlOf reads a TTL with the top bit set as 0 (RFC 2181 section 8).
func ttlOf(v uint32) uint32 {
	if v > 1<<31-1 {
		return 0
	}
	return v
}

func seconds(v uint32) time.Duration { return time.Duration(v) * time.Second }
