package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The settings of the second wave: redis, control, metrics, log, dry_run,
// lookup_by = "auto" and its domain lists, milliseconds.

func TestRedisURL(t *testing.T) {
	tests := []struct {
		url  string
		want Redis // URL is filled in from url
	}{
		{"redis://127.0.0.1:6379/0", Redis{Network: "tcp", Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://localhost", Redis{Network: "tcp", Addrs: []string{"localhost:6379"}}},
		{"redis://redis.example.net/15", Redis{Network: "tcp", Addrs: []string{"redis.example.net:6379"}, DB: 15}},
		{"redis://[::1]:6380/", Redis{Network: "tcp", Addrs: []string{"[::1]:6380"}}},
		{"redis://[2001:db8::1]/3", Redis{Network: "tcp", Addrs: []string{"[2001:db8::1]:6379"}, DB: 3}},
		{"rediss://redis.example.net:6380/1", Redis{Network: "tcp", Addrs: []string{"redis.example.net:6380"}, DB: 1, TLS: true}},
		{"redis://greyd@127.0.0.1/0", Redis{Network: "tcp", Addrs: []string{"127.0.0.1:6379"}, Username: "greyd"}},
		{"unix:///run/redis/redis.sock", Redis{Network: "unix", Addrs: []string{"/run/redis/redis.sock"}}},
		{"unix:///run/redis/redis.sock?db=4", Redis{Network: "unix", Addrs: []string{"/run/redis/redis.sock"}, DB: 4}},
		{"redis://s1:26379/0?master_set=mymaster&addr=s2:26379&addr=s3:26379",
			Redis{Network: "tcp", Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, MasterSet: "mymaster"}},
		{"redis://s1/2?master_set=m&addr=s2", Redis{Network: "tcp", Addrs: []string{"s1:26379", "s2:26379"}, DB: 2, MasterSet: "m"}},
		{"rediss://s1:26379?master_set=m", Redis{Network: "tcp", Addrs: []string{"s1:26379"}, MasterSet: "m", TLS: true}},
		{"redis://n1:7000?addr=n2:7000&addr=n3:7000", Redis{Network: "tcp", Addrs: []string{"n1:7000", "n2:7000", "n3:7000"}}},
		{"redis://n1:7000/0?addr=[::1]:7001", Redis{Network: "tcp", Addrs: []string{"n1:7000", "[::1]:7001"}}},
	}
	for _, tc := range tests {
		got, err := parseRedisURL(tc.url)
		tc.want.URL = tc.url
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseRedisURL(%q) = %+v, %v\nwant %+v", tc.url, got, err, tc.want)
		}
	}

	bad := []struct{ url, err string }{
		{"", "no scheme"},
		{"127.0.0.1:6379", `"127.0.0.1:6379" is not a URL (first path segment in URL cannot contain colon); want redis://host:port/db`},
		{"localhost:6379", `unknown scheme "localhost"`},
		{"http://127.0.0.1/", `unknown scheme "http"; want redis, rediss (TLS) or unix`},
		{"redis:///0", "has no host"},
		{"redis://127.0.0.1:0/0", "port of \"127.0.0.1:0\" must be a number from 1 to 65535"},
		{"redis://127.0.0.1:99999/0", "must be a number from 1 to 65535"},
		{"redis://127.0.0.1:x/0", "not a URL"},
		{"redis://127.0.0.1/x", "the path must be a database number"},
		{"redis://127.0.0.1/-1", "the path must be a database number"},
		{"redis://127.0.0.1/0/1", "the path must be a database number"},
		{"redis://127.0.0.1/0?db=1", "put the database number into the path"},
		{"redis://user:secret@127.0.0.1/0", "has a password: remove it from the URL and put it into a file named by password_file"},
		{"redis://:secret@127.0.0.1/0", "password_file"},
		{"redis://127.0.0.1/0?timeout=1s", `unknown option "timeout"; the options are addr and master_set`},
		{"redis://127.0.0.1/0?master_set=", "master_set is empty"},
		{"redis://127.0.0.1/0?master_set=a&master_set=b", "master_set is given 2 times"},
		{"redis://127.0.0.1/0?addr=127.0.0.1:6379", "127.0.0.1:6379 is listed twice"},
		{"redis://127.0.0.1/0?addr=a:b", "addr=a:b: the port of \"a:b\""},
		{"redis://127.0.0.1/0?addr=::1:7000", `addr=::1:7000: invalid host`},
		{"redis://n1:7000/1?addr=n2:7000", "a Redis Cluster (several addresses without master_set) has only database 0"},
		{"redis://127.0.0.1/0#x", "remove the #fragment"},
		{"unix://redis.sock", "with three slashes"},
		{"unix:///", "no socket path"},
		{"unix:redis.sock", "no socket path"},
		{"unix:///run/redis.sock?db=x", "db must be a database number"},
		{"unix:///run/redis.sock?master_set=m", `unknown option "master_set"; a unix URL has only db`},
		{"unix:///" + strings.Repeat("x", 120), "at most 107"},
	}
	for _, tc := range bad {
		_, err := parseRedisURL(tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseRedisURL(%q) = %v, want an error containing %q", tc.url, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("parseRedisURL(%q): the error shows the password: %v", tc.url, err)
		}
	}
}

func TestRedisPasswordFile(t *testing.T) {
	dir := writeFiles(t, map[string]string{"greyd.hcl": `database {
  redis {
    url           = "redis://127.0.0.1/0"
    password_file = "redis.password"
  }
}
`})
	pw := filepath.Join(dir, "redis.password")

	// Missing: an error, at password_file.
	_, ps := Load(dir)
	if len(ps) != 1 || ps[0].Line != 4 || ps[0].Col != 21 || !strings.Contains(ps[0].Error(), pw+": no such file or directory") {
		t.Errorf("missing password file: %v", ps)
	}

	// Owner and group only: fine, no warning; the path is absolute.
	if err := os.WriteFile(pw, []byte("secret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg := mustLoad(t, dir)
	if cfg.Database.Redis.PasswordFile != pw || len(cfg.Warnings) != 0 || cfg.Database.Redis.CheckPasswordFile() != "" {
		t.Errorf("0640: password_file %q, warnings %v", cfg.Database.Redis.PasswordFile, cfg.Warnings)
	}

	// Readable by others: a warning, not a problem, shown by check-config.
	os.Chmod(pw, 0o644)
	cfg = mustLoad(t, dir)
	want := dir + "/greyd.hcl:4:21: Password file readable by others: " + pw + " has mode 0644: other users can read the Redis password; chmod o-rwx " + pw
	if len(cfg.Warnings) != 1 || !strings.HasPrefix(cfg.Warnings[0].Error(), want) {
		t.Errorf("0644: warnings %v\nwant %s...", cfg.Warnings, want)
	}
	if w := cfg.Database.Redis.CheckPasswordFile(); !strings.Contains(w, "mode 0644") {
		t.Errorf("CheckPasswordFile() = %q", w)
	}
	var out bytes.Buffer
	cfg.WriteHCL(&out)
	if !strings.Contains(out.String(), `# greyd.hcl:4; warning: Password file readable by others`) {
		t.Errorf("check-config output lacks the warning:\n%s", out.String())
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("check-config output shows the password:\n%s", out.String())
	}

	// A directory is not a password file.
	os.Remove(pw)
	os.Mkdir(pw, 0o700)
	if _, ps := Load(dir); len(ps) != 1 || !strings.Contains(ps[0].Error(), "is a directory") {
		t.Errorf("directory as password file: %v", ps)
	}

	var none *Redis
	if none.CheckPasswordFile() != "" || (&Redis{}).CheckPasswordFile() != "" {
		t.Error("CheckPasswordFile without a file warns")
	}
}

func TestSchemaProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // with FILE for the file
	}{
		{"redis block without url", "database {\n  redis {\n    key_prefix = \"x:\"\n  }\n}\n", []string{
			`FILE:2:3: Incomplete redis block: a redis block needs url = "redis://host:port/db" (or rediss://, or unix:///path/to/redis.sock)`,
		}},
		{"redis url and key_prefix", "database {\n  redis {\n    url = \"redis://u:p@h/0\"\n    key_prefix = \"{x}\"\n  }\n}\n", []string{
			`FILE:3:11: Invalid redis url: "redis://u:xxxxx@h/0" has a password: remove it from the URL and put it into a file named by password_file (readable by greyd only)`,
			`FILE:4:18: Invalid value: key_prefix must not contain spaces, control characters or braces (greyd uses {...} for Redis Cluster hash tags), got "{x}"`,
		}},
		{"two redis blocks", "database {\n  redis {\n    url = \"redis://h\"\n  }\n  redis {\n    url = \"redis://h\"\n  }\n}\n", []string{
			`FILE:5:3: Duplicate redis block: Only one redis block is allowed. Another was defined at FILE:2:3.`,
		}},
		{"control, metrics, log", "control {\n  socket = \"/" + strings.Repeat("s", 110) + "\"\n}\nmetrics {\n  listen = \"localhost\"\n}\nlog {\n  decisions = \"greylisted\"\n}\n", []string{
			`FILE:2:12: Invalid unix socket path: "/` + strings.Repeat("s", 110) + `" is 111 bytes long, but a unix socket path can have at most 107; choose a shorter path`,
			`FILE:5:12: Invalid metrics listen address: "localhost": want "host:port", like "127.0.0.1:10023" or "[::1]:10023", or a bare port like "10023"`,
			`FILE:8:15: Invalid value: decisions must be "all", "greylist" or "none", got "greylisted"`,
		}},
		{"domains", "greylist {\n  pool_domains = [\"com\", \"a..b\", \"-a.example\", \"ex ample.com\", \"b\\u00fccher.de\"]\n  dynamic_domains = \"x.example\"\n}\n", []string{
			`FILE:2:18: Invalid domain: pool_domains: "com" needs at least two labels, like "example.com"`,
			`FILE:2:18: Invalid domain: pool_domains: "a..b" has an empty label or one longer than 63 characters`,
			`FILE:2:18: Invalid domain: pool_domains: "-a.example" has a label that starts or ends with a hyphen`,
			`FILE:2:18: Invalid domain: pool_domains: "ex ample.com" is not a domain name: labels are letters, digits and hyphens (write IDNs as xn--)`,
			`FILE:2:18: Invalid domain: pool_domains: "bücher.de" is not a domain name: labels are letters, digits and hyphens (write IDNs as xn--)`,
			`FILE:3:22: Unsuitable value type: dynamic_domains: list of string required, but have string`,
		}},
		{"greylist durations are whole seconds", "greylist {\n  delay = \"1s500ms\"\n  max_age = \"1d1ms\"\n}\n", []string{
			`FILE:2:11: Invalid duration: delay must be whole seconds, got "1s500ms"`,
			`FILE:3:13: Invalid duration: max_age must be whole seconds, got "1d1ms"`,
		}},
		{"dry_run is a bool", "greylist {\n  dry_run = \"maybe\"\n}\n", []string{
			`FILE:2:14: Unsuitable value type: dry_run: a bool is required`,
		}},
		{"policy_test_time is a bool", "greylist {\n  policy_test_time = 1\n}\n", []string{
			`FILE:2:22: Unsuitable value type: policy_test_time: bool required, but have number`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"a.hcl": tc.src})
			file := filepath.Join(dir, "a.hcl")
			_, ps := Load(file)
			var got []string
			for _, p := range ps {
				got = append(got, strings.ReplaceAll(p.Error(), file, "FILE"))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("source:\n%s\ngot problems:\n  %s\nwant:\n  %s", tc.src, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestSchemaValues(t *testing.T) {
	dir := writeFiles(t, map[string]string{"greyd.hcl": `
greylist {
  lookup_by       = "auto"
  pool_domains    = ["..Mail.Example.COM.", "xn--bcher-kva.de"]
  dynamic_domains = []
}
limits {
  store_timeout = "300ms"
}
control {
  socket = ""
}
metrics {}
log {
  decisions = "none"
}
`})
	cfg := mustLoad(t, dir)
	g := cfg.Greylist
	if g.LookupBy != LookupByAuto || g.LookupByHost || !reflect.DeepEqual(g.PoolDomains, []string{"mail.example.com", "xn--bcher-kva.de"}) || g.DynamicDomains == nil {
		t.Errorf("greylist: lookup_by %q (host %v), pool %q, dynamic %#v", g.LookupBy, g.LookupByHost, g.PoolDomains, g.DynamicDomains)
	}
	if cfg.Limits.StoreTimeout != 300*time.Millisecond {
		t.Errorf("store_timeout = %v, want 300ms", cfg.Limits.StoreTimeout)
	}
	if cfg.Control.Socket != "" {
		t.Errorf(`control.socket = "" should disable it, got %q`, cfg.Control.Socket)
	}
	if cfg.Metrics == nil || cfg.Metrics.Listen != DefaultMetricsListen {
		t.Errorf("metrics {} = %+v, want listen %s", cfg.Metrics, DefaultMetricsListen)
	}
	if cfg.Log.Decisions != DecisionsNone {
		t.Errorf("log.decisions = %q", cfg.Log.Decisions)
	}

	// Defaults: no redis, no metrics, the control socket, every decision.
	d := mustLoad(t, writeFiles(t, map[string]string{"greyd.hcl": ""}))
	if d.Database.Redis != nil || d.Metrics != nil || d.Control.Socket != DefaultControlSocket ||
		d.Log.Decisions != DecisionsAll || d.Greylist.LookupBy != LookupByAuto || d.Greylist.DryRun || d.Greylist.PolicyTestTime ||
		d.Limits.StoreTimeout != DefaultStoreTimeout {
		t.Errorf("defaults: %+v", settings(d))
	}
}
