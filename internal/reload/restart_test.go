package reload

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestRestartOnlySettings: each setting a reload does not apply keeps its
// running value and gets one warning per reload that names it, where it
// was changed, and the running value.
func TestRestartOnlySettings(t *testing.T) {
	const base = `listen {
  unix = "/run/greyd/policy.sock"
}
listen {
  inet = "127.0.0.1:10023"
}
database {
  path = "/var/lib/greyd/greyd.db"
}
`
	tests := []struct {
		name, edit string
		want       []string
	}{
		{"nothing", base, nil},
		{"database.path and sync", strings.Replace(base, `path = "/var/lib/greyd/greyd.db"`, "path = \"/srv/greyd.db\"\n  sync = \"always\"", 1), []string{
			"database.path changed in greyd.hcl:8: restart greyd to apply it (running with /var/lib/greyd/greyd.db)",
			"database.sync changed in greyd.hcl:9: restart greyd to apply it (running with everysecond)",
		}},
		{"listen inet and allow", strings.Replace(base, `inet = "127.0.0.1:10023"`, "inet = \"127.0.0.1:10024\"\n  allow = [\"127.0.0.1/32\"]", 1), []string{
			"listen.1.inet changed in greyd.hcl:5: restart greyd to apply it (running with 127.0.0.1:10023)",
			"listen.1.allow changed in greyd.hcl:6: restart greyd to apply it (running with 127.0.0.0/8, ::1/128)",
		}},
		{"listen unix mode and group", strings.Replace(base, `unix = "/run/greyd/policy.sock"`, "unix = \"/run/greyd/policy.sock\"\n  socket_mode = \"0600\"\n  socket_group = \"postfix\"", 1), []string{
			"listen.0.socket_mode changed in greyd.hcl:3: restart greyd to apply it (running with 0660)",
			"listen.0.socket_group changed in greyd.hcl:4: restart greyd to apply it (running with none)",
		}},
		{"listen exim", strings.Replace(base, `inet = "127.0.0.1:10023"`, "inet = \"127.0.0.1:10023\"\n  exim = true", 1), []string{
			"listen.1.exim changed in greyd.hcl:6: restart greyd to apply it (running with false)",
		}},
		{"listen block added", base + "listen {\n  unix = \"/run/greyd/other.sock\"\n}\n", []string{
			"listen changed in the configuration: restart greyd to apply it (running with unix /run/greyd/policy.sock; inet 127.0.0.1:10023 allow 127.0.0.0/8, ::1/128)",
		}},
		{"redis added", strings.Replace(base, "database {\n", "database {\n  redis {\n    url = \"redis://127.0.0.1/0\"\n  }\n", 1), []string{
			"database.redis changed in greyd.hcl:9: restart greyd to apply it (running with no redis block)",
		}},
		{"privacy", base + "greylist {\n  privacy = true\n}\n", []string{
			"greylist.privacy changed in greyd.hcl:11: restart greyd to apply it (running with false)",
		}},
		{"control socket", base + "control {\n  socket = \"\"\n}\n", []string{
			"control.socket changed in greyd.hcl:11: restart greyd to apply it (running with /run/greyd/control.sock)",
		}},
		{"metrics", base + "metrics {\n  listen = \"127.0.0.1:9999\"\n}\n", []string{
			"metrics changed in greyd.hcl:11: restart greyd to apply it (running with no metrics block)",
		}},
		{"dns servers", base + "dns {\n  servers = [\"127.0.0.1:5353\"]\n  budget = \"1s\"\n}\n", []string{
			"dns.servers changed in greyd.hcl:11: restart greyd to apply it (running with none)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := confDir(t)
			hcl := filepath.Join(dir, "greyd.hcl")
			write(t, hcl, base)
			initial := Load(dir, Options{})
			if !initial.OK() {
				t.Fatalf("load: %v", initial.Problems())
			}
			var logs bytes.Buffer
			var applied *Loaded
			rl := NewReloader(dir, Options{}, initial, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: onlyMsg})), func(l *Loaded) { applied = l })
			write(t, hcl, tc.edit)
			for i := 1; i <= 2; i++ { // every reload says it again
				if !rl.Reload("test") {
					t.Fatalf("reload failed:\n%s", logs.String())
				}
				var got []string
				for _, l := range strings.Split(logs.String(), "\n") {
					if w, ok := strings.CutPrefix(l, "level=WARN msg="); ok {
						got = append(got, strings.Trim(w, `"`))
					}
				}
				var want []string
				for range i {
					want = append(want, tc.want...)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("after %d reload(s), warnings:\n%s\nwant:\n%s", i, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				c := applied.Config
				if !reflect.DeepEqual(c.Listen, initial.Config.Listen) || !reflect.DeepEqual(c.Database, initial.Config.Database) ||
					c.Control != initial.Config.Control || c.Metrics != initial.Config.Metrics || c.Greylist.Privacy != initial.Config.Greylist.Privacy ||
					!reflect.DeepEqual(c.DNS.Servers, initial.Config.DNS.Servers) {
					t.Errorf("applied configuration does not keep the running values: %+v", c)
				}
			}
		})
	}
}

// onlyMsg drops the time from slog's text lines.
func onlyMsg(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestRestartOnlyRedisPassword: the password file is read at start only;
// a new password in it is noticed and waits for a restart, loudly.
func TestRestartOnlyRedisPassword(t *testing.T) {
	dir := confDir(t)
	pw := filepath.Join(dir, "redis.password")
	write(t, pw, "old\n")
	write(t, filepath.Join(dir, "greyd.hcl"), "database {\n  redis {\n    url = \"redis://127.0.0.1/0\"\n    password_file = \""+pw+"\"\n  }\n}\n")
	os.Chmod(pw, 0o600)
	initial := Load(dir, Options{})
	if !initial.OK() {
		t.Fatalf("load: %v", initial.Problems())
	}
	var logs bytes.Buffer
	rl := NewReloader(dir, Options{}, initial, slog.New(slog.NewTextHandler(&logs, nil)), func(*Loaded) {})
	const warning = "database.redis.password_file " + "%s changed: restart greyd to apply it (running with the password read at start)"
	if !rl.Reload("SIGHUP") || strings.Contains(logs.String(), "WARN") {
		t.Fatalf("reload with the same password:\n%s", logs.String())
	}
	write(t, pw, "new\n")
	if got := rl.Changed(); !reflect.DeepEqual(got, []string{pw}) {
		t.Errorf("Changed() = %q, want the password file", got)
	}
	if !rl.Reload("test") || !strings.Contains(logs.String(), strings.Replace(warning, "%s", pw, 1)) {
		t.Errorf("a new password: log lacks the restart warning:\n%s", logs.String())
	}
}
