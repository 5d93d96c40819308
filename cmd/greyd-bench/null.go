package main

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// nullServer is the ceiling baseline: a policy server that parses nothing
// beyond line boundaries, decides nothing, stores nothing and answers every
// request with DUNNO. It is written the way a reasonable Go server would be
// (one goroutine per connection, bufio, flush only when no more input is
// buffered), so greyd/null measures greyd's own cost.
type nullServer struct {
	ln       net.Listener
	requests atomic.Uint64 // requests answered on closed connections (for tests)

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

var nullReply = []byte("action=DUNNO\n\n")

func newNullServer(ln net.Listener) *nullServer {
	return &nullServer{ln: ln, conns: make(map[net.Conn]struct{})}
}

// serve accepts connections until the listener is closed.
func (s *nullServer) serve() error {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c)
	}
}

// close stops accepting, closes open connections and waits for them.
func (s *nullServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *nullServer) handle(c net.Conn) {
	var answered uint64 // summed at close: no shared cache line per request
	defer func() {
		s.requests.Add(answered)
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	r := bufio.NewReaderSize(c, 8<<10)
	w := bufio.NewWriterSize(c, 4<<10)
	attrs := 0
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Over-long attribute: skip it, like Postfix would never send.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			attrs++
			continue
		}
		if err != nil {
			return
		}
		if len(line) > 2 || (len(line) == 2 && line[0] != '\r') {
			attrs++
			continue
		}
		if attrs == 0 { // stray empty line, not a request
			continue
		}
		attrs = 0
		answered++
		if _, err := w.Write(nullReply); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}
