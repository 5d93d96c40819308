package postgrey

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
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

// debianDefaults is what Debian's postgrey reads when no
// --whitelist-* option is given; the .local files are the admin's.
var debianLocal = []string{"/etc/postgrey/whitelist_clients.local", "/etc/postgrey/whitelist_recipients.local"}

// ParseOptionsFile reads Debian's /etc/default/postgrey (POSTGREY_OPTS=
// and POSTGREY_TEXT= shell assignments) or, when it has no POSTGREY_OPTS,
// a plain Postgrey argument list, and translates it.
func ParseOptionsFile(r io.Reader) (*Options, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	vars := shellAssignments(string(b))
	var args []string
	if opts, ok := vars["POSTGREY_OPTS"]; ok {
		if args, err = splitWords(opts); err != nil {
			return nil, fmt.Errorf("POSTGREY_OPTS: %w", err)
		}
		if text, ok := vars["POSTGREY_TEXT"]; ok && text != "" {
			// Debian's init script and unit add --greylist-text="$POSTGREY_TEXT".
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

// valued are Postgrey's options that take a value (Getopt::Long "=s"/"=i"),
// with their short forms.
var valued = map[string]string{
	"unix": "unix", "u": "unix", "inet": "inet", "i": "inet", "socketmode": "socketmode",
	"pidfile": "pidfile", "user": "user", "group": "group", "dbdir": "dbdir",
	"delay": "delay", "max-age": "max-age", "retry-window": "retry-window",
	"greylist-action": "greylist-action", "greylist-text": "greylist-text",
	"ipv4cidr": "ipv4cidr", "ipv6cidr": "ipv6cidr", "whitelist-clients": "whitelist-clients",
	"whitelist-recipients": "whitelist-recipients", "hostname": "hostname",
	"listen-queue-size": "listen-queue-size", "x-greylist-header": "x-greylist-header",
	"syslog-facility": "syslog-facility", "syslogfacility": "syslog-facility", "facility": "syslog-facility",
}

// TranslateArgs translates Postgrey's arguments into greyd settings.
// Postgrey's rule that a value of 0 means the default (Perl's ||) is
// kept, since that is what the running Postgrey did.
func TranslateArgs(args []string) *Options {
	o := &Options{Source: DefaultSource}
	var listen, greylist, notes []string
	var clients, rcpts []string
	awl := ""
	set := func(dst *[]string, name string, v any) {
		*dst = append(*dst, fmt.Sprintf("%s = %s", name, hclValue(v)))
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			notes = append(notes, fmt.Sprintf("argument %q ignored: not an option", a))
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if canon, ok := valued[name]; ok {
			name = canon
			if !hasVal {
				if i+1 >= len(args) {
					notes = append(notes, fmt.Sprintf("%s needs a value; ignored", a))
					continue
				}
				i++
				val = args[i]
			}
		}
		orig := a
		if hasVal || valued[name] != "" {
			orig = "--" + name + "=" + val
		}
		switch name {
		case "unix":
			listen = append(listen, fmt.Sprintf("unix = %s", hclValue(val)))
		case "inet":
			v := val
			if isDigits(v) {
				// Postgrey bound "localhost:PORT", which may be ::1 too.
				v = "127.0.0.1:" + v
				notes = append(notes, fmt.Sprintf("%s: Postgrey listened on every address of localhost (also ::1); greyd listens on %s only", orig, v))
			}
			listen = append(listen, fmt.Sprintf("inet = %s", hclValue(v)))
		case "socketmode":
			listen = append(listen, fmt.Sprintf("socket_mode = %s", hclValue(val)))
		case "delay":
			n := atoiDefault(val, 300)
			o.Delay = int64(n)
			set(&greylist, "delay", fmt.Sprintf("%ds", n))
		case "max-age":
			set(&greylist, "max_age", fmt.Sprintf("%dd", atoiDefault(val, 35)))
		case "retry-window":
			v := strings.ToLower(val)
			if h, ok := strings.CutSuffix(v, "h"); ok && isDigits(h) {
				set(&greylist, "retry_window", h+"h")
			} else if isDigits(v) {
				set(&greylist, "retry_window", v+"d")
			} else {
				notes = append(notes, fmt.Sprintf("%s: not N or Nh (Postgrey refused to start with it); not carried over", orig))
			}
		case "greylist-action":
			set(&greylist, "action", val)
		case "greylist-text":
			set(&greylist, "text", val)
		case "x-greylist-header":
			set(&greylist, "header_text", val)
		case "hostname":
			set(&greylist, "hostname", val)
		case "lookup-by-host":
			o.LookupByHost = true
			set(&greylist, "lookup_by", "host")
		case "lookup-by-subnet":
		case "ipv4cidr":
			n := atoiDefault(val, 24)
			o.IPv4Prefix = n
			set(&greylist, "ipv4_prefix", n)
		case "ipv6cidr":
			n := atoiDefault(val, 64)
			o.IPv6Prefix = n
			set(&greylist, "ipv6_prefix", n)
		case "privacy":
			o.Privacy = true
			set(&greylist, "privacy", true)
			notes = append(notes, "--privacy: Postgrey's database holds SHA-1 hashes that greyd cannot re-key; greyd starts with an empty database (its own privacy uses a secret key)")
		case "auto-whitelist-clients":
			awl = "5"
			if hasVal && val != "" {
				awl = val
			}
		case "whitelist-clients":
			clients = append(clients, val)
		case "whitelist-recipients":
			rcpts = append(rcpts, val)
		case "dbdir":
			o.DBDir = val
			notes = append(notes, fmt.Sprintf("%s: import it with: greyd import-postgrey -dbdir %s", orig, val))
		case "user", "group":
			notes = append(notes, fmt.Sprintf("%s: greyd runs as the user of its systemd unit (User=greyd); not carried over", orig))
		case "d", "daemonize", "pidfile":
			notes = append(notes, fmt.Sprintf("%s: systemd runs greyd in the foreground; not carried over", orig))
		case "syslog-facility":
			notes = append(notes, fmt.Sprintf("%s: greyd logs to stderr (the journal); set SyslogFacility= in the unit", orig))
		case "listen-queue-size":
			notes = append(notes, fmt.Sprintf("%s: set Backlog= in greyd.socket", orig))
		case "v", "verbose", "q", "quiet":
			notes = append(notes, fmt.Sprintf("%s: greyd logs every decision; see log { decisions = ... }", orig))
		case "exim":
			notes = append(notes, fmt.Sprintf("%s: not supported (greyd speaks Postfix's policy protocol only)", orig))
		default:
			notes = append(notes, fmt.Sprintf("%s: unknown Postgrey option; not carried over", orig))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# greyd.hcl fragment translated from Postgrey's options:\n#   %s\n", strings.Join(quoteArgs(args), " "))
	for _, n := range notes {
		fmt.Fprintf(&b, "# NOTE %s\n", n)
	}
	if len(listen) > 0 {
		// One listen block per socket, as greyd allows several.
		for _, l := range listen {
			if strings.HasPrefix(l, "socket_mode") {
				continue
			}
			b.WriteString("listen {\n  " + l + "\n")
			if strings.HasPrefix(l, "unix") {
				for _, m := range listen {
					if strings.HasPrefix(m, "socket_mode") {
						b.WriteString("  " + m + "\n")
					}
				}
			}
			b.WriteString("}\n")
		}
	}
	if len(greylist) > 0 {
		b.WriteString("greylist {\n")
		for _, g := range greylist {
			b.WriteString("  " + g + "\n")
		}
		b.WriteString("}\n")
	}
	if awl != "" {
		fmt.Fprintf(&b, "auto_whitelist {\n  clients = %d\n}\n", atoiDefault(awl, 0))
	}
	if len(clients) > 0 || len(rcpts) > 0 {
		b.WriteString("# Copy these files to /etc/greyd (same syntax), or keep the paths:\n")
		b.WriteString("whitelist {\n")
		if len(clients) > 0 {
			b.WriteString("  clients = " + hclList(clients) + "\n")
		}
		if len(rcpts) > 0 {
			b.WriteString("  recipients = " + hclList(rcpts) + "\n")
		}
		b.WriteString("}\n")
	} else {
		b.WriteString("# Your own whitelist entries: copy\n")
		for _, f := range debianLocal {
			name := f[strings.LastIndexByte(f, '/')+1:]
			fmt.Fprintf(&b, "#   %s -> /etc/greyd/%s\n", f, name)
		}
		b.WriteString("# (greyd ships its own whitelist_clients and whitelist_recipients)\n")
	}
	o.HCL = b.String()
	return o
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t'\"\\$`") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return q
}

// atoiDefault parses a Postgrey number; 0 and garbage mean the default,
// as Postgrey's "$opt{x} || default" made them.
func atoiDefault(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return def
	}
	return n
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func hclValue(v any) string {
	switch v := v.(type) {
	case string:
		return hclString(v)
	default:
		return fmt.Sprint(v)
	}
}

// hclString quotes s for HCL: Go's quoting, with template sequences
// ("${", "%{") escaped so that a text is taken literally.
func hclString(s string) string {
	q := strconv.Quote(s)
	q = strings.ReplaceAll(q, "${", "$${")
	return strings.ReplaceAll(q, "%{", "%%{")
}

func hclList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = hclString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
