// Package identity decides who a greylisting client is when lookup_by is
// "auto": the organisation behind a verified mail server name, so that a
// provider retrying from another of its hosts keeps one triplet, or nobody,
// and the caller keys the client by its subnet exactly as before.
//
// It owns the rules of that choice and nothing else: it makes no DNS query
// (client_name is already forward-confirmed by Postfix), keeps no state
// after New, and never reads reverse_client_name, which anyone can forge.
// See README.md for the rules, their reasons and the cases left on subnet.
package identity

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Rule names the rule that decided a client's identity, for logs and
// `greyd explain`. Only PoolDomain and OrgDomain give an organisation key.
type Rule uint8

const (
	NoName         Rule = iota // no verified, well-formed client_name
	PoolDomain                 // the name is under a pool_domains entry
	DynamicDomain              // the name is under a dynamic_domains entry
	NoOrgDomain                // no registrable ICANN domain (public suffix, private-section platform, unlisted TLD)
	AddressInName              // the host labels carry the client's address
	DynamicKeyword             // the host labels name an access network or a customer host
	OrgDomain                  // the registrable domain (eTLD+1)
)

var ruleNames = [...]string{
	NoName:         "no-name",
	PoolDomain:     "pool-domain",
	DynamicDomain:  "dynamic-domain",
	NoOrgDomain:    "no-org-domain",
	AddressInName:  "address-in-name",
	DynamicKeyword: "dynamic-keyword",
	OrgDomain:      "org-domain",
}

// String returns the rule's short lower-case name ("org-domain").
func (r Rule) String() string {
	if int(r) < len(ruleNames) {
		return ruleNames[r]
	}
	return "rule(" + strconv.Itoa(int(r)) + ")"
}

// Config holds the two configurable lists. Entries are domain names in
// lower case without a leading dot; a name matches an entry when it is the
// entry or ends with "." + entry.
type Config struct {
	// PoolDomains are explicit "all hosts under here are one sender":
	// such a name is keyed by the entry itself, before any other rule.
	PoolDomains []string
	// DynamicDomains are never aggregated: names under them are keyed by
	// subnet.
	DynamicDomains []string
}

// Defaults returns the lists greyd ships with. The pools are providers
// whose outbound hosts are named after their own address (rule 5 would
// otherwise key every retry by its subnet); the dynamic domains are access
// networks whose subscriber names carry neither a keyword nor a form of the
// address that rule 5 recognises.
func Defaults() Config {
	return Config{
		PoolDomains: []string{
			"facebook.com",      // 66-220-155-142.mail-mail.facebook.com
			"qq.com",            // out162-62-58-211.mail.qq.com, biz-43-154-54-12.mail.qq.com
			"sparkpostmail.com", // mta-203-32-122.sparkpostmail.com
		},
		DynamicDomains: []string{
			"au-net.ne.jp", // KDDI: KD106128147108.au-net.ne.jp (zero-padded decimal)
			"bbtec.net",    // SoftBank: softbank126012034056.bbtec.net
		},
	}
}

// Matcher applies the rules. It is immutable after New and safe for
// concurrent use; a nil *Matcher has empty lists.
type Matcher struct {
	listed map[string]uint8 // entry -> listPool|listDynamic
	maxLen int              // longest entry: shorter suffixes only are looked up
}

const (
	listPool uint8 = 1 << iota
	listDynamic
)

// New compiles c. Entries are lower-cased and stripped of a leading and a
// trailing dot; entries that CheckPoolDomain or CheckDynamicDomain reject
// are dropped, so configuration loading should run those checks first and
// report the entry to the user.
func New(c Config) *Matcher {
	m := &Matcher{listed: make(map[string]uint8)}
	add := func(list []string, bit uint8, check func(string) error) {
		for _, d := range list {
			d = strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(d)), "."), ".")
			if check(d) != nil {
				continue
			}
			m.listed[d] |= bit
			m.maxLen = max(m.maxLen, len(d))
		}
	}
	add(c.PoolDomains, listPool, CheckPoolDomain)
	add(c.DynamicDomains, listDynamic, CheckDynamicDomain)
	return m
}

// CheckPoolDomain reports why d cannot be a pool_domains entry: it must be
// a lower-case hostname without leading or trailing dot, and neither d nor
// the names directly under it may be public suffixes, since "com",
// "dyndns.org" or "compute-1.amazonaws.com" would make unrelated
// registrants one sender.
func CheckPoolDomain(d string) error {
	if err := checkDomain(d); err != nil {
		return err
	}
	if ps, _ := publicsuffix.PublicSuffix(d); ps == d {
		return errors.New("is a public suffix: unrelated registrants under it would share one greylisting key; list the provider's own domain instead")
	}
	// A wildcard rule below d ("*.compute-1.amazonaws.com") makes each
	// child a public suffix of its own.
	if ps, _ := publicsuffix.PublicSuffix("x." + d); len(ps) > len(d) {
		return errors.New("has a public suffix under it: unrelated registrants would share one greylisting key; list the provider's own domain instead")
	}
	return nil
}

// CheckDynamicDomain reports why d cannot be a dynamic_domains entry. A
// public suffix is allowed there ("dyndns.org" keeps its whole tree on
// subnet keys).
func CheckDynamicDomain(d string) error {
	return checkDomain(d)
}

func checkDomain(d string) error {
	switch {
	case d == "":
		return errors.New("is empty")
	case d[0] == '.':
		return errors.New("starts with a dot: write the domain alone (\"example.com\" matches its subdomains too)")
	case d[len(d)-1] == '.':
		return errors.New("ends with a dot: write the domain without it")
	case strings.ToLower(d) != d:
		return errors.New("has upper case: write it in lower case")
	}
	if _, ok := hostname(d); !ok {
		return errors.New("is not a valid domain name (letters, digits and '-' in dot-separated labels)")
	}
	return nil
}

// Of returns the organisation key for a client, or ok == false when the
// client must be keyed by its subnet. addr is client_address and name
// Postfix's verified client_name ("unknown" or "" when not verified).
//
// The rules, first match wins:
//  1. no verified, syntactically valid name -> subnet (NoName)
//  2. the name is under a pool_domains entry -> that entry (PoolDomain)
//  3. the name is under a dynamic_domains entry -> subnet (DynamicDomain)
//  4. no registrable ICANN domain under the Public Suffix List -> subnet (NoOrgDomain)
//  5. the labels left of the public suffix carry the client's address -> subnet (AddressInName)
//  6. the host labels carry a dynamic-access or customer-host token -> subnet (DynamicKeyword)
//  7. otherwise the registrable domain, eTLD+1 (OrgDomain)
//
// org is always a suffix of the lower-cased name, starting on a label
// boundary, and shares its memory: for a lower-case name Of allocates
// nothing of its own (golang.org/x/net/publicsuffix allocates once per
// lookup, see README.md).
func (m *Matcher) Of(addr netip.Addr, name string) (org string, rule Rule, ok bool) {
	name, valid := hostname(name)
	if !valid {
		return "", NoName, false
	}
	if m != nil && m.maxLen > 0 {
		switch entry, bits := m.lookup(name); {
		case bits&listPool != 0:
			return entry, PoolDomain, true
		case bits&listDynamic != 0:
			return "", DynamicDomain, false
		}
	}

	// Private-section suffixes (dynamic DNS, cloud and hosting platforms)
	// hand names to unrelated customers: the ICANN domain above them would
	// merge those customers, and the customer's own name is one host that
	// gains nothing from aggregation. An unlisted TLD ("corp.internal")
	// also reports icann == false.
	ps, icann := publicsuffix.PublicSuffix(name)
	if !icann || len(ps) >= len(name) || name[len(name)-len(ps)-1] != '.' {
		return "", NoOrgDomain, false
	}
	cut := len(name) - len(ps) - 1 // the dot before the public suffix
	start := strings.LastIndexByte(name[:cut], '.') + 1
	org = name[start:]
	host := ""
	if start > 0 {
		host = name[:start-1]
	}

	// The registrable label is scanned for the address too: OVH names a
	// whole /24 "ip-51-75-12.eu".
	if carriesAddress(addr, name[:cut], host) {
		return "", AddressInName, false
	}
	if dynamicToken(host) {
		return "", DynamicKeyword, false
	}
	return org, OrgDomain, true
}

// lookup returns the longest listed suffix of name on a label boundary and
// the bits of every listed suffix, so that a pool entry wins over a
// dynamic one whatever their lengths (rule 2 comes before rule 3).
func (m *Matcher) lookup(name string) (pool string, bits uint8) {
	for i := 0; i < len(name); {
		if s := name[i:]; len(s) <= m.maxLen {
			if b, found := m.listed[s]; found {
				if b&listPool != 0 && bits&listPool == 0 {
					pool = s
				}
				bits |= b
			}
		}
		dot := strings.IndexByte(name[i:], '.')
		if dot < 0 {
			break
		}
		i += dot + 1
	}
	return pool, bits
}
