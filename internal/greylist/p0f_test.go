package greylist

import (
	"testing"

	"greyd/internal/dns"
	"greyd/internal/p0f"
)

// The daemon sets its resolver and its p0f client in either order; each
// keeps the other, and the snapshots carry both.
func TestSetP0fKeepsResolver(t *testing.T) {
	r, err := dns.New(dns.Config{Servers: []string{"127.0.0.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pc := p0f.New(p0f.Options{})
	defer pc.Close()
	for _, order := range []string{"resolver first", "p0f first"} {
		e, _, _ := newEngine(t)
		if order == "resolver first" {
			e.SetResolver(r)
			e.SetP0f(pc)
		} else {
			e.SetP0f(pc)
			e.SetResolver(r)
		}
		if s := e.snap.Load().Scorer; s == nil || s.Resolver != r || s.P0f != pc {
			t.Errorf("%s: scorer %+v", order, s)
		}
		e.SetResolver(nil)
		if s := e.snap.Load().Scorer; s == nil || s.Resolver != nil || s.P0f != pc {
			t.Errorf("%s, then no resolver: scorer %+v", order, s)
		}
	}
}
