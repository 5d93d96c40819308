package postgrey

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Postgrey's defaults for the options whose value 0 (or "0") it replaced
// with them: its "$opt{x} || default" (postgrey L595-640).
const (
	postgreyAction     = "DEFER_IF_PERMIT"
	postgreyText       = "Greylisted, see http://postgrey.schweikert.ch/help/%r.html"
	postgreySocketMode = "0666"
)

// debianLocal is what Debian's postgrey reads when no --whitelist-*
// option is given, besides its own lists; the .local files are the
// admin's.
var debianLocal = map[string]string{
	"whitelist-clients":    "/etc/postgrey/whitelist_clients.local",
	"whitelist-recipients": "/etc/postgrey/whitelist_recipients.local",
}

// maxUnixPath is the longest unix socket path Linux binds (greyd's
// configuration checks the same).
const maxUnixPath = 107

// TranslateArgs translates Postgrey's arguments into greyd settings that
// do what the Postgrey started with them did: its option parser (see
// getopt), its defaults for 0, the last of a repeated option, the sum of
// repeated whitelist files. What greyd cannot or will not do the same way
// becomes a NOTE comment instead of a setting, so that the fragment is
// always a configuration greyd accepts.
func TranslateArgs(args []string) *Options {
	p := getopt(args)
	t := &translation{p: p, o: &Options{Source: DefaultSource}}
	t.parserNotes()
	t.listen()
	t.timing()
	t.replies()
	t.keys()
	t.autoWhitelist()
	t.whitelists()
	t.logging()
	t.elsewhere()
	t.o.HCL = t.hcl(args)
	return t.o
}

// translation collects the settings of each block and the notes.
type translation struct {
	p *postgreyArgs
	o *Options

	sockets  []string // listen blocks, each complete
	greylist []string // "name = value" lines
	awl      *int
	clients  []string
	rcpts    []string
	log      []string
	notes    []note
}

type note struct {
	at   int
	text string
}

// note adds a note about option name (by its first name; "" for none).
func (t *translation) note(name, format string, a ...any) {
	at, ok := t.p.at[name]
	if !ok {
		at = -1
	}
	t.notes = append(t.notes, note{at: at, text: fmt.Sprintf(format, a...)})
}

// noteAs is note starting with the option as it was written.
func (t *translation) noteAs(name, format string, a ...any) {
	t.note(name, "%s: "+format, append([]any{t.p.as[name]}, a...)...)
}

func (t *translation) set(name string, v any) {
	t.greylist = append(t.greylist, fmt.Sprintf("%s = %s", name, hclValue(v)))
}

// parserNotes notes what Postgrey's parser refused or never read.
func (t *translation) parserNotes() {
	for _, r := range t.p.refused {
		t.notes = append(t.notes, note{at: r.at, text: fmt.Sprintf("%s: Postgrey refuses it (%s) and does not start; not carried over", r.arg, r.what)})
	}
	if len(t.p.ignored) > 0 {
		t.notes = append(t.notes, note{at: t.p.restAt, text: fmt.Sprintf("%s: Postgrey's options end before %q; it ignores the arguments from there on, and so does this translation",
			strings.Join(quoteArgs(t.p.ignored), " "), t.p.ignored[0])})
	}
}

// listen translates --inet, --unix and --exim. Postgrey listened on one
// socket only: --inet's when both are given.
func (t *translation) listen() {
	p := t.p
	inet, unix := p.opt["inet"], p.opt["unix"]
	switch {
	case inet != "":
		if p.has("unix") {
			t.noteAs("unix", "Postgrey listened on --inet only when both are given; not carried over")
		}
		if p.has("socketmode") {
			t.noteAs("socketmode", "Postgrey listened on --inet, where no mode applies; not carried over")
		}
		t.inet(inet)
	case p.has("unix"):
		t.unix(unix)
	default:
		t.note("", "Postgrey refuses to start without --unix or --inet; greyd listens where its own configuration says")
	}
	if p.has("exim") && len(t.sockets) == 0 {
		t.noteAs("exim", "no socket carried over to set it on: add exim = true to the listen block Exim connects to")
	}
}

// exim returns line, the exim setting of a listen block, with --exim:
// Postgrey closed every connection after its reply.
func (t *translation) exim(line string) string {
	if !t.p.has("exim") {
		return ""
	}
	return line
}

func (t *translation) inet(v string) {
	orig := t.p.as["inet"]
	localhost := isDigits(v)
	if localhost {
		v = "127.0.0.1:" + v
	}
	host, port, err := net.SplitHostPort(v)
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n == 0 || !isDigits(port) ||
		strings.ContainsFunc(host, isSpaceOrControl) || strings.ContainsAny(host, "/[]") {
		t.note("inet", "%s: not an address and port greyd can listen on (like 127.0.0.1:10023); not carried over", orig)
		return
	}
	if localhost {
		// Postgrey bound "localhost:PORT", which may be ::1 too.
		t.note("inet", "%s: Postgrey listened on every address of localhost (also ::1); greyd listens on %s only", orig, v)
	}
	if a, err := netip.ParseAddr(host); strings.EqualFold(host, "localhost") || err == nil && a.Unmap().IsLoopback() {
		t.sockets = append(t.sockets, "listen {\n  inet = "+hclString(v)+"\n"+t.exim("  exim = true\n")+"}\n")
		return
	}
	if host == "*" {
		host = "" // Net::Server's "every address"
	}
	t.note("inet", "%s: Postgrey answered every client that could connect; greyd answers only the networks in allow: uncomment the listen block below and list your Postfix servers", orig)
	t.sockets = append(t.sockets, "# listen {\n#   inet  = "+hclString(net.JoinHostPort(host, port))+"\n#   allow = [\"192.0.2.25\", \"2001:db8::25\"]\n"+t.exim("#   exim  = true\n")+"# }\n")
}

func (t *translation) unix(path string) {
	orig := t.p.as["unix"]
	switch {
	case !utf8.ValidString(path) || strings.ContainsRune(path, 0):
		t.note("unix", "%s: not a path greyd can read; not carried over", orig)
		return
	case !filepath.IsAbs(path):
		t.note("unix", "%s: relative to Postgrey's working directory, while greyd's relative paths start at its configuration directory; not carried over: set the absolute path", orig)
		return
	case len(path) > maxUnixPath:
		t.note("unix", "%s: longer than a unix socket path can be (%d bytes); not carried over", orig, maxUnixPath)
		return
	}
	mode := postgreySocketMode
	if m, ok := t.p.opt["socketmode"]; ok && m != "0" && m != "" {
		n, err := strconv.ParseUint(m, 8, 32)
		if err != nil || n > 0o777 || m[0] == '+' {
			t.noteAs("socketmode", "not an octal mode from 0000 to 0777; not carried over (greyd's socket_mode default applies)")
			mode = ""
		} else {
			mode = fmt.Sprintf("%04o", n)
		}
	}
	b := "listen {\n  unix = " + hclString(path) + "\n"
	if mode != "" {
		b += "  socket_mode = " + hclString(mode) + "\n"
	}
	t.sockets = append(t.sockets, b+t.exim("  exim = true\n")+"}\n")
}

// timing translates --delay, --max-age and --retry-window.
func (t *translation) timing() {
	p := t.p
	if v, ok := p.opt["delay"]; ok {
		n, ok := intValue(v)
		switch {
		case !ok || !fits(n, time.Second):
			t.noteAs("delay", "too large; not carried over")
		case n < 0:
			// Postgrey let every triplet pass at first sight.
			t.o.Delay = n
			t.set("delay", "0s")
			t.noteAs("delay", "Postgrey passed every triplet at once; greyd's equivalent is 0s")
		default:
			if n == 0 {
				n = 300
			}
			t.o.Delay = n
			t.set("delay", fmt.Sprintf("%ds", n))
		}
	}
	if v, ok := p.opt["max-age"]; ok {
		n, ok := intValue(v)
		switch {
		case !ok || !fits(n, 24*time.Hour):
			t.noteAs("max-age", "too large; not carried over")
		case n < 0:
			t.noteAs("max-age", "Postgrey forgot every entry at its nightly cleanup; greyd needs a positive max_age; not carried over")
		default:
			if n == 0 {
				n = 35
			}
			t.set("max_age", fmt.Sprintf("%dd", n))
		}
	}
	if v, ok := p.opt["retry-window"]; ok {
		lower := strings.ToLower(v)
		unit, digits := 24*time.Hour, lower
		if h, ok := strings.CutSuffix(lower, "h"); ok {
			unit, digits = time.Hour, h
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		switch {
		case !isDigits(digits):
			t.noteAs("retry-window", "not N or Nh (Postgrey refused to start with it); not carried over")
		case err != nil || !fits(n, unit):
			t.noteAs("retry-window", "too large; not carried over")
		case unit == time.Hour:
			t.set("retry_window", fmt.Sprintf("%dh", n))
		default:
			t.set("retry_window", fmt.Sprintf("%dd", n))
		}
	}
}

// replies translates what Postgrey put into its answers: action, text,
// header and the header's host name.
func (t *translation) replies() {
	p := t.p
	if v, ok := p.opt["greylist-action"]; ok {
		if v == "0" {
			v = postgreyAction
		}
		if why := badLine(v); why != "" || strings.TrimSpace(v) == "" || strings.ContainsRune(v, '\t') {
			t.noteAs("greylist-action", "not an action greyd can send (%s); not carried over", orDefault(why, "empty or with a tab"))
		} else {
			t.set("action", v)
		}
	}
	if v, ok := p.opt["greylist-text"]; ok {
		if v == "0" {
			v = postgreyText
		}
		if why := badLine(v); why != "" {
			t.noteAs("greylist-text", "%s; not carried over", why)
		} else {
			t.set("text", v)
		}
	}
	if v, ok := p.opt["x-greylist-header"]; ok {
		name, _, colon := strings.Cut(v, ":")
		switch why := badLine(v); {
		case v == "0":
			t.noteAs("x-greylist-header", "Postgrey used its default header; greyd's default names greyd instead of postgrey")
		case why != "":
			t.noteAs("x-greylist-header", "%s; not carried over", why)
		case !colon || name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
			t.noteAs("x-greylist-header", "not a header line (\"Name: text\"); not carried over")
		default:
			t.set("header_text", v)
		}
	}
	if v, ok := p.opt["hostname"]; ok {
		if v == "" || !utf8.ValidString(v) || strings.ContainsFunc(v, isSpaceOrControl) {
			t.noteAs("hostname", "greyd needs one word without spaces or control characters (empty means this machine's name); not carried over")
		} else {
			t.set("hostname", v)
		}
	}
}

// keys translates how Postgrey built its keys, which the import needs too.
func (t *translation) keys() {
	p := t.p
	switch {
	case p.has("lookup-by-host"):
		// Postgrey ignores --lookup-by-subnet: it is its default.
		t.o.LookupByHost = true
		t.set("lookup_by", "host")
	case p.has("lookup-by-subnet"):
		t.set("lookup_by", "subnet")
	}
	for _, c := range []struct {
		opt, setting string
		def, max     int
		dst          *int
		family       string
	}{
		{"ipv4cidr", "ipv4_prefix", 24, 32, &t.o.IPv4Prefix, "IPv4"},
		{"ipv6cidr", "ipv6_prefix", 64, 128, &t.o.IPv6Prefix, "IPv6"},
	} {
		v, ok := p.opt[c.opt]
		if !ok {
			continue
		}
		n, ok := intValue(v)
		switch {
		case ok && n == 0:
			n = int64(c.def)
		case !ok || n < 0 || n > int64(c.max):
			t.noteAs(c.opt, "not a prefix length from 1 to %d: Postgrey failed every %s request with it; not carried over", c.max, c.family)
			continue
		}
		*c.dst = int(n)
		t.set(c.setting, int(n))
	}
	if p.has("privacy") {
		t.o.Privacy = true
		t.set("privacy", true)
		t.noteAs("privacy", "Postgrey's database holds SHA-1 hashes that greyd cannot re-key; greyd starts with an empty database (its own privacy uses a secret key)")
	}
}

// autoWhitelist translates --auto-whitelist-clients[=N]. Postgrey took
// the value as a Perl string: "" is its default 5, "0" is off, anything
// else counts as the number Perl reads from it, and a client is
// whitelisted once its count reaches that number.
func (t *translation) autoWhitelist() {
	v, ok := t.p.opt["auto-whitelist-clients"]
	if !ok {
		return
	}
	n := 5
	switch f := perlNumber(v); {
	case v == "":
	case v == "0":
		n = 0
	case math.IsNaN(f) || math.IsInf(f, 1):
		n = 0
		t.noteAs("auto-whitelist-clients", "no count reaches it: Postgrey never whitelisted a client")
	case f <= 1:
		n = 1
		if f != 1 {
			t.noteAs("auto-whitelist-clients", "Perl reads it as %g: Postgrey whitelisted a client after its first passed triplet", f)
		}
	case f >= 1<<31-1:
		n = 1<<31 - 1
	default:
		n = int(math.Ceil(f))
	}
	t.awl = &n
}

// whitelists translates --whitelist-clients and --whitelist-recipients:
// all the files given, and Postgrey's own lists only if none is.
func (t *translation) whitelists() {
	for _, w := range []struct {
		opt string
		dst *[]string
	}{{"whitelist-clients", &t.clients}, {"whitelist-recipients", &t.rcpts}} {
		for _, f := range t.p.lists[w.opt] {
			if f == "" || !utf8.ValidString(f) || strings.ContainsRune(f, 0) {
				t.note(w.opt, "--%s=%q: not a file greyd can read; not carried over", w.opt, f)
				continue
			}
			*w.dst = append(*w.dst, f)
		}
	}
}

// logging translates -q, which kept Postgrey from logging any decision.
func (t *translation) logging() {
	switch {
	case t.p.has("quiet"):
		t.log = append(t.log, `decisions = "none"`)
		t.noteAs("quiet", "Postgrey logged no decision (action=... lines); neither does greyd with decisions = \"none\"")
	case t.p.has("verbose"):
		t.noteAs("verbose", "greyd logs every decision; see log { decisions = ... }")
	}
}

// elsewhere notes the options that belong to the systemd unit, the
// import, or nothing in greyd.
func (t *translation) elsewhere() {
	p := t.p
	if v, ok := p.opt["dbdir"]; ok {
		t.o.DBDir = v
		t.noteAs("dbdir", "import it with: greyd import-postgrey -dbdir %s", v)
	}
	for _, c := range []struct{ opt, what string }{
		{"user", "greyd runs as the user of its systemd unit (User=greyd); not carried over"},
		{"group", "greyd runs as the user of its systemd unit (User=greyd); not carried over"},
		{"daemonize", "systemd runs greyd in the foreground; not carried over"},
		{"pidfile", "systemd runs greyd in the foreground; not carried over"},
		{"syslog-facility", "greyd logs to stderr (the journal); set SyslogFacility= in the unit"},
		{"listen-queue-size", "set Backlog= in greyd.socket"},
		{"help", "Postgrey prints its usage and exits; not carried over"},
		{"man", "Postgrey prints its manual and exits; not carried over"},
		{"version", "Postgrey prints its version and exits; not carried over"},
		{"noaction", "Postgrey refuses to start with it; not carried over"},
	} {
		if p.has(c.opt) {
			t.noteAs(c.opt, "%s", c.what)
		}
	}
}

// hcl writes the fragment.
func (t *translation) hcl(args []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# greyd.hcl fragment translated from Postgrey's options:\n#   %s\n", comment(strings.Join(quoteArgs(args), " ")))
	sort.SliceStable(t.notes, func(i, j int) bool { return t.notes[i].at < t.notes[j].at })
	for _, n := range t.notes {
		fmt.Fprintf(&b, "# NOTE %s\n", comment(n.text))
	}
	for _, l := range t.sockets {
		b.WriteString(l) // one block per socket, as greyd allows several
	}
	block(&b, "greylist", t.greylist)
	if t.awl != nil {
		block(&b, "auto_whitelist", []string{fmt.Sprintf("clients = %d", *t.awl)})
	}
	if len(t.clients) > 0 || len(t.rcpts) > 0 {
		b.WriteString("# Copy these files to /etc/greyd (same syntax), or keep the paths:\n")
		var l []string
		if len(t.clients) > 0 {
			l = append(l, "clients = "+hclList(t.clients))
		}
		if len(t.rcpts) > 0 {
			l = append(l, "recipients = "+hclList(t.rcpts))
		}
		block(&b, "whitelist", l)
	}
	if len(t.clients) == 0 || len(t.rcpts) == 0 {
		b.WriteString("# Your own whitelist entries: copy\n")
		for _, w := range []struct {
			opt   string
			files []string
		}{{"whitelist-clients", t.clients}, {"whitelist-recipients", t.rcpts}} {
			if len(w.files) == 0 {
				f := debianLocal[w.opt]
				fmt.Fprintf(&b, "#   %s -> /etc/greyd/%s\n", f, filepath.Base(f))
			}
		}
		b.WriteString("# (greyd ships its own whitelist_clients and whitelist_recipients)\n")
	}
	block(&b, "log", t.log)
	return b.String()
}

func block(b *strings.Builder, name string, lines []string) {
	if len(lines) == 0 {
		return
	}
	b.WriteString(name + " {\n")
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}
	b.WriteString("}\n")
}

// comment makes s safe on one comment line: control characters and
// invalid UTF-8 are written as Go escapes.
func comment(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, isControl) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"\\$`#") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return q
}

// badLine says why greyd refuses s as a reply or header text: it must be
// one line of UTF-8 without control characters.
func badLine(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case strings.ContainsFunc(s, isControl):
		return "greyd takes no line breaks or control characters in it"
	}
	return ""
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// intValue reads a number Getopt::Long accepted for "=i".
func intValue(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 64)
	return n, err == nil
}

// fits reports whether n units are a time.Duration.
func fits(n int64, unit time.Duration) bool { return n <= math.MaxInt64/int64(unit) }

var perlNumberRE = regexp.MustCompile(`(?i)^\s*[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?|inf(?:inity)?|nan)`)

// perlNumber is the number Perl reads from s in a numeric comparison: the
// longest decimal number at its start (after blanks), else 0.
func perlNumber(s string) float64 {
	m := perlNumberRE.FindString(s)
	if m == "" {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(m), 64)
	if err != nil && !math.IsInf(f, 0) {
		return 0
	}
	return f
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

// hclString quotes s for HCL, with its escapes (not Go's: HCL has no \x
// or \a), and with template sequences ("${", "%{") escaped so that a
// text is taken literally.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r == '$' && strings.HasPrefix(s[i:], "${"):
			b.WriteString("$$")
		case r == '%' && strings.HasPrefix(s[i:], "%{"):
			b.WriteString("%%")
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func hclList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = hclString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
