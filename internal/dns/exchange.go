package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// udpBuffer is larger than what greyd advertises (ednsSize), so that a
// server ignoring the advertised size is still read whole.
const udpBuffer = 4096

// resolve asks the servers in turn, starting with the last one that
// answered, until one gives an answer (records, NXDOMAIN, NODATA) or each
// was tried Attempts times or ctx ends. A timeout, SERVFAIL, REFUSED or
// any other failure moves on to the next server; the last failure is the
// result.
func (r *Resolver) resolve(ctx context.Context, name string, t Type) Result {
	q, err := question(name, t)
	if err != nil {
		return Result{Status: Error, Err: err}
	}
	n := len(r.servers)
	first := int(r.prefer.Load()) % n
	last := Result{Status: Timeout, Err: fmt.Errorf("lookup %s %s: no server tried", t, name)}
	for i := 0; i < n*r.cfg.Attempts && ctx.Err() == nil; i++ {
		idx := (first + i) % n
		tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		res := exchange(tctx, r.servers[idx], q)
		cancel()
		switch res.Status {
		case Found, NXDomain, NoData:
			if idx != first {
				r.prefer.Store(uint32(idx))
			}
			return res
		}
		res.Err = fmt.Errorf("lookup %s %s at %s: %w", t, name, r.servers[idx], res.Err)
		last = res
	}
	if err := ctx.Err(); err != nil && last.Status != Timeout {
		last = Result{Status: Timeout, Err: fmt.Errorf("lookup %s %s: %w (before: %v)", t, name, err, last.Err)}
	}
	return last
}

// exchange asks one server over UDP, and again over TCP if the answer is
// truncated.
func exchange(ctx context.Context, server string, q dnsmessage.Question) Result {
	// math/rand/v2's global source is ChaCha8 seeded by the runtime:
	// not predictable from outside, which is what an ID needs.
	id := uint16(rand.Uint32())
	msg, err := buildQuery(id, q)
	if err != nil {
		return Result{Status: Error, Err: fmt.Errorf("%w: %v", ErrInvalidName, err)}
	}
	res, truncated, err := exchangeUDP(ctx, server, id, q, msg[2:])
	if err == nil && truncated {
		res, err = exchangeTCP(ctx, server, id, q, msg)
	}
	if err != nil {
		return failure(ctx, err)
	}
	return res
}

// failure turns a network error into a Result.
func failure(ctx context.Context, err error) Result {
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return Result{Status: Timeout, Err: err}
	}
	return Result{Status: Error, Err: err}
}

// deadline makes ctx's deadline and cancellation those of c.
func deadline(ctx context.Context, c net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

func exchangeUDP(ctx context.Context, server string, id uint16, q dnsmessage.Question, msg []byte) (Result, bool, error) {
	var d net.Dialer
	// A connected socket: the kernel drops datagrams from other sources.
	c, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return Result{}, false, err
	}
	defer c.Close()
	defer deadline(ctx, c)()
	if _, err := c.Write(msg); err != nil {
		return Result{}, false, err
	}
	buf := make([]byte, udpBuffer)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return Result{}, false, err
		}
		res, truncated, err := parseResponse(buf[:n], id, q)
		if errors.Is(err, errNotOurs) {
			continue // spoofed, late or garbage: keep waiting for ours
		}
		return res, truncated, err
	}
}

// exchangeTCP sends msg, which starts with room for the length prefix.
func exchangeTCP(ctx context.Context, server string, id uint16, q dnsmessage.Question, msg []byte) (Result, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	defer deadline(ctx, c)()
	if _, err := c.Write(msg); err != nil {
		return Result{}, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return Result{}, fmt.Errorf("tcp: %w", err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return Result{}, fmt.Errorf("tcp: %w", err)
	}
	res, truncated, err := parseResponse(buf, id, q)
	if err != nil {
		return Result{}, fmt.Errorf("tcp: %w", err)
	}
	if truncated {
		return Result{}, errors.New("tcp: truncated answer")
	}
	return res, nil
}
