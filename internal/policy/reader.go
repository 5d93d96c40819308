package policy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Reader reads policy requests from one connection. It reuses its buffers
// between requests; each Request's strings stay valid after the next Read.
type Reader struct {
	br       *bufio.Reader
	buf      []byte
	maxLine  int
	maxAttrs int
	maxSize  int // 0: no limit but maxLine * maxAttrs
	// Started reports whether bytes of a request not yet complete have been
	// read; the server uses it to tell an idle connection from a busy one.
	started bool
	lines   int
}

// NewReader returns a Reader that rejects lines longer than maxLine bytes
// (including the newline) and requests with more than maxAttrs lines.
func NewReader(r io.Reader, maxLine, maxAttrs int) *Reader {
	if maxLine < 64 {
		maxLine = 64
	}
	if maxAttrs < 1 {
		maxAttrs = 1
	}
	return &Reader{br: bufio.NewReaderSize(r, maxLine), maxLine: maxLine, maxAttrs: maxAttrs}
}

// LimitSize makes Read reject requests longer than n bytes in all (the
// attribute lines with their newlines), so that a connection costs at
// most about n bytes of memory; n <= 0 removes the limit.
func (r *Reader) LimitSize(n int) { r.maxSize = max(n, 0) }

// Buffered reports how many bytes of further input are already read; the
// server flushes replies only when none are (pipelining).
func (r *Reader) Buffered() int { return r.br.Buffered() }

// InRequest reports whether part of a request has been read.
func (r *Reader) InRequest() bool { return r.started }

// Read reads the next request into req. It returns io.EOF when the peer
// closed the connection between requests, ErrUnexpectedEOF when it closed
// in the middle of one, ErrLineTooLong, ErrTooManyAttributes or
// ErrRequestTooLarge when a limit is broken, or the underlying read error
// (e.g. a timeout). After a
// timeout, calling Read again continues the interrupted request. An empty
// line with no attributes before it yields a request with no attributes.
func (r *Reader) Read(req *Request) error {
	if !r.started {
		r.buf = r.buf[:0]
		r.lines = 0
	}
	req.Reset()
	for {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return ErrLineTooLong
			}
			if errors.Is(err, io.EOF) {
				if len(line) > 0 || r.started {
					return ErrUnexpectedEOF
				}
				return io.EOF
			}
			if len(line) > 0 {
				// Keep the partial line: a timeout may be retried.
				r.started = true
				r.buf = append(r.buf, line...)
			}
			return err
		}
		r.started = true
		// A retried read after a timeout may have left a partial line.
		if len(r.buf) > 0 && r.buf[len(r.buf)-1] != '\n' {
			r.buf = append(r.buf, line...)
			start := bytes.LastIndexByte(r.buf[:len(r.buf)-1], '\n') + 1
			line = r.buf[start:]
			r.buf = r.buf[:start]
			if len(line) > r.maxLine {
				return ErrLineTooLong
			}
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			r.started = false
			req.parse(r.buf)
			return nil
		}
		r.lines++
		if r.lines > r.maxAttrs {
			return ErrTooManyAttributes
		}
		if r.maxSize > 0 && len(r.buf)+len(line)+1 > r.maxSize {
			return ErrRequestTooLarge
		}
		r.buf = append(r.buf, line...)
		r.buf = append(r.buf, '\n')
	}
}
