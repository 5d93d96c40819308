// Package whitelist owns greyd's whitelist files: it reads the client and
// recipient lists in Postgrey's syntax and answers, without allocating,
// whether a client (by verified host name or by IP address) or a recipient
// is whitelisted.
//
// The syntax is Postgrey 1.37's, read verbatim, with its bugs fixed:
//   - "a.b" means the /16 it was documented to mean (Postgrey used /24);
//   - unparsable IPv6 entries are reported instead of silently dropped;
//   - "@domain" in the recipient list means every address at that domain,
//     as in Postfix access maps (Postgrey never matched anything with it);
//   - IPv4-mapped IPv6 client addresses (::ffff:a.b.c.d) match IPv4 entries;
//   - a bare recipient without '@' ("postmaster") matches "postmaster@";
//   - entries that can never match (a mail address or a "*." wildcard in the
//     client list, a regex RE2 rejects, ...) are reported with a hint
//     instead of being kept as dead weight.
//
// Every list is immutable once loaded and safe for concurrent readers; a
// reload builds new lists. Domain and address entries live in hash maps,
// networks in one map per prefix length; only /regex/ entries are scanned,
// and most of them are skipped by a substring test on a literal that every
// match contains.
package whitelist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"regexp/syntax"
	"strings"
)

// Problem is one thing wrong in a whitelist file. The offending line is
// skipped; everything else in the file is still used.
type Problem struct {
	File string
	Line int // 0 when the problem is with the file as a whole
	Msg  string
}

// Error returns "file:line: msg", or "file: msg" when Line is 0.
func (p Problem) Error() string {
	if p.Line == 0 {
		return p.File + ": " + p.Msg
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

// readEntries calls add with every entry of r: a line with everything from
// '#' on removed and surrounding white space trimmed, empty ones skipped.
// add returns "" or what is wrong with the entry.
func readEntries(file string, r io.Reader, add func(entry string) string) []Problem {
	var probs []Problem
	br := bufio.NewReader(r)
	for line := 1; ; line++ {
		s, err := br.ReadString('\n')
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		if s = strings.TrimSpace(s); s != "" {
			if msg := add(s); msg != "" {
				probs = append(probs, Problem{File: file, Line: line, Msg: msg})
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if line == 1 && s == "" {
				line = 0 // nothing read at all, e.g. a directory
			}
			probs = append(probs, Problem{File: file, Line: line, Msg: "cannot read: " + errText(err)})
			break
		}
	}
	return probs
}

// loadFiles opens each path in turn and hands it to parse. A missing
// "*.local" file is normal: that is where admins put their own additions.
func loadFiles(paths []string, parse func(file string, r io.Reader) []Problem) []Problem {
	var probs []Problem
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(path, ".local") {
				continue
			}
			probs = append(probs, Problem{File: path, Msg: "cannot open: " + errText(err)})
			continue
		}
		probs = append(probs, parse(path, f)...)
		f.Close()
	}
	return probs
}

// errText drops the "op path:" prefix of a *fs.PathError: the Problem
// already names the file.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// isRegexEntry reports whether entry is written /re/.
func isRegexEntry(entry string) bool {
	return len(entry) >= 2 && entry[0] == '/' && entry[len(entry)-1] == '/'
}

// compileRegex compiles a /re/ entry, case-insensitively like Postgrey's
// qr{...}i. It returns "" or what is wrong.
func compileRegex(entry string) (pattern, string) {
	src := entry[1 : len(entry)-1]
	if src == "" {
		return pattern{}, fmt.Sprintf("%q: empty regex", entry)
	}
	// Compiled once without (?i) so that errors quote the admin's text.
	if _, err := regexp.Compile(src); err != nil {
		msg := strings.TrimPrefix(err.Error(), "error parsing regexp: ")
		var se *syntax.Error
		if errors.As(err, &se) && se.Code == syntax.ErrInvalidPerlOp {
			msg += " (Perl-only syntax: greyd uses RE2, which has no look-around, backreferences or possessive quantifiers)"
		}
		return pattern{}, fmt.Sprintf("%q: bad regex: %s", entry, msg)
	}
	re, err := regexp.Compile("(?i)" + src)
	if err != nil {
		return pattern{}, fmt.Sprintf("%q: bad regex: %s", entry, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	p := pattern{re: re}
	if t, err := syntax.Parse(src, syntax.Perl); err == nil {
		t = t.Simplify()
		if lit := requiredLiteral(t); len(lit) >= 2 {
			p.lit = []byte(lit)
		}
		if suf := requiredSuffix(t); suf != "" {
			p.suffix = []byte(suf)
		}
	}
	return p, ""
}

// pattern is a compiled /re/ entry.
type pattern struct {
	re     *regexp.Regexp
	lit    []byte // lower-case ASCII text that every match contains, or nil
	suffix []byte // lower-case ASCII text every matching input ends with, or nil
}

// requiredSuffix returns the lower-case ASCII literal that re ends with
// when it is anchored at the end of the text, or "". Nearly every regex
// of Postgrey's list is one (/^smtp\d+\.orange\.fr$/): a suffix check,
// which fails at once for most client names, spares the substring
// search of requiredLiteral.
func requiredSuffix(re *syntax.Regexp) string {
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[len(re.Sub)-1].Op != syntax.OpEndText {
		return ""
	}
	last := re.Sub[len(re.Sub)-2]
	if last.Op != syntax.OpLiteral {
		return ""
	}
	lit := string(last.Rune)
	for i := 0; i < len(lit); i++ {
		if lit[i] >= 0x80 {
			return ""
		}
	}
	return lowerString(lit)
}

// requiredLiteral returns lower-case ASCII text that every match of re
// contains, the longest it finds, or "". It lets most regexes be skipped
// with a substring search, as RE2's prefilter does.
func requiredLiteral(re *syntax.Regexp) string {
	switch re.Op {
	case syntax.OpLiteral:
		lit := string(re.Rune)
		for i := 0; i < len(lit); i++ {
			if lit[i] >= 0x80 {
				return ""
			}
		}
		return lowerString(lit)
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiteral(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiteral(re.Sub[0])
		}
	case syntax.OpConcat:
		best := ""
		for _, sub := range re.Sub {
			if lit := requiredLiteral(sub); len(lit) > len(best) {
				best = lit
			}
		}
		return best
	}
	return ""
}

// regexSet is a list of /re/ entries without duplicates.
type regexSet struct {
	list []pattern
	seen map[string]struct{}
}

func (s *regexSet) add(p pattern) {
	src := p.re.String()
	if _, dup := s.seen[src]; dup {
		return
	}
	if s.seen == nil {
		s.seen = make(map[string]struct{})
	}
	s.seen[src] = struct{}{}
	s.list = append(s.list, p)
}

// match reports whether str matches one of the regexes; low is str
// lower-cased with lower.
func (s *regexSet) match(str string, low []byte) bool {
	if len(s.list) == 0 {
		return false
	}
	// Outside ASCII, case folding can turn e.g. U+212A (Kelvin sign) into
	// 'k', so the literal shortcut only holds for ASCII input.
	ascii := true
	for _, c := range low {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	for _, p := range s.list {
		if ascii && (p.suffix != nil && !bytes.HasSuffix(low, p.suffix) || p.lit != nil && !bytes.Contains(low, p.lit)) {
			continue
		}
		if p.re.MatchString(str) {
			return true
		}
	}
	return false
}

// hasSpace reports whether s contains white space (Perl's \s, as used by
// Postgrey's ^\S+$).
func hasSpace(s string) bool {
	return strings.ContainsAny(s, " \t\n\v\f\r")
}

// lower returns s with ASCII letters lower-cased, written into buf when it
// fits so that matching does not allocate. Only ASCII is folded, the same
// way for entries and for the strings matched against them.
func lower(buf []byte, s string) []byte {
	var b []byte
	if len(s) <= len(buf) {
		b = buf[:len(s)]
	} else {
		b = make([]byte, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return b
}

func lowerString(s string) string {
	return string(lower(nil, s))
}

// trimDot removes one trailing dot: "example.com." is "example.com".
func trimDot(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '.' {
		return b[:n-1]
	}
	return b
}
