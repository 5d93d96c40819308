package whitelist

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Recipients is a recipient whitelist in Postgrey's (Postfix access map
// style) syntax, matched against the raw recipient address, ignoring case.
// Addresses are split into local part and domain at the last '@'; one
// without '@' is a local part. Trailing dots on domains are ignored.
//
//	/re/         regex on the whole address
//	user@domain  that address, and user+ext@domain
//	user@        that local part (and user+ext) at any domain
//	@domain      any local part at exactly that domain
//	domain       any address at that domain or below it
//
// It is immutable after loading and safe for concurrent readers; the zero
// value and a nil pointer match nothing.
type Recipients struct {
	exact    map[string]map[string]struct{} // domain -> local parts
	locals   map[string]struct{}            // "user@"
	atDomain map[string]struct{}            // "@domain"
	domains  map[string]struct{}            // "domain", with subdomains
	regexes  regexSet
	n        int // distinct map entries
}

// ParseRecipients reads one recipient whitelist file; file names it in
// Problems.
func ParseRecipients(file string, r io.Reader) (*Recipients, []Problem) {
	rc := &Recipients{}
	return rc, readEntries(file, r, rc.add)
}

// LoadRecipients reads the recipient whitelist files in order and merges
// them. A missing file ending in ".local" is silently skipped.
func LoadRecipients(paths []string) (*Recipients, []Problem) {
	rc := &Recipients{}
	probs := loadFiles(paths, func(file string, r io.Reader) []Problem {
		return readEntries(file, r, rc.add)
	})
	return rc, probs
}

// Len returns the number of distinct entries.
func (r *Recipients) Len() int {
	if r == nil {
		return 0
	}
	return r.n + len(r.regexes.list)
}

// Match reports whether recipient (Postfix's raw recipient attribute)
// matches an entry.
func (r *Recipients) Match(recipient string) bool {
	if r == nil || r.n == 0 && len(r.regexes.list) == 0 {
		return false
	}
	var buf [256]byte
	low := lower(buf[:], recipient)
	if r.n > 0 {
		local := low
		var domain []byte
		if i := bytes.LastIndexByte(local, '@'); i >= 0 {
			local, domain = local[:i], trimDot(local[i+1:])
		}
		if len(domain) > 0 {
			if _, ok := r.atDomain[string(domain)]; ok {
				return true
			}
			if matchLocal(r.exact[string(domain)], local) {
				return true
			}
			for d := domain; len(r.domains) > 0; {
				if _, ok := r.domains[string(d)]; ok {
					return true
				}
				i := bytes.IndexByte(d, '.')
				if i < 0 {
					break
				}
				d = d[i+1:]
			}
		}
		// A bare "postmaster" (no '@') is a local part too.
		if matchLocal(r.locals, local) {
			return true
		}
	}
	return r.regexes.match(recipient, low)
}

// matchLocal reports whether local, or local without a "+ext" suffix, is in
// m. As with Postgrey's ^user(?:\+[^@]+)?@, the extension is non-empty and
// holds no '@', and every '+' counts: "a+b+c" matches "a", "a+b" and "a+b+c".
func matchLocal(m map[string]struct{}, local []byte) bool {
	if len(m) == 0 {
		return false
	}
	if _, ok := m[string(local)]; ok {
		return true
	}
	for j := len(local) - 1; j >= 0; j-- {
		switch local[j] {
		case '@':
			return false
		case '+':
			if j < len(local)-1 {
				if _, ok := m[string(local[:j])]; ok {
					return true
				}
			}
		}
	}
	return false
}

// add adds one entry; it returns "" or what is wrong with the entry.
func (r *Recipients) add(entry string) string {
	if hasSpace(entry) {
		return fmt.Sprintf("%q: doesn't look like an address (contains whitespace; write one entry per line, and \\s for white space in a regex)", entry)
	}
	if isRegexEntry(entry) {
		re, msg := compileRegex(entry)
		if msg != "" {
			return msg
		}
		r.regexes.add(re)
		return ""
	}
	e := lowerString(entry)
	i := strings.LastIndexByte(e, '@')
	if i < 0 {
		d := strings.TrimSuffix(e, ".")
		if msg := checkDomain(d); msg != "" {
			return fmt.Sprintf("%q: %s", entry, msg)
		}
		r.n += addKey(&r.domains, d)
		return ""
	}
	local, domain := e[:i], e[i+1:]
	if domain == "" {
		if local == "" {
			return fmt.Sprintf("%q: doesn't look like an address (write user@domain, user@, @domain or domain)", entry)
		}
		r.n += addKey(&r.locals, local)
		return ""
	}
	domain = strings.TrimSuffix(domain, ".")
	if local == "*" {
		return fmt.Sprintf("%q: wildcards are not supported; write %q for every address at that domain", entry, "@"+domain)
	}
	if msg := checkDomain(domain); msg != "" {
		return fmt.Sprintf("%q: %s", entry, msg)
	}
	if local == "" {
		r.n += addKey(&r.atDomain, domain)
		return ""
	}
	if r.exact == nil {
		r.exact = make(map[string]map[string]struct{})
	}
	m := r.exact[domain]
	r.n += addKey(&m, local)
	r.exact[domain] = m
	return ""
}

// addKey adds k to *m, creating the map if needed; it returns 1 if k is new.
func addKey(m *map[string]struct{}, k string) int {
	if *m == nil {
		*m = make(map[string]struct{})
	}
	if _, dup := (*m)[k]; dup {
		return 0
	}
	(*m)[k] = struct{}{}
	return 1
}

// checkDomain rejects domain parts that can never match, saying what was
// probably meant. d is lower case without trailing dot.
func checkDomain(d string) string {
	switch {
	case d == "":
		return "doesn't look like an address (empty domain)"
	case strings.HasPrefix(d, "*."):
		return fmt.Sprintf("wildcards are not supported; write %q, which also matches every domain under it", d[2:])
	case d[0] == '.':
		return fmt.Sprintf("leading dot; write %q, which also matches every domain under it", strings.TrimLeft(d, "."))
	case strings.ContainsAny(d, "*?"):
		return "wildcards are not supported; write the domain, or a /regex/"
	case strings.Contains(d, "/"):
		return "doesn't look like an address (contains \"/\"; write a regex as /regex/)"
	}
	return ""
}
