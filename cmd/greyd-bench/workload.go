package main

import (
	"fmt"
	"strconv"
)

// A workload decides what request number i looks like. Every request is a
// pure function of (seed, i), so runs are reproducible whatever the number of
// connections, generating needs no locks, and "new" triplets are unique by
// construction (the recipient contains i).
//
// Addresses are documentation/benchmark ranges (198.18.0.0/15, 2001:db8::/32,
// 192.0.2.0/24) and names are under .example, except whitelisted client names,
// which must be real domains of the default whitelist. They are only strings
// in the protocol; nothing ever resolves or dials them.
type workload int

const (
	wNew workload = iota
	wRepeat
	wMixed
	wWhitelisted
)

// Mixed workload shares, in percent: the rest is whitelisted.
const (
	mixNewPct    = 20
	mixRepeatPct = 70
)

var workloadNames = map[string]workload{
	"new":         wNew,
	"repeat":      wRepeat,
	"mixed":       wMixed,
	"whitelisted": wWhitelisted,
}

func (w workload) String() string {
	for name, v := range workloadNames {
		if v == w {
			return name
		}
	}
	return "workload(" + strconv.Itoa(int(w)) + ")"
}

// generator builds requests for one workload.
type generator struct {
	kind     workload
	seed     uint64
	seedMix  uint64 // seed run through the mixer once
	seedTag  uint32 // short, seed-dependent tag put in unique names
	poolSize uint64
	// clients, if not 0, is how many clients the new triplets come from
	// (-clients): the same ones whatever the seed, so that what a server
	// learns about a client (a DNS cache) stays warm across runs.
	clients uint64
}

func newGenerator(kind workload, seed uint64, poolSize int) *generator {
	if poolSize < 1 {
		poolSize = 1
	}
	sm := splitmix64(seed)
	return &generator{
		kind:     kind,
		seed:     seed,
		seedMix:  sm,
		seedTag:  uint32(splitmix64(sm) >> 32),
		poolSize: uint64(poolSize),
	}
}

// describe says in words what the generator sends (for reports).
func (g *generator) describe() string {
	switch g.kind {
	case wNew:
		if g.clients > 0 {
			return fmt.Sprintf("new: every request a never-seen triplet, from %d clients", g.clients)
		}
		return "new: every request a never-seen triplet, IPv4/IPv6 alternating"
	case wRepeat:
		return fmt.Sprintf("repeat: pool of %d triplets, cycled", g.poolSize)
	case wMixed:
		return fmt.Sprintf("mixed: %d%% new, %d%% repeat (pool of %d), %d%% whitelisted",
			mixNewPct, mixRepeatPct, g.poolSize, 100-mixNewPct-mixRepeatPct)
	case wWhitelisted:
		return "whitelisted: 1/3 client_name under outlook.com, 1/3 under google.com, 1/3 recipient postmaster@"
	}
	return g.kind.String()
}

// needsPrime reports whether the workload has a pool the server should see
// once before measuring (so "repeat" means a known triplet).
func (g *generator) needsPrime() bool { return g.kind == wRepeat || g.kind == wMixed }

// class is what one request is meant to exercise.
type class uint8

const (
	classNew class = iota
	classRepeat
	classWhitelisted
)

// classOf returns the class of request i.
func (g *generator) classOf(i uint64) class {
	switch g.kind {
	case wRepeat:
		return classRepeat
	case wWhitelisted:
		return classWhitelisted
	case wMixed:
		switch p := g.hash('m', i) % 100; {
		case p < mixNewPct:
			return classNew
		case p < mixNewPct+mixRepeatPct:
			return classRepeat
		default:
			return classWhitelisted
		}
	}
	return classNew
}

// clientKind selects the client_name style.
type clientKind uint8

const (
	clientPlain   clientKind = iota // mail<hex>.s<n>.example
	clientUnknown                   // "unknown": no forward-confirmed reverse DNS
	clientOutlook                   // under outlook.com (whitelisted)
	clientGoogle                    // under google.com (whitelisted)
)

// triplet is the identity part of a request: what greylisting keys on and
// what whitelists look at.
type triplet struct {
	h      uint64 // hash of the identity, source of all its strings
	ns     byte   // namespace: 'n' new, 'p' pool, 'w' whitelisted
	id     uint64 // unique within ns for one seed
	v6     bool
	client clientKind
	rcptWL bool // recipient postmaster@ (recipient whitelist)
}

// tripletOf returns the triplet of request i.
func (g *generator) tripletOf(i uint64) triplet {
	switch g.classOf(i) {
	case classRepeat:
		return g.poolTriplet(i % g.poolSize)
	case classWhitelisted:
		t := triplet{h: g.hash('w', i), ns: 'w', id: i, v6: i&1 == 1}
		switch (i >> 1) % 3 {
		case 0:
			t.client = clientOutlook
		case 1:
			t.client = clientGoogle
		default:
			t.client = clientUnknown
			t.rcptWL = true
		}
		return t
	}
	t := triplet{h: g.hash('n', i), ns: 'n', id: i, v6: i&1 == 1}
	if g.clients > 0 {
		// The client (and its sender) from a seed-independent set; the
		// recipient, from ns and id, still makes the triplet new.
		j := i % g.clients
		t.h, t.v6 = splitmix64(uint64('c')<<56^j), j&1 == 1
	}
	if t.h>>60 < 4 { // a quarter of the clients have no verified name
		t.client = clientUnknown
	}
	return t
}

// poolTriplet returns pool triplet j of the repeat pool.
func (g *generator) poolTriplet(j uint64) triplet {
	t := triplet{h: g.hash('p', j), ns: 'p', id: j, v6: j&1 == 1}
	if t.h>>60 < 4 {
		t.client = clientUnknown
	}
	return t
}

// appendRequest appends request i (terminated by its empty line) to buf.
func (g *generator) appendRequest(buf []byte, i uint64) []byte {
	return g.appendTriplet(buf, g.tripletOf(i), g.hash('i', i))
}

// appendPrime appends the request that introduces pool triplet j.
func (g *generator) appendPrime(buf []byte, j uint64) []byte {
	return g.appendTriplet(buf, g.poolTriplet(j), g.hash('P', j))
}

// appendTriplet writes a full Postfix 3.7 smtpd_access_policy request at
// the RCPT stage for triplet t; per holds the per-message randomness
// (instance, queue id, port, TLS or not).
func (g *generator) appendTriplet(b []byte, t triplet, per uint64) []byte {
	b = append(b, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nhelo_name="...)
	b = appendHelo(b, t)
	b = append(b, "\nqueue_id="...)
	b = appendHexUpper(b, per&0xffffffffff, 10)
	b = append(b, "\nsender="...)
	b = g.appendSender(b, t)
	b = append(b, "\nrecipient="...)
	b = g.appendRecipient(b, t)
	b = append(b, "\nrecipient_count=0\nclient_address="...)
	b = appendClientAddr(b, t)
	b = append(b, "\nclient_name="...)
	b = appendClientName(b, t)
	b = append(b, "\nreverse_client_name="...)
	b = appendClientName(b, t)
	b = append(b, "\ninstance="...)
	b = strconv.AppendUint(b, per>>40&0xfffff, 16)
	b = append(b, '.')
	b = strconv.AppendUint(b, per>>20&0xfffff, 16)
	b = append(b, '.')
	b = strconv.AppendUint(b, per&0xfffff, 16)
	b = append(b, ".0\nsasl_method=\nsasl_username=\nsasl_sender=\nsize="...)
	b = strconv.AppendUint(b, 1000+per%200000, 10)
	b = append(b, "\nccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint="...)
	if per>>62 != 0 { // three quarters of the sessions use TLS
		b = append(b, "\nencryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256"...)
	} else {
		b = append(b, "\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0"...)
	}
	b = append(b, "\netrn_domain=\nstress=\nclient_port="...)
	b = strconv.AppendUint(b, 1024+per>>24%64000, 10)
	b = append(b, "\npolicy_context=\nserver_address="...)
	if t.v6 {
		b = append(b, "2001:db8::25"...)
	} else {
		b = append(b, "192.0.2.25"...)
	}
	b = append(b, "\nserver_port=25\n\n"...)
	return b
}

func appendClientAddr(b []byte, t triplet) []byte {
	if t.v6 { // 2001:db8:XXXX:XXXX::XXXX
		b = append(b, "2001:db8:"...)
		b = strconv.AppendUint(b, t.h>>48&0xffff, 16)
		b = append(b, ':')
		b = strconv.AppendUint(b, t.h>>32&0xffff, 16)
		b = append(b, "::"...)
		return strconv.AppendUint(b, t.h&0xffff|1, 16)
	}
	a := t.h & 0x1ffff // 198.18.0.0/15
	b = append(b, "198."...)
	b = strconv.AppendUint(b, 18+a>>16, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, a>>8&0xff, 10)
	b = append(b, '.')
	return strconv.AppendUint(b, a&0xff, 10)
}

func appendClientName(b []byte, t triplet) []byte {
	switch t.client {
	case clientUnknown:
		return append(b, "unknown"...)
	case clientOutlook:
		b = append(b, "mail-"...)
		b = strconv.AppendUint(b, t.h>>40, 36)
		return append(b, ".outbound.protection.outlook.com"...)
	case clientGoogle:
		b = append(b, "mail-"...)
		b = strconv.AppendUint(b, t.h>>40, 36)
		return append(b, ".google.com"...)
	}
	b = append(b, "mail"...)
	b = strconv.AppendUint(b, t.h>>36, 16)
	b = append(b, '.')
	return appendSenderDomain(b, t)
}

func appendHelo(b []byte, t triplet) []byte {
	if t.client == clientUnknown {
		b = append(b, "mx"...)
		b = strconv.AppendUint(b, t.h>>52, 10)
		b = append(b, '.')
		return appendSenderDomain(b, t)
	}
	return appendClientName(b, t)
}

// appendSenderDomain appends "s<n>.example", one of 5000 sender domains.
func appendSenderDomain(b []byte, t triplet) []byte {
	b = append(b, 's')
	b = strconv.AppendUint(b, t.h%5000, 10)
	return append(b, ".example"...)
}

// appendSender appends the envelope sender. The local part starts with a
// letter and contains no all-digit word, so Postgrey-style VERP
// normalisation (\b\d+\b -> #) cannot merge distinct senders.
func (g *generator) appendSender(b []byte, t triplet) []byte {
	b = append(b, 'u')
	b = strconv.AppendUint(b, t.h>>8&0xffffff, 16)
	b = append(b, '@')
	return appendSenderDomain(b, t)
}

// appendRecipient appends the envelope recipient: postmaster@ for the
// recipient whitelist, else r<seedtag><ns><id>@d<n>.example, which is
// unique per (seed, namespace, id) and so makes the triplet unique.
func (g *generator) appendRecipient(b []byte, t triplet) []byte {
	if t.rcptWL {
		b = append(b, "postmaster@d"...)
	} else {
		b = append(b, 'r')
		b = strconv.AppendUint(b, uint64(g.seedTag), 16)
		b = append(b, t.ns)
		b = strconv.AppendUint(b, t.id, 16)
		b = append(b, "@d"...)
	}
	b = strconv.AppendUint(b, t.h>>16%200, 10)
	return append(b, ".example"...)
}

// appendHexUpper appends v as exactly n upper-case hex digits.
func appendHexUpper(b []byte, v uint64, n int) []byte {
	const digits = "0123456789ABCDEF"
	for i := n - 1; i >= 0; i-- {
		b = append(b, digits[v>>(4*uint(i))&0xf])
	}
	return b
}

// hash mixes the seed, a namespace byte and an index into 64 random bits.
func (g *generator) hash(ns byte, i uint64) uint64 {
	return splitmix64(g.seedMix ^ uint64(ns)<<56 ^ i)
}

// splitmix64 is a bijective 64-bit mixer (Steele, Lea, Flood 2014).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
