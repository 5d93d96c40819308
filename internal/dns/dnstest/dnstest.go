// Package dnstest runs a DNS server on loopback for tests, so that no
// test of greyd ever asks the network. The server answers from a zone map
// the test changes while it runs, misbehaves per name on request
// (NXDOMAIN, SERVFAIL, REFUSED, silence, delays, truncation, spoofed
// answers) and counts the queries per name, so a test can tell a cached
// answer from a fresh one. It serves UDP and TCP on one port of
// 127.0.0.1, like a real server, and answers recursively (RA set, CNAMEs
// followed within its own data, wildcards expanded). Outside the tests,
// Listen and LoadZone make it a standalone server (greyd-bench
// -serve-dns) for the benchmark and the end-to-end test.
package dnstest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Behaviour is how the server treats the queries for a name.
type Behaviour int

const (
	Answer   Behaviour = iota // from the records: the default
	NXDomain                  // RCODE NXDOMAIN, whatever the records
	ServFail                  // RCODE SERVFAIL
	Refused                   // RCODE REFUSED
	Drop                      // no answer at all
	Truncate                  // over UDP an empty answer with TC set; over TCP the answer
	Spoof                     // over UDP first an answer with another ID and one to another question (both NXDOMAIN), then the answer
)

// TB is the part of testing.TB the server uses. It is an interface of
// its own so that a binary can import this package without "testing".
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Server is a DNS server on loopback. Its methods are safe for
// concurrent use.
type Server struct {
	// Addr is "ip:port", for UDP and TCP alike.
	Addr string

	fatalf func(format string, args ...any) // a bad argument to a method
	udp    net.PacketConn
	tcp    net.Listener

	mu      sync.Mutex
	records map[rrKey][]rr
	soas    map[string][2]uint32 // zone: TTL, negative TTL
	behave  map[string]Behaviour
	delay   map[string]time.Duration
	held    map[string]chan struct{}
	queries map[string]int
	conns   map[net.Conn]bool
	log     io.Writer

	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type rrKey struct {
	name string // lower case, no trailing dot
	t    dnsmessage.Type
}

type rr struct {
	ttl  uint32
	body dnsmessage.ResourceBody
}

// Start starts a server on a free port of 127.0.0.1 that t's cleanup
// closes.
func Start(t TB) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s.fatalf = t.Fatalf
	t.Cleanup(s.Close)
	return s
}

// Listen starts a server on addr, UDP and TCP on the same port; with
// port 0, on a port free for both. The caller closes it. A bad argument
// to its methods panics (Start's fails the test instead).
func Listen(addr string) (*Server, error) {
	s := newServer()
	if err := s.listen(addr); err != nil {
		return nil, err
	}
	return s, nil
}

// ListenZone is Listen with the zone file read from r (named name in
// errors) loaded before the first query is answered, so a client that
// sees the port open never gets an answer from a half-loaded zone.
func ListenZone(addr string, r io.Reader, name string) (*Server, error) {
	s := newServer()
	if err := s.LoadZone(r, name); err != nil {
		return nil, err
	}
	if err := s.listen(addr); err != nil {
		return nil, err
	}
	return s, nil
}

func newServer() *Server {
	return &Server{
		fatalf:  func(format string, args ...any) { panic(fmt.Sprintf(format, args...)) },
		records: make(map[rrKey][]rr),
		soas:    make(map[string][2]uint32),
		behave:  make(map[string]Behaviour),
		delay:   make(map[string]time.Duration),
		held:    make(map[string]chan struct{}),
		queries: make(map[string]int),
		conns:   make(map[net.Conn]bool),
		closing: make(chan struct{}),
	}
}

func (s *Server) listen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dnstest: listen on %q: %w", addr, err)
	}
	tries := 1
	if port == "0" {
		tries = 20 // the TCP port must be free too: try a few UDP ports
	}
	for range tries {
		if s.udp, err = net.ListenPacket("udp", addr); err != nil {
			return fmt.Errorf("dnstest: %w", err)
		}
		if s.tcp, err = net.Listen("tcp", s.udp.LocalAddr().String()); err == nil {
			break
		}
		s.udp.Close()
	}
	if err != nil {
		return fmt.Errorf("dnstest: no port free for UDP and TCP: %w", err)
	}
	s.Addr = s.udp.LocalAddr().String()
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	return nil
}

// Close stops the server and waits for its goroutines, delayed and held
// answers included (they are dropped).
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.udp.Close()
		s.tcp.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

func (s *Server) fqdn(name string) dnsmessage.Name {
	n, err := dnsmessage.NewName(canonical(name) + ".")
	if err != nil {
		s.fatalf("dnstest: name %q: %v", name, err)
	}
	return n
}

func (s *Server) add(name string, t dnsmessage.Type, ttl uint32, body dnsmessage.ResourceBody) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := rrKey{canonical(name), t}
	s.records[k] = append(s.records[k], rr{ttl, body})
}

func (s *Server) addr(a string, want4 bool) netip.Addr {
	ip, err := netip.ParseAddr(a)
	if err != nil || ip.Is4() != want4 {
		s.fatalf("dnstest: address %q: want IPv4 %v (%v)", a, want4, err)
	}
	return ip
}

// A adds A records.
func (s *Server) A(name string, ttl uint32, addrs ...string) {
	for _, a := range addrs {
		s.add(name, dnsmessage.TypeA, ttl, &dnsmessage.AResource{A: s.addr(a, true).As4()})
	}
}

// AAAA adds AAAA records.
func (s *Server) AAAA(name string, ttl uint32, addrs ...string) {
	for _, a := range addrs {
		s.add(name, dnsmessage.TypeAAAA, ttl, &dnsmessage.AAAAResource{AAAA: s.addr(a, false).As16()})
	}
}

// PTR adds PTR records.
func (s *Server) PTR(name string, ttl uint32, targets ...string) {
	for _, t := range targets {
		s.add(name, dnsmessage.TypePTR, ttl, &dnsmessage.PTRResource{PTR: s.fqdn(t)})
	}
}

// TXT adds one TXT record made of strs (each at most 255 bytes).
func (s *Server) TXT(name string, ttl uint32, strs ...string) {
	s.add(name, dnsmessage.TypeTXT, ttl, &dnsmessage.TXTResource{TXT: strs})
}

// MX adds an MX record.
func (s *Server) MX(name string, ttl uint32, pref uint16, host string) {
	s.add(name, dnsmessage.TypeMX, ttl, &dnsmessage.MXResource{Pref: pref, MX: s.fqdn(host)})
}

// CNAME makes name an alias of target.
func (s *Server) CNAME(name string, ttl uint32, target string) {
	s.add(name, dnsmessage.TypeCNAME, ttl, &dnsmessage.CNAMEResource{CNAME: s.fqdn(target)})
}

// SOA makes zone a zone: its SOA (with TTL ttl and negative TTL neg) is
// in the authority section of the negative answers for names under it.
func (s *Server) SOA(zone string, ttl, neg uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.soas[canonical(zone)] = [2]uint32{ttl, neg}
}

// Remove removes every record of name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = canonical(name)
	for k := range s.records {
		if k.name == name {
			delete(s.records, k)
		}
	}
}

// Set sets the behaviour for name and every name under it ("" for all);
// the longest name set wins. Answer undoes it for exactly name.
func (s *Server) Set(name string, b Behaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b == Answer {
		delete(s.behave, canonical(name))
		return
	}
	s.behave[canonical(name)] = b
}

// Delay delays the answers for name and every name under it by d (0
// removes the delay).
func (s *Server) Delay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.delay, canonical(name))
		return
	}
	s.delay[canonical(name)] = d
}

// Hold keeps the answers for name and every name under it until the
// returned function is called, so that a test can act while a query is
// known to be in flight (Queries counts it already).
func (s *Server) Hold(name string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.held[canonical(name)] = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.held[canonical(name)] == ch {
				delete(s.held, canonical(name))
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// LogQueries writes one line per query to w from now on (nil: no more):
// the transport, the type and name asked, and the answer's RCODE and
// number of records, or that it was dropped.
func (s *Server) LogQueries(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = w
}

func logQuery(w io.Writer, q dnsmessage.Question, udp bool, out [][]byte) {
	proto := "tcp"
	if udp {
		proto = "udp"
	}
	result := "dropped"
	if len(out) > 0 {
		var p dnsmessage.Parser
		if h, err := p.Start(out[len(out)-1]); err == nil {
			p.SkipAllQuestions()
			n := 0
			for {
				if _, err := p.AnswerHeader(); err != nil {
					break
				}
				p.SkipAnswer()
				n++
			}
			result = fmt.Sprintf("%s, %d answer(s)", strings.TrimPrefix(h.RCode.String(), "RCode"), n)
			if h.Truncated {
				result += ", truncated"
			}
		}
	}
	fmt.Fprintf(w, "dnstest: %s %s %s: %s\n", proto, strings.TrimPrefix(q.Type.String(), "Type"), canonical(q.Name.String()), result)
}

// Queries returns how many queries for name arrived, over UDP and TCP,
// of any type.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[canonical(name)]
}

// Total returns how many queries arrived.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.queries {
		n += c
	}
	return n
}

// closest returns the value of m for name or its nearest ancestor.
func closest[V any](m map[string]V, name string) (V, bool) {
	for {
		if v, ok := m[name]; ok {
			return v, true
		}
		if name == "" {
			var zero V
			return zero, false
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			name = ""
		} else {
			name = name[i+1:]
		}
	}
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		q := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for _, resp := range s.handle(q, true) {
				s.udp.WriteTo(resp, from)
			}
		}()
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.closing:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				for _, resp := range s.handle(q, false) {
					out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
					if _, err := c.Write(append(out, resp...)); err != nil {
						return
					}
				}
			}
		}()
	}
}

// handle returns the messages to send for query q, none to drop it.
func (s *Server) handle(q []byte, udp bool) [][]byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	out := s.respond(&p, h, qs, udp)
	s.mu.Lock()
	w := s.log
	s.mu.Unlock()
	if w != nil {
		logQuery(w, qs[0], udp, out)
	}
	return out
}

// respond returns the messages to send for the query of header h and
// questions qs, none to drop it; p is at the answer section.
func (s *Server) respond(p *dnsmessage.Parser, h dnsmessage.Header, qs []dnsmessage.Question, udp bool) [][]byte {
	quest := qs[0]
	size := 512
	p.SkipAllAnswers()
	p.SkipAllAuthorities()
	edns := false
	for {
		ah, err := p.AdditionalHeader()
		if err != nil {
			break
		}
		if ah.Type == dnsmessage.TypeOPT {
			edns, size = true, max(512, int(ah.Class))
		}
		p.SkipAdditional()
	}
	name := canonical(quest.Name.String())

	s.mu.Lock()
	s.queries[name]++
	b, _ := closest(s.behave, name)
	d, _ := closest(s.delay, name)
	held, _ := closest(s.held, name)
	s.mu.Unlock()

	if held != nil {
		select {
		case <-held:
		case <-s.closing:
			return nil
		}
	}
	if d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-s.closing:
			return nil
		}
	}

	m := dnsmessage.Message{
		Header: dnsmessage.Header{
			ID: h.ID, Response: true, Authoritative: true,
			RecursionDesired: h.RecursionDesired, RecursionAvailable: true,
		},
		Questions: qs,
	}
	if edns {
		var opt dnsmessage.ResourceHeader
		opt.SetEDNS0(1232, dnsmessage.RCodeSuccess, false)
		m.Additionals = []dnsmessage.Resource{{Header: opt, Body: &dnsmessage.OPTResource{}}}
	}
	var out [][]byte
	switch b {
	case Drop:
		return nil
	case ServFail:
		m.RCode = dnsmessage.RCodeServerFailure
	case Refused:
		m.RCode = dnsmessage.RCodeRefused
	case NXDomain:
		m.RCode = dnsmessage.RCodeNameError
		m.Authorities = s.soa(name)
	case Truncate:
		if udp {
			m.Truncated = true
			return [][]byte{s.pack(&m)}
		}
		s.answer(&m, quest)
	case Spoof:
		if udp {
			spoof := m
			spoof.RCode = dnsmessage.RCodeNameError
			spoof.ID = h.ID + 1
			out = append(out, s.pack(&spoof))
			spoof.ID = h.ID
			other, _ := dnsmessage.NewName("spoofed.invalid.")
			spoof.Questions = []dnsmessage.Question{{Name: other, Type: quest.Type, Class: quest.Class}}
			out = append(out, s.pack(&spoof))
		}
		s.answer(&m, quest)
	default:
		s.answer(&m, quest)
	}
	resp := s.pack(&m)
	if udp && len(resp) > size {
		m.Truncated = true
		m.Answers, m.Authorities = nil, nil
		resp = s.pack(&m)
	}
	return append(out, resp)
}

func (s *Server) pack(m *dnsmessage.Message) []byte {
	b, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("dnstest: pack answer: %v", err))
	}
	return b
}

var types = []dnsmessage.Type{
	dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypePTR, dnsmessage.TypeTXT,
	dnsmessage.TypeMX, dnsmessage.TypeCNAME,
}

// answer fills m from the records, following CNAMEs within them.
func (s *Server) answer(m *dnsmessage.Message, q dnsmessage.Question) {
	s.mu.Lock()
	defer s.mu.Unlock()
	owner := q.Name
	name := canonical(owner.String())
	for range 16 {
		from := s.sourceLocked(name)
		if rrs := s.records[rrKey{from, q.Type}]; len(rrs) > 0 {
			for _, r := range rrs {
				m.Answers = append(m.Answers, resource(owner, q.Type, r))
			}
			return
		}
		c := s.records[rrKey{from, dnsmessage.TypeCNAME}]
		if len(c) == 0 || q.Type == dnsmessage.TypeCNAME {
			break
		}
		m.Answers = append(m.Answers, resource(owner, dnsmessage.TypeCNAME, c[0]))
		owner = c[0].body.(*dnsmessage.CNAMEResource).CNAME
		name = canonical(owner.String())
	}
	if !s.existsLocked(s.sourceLocked(name)) {
		m.RCode = dnsmessage.RCodeNameError
	}
	m.Authorities = s.soaLocked(name)
}

// existsLocked reports whether name has records of any type.
func (s *Server) existsLocked(name string) bool {
	for _, t := range types {
		if len(s.records[rrKey{name, t}]) > 0 {
			return true
		}
	}
	return false
}

// sourceLocked returns the name whose records answer for name: name
// itself if it has records, else the wildcard "*.ancestor" of its
// closest ancestor that has one, unless an ancestor with records comes
// first (RFC 4592's closest encloser, without empty non-terminals).
func (s *Server) sourceLocked(name string) string {
	if s.existsLocked(name) {
		return name
	}
	for p := name; p != ""; {
		i := strings.IndexByte(p, '.')
		if i < 0 {
			p = ""
		} else {
			p = p[i+1:]
		}
		w := "*"
		if p != "" {
			w += "." + p
		}
		if s.existsLocked(w) {
			return w
		}
		if p != "" && s.existsLocked(p) {
			break
		}
	}
	return name
}

func resource(owner dnsmessage.Name, t dnsmessage.Type, r rr) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: owner, Type: t, Class: dnsmessage.ClassINET, TTL: r.ttl},
		Body:   r.body,
	}
}

func (s *Server) soa(name string) []dnsmessage.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.soaLocked(name)
}

// soaLocked returns the authority section of a negative answer for name:
// the SOA of the closest zone, if any.
func (s *Server) soaLocked(name string) []dnsmessage.Resource {
	for zone := name; ; {
		if v, ok := s.soas[zone]; ok {
			n, err := dnsmessage.NewName(zone + ".")
			if err != nil {
				return nil
			}
			ns, _ := dnsmessage.NewName("ns." + zone + ".")
			mbox, _ := dnsmessage.NewName("hostmaster." + zone + ".")
			return []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: n, Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: v[0]},
				Body: &dnsmessage.SOAResource{
					NS: ns, MBox: mbox, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: v[1],
				},
			}}
		}
		i := strings.IndexByte(zone, '.')
		if i < 0 {
			return nil
		}
		zone = zone[i+1:]
	}
}
