// Package p0ftest is a fake p0f for tests: a unix socket that speaks
// p0f 3's API (package p0f's wire format) with answers set by the test,
// and misbehaves on demand (slow, garbage, bad query, hanging up, gone).
package p0ftest

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/p0f"
)

// Behaviour is how the server answers.
type Behaviour int

// Behaviours.
const (
	Normal   Behaviour = iota // the answer set for the address, or no match
	Slow                      // Normal after Server.Delay
	Garbage                   // 232 bytes with a wrong magic
	BadQuery                  // status "bad query"
	HangUp                    // close the connection without answering
	Silent                    // read the query, never answer
)

// Server is a fake p0f.
type Server struct {
	Path  string
	Delay time.Duration // of Slow

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]bool
	answers map[netip.Addr]p0f.Answer
	how     Behaviour

	queries  atomic.Int64
	accepted atomic.Int64
	wg       sync.WaitGroup
}

// Start serves on a socket in a temporary directory until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "p0f") // t.TempDir() may exceed a socket path's 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Path: dir + "/p0f.sock", answers: map[netip.Addr]p0f.Answer{}, conns: map[net.Conn]bool{}}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	return s
}

// Set makes a the answer for addr (Status OK unless set).
func (s *Server) Set(addr netip.Addr, a p0f.Answer) {
	if a.Status == 0 {
		a.Status = p0f.StatusOK
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[addr] = a
}

// Behave sets how the server answers from now on.
func (s *Server) Behave(b Behaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.how = b
}

// Queries returns how many queries the server read; Accepted how many
// connections it accepted.
func (s *Server) Queries() int64  { return s.queries.Load() }
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// Listen (re)starts serving on Path, as a restarted p0f does.
func (s *Server) Listen() error {
	os.Remove(s.Path)
	ln, err := net.Listen("unix", s.Path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go s.serve(ln)
	return nil
}

// Stop closes the socket and every connection, as p0f exiting does.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	os.Remove(s.Path)
}

func (s *Server) serve(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *Server) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var q [p0f.QuerySize]byte
	for {
		if _, err := readFull(c, q[:]); err != nil {
			return
		}
		s.queries.Add(1)
		s.mu.Lock()
		how, delay := s.how, s.Delay
		addr, err := p0f.ParseQuery(q[:])
		a, ok := s.answers[addr]
		s.mu.Unlock()
		if !ok {
			a = p0f.Answer{Status: p0f.StatusNoMatch}
		}
		if err != nil {
			a = p0f.Answer{Status: p0f.StatusBadQuery}
		}
		var out []byte
		switch how {
		case Slow:
			time.Sleep(delay) // the behaviour under test, not synchronisation
			out = p0f.AppendAnswer(nil, a)
		case Garbage:
			out = p0f.AppendAnswer(nil, a)
			out[0] ^= 0xff
		case BadQuery:
			out = p0f.AppendAnswer(nil, p0f.Answer{Status: p0f.StatusBadQuery})
		case HangUp:
			return
		case Silent:
			continue
		default:
			out = p0f.AppendAnswer(nil, a)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
