package postgrey

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Options is what a Postgrey command line says, as far as greyd cares.
type Options struct {
	Source
	LookupByHost bool
	Privacy      bool
	DBDir        string
	// HCL is the equivalent greyd.hcl fragment, with a comment for each
	// option it could not carry over.
	HCL string
}

// ParseOptionsFile reads Debian's /etc/default/postgrey (POSTGREY_OPTS=
// and POSTGREY_TEXT= shell assignments) or, when it sets neither, a plain
// Postgrey argument list, and translates it.
func ParseOptionsFile(r io.Reader) (*Options, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	vars := shellAssignments(string(b))
	var args []string
	opts, hasOpts := vars["POSTGREY_OPTS"]
	text, hasText := vars["POSTGREY_TEXT"]
	if hasOpts || hasText {
		// Debian's unit and init script pass $POSTGREY_OPTS unquoted:
		// split at blanks, quotes inside it are characters. So
		// --greylist-text='a b' there is the text "'a", and Postgrey's
		// options end at "b'".
		args = strings.Fields(opts)
		if text != "" {
			// Both add --greylist-text="$POSTGREY_TEXT" after it: the
			// last --greylist-text, so the one Postgrey uses.
			args = append(args, "--greylist-text="+text)
		}
	} else {
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				lines = append(lines, t)
			}
		}
		if args, err = splitWords(strings.Join(lines, " ")); err != nil {
			return nil, err
		}
		if len(args) > 0 && strings.HasSuffix(args[0], "postgrey") {
			args = args[1:] // a copied command line
		}
	}
	return TranslateArgs(args), nil
}

var assignment = regexp.MustCompile(`^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

// shellAssignments reads NAME=value lines; a value is one shell word.
func shellAssignments(s string) map[string]string {
	vars := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		m := assignment.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		w, err := splitWords(m[2])
		if err != nil || len(w) == 0 {
			vars[m[1]] = ""
			continue
		}
		vars[m[1]] = w[0]
	}
	return vars
}

// splitWords splits s as a POSIX shell would split a simple command:
// whitespace outside quotes separates words, single quotes keep
// everything, double quotes and backslashes the usual way; a '#' that
// starts a word starts a comment. No expansions.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
