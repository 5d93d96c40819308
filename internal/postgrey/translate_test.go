package postgrey

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"greyd/internal/config"
	"greyd/internal/reload"
)

// effective is what a configuration makes greyd do, as far as Postgrey's
// options reach.
type effective struct {
	Listen                             []string
	Delay, RetryWindow, MaxAge         time.Duration
	LookupBy                           string
	IPv4Prefix, IPv6Prefix             int
	Action, Text, HeaderText, Hostname string
	Privacy                            bool
	AutoWhitelist                      int
	Clients, Recipients                []string
	Decisions                          string
}

// effectiveOf reads the effective settings of c, loaded from the
// directory dir, which its paths name as "<conf>".
func effectiveOf(c *config.Config, dir string) effective {
	g := c.Greylist
	e := effective{
		Delay: g.Delay, RetryWindow: g.RetryWindow, MaxAge: g.MaxAge, LookupBy: g.LookupBy,
		IPv4Prefix: g.IPv4Prefix, IPv6Prefix: g.IPv6Prefix,
		Action: g.Action, Text: g.Text, HeaderText: g.HeaderText, Hostname: g.Hostname, Privacy: g.Privacy,
		AutoWhitelist: c.AutoWhitelist.Clients,
		Clients:       c.Whitelist.Clients, Recipients: c.Whitelist.Recipients,
		Decisions: c.Log.Decisions,
	}
	for _, l := range []*[]string{&e.Clients, &e.Recipients} {
		for i, f := range *l {
			if r, ok := strings.CutPrefix(f, dir+"/"); ok {
				(*l)[i] = "<conf>/" + r
			}
		}
	}
	for _, l := range c.Listen {
		exim := ""
		if l.Exim {
			exim = " exim"
		}
		if l.Unix != "" {
			e.Listen = append(e.Listen, fmt.Sprintf("unix %s %04o%s", l.Unix, l.SocketMode.Perm(), exim))
		}
		if l.Inet != "" {
			e.Listen = append(e.Listen, "inet "+l.Inet+exim)
		}
	}
	return e
}

// loadFragment puts hcl into conf.d next to the shipped
// etc/greyd/greyd.hcl and loads the directory as greyd check-config does.
// Only the database moves, to keep the privacy key out of /var/lib.
func loadFragment(t *testing.T, hcl string) (effective, string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"greyd.hcl", "whitelist_clients", "whitelist_recipients"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "etc", "greyd", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "conf.d", "50-postgrey.hcl"), []byte(hcl), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "99-test.hcl"), []byte(fmt.Sprintf("database {\n  path = %q\n}\n", filepath.Join(dir, "state", "greyd.db"))), 0o644)
	l := reload.Load(dir, reload.Options{Version: "test", Hostname: "test-host"})
	if !l.OK() {
		t.Fatalf("greyd check-config refuses the fragment: %v\n%s", l.Problems(), hcl)
	}
	return effectiveOf(l.Config, dir), dir
}

// occurrences counts the arguments in args that give option name.
func occurrences(args []string, name string) int {
	n := 0
	for _, a := range args {
		if getopt([]string{a, "1"}).has(name) {
			n++
		}
	}
	return n
}

// TestTranslateEveryOption: each Postgrey option, alone and repeated,
// gives a fragment that greyd loads next to its shipped configuration,
// and that changes exactly what the option changed in Postgrey: a
// repeated option's last value wins, repeated whitelist files add up,
// Postgrey's "0 means the default" holds, and what Postgrey's parser
// refused or never read changes nothing.
func TestTranslateEveryOption(t *testing.T) {
	wl := t.TempDir()
	for _, f := range []string{"c1", "c2", "r1", "r2"} {
		os.WriteFile(filepath.Join(wl, f), []byte("# empty\n"), 0o644)
	}
	base, _ := loadFragment(t, "")
	type opts struct {
		Source
		LookupByHost, Privacy bool
		DBDir                 string
	}
	tests := []struct {
		args   string // split at blanks; @ is a directory of whitelist files
		file   string // instead of args: an options file
		want   func(e *effective)
		keys   func(o *opts) // how the import reads Postgrey's keys
		notes  []string      // in the fragment
		absent []string      // not in the fragment
	}{
		// Sockets: one, --inet's when both are given.
		{args: "--unix=/run/pg/a.sock", want: func(e *effective) { e.Listen = append(e.Listen, "unix /run/pg/a.sock 0666") }},
		{args: "--unix=/run/pg/a.sock -u /run/pg/b.sock", want: func(e *effective) { e.Listen = append(e.Listen, "unix /run/pg/b.sock 0666") }},
		{args: "--unix=pg.sock", notes: []string{"--unix=pg.sock: relative"}},
		{args: "--inet=10023", want: func(e *effective) { e.Listen = append(e.Listen, "inet 127.0.0.1:10023") }, notes: []string{"also ::1"}},
		{args: "--inet=10023 -i 127.0.0.1:10024", want: func(e *effective) { e.Listen = append(e.Listen, "inet 127.0.0.1:10024") }},
		{args: "--inet [::1]:10023", want: func(e *effective) { e.Listen = append(e.Listen, "inet [::1]:10023") }},
		{args: "--unix=/run/pg/a.sock --inet=10023", want: func(e *effective) { e.Listen = append(e.Listen, "inet 127.0.0.1:10023") }, notes: []string{"--unix=/run/pg/a.sock: Postgrey listened on --inet only"}},
		{args: "--inet=0.0.0.0:10023", notes: []string{"uncomment the listen block", `#   inet  = "0.0.0.0:10023"`}},
		{args: "--inet=*:10023", notes: []string{`#   inet  = ":10023"`}},
		{args: "--inet=0", notes: []string{"--inet=0: not an address and port"}},
		{args: "--unix=/run/pg/a.sock --socketmode=0600", want: func(e *effective) { e.Listen = append(e.Listen, "unix /run/pg/a.sock 0600") }},
		{args: "--unix=/run/pg/a.sock --socketmode=0600 --socketmode=640", want: func(e *effective) { e.Listen = append(e.Listen, "unix /run/pg/a.sock 0640") }},
		{args: "--unix=/run/pg/a.sock --socketmode=0", want: func(e *effective) { e.Listen = append(e.Listen, "unix /run/pg/a.sock 0666") }},
		{args: "--unix=/run/pg/a.sock --socketmode=rw", want: func(e *effective) { e.Listen = append(e.Listen, "unix /run/pg/a.sock 0660") }, notes: []string{"--socketmode=rw: not an octal mode"}},
		{args: "--socketmode=0600", notes: []string{"without --unix or --inet"}},

		// Times.
		{args: "--delay=60", want: func(e *effective) { e.Delay = time.Minute }, keys: func(o *opts) { o.Delay = 60 }},
		{args: "--delay=60 --delay 120", want: func(e *effective) { e.Delay = 2 * time.Minute }, keys: func(o *opts) { o.Delay = 120 }},
		{args: "-delay 90 --delay=+45", want: func(e *effective) { e.Delay = 45 * time.Second }, keys: func(o *opts) { o.Delay = 45 }},
		{args: "--delay=60 --delay=0", want: func(e *effective) { e.Delay = 5 * time.Minute }, keys: func(o *opts) { o.Delay = 300 }},
		{args: "--delay=-5", want: func(e *effective) { e.Delay = 0 }, keys: func(o *opts) { o.Delay = -5 }, notes: []string{"--delay=-5: Postgrey passed every triplet at once"}},
		{args: "--delay=60 --delay=5x", want: func(e *effective) { e.Delay = time.Minute }, keys: func(o *opts) { o.Delay = 60 }, notes: []string{`--delay=5x: Postgrey refuses it (Value "5x" invalid for option delay (number expected))`}},
		{args: "-delay=60", notes: []string{"-delay=60: Postgrey refuses it (Unknown option: delay=60)"}},
		{args: "--max-age=20", want: func(e *effective) { e.MaxAge = 20 * 24 * time.Hour }},
		{args: "--max-age=20 --max-age=7", want: func(e *effective) { e.MaxAge = 7 * 24 * time.Hour }},
		{args: "--max-age=0", want: func(e *effective) { e.MaxAge = 35 * 24 * time.Hour }},
		{args: "--max-age=-1", notes: []string{"--max-age=-1: Postgrey forgot every entry"}},
		{args: "--retry-window=12h", want: func(e *effective) { e.RetryWindow = 12 * time.Hour }},
		{args: "--retry-window=3 --retry-window=6H", want: func(e *effective) { e.RetryWindow = 6 * time.Hour }},
		{args: "--retry-window=6h --retry-window=3", want: func(e *effective) { e.RetryWindow = 3 * 24 * time.Hour }},
		{args: "--retry-window=0", want: func(e *effective) { e.RetryWindow = 0 }},
		{args: "--retry-window=2w", notes: []string{"--retry-window=2w: not N or Nh"}},

		// Replies.
		{args: "--greylist-action=451", want: func(e *effective) { e.Action = "451" }},
		{args: "--greylist-action=451 --greylist-action DEFER", want: func(e *effective) { e.Action = "DEFER" }},
		{args: "--greylist-action=451 --greylist-action=0", want: func(e *effective) { e.Action = "DEFER_IF_PERMIT" }},
		{args: "--greylist-text=Later", want: func(e *effective) { e.Text = "Later" }},
		{args: "--greylist-text=Sooner --greylist-text=Later,_%s_seconds_${x}", want: func(e *effective) { e.Text = "Later,_%s_seconds_${x}" }},
		{args: "--greylist-text=Later --greylist-text=0", want: func(e *effective) { e.Text = postgreyText }},
		{args: "--greylist-text= --greylist-text=Later", want: func(e *effective) { e.Text = "Later" }, notes: []string{"--greylist-text=: Postgrey refuses it (Option greylist-text requires an argument)"}},
		{args: "--greylist-text --delay=60", want: func(e *effective) { e.Text = "--delay=60" }},
		{file: "POSTGREY_OPTS=\"--inet=10023 --greylist-text=Hello\"\nPOSTGREY_TEXT=\"Greylisted, see %r\"\n",
			want:  func(e *effective) { e.Listen = append(e.Listen, "inet 127.0.0.1:10023"); e.Text = "Greylisted, see %r" },
			notes: []string{"--greylist-text=Hello '--greylist-text=Greylisted, see %r'"}},
		{file: "POSTGREY_OPTS=\"--greylist-text='Come back later' --delay=60\"\n",
			want:  func(e *effective) { e.Text = "'Come" },
			notes: []string{`--delay=60: Postgrey's options end before "back"`}},
		{file: "POSTGREY_TEXT=\"Wait a little\"\n", want: func(e *effective) { e.Text = "Wait a little" }},
		{args: "--x-greylist-header=X-Delay:_%t", want: func(e *effective) { e.HeaderText = "X-Delay:_%t" }},
		{args: "--x-greylist-header=X-Delay:_%t --x-greylist-header=X-Greylist:_%t_seconds", want: func(e *effective) { e.HeaderText = "X-Greylist:_%t_seconds" }},
		{args: "--x-greylist-header=delayed", notes: []string{"--x-greylist-header=delayed: not a header line"}},
		{args: "--hostname=mx1.example.org", want: func(e *effective) { e.Hostname = "mx1.example.org" }},
		{args: "--hostname=mx1.example.org --hostname mx2.example.org", want: func(e *effective) { e.Hostname = "mx2.example.org" }},

		// Keys.
		{args: "--lookup-by-host", want: func(e *effective) { e.LookupBy = "host" }, keys: func(o *opts) { o.LookupByHost = true }},
		{args: "--lookup-by-host --lookup-by-host", want: func(e *effective) { e.LookupBy = "host" }, keys: func(o *opts) { o.LookupByHost = true }},
		{args: "--lookup-by-subnet", want: func(e *effective) { e.LookupBy = "subnet" }},
		{args: "--lookup-by-subnet --lookup-by-subnet", want: func(e *effective) { e.LookupBy = "subnet" }},
		{args: "--lookup-by-host --lookup-by-subnet", want: func(e *effective) { e.LookupBy = "host" }, keys: func(o *opts) { o.LookupByHost = true }},
		{args: "--lookup-by-host=1", notes: []string{"Option lookup-by-host does not take an argument"}},
		{args: "--ipv4cidr=16", want: func(e *effective) { e.IPv4Prefix = 16 }, keys: func(o *opts) { o.IPv4Prefix = 16 }},
		{args: "--ipv4cidr=16 --ipv4cidr 20", want: func(e *effective) { e.IPv4Prefix = 20 }, keys: func(o *opts) { o.IPv4Prefix = 20 }},
		{args: "--ipv4cidr=16 --ipv4cidr=0", want: func(e *effective) { e.IPv4Prefix = 24 }},
		{args: "--ipv4cidr=33", notes: []string{"--ipv4cidr=33: not a prefix length from 1 to 32"}},
		{args: "--ipv6cidr=48", want: func(e *effective) { e.IPv6Prefix = 48 }, keys: func(o *opts) { o.IPv6Prefix = 48 }},
		{args: "--ipv6cidr=48 --ipv6cidr=56", want: func(e *effective) { e.IPv6Prefix = 56 }, keys: func(o *opts) { o.IPv6Prefix = 56 }},
		{args: "--ipv6cidr=-1", notes: []string{"--ipv6cidr=-1: not a prefix length from 1 to 128"}},
		{args: "--privacy", want: func(e *effective) { e.Privacy = true }, keys: func(o *opts) { o.Privacy = true }, notes: []string{"--privacy: Postgrey's database holds SHA-1"}},
		{args: "--privacy --privacy", want: func(e *effective) { e.Privacy = true }, keys: func(o *opts) { o.Privacy = true }},

		// Auto-whitelist: an optional value.
		{args: "--auto-whitelist-clients", want: func(e *effective) { e.AutoWhitelist = 5 }},
		{args: "--auto-whitelist-clients=3", want: func(e *effective) { e.AutoWhitelist = 3 }},
		{args: "--auto-whitelist-clients 3", want: func(e *effective) { e.AutoWhitelist = 3 }},
		{args: "--auto-whitelist-clients=0", want: func(e *effective) { e.AutoWhitelist = 0 }},
		{args: "--auto-whitelist-clients=0 --auto-whitelist-clients=3", want: func(e *effective) { e.AutoWhitelist = 3 }},
		{args: "--auto-whitelist-clients=3 --auto-whitelist-clients", want: func(e *effective) { e.AutoWhitelist = 5 }},
		{args: "--auto-whitelist-clients --delay=60", want: func(e *effective) { e.AutoWhitelist = 5; e.Delay = time.Minute }, keys: func(o *opts) { o.Delay = 60 }},
		{args: "--auto-whitelist-clients=2.5", want: func(e *effective) { e.AutoWhitelist = 3 }},
		{args: "--auto-whitelist-clients=no", want: func(e *effective) { e.AutoWhitelist = 1 }, notes: []string{"after its first passed triplet"}},

		// Whitelist files add up; given once, Postgrey's own are not read.
		{args: "--whitelist-clients=@/c1", want: func(e *effective) { e.Clients = []string{"@/c1"} }, notes: []string{"whitelist_recipients.local -> /etc/greyd/whitelist_recipients.local"}, absent: []string{"whitelist_clients.local ->"}},
		{args: "--whitelist-clients=@/c1 --whitelist-clients @/c2", want: func(e *effective) { e.Clients = []string{"@/c1", "@/c2"} }},
		{args: "--whitelist-recipients=@/r1", want: func(e *effective) { e.Recipients = []string{"@/r1"} }},
		{args: "--whitelist-recipients=@/r1 --whitelist-recipients=@/r2 --whitelist-clients=@/c2", want: func(e *effective) {
			e.Recipients = []string{"@/r1", "@/r2"}
			e.Clients = []string{"@/c2"}
		}, absent: []string{"-> /etc/greyd"}},

		// Logging.
		{args: "-q", want: func(e *effective) { e.Decisions = "none" }, notes: []string{"-q: Postgrey logged no decision"}},
		{args: "--quiet -q", want: func(e *effective) { e.Decisions = "none" }},
		{args: "-v --quiet", want: func(e *effective) { e.Decisions = "none" }},
		{args: "-v", notes: []string{"-v: greyd logs every decision"}},
		{args: "--verbose --verbose", notes: []string{"--verbose: greyd logs every decision"}},

		// Nothing greyd sets.
		{args: "--dbdir=/var/lib/postgrey", keys: func(o *opts) { o.DBDir = "/var/lib/postgrey" }, notes: []string{"greyd import-postgrey -dbdir /var/lib/postgrey"}},
		{args: "--dbdir=/old --dbdir=/var/lib/postgrey", keys: func(o *opts) { o.DBDir = "/var/lib/postgrey" }, absent: []string{"--dbdir=/old:"}},
		{args: "--user=postgrey", notes: []string{"--user=postgrey: greyd runs as"}},
		{args: "--user=nobody --user=postgrey", notes: []string{"--user=postgrey: greyd runs as"}, absent: []string{"--user=nobody:"}},
		{args: "--group=postgrey", notes: []string{"--group=postgrey: greyd runs as"}},
		{args: "--group=nogroup --group=postgrey", notes: []string{"--group=postgrey: greyd runs as"}, absent: []string{"--group=nogroup:"}},
		{args: "-d", notes: []string{"-d: systemd runs greyd"}},
		{args: "--daemonize -d", notes: []string{"-d: systemd runs greyd"}},
		{args: "--pidfile=/run/postgrey.pid", notes: []string{"--pidfile=/run/postgrey.pid: systemd"}},
		{args: "--pidfile=/a --pidfile=/run/postgrey.pid", notes: []string{"--pidfile=/run/postgrey.pid: systemd"}, absent: []string{"--pidfile=/a:"}},
		{args: "--syslog-facility=local0", notes: []string{"--syslog-facility=local0: greyd logs to stderr"}},
		{args: "--syslogfacility=mail --facility=local1", notes: []string{"--syslog-facility=local1: greyd logs to stderr"}},
		{args: "--listen-queue-size=100", notes: []string{"--listen-queue-size=100: set Backlog="}},
		{args: "--listen-queue-size=100 --listen-queue-size=200", notes: []string{"--listen-queue-size=200: set Backlog="}},
		{args: "--exim", notes: []string{"--exim: no socket carried over to set it on: add exim = true"}},
		{args: "--exim --exim", notes: []string{"--exim: no socket carried over"}},
		{args: "--unix=/run/pg/a.sock --exim", want: func(e *effective) { e.Listen = append(e.Listen, "unix /run/pg/a.sock 0666 exim") }, absent: []string{"--exim:"}},
		{args: "--exim --inet=10023 --exim", want: func(e *effective) { e.Listen = append(e.Listen, "inet 127.0.0.1:10023 exim") }, absent: []string{"--exim:"}},
		{args: "--inet=0.0.0.0:10023 --exim", notes: []string{`#   allow = ["192.0.2.25", "2001:db8::25"]` + "\n#   exim  = true\n# }"}, absent: []string{"--exim:"}},
		{args: "--inet=0 --exim", notes: []string{"--inet=0: not an address and port", "--exim: no socket carried over"}},
		{args: "--help", notes: []string{"--help: Postgrey prints its usage"}},
		{args: "-h --h", notes: []string{"--h: Postgrey prints its usage"}},
		{args: "--man", notes: []string{"--man: Postgrey prints its manual"}},
		{args: "--man --man", notes: []string{"--man: Postgrey prints its manual"}},
		{args: "--version", notes: []string{"--version: Postgrey prints its version"}},
		{args: "--version --version", notes: []string{"--version: Postgrey prints its version"}},
		{args: "-n", notes: []string{"-n: Postgrey refuses to start"}},
		{args: "--no-action --noaction", notes: []string{"--noaction: Postgrey refuses to start"}},

		// What Postgrey's parser takes, and where it stops.
		{args: "--del=60", notes: []string{"--del=60: Postgrey refuses it (Unknown option: del)"}},
		{args: "--Delay=60", notes: []string{"Unknown option: Delay"}},
		{args: "---delay=60", notes: []string{"Unknown option: -delay"}},
		{args: "--delay=60 extra --delay=120", want: func(e *effective) { e.Delay = time.Minute }, keys: func(o *opts) { o.Delay = 60 },
			notes: []string{`extra --delay=120: Postgrey's options end before "extra"`}},
		{args: "--delay=60 -- --delay=120", want: func(e *effective) { e.Delay = time.Minute }, keys: func(o *opts) { o.Delay = 60 }},
		{args: "--delay=60 - --delay=120", want: func(e *effective) { e.Delay = time.Minute }, keys: func(o *opts) { o.Delay = 60 }},
	}
	alone, repeated := map[string]bool{}, map[string]bool{}
	for _, tc := range tests {
		name := tc.args
		var o *Options
		if tc.file != "" {
			name = tc.file
			var err error
			if o, err = ParseOptionsFile(strings.NewReader(tc.file)); err != nil {
				t.Fatal(err)
			}
		} else {
			args := strings.Fields(strings.ReplaceAll(tc.args, "@", wl))
			o = TranslateArgs(args)
			p := getopt(args)
			for opt := range p.opt {
				if n := occurrences(args, opt); n > 1 {
					repeated[opt] = true
				} else if len(p.opt) == 1 && len(p.refused) == 0 && len(p.ignored) == 0 {
					alone[opt] = true
				}
			}
		}
		t.Run(name, func(t *testing.T) {
			got, _ := loadFragment(t, o.HCL)
			want := base
			want.Listen = append([]string(nil), base.Listen...)
			if tc.want != nil {
				tc.want(&want)
			}
			for _, l := range []*[]string{&want.Clients, &want.Recipients} {
				for i, f := range *l {
					(*l)[i] = strings.ReplaceAll(f, "@", wl)
				}
			}
			if d := diff(got, want); d != "" {
				t.Errorf("effective configuration differs from Postgrey's:\n%sfragment:\n%s", d, o.HCL)
			}
			wantKeys := opts{Source: DefaultSource}
			if tc.keys != nil {
				tc.keys(&wantKeys)
			}
			if gotKeys := (opts{o.Source, o.LookupByHost, o.Privacy, o.DBDir}); gotKeys != wantKeys {
				t.Errorf("import keys: got %+v, want %+v", gotKeys, wantKeys)
			}
			for _, n := range tc.notes {
				if !strings.Contains(o.HCL, n) {
					t.Errorf("fragment lacks %q:\n%s", n, o.HCL)
				}
			}
			for _, n := range tc.absent {
				if strings.Contains(o.HCL, n) {
					t.Errorf("fragment has %q:\n%s", n, o.HCL)
				}
			}
		})
	}
	var names []string
	for _, s := range postgreyOptions {
		names = append(names, s.name)
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 && names[i-1] == n {
			continue
		}
		if !alone[n] || !repeated[n] {
			t.Errorf("option %s: no case gives it alone (%v) or repeated (%v)", n, alone[n], repeated[n])
		}
	}
}

// diff lists the fields in which got and want differ.
func diff(got, want effective) string {
	var b strings.Builder
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := 0; i < g.NumField(); i++ {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			fmt.Fprintf(&b, "  %s: got %v, want %v\n", g.Type().Field(i).Name, g.Field(i).Interface(), w.Field(i).Interface())
		}
	}
	return b.String()
}

// FuzzTranslateArgs: whatever Postgrey's arguments, or an options file,
// the fragment is a configuration greyd loads.
func FuzzTranslateArgs(f *testing.F) {
	for _, s := range []string{
		"--inet=10023\n--delay=60\n--delay=120",
		"--unix=/run/pg.sock\n--socketmode=0600\n--inet=0.0.0.0:10023",
		"--greylist-text=a\x01b\n--x-greylist-header=X: ${y} %{z}\n--hostname=a b",
		"--auto-whitelist-clients\n-5\n--ipv4cidr=99999999999999999999",
		"--retry-window=99999999999999h\n--max-age=9223372036854775807",
		"--whitelist-clients=\xff\n--unix=\xfe",
		"POSTGREY_OPTS=\"--inet=10023 --greylist-text='a b'\"\nPOSTGREY_TEXT=\"x\\\"y\"",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "greyd.hcl")
	f.Fuzz(func(t *testing.T, s string) {
		for _, o := range []*Options{TranslateArgs(strings.Split(s, "\n")), mustParse(t, s)} {
			if o == nil {
				continue
			}
			if err := os.WriteFile(path, []byte(o.HCL), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, ps := config.Load(path); len(ps) > 0 {
				t.Fatalf("arguments %q: greyd refuses the fragment: %v\n%s", s, ps, o.HCL)
			}
		}
	})
}

// mustParse is ParseOptionsFile of s, or nil if s is not shell syntax.
func mustParse(t *testing.T, s string) *Options {
	o, err := ParseOptionsFile(strings.NewReader(s))
	if err != nil {
		return nil
	}
	return o
}

// TestGetoptAgreesWithPostgrey runs Postgrey's own GetOptions call, taken
// from the installed postgrey, under Perl's Getopt::Long, and checks that
// getopt reads every argument list as it does: the values, the whitelist
// lists, where the options end, and whether Postgrey starts at all.
func TestGetoptAgreesWithPostgrey(t *testing.T) {
	bin, err := exec.LookPath("postgrey")
	if err != nil {
		t.Fatal("postgrey not installed (make deps installs it: apt install postgrey)")
	}
	src, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	use := regexp.MustCompile(`(?m)^use Getopt::Long.*;$`).Find(src)
	call := regexp.MustCompile(`(?s)GetOptions\(\\%opt,.*?\)\s*or exit\(1\);`).Find(src)
	if use == nil || call == nil {
		t.Fatalf("%s: no Getopt::Long configuration or GetOptions call found", bin)
	}
	// One Perl for every list: arguments separated by NUL, lists by SOH
	// on stdin; the answers end with "--end".
	script := string(use) + `
$SIG{__WARN__} = sub {};
local $/;
my $in = <STDIN>;
for my $case (split /\x01/, $in, -1) {
	local @ARGV = $case eq "" ? () : split(/\x00/, $case, -1);
	my %opt;
	my $ok = ` + strings.TrimSuffix(string(call), " or exit(1);") + `;
	print "ok=", ($ok ? 1 : 0), "\n";
	for my $k (sort keys %opt) {
		if (ref $opt{$k}) { print "list $k=$_\n" for @{$opt{$k}} } else { print "opt $k=$opt{$k}\n" }
	}
	print "rest=$_\n" for @ARGV;
	print "--end\n";
}
`
	cases := [][]string{
		{"--inet=10023", "--delay=60", "--delay", "120", "-delay", "90"},
		{"--del=5"}, {"--Delay=5"}, {"-delay=5"}, {"---delay=5"}, {"--delay=5x"},
		{"--delay", "5x", "--inet=1"}, {"--delay", "5x", "foo", "--inet=1"},
		{"--delay=-5"}, {"--delay", "-5"}, {"--delay=+5"}, {"--delay=05"}, {"--delay"}, {"--delay", "--inet=1"},
		{"--greylist-text="}, {"--greylist-text", "--delay=5"}, {"--greylist-text", "-"}, {"--greylist-text", "--"},
		{"--auto-whitelist-clients"}, {"--auto-whitelist-clients", "3"}, {"--auto-whitelist-clients", "--delay=4"},
		{"--auto-whitelist-clients="}, {"--auto-whitelist-clients", "-5"}, {"--auto-whitelist-clients", "-"},
		{"--auto-whitelist-clients", "--"}, {"--auto-whitelist-clients=0", "--auto-whitelist-clients=x"},
		{"--inet=1", "foo", "--delay=5"}, {"--inet=1", "--", "--delay=5"}, {"-", "--delay=5"}, {"", "--delay=5"},
		{"+delay=5"}, {"-u", "/x", "-i", "5", "--u=/y"}, {"-ux"}, {"-u=x"}, {"--i", "7"},
		{"--whitelist-clients", "a", "--whitelist-clients=b", "--whitelist-recipients=c"},
		{"--lookup-by-host=1"}, {"--lookup-by-host", "--lookup-by-subnet", "--privacy", "--privacy"},
		{"--syslog-facility=x", "--facility=y", "--syslogfacility=z"}, {"-v", "-q", "-d", "-n", "-h"}, {"-vq"},
		{"--no-action", "--noaction", "--help", "--man", "--version", "--exim"},
		{"--ipv4cidr=0x10"}, {"--ipv6cidr=48", "--listen-queue-size=9", "--max-age=3"},
		{"--socketmode=0600", "--user=u", "--group=g", "--dbdir=/d", "--pidfile=/p", "--hostname=h"},
		{"--retry-window=6h", "--greylist-action=451", "--x-greylist-header=X:_%t"},
		{"--=5"}, {"--", "--delay=5"}, {"-"},
	}
	var in []string
	for _, args := range cases {
		in = append(in, strings.Join(args, "\x00"))
	}
	cmd := exec.Command("perl", "-e", script)
	cmd.Stdin = strings.NewReader(strings.Join(in, "\x01"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("perl: %v\n%s", err, out)
	}
	answers := strings.Split(strings.TrimSuffix(string(out), "--end\n"), "--end\n")
	if len(answers) != len(cases) {
		t.Fatalf("perl answered %d argument lists of %d:\n%s", len(answers), len(cases), out)
	}
	// Numbers as numbers: Getopt::Long keeps "+5" as 5.
	num := func(name, v string) string {
		if postgreyOptions[name].kind == argInt {
			n, _ := intValue(v)
			return fmt.Sprint(n)
		}
		return v
	}
	for i, args := range cases {
		var want []string
		for _, l := range strings.Split(strings.TrimSuffix(answers[i], "\n"), "\n") {
			kind, rest, _ := strings.Cut(l, " ")
			if kind != "opt" && kind != "list" {
				want = append(want, l)
				continue
			}
			k, v, _ := strings.Cut(rest, "=")
			k = postgreyOptions[k].name // Perl's first name of --syslog-facility is syslogfacility
			want = append(want, kind+" "+k+"="+num(k, v))
		}
		p := getopt(args)
		got := []string{"ok=0"}
		if len(p.refused) == 0 {
			got[0] = "ok=1"
		}
		for k, v := range p.opt {
			if l, ok := p.lists[k]; ok {
				for _, v := range l {
					got = append(got, "list "+k+"="+v)
				}
			} else {
				got = append(got, "opt "+k+"="+num(k, v))
			}
		}
		for _, a := range p.ignored {
			got = append(got, "rest="+a)
		}
		sort.Strings(want[1:])
		sort.Strings(got[1:])
		if !reflect.DeepEqual(got, want) {
			t.Errorf("arguments %q:\ngetopt   %q\nPostgrey %q", args, got, want)
		}
	}
}
