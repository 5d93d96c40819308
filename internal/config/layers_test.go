package config

import (
	"bytes"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Configuration layers: DIR/*.hcl, then DIR/conf.d/*.hcl, each overriding
// the files before it setting by setting.

const shipped = `# the packaged file
listen {
  unix = "/var/spool/postfix/greyd/socket"
}
greylist {
  delay  = "5m"
  action = "DEFER_IF_PERMIT"
  text   = "Greylisted"
}
whitelist {
  clients    = ["whitelist_clients", "whitelist_clients.local"]
  recipients = ["whitelist_recipients"]
}
limits {
  max_connections = 1000
}
`

func TestLayersOverride(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"greyd.hcl":           shipped,
		"conf.d":              "<dir>",
		"conf.d/50-local.hcl": "greylist {\n  delay = \"10m\"\n}\n",
	})
	cfg := mustLoad(t, dir)
	g := cfg.Greylist
	if g.Delay != 10*time.Minute || g.Action != "DEFER_IF_PERMIT" || g.Text != "Greylisted" {
		t.Errorf("delay %v, action %q, text %q; want the drop-in's delay and the rest from greyd.hcl", g.Delay, g.Action, g.Text)
	}
	if cfg.Limits.MaxConnections != 1000 || cfg.Limits.MaxAttributes != 100 {
		t.Errorf("limits %+v: want greyd.hcl's max_connections and the default max_attributes", cfg.Limits)
	}
}

func TestLayersReadingOrder(t *testing.T) {
	// Each file sets text to its own name; the last one read wins, and
	// Files lists them in reading order. Directories, dotfiles, editor
	// droppings and other names in conf.d are skipped like in DIR.
	files := map[string]string{"conf.d": "<dir>", "conf.d/sub.hcl": "<dir>"}
	order := []string{"a.hcl", "greyd.hcl", "z.hcl", "conf.d/10-a.hcl", "conf.d/20-b.hcl", "conf.d/9-c.hcl"}
	for _, f := range order {
		files[f] = "greylist {\n  text = \"" + f + "\"\n}\n"
	}
	for _, f := range []string{"conf.d/.hidden.hcl", "conf.d/20-b.hcl~", "conf.d/#x.hcl#", "conf.d/README", "conf.d/x.hcl.dpkg-old"} {
		files[f] = "bogus"
	}
	dir := writeFiles(t, files)
	cfg := mustLoad(t, dir)
	var want []string
	for _, f := range order {
		want = append(want, filepath.Join(dir, f))
	}
	if !reflect.DeepEqual(cfg.Files, want) {
		t.Errorf("Files = %q\nwant %q", cfg.Files, want)
	}
	if cfg.Greylist.Text != "conf.d/9-c.hcl" {
		t.Errorf("text = %q, want the last file's", cfg.Greylist.Text)
	}
	if got, err := Files(dir); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Files(dir) = %q, %v; want %q", got, err, want)
	}
}

func TestLayersSingleFileIgnoresConfD(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"greyd.hcl":           shipped,
		"conf.d":              "<dir>",
		"conf.d/50-local.hcl": "greylist {\n  delay = \"10m\"\n}\n",
	})
	cfg := mustLoad(t, filepath.Join(dir, "greyd.hcl"))
	if cfg.Greylist.Delay != 5*time.Minute || len(cfg.Files) != 1 {
		t.Errorf("-config FILE: delay %v, files %q; want only greyd.hcl read", cfg.Greylist.Delay, cfg.Files)
	}
}

func TestLayersOnlyConfD(t *testing.T) {
	dir := writeFiles(t, map[string]string{"conf.d": "<dir>", "conf.d/local.hcl": "greylist {\n  delay = \"1m\"\n}\n"})
	if cfg := mustLoad(t, dir); cfg.Greylist.Delay != time.Minute {
		t.Errorf("delay %v, want conf.d/local.hcl's", cfg.Greylist.Delay)
	}
}

func TestLayersListen(t *testing.T) {
	unix := Listen{Unix: "/var/spool/postfix/greyd/socket", SocketMode: 0o660}
	inet := Listen{Inet: "127.0.0.1:10023", SocketMode: 0o660, Allow: LoopbackNets}
	inet2 := Listen{Inet: "127.0.0.1:10024", SocketMode: 0o660, Allow: LoopbackNets}
	tests := []struct {
		name  string
		files map[string]string
		want  []Listen
	}{
		{"drop-ins add listen blocks", map[string]string{
			"conf.d/a.hcl": `listen { inet = "10023" }`,
		}, []Listen{unix, inet}},
		{"listen_reset drops the earlier files' blocks, keeps its own", map[string]string{
			"conf.d/a.hcl": "listen { inet = \"10023\" }\nlisten_reset = true\n",
		}, []Listen{inet}},
		{"listen_reset alone leaves none (socket activation only)", map[string]string{
			"conf.d/a.hcl": "listen_reset = true\n",
		}, nil},
		{"a later file adds to a reset", map[string]string{
			"conf.d/a.hcl": "listen_reset = true\nlisten { inet = \"10023\" }\n",
			"conf.d/b.hcl": "listen { inet = \"10024\" }\n",
		}, []Listen{inet, inet2}},
		{"reset in a later file drops every earlier one", map[string]string{
			"conf.d/a.hcl": "listen { inet = \"10023\" }\n",
			"conf.d/b.hcl": "listen_reset = true\nlisten { inet = \"10024\" }\n",
		}, []Listen{inet2}},
		{"listen_reset = false changes nothing", map[string]string{
			"conf.d/a.hcl": "listen_reset = false\n",
		}, []Listen{unix}},
		{"replacing the inherited address needs no duplicate error", map[string]string{
			"conf.d/a.hcl": "listen_reset = true\nlisten {\n  unix = \"/var/spool/postfix/greyd/socket\"\n  socket_mode = \"0600\"\n}\n",
		}, []Listen{{Unix: "/var/spool/postfix/greyd/socket", SocketMode: 0o600}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"greyd.hcl": shipped, "conf.d": "<dir>"}
			for k, v := range tc.files {
				files[k] = v
			}
			cfg := mustLoad(t, writeFiles(t, files))
			if !reflect.DeepEqual(cfg.Listen, tc.want) {
				t.Errorf("files:\n%s\nlisten = %+v\nwant     %+v", dumpFiles(tc.files), cfg.Listen, tc.want)
			}
		})
	}
}

func TestLayersReplaceLists(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"greyd.hcl": shipped + "greylist {\n  pool_domains = [\"a.example\", \"b.example\"]\n}\n",
		"conf.d":    "<dir>",
		"conf.d/l.hcl": `whitelist {
  clients = ["/srv/clients"]
}
greylist {
  pool_domains = ["c.example"]
}
`,
	})
	cfg := mustLoad(t, dir)
	if want := []string{"/srv/clients"}; !reflect.DeepEqual(cfg.Whitelist.Clients, want) {
		t.Errorf("whitelist.clients = %q, want %q (replaced, not appended)", cfg.Whitelist.Clients, want)
	}
	if want := []string{dir + "/whitelist_recipients"}; !reflect.DeepEqual(cfg.Whitelist.Recipients, want) {
		t.Errorf("whitelist.recipients = %q, want greyd.hcl's %q", cfg.Whitelist.Recipients, want)
	}
	if want := []string{"c.example"}; !reflect.DeepEqual(cfg.Greylist.PoolDomains, want) {
		t.Errorf("pool_domains = %q, want %q", cfg.Greylist.PoolDomains, want)
	}

	// An empty list empties.
	dir = writeFiles(t, map[string]string{"greyd.hcl": shipped, "conf.d": "<dir>", "conf.d/l.hcl": "whitelist {\n  clients = []\n}\n"})
	if cfg := mustLoad(t, dir); len(cfg.Whitelist.Clients) != 0 {
		t.Errorf("clients = [] in a drop-in: got %q", cfg.Whitelist.Clients)
	}
}

func TestLayersOptionalBlocks(t *testing.T) {
	// A later file overrides one setting of an earlier file's redis and
	// metrics blocks; the others stay.
	dir := writeFiles(t, map[string]string{
		"greyd.hcl": shipped + `database {
  redis {
    url        = "redis://127.0.0.1:6379/1"
    key_prefix = "site:"
  }
}
metrics {
  listen = "127.0.0.1:9999"
}
`,
		"conf.d":       "<dir>",
		"conf.d/l.hcl": "database {\n  redis {\n    key_prefix = \"other:\"\n  }\n}\nmetrics {}\n",
	})
	cfg := mustLoad(t, dir)
	r := cfg.Database.Redis
	if r == nil || r.URL != "redis://127.0.0.1:6379/1" || r.DB != 1 || r.KeyPrefix != "other:" {
		t.Errorf("redis = %+v, want greyd.hcl's url and the drop-in's key_prefix", r)
	}
	if cfg.Metrics == nil || cfg.Metrics.Listen != "127.0.0.1:9999" {
		t.Errorf("metrics = %+v, want greyd.hcl's listen", cfg.Metrics)
	}
	if cfg.Limits.StoreTimeout != DefaultRedisStoreTimeout {
		t.Errorf("store_timeout = %v with redis and none set, want %v", cfg.Limits.StoreTimeout, DefaultRedisStoreTimeout)
	}

	// A redis block only in a drop-in; store_timeout set anywhere stays.
	dir = writeFiles(t, map[string]string{
		"greyd.hcl":    shipped + "limits {\n  store_timeout = \"2s\"\n}\n",
		"conf.d":       "<dir>",
		"conf.d/r.hcl": "database {\n  redis {\n    url = \"unix:///run/redis/redis.sock\"\n  }\n}\n",
	})
	cfg = mustLoad(t, dir)
	if cfg.Database.Redis == nil || cfg.Database.Redis.KeyPrefix != "greyd:" || cfg.Limits.StoreTimeout != 2*time.Second {
		t.Errorf("redis %+v, store_timeout %v; want the default key_prefix and the given 2s", cfg.Database.Redis, cfg.Limits.StoreTimeout)
	}
}

func TestLayersProblems(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // besides greyd.hcl = shipped
		want  []string
	}{
		{"typo in a drop-in names that file", map[string]string{
			"conf.d/50-local.hcl": "greylist {\n  dealy = \"10m\"\n}\n",
		}, []string{`DIR/conf.d/50-local.hcl:2:3: Unsupported argument: An argument named "dealy" is not expected here. Did you mean "delay"?`}},
		{"bad value in a drop-in", map[string]string{
			"conf.d/50-local.hcl": "\ngreylist {\n  delay = \"10x\"\n}\n",
		}, []string{`DIR/conf.d/50-local.hcl:3:11: Invalid duration: delay: "10x": unknown unit "x"; use ms, s, m, h, d or w`}},
		{"twice in one file is an error", map[string]string{
			"conf.d/a.hcl": "greylist {\n  delay = \"1m\"\n}\ngreylist {\n  delay = \"2m\"\n}\n",
		}, []string{`DIR/conf.d/a.hcl:5:3: Duplicate argument: Argument "delay" was already set at DIR/conf.d/a.hcl:2:3; a setting may be given only once in a file (a later file may override it)`}},
		{"twice in one block is an error", map[string]string{
			"conf.d/a.hcl": "greylist {\n  delay = \"1m\"\n  delay = \"2m\"\n}\n",
		}, []string{`DIR/conf.d/a.hcl:3:3: Attribute redefined: The argument "delay" was already set at DIR/conf.d/a.hcl:2:3. Each argument may be set only once.`}},
		{"a wrongly typed override is reported once and overrides nothing", map[string]string{
			"conf.d/a.hcl": "greylist {\n  delay = [\"1m\"]\n}\n",
		}, []string{`DIR/conf.d/a.hcl:2:11: Unsuitable value type: delay: string required, but have tuple`}},
		{"errors in several files, in reading order", map[string]string{
			"conf.d/b.hcl": "limits {\n  max_connections = 0\n}\n",
			"conf.d/a.hcl": "log {\n  decisions = \"some\"\n}\n",
			"z.hcl":        "listen_reset = \"yes\"\n",
		}, []string{
			`DIR/z.hcl:1:17: Unsuitable value type: listen_reset: a bool is required`,
			`DIR/conf.d/a.hcl:2:15: Invalid value: decisions must be "all", "greylist" or "none", got "some"`,
			`DIR/conf.d/b.hcl:2:21: Value out of range: max_connections must be at least 1, got 0`,
		}},
		{"conf.d that is not a directory", map[string]string{
			"conf.d": "a file",
		}, []string{`DIR/conf.d: Cannot read configuration directory: not a directory`}},
		{"syntax error in a drop-in stops before decoding", map[string]string{
			"conf.d/a.hcl": "greylist {\n",
			"conf.d/b.hcl": "greylist {\n  dealy = \"1m\"\n}\n",
		}, []string{`DIR/conf.d/a.hcl:1:10: Unclosed configuration block: There is no closing brace for this block before the end of the file. ` +
			`This may be caused by incorrect brace nesting elsewhere in this file.`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"greyd.hcl": shipped}
			if _, ok := tc.files["conf.d"]; !ok {
				files["conf.d"] = "<dir>"
			}
			for k, v := range tc.files {
				files[k] = v
			}
			dir := writeFiles(t, files)
			_, ps := Load(dir)
			var got []string
			for _, p := range ps {
				got = append(got, strings.ReplaceAll(p.Error(), dir, "DIR"))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("files:\n%s\ngot problems:\n  %s\nwant:\n  %s", dumpFiles(tc.files), strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestProvenance(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"greyd.hcl":           shipped,
		"conf.d":              "<dir>",
		"conf.d/50-local.hcl": "greylist {\n  delay = \"10m\"\n}\nlisten {\n  inet = \"10023\"\n}\n",
	})
	cfg := mustLoad(t, dir)
	for setting, want := range map[string]string{
		"greylist.delay":    "conf.d/50-local.hcl:2",
		"greylist.action":   "greyd.hcl:7",
		"greylist.max_age":  "", // a default
		"whitelist.clients": "greyd.hcl:11",
		"listen.0.unix":     "greyd.hcl:3",
		"listen.1.inet":     "conf.d/50-local.hcl:5",
		"listen.1.unix":     "",
		"no.such.setting":   "",
	} {
		if got := cfg.Origin(setting); got != want {
			t.Errorf("Origin(%q) = %q, want %q", setting, got, want)
		}
	}

	var out bytes.Buffer
	if err := cfg.WriteHCL(&out); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^  delay += "10m" +# conf\.d/50-local\.hcl:2$`,
		`(?m)^  action += "DEFER_IF_PERMIT" +# greyd\.hcl:7$`,
		`(?m)^  max_age += "35d"$`,
		`(?m)^  inet += "127\.0\.0\.1:10023" +# conf\.d/50-local\.hcl:5$`,
		`(?m)^  allow += \["127\.0\.0\.0/8", "::1"\]$`,
		`(?m)^  max_connections += 1000 +# greyd\.hcl:15$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("check-config output does not match %s:\n%s", re, out.String())
		}
	}

	// With -config FILE, origins are relative to that file's directory.
	cfg = mustLoad(t, filepath.Join(dir, "greyd.hcl"))
	if got := cfg.Origin("greylist.delay"); got != "greyd.hcl:6" {
		t.Errorf("single file: Origin(greylist.delay) = %q, want greyd.hcl:6", got)
	}
}

// Every setting of every raw block has its range: merge and provenance
// depend on it (settingFields panics otherwise).
func TestRawSettingsHaveRanges(t *testing.T) {
	for _, v := range []any{rawListen{}, rawDatabase{}, rawRedis{}, rawGreylist{}, rawAutoWhitelist{}, rawWhitelist{}, rawLimits{}, rawControl{}, rawMetrics{}, rawLog{}, rawSelective{}, rawSignals{}, rawList{}, rawPolicy{}, rawDNS{}} {
		ty := reflect.TypeOf(v)
		fields := settingFields(ty)
		tagged := 0
		for i := 0; i < ty.NumField(); i++ {
			if strings.HasSuffix(ty.Field(i).Tag.Get("hcl"), ",optional") {
				tagged++
			}
		}
		if len(fields) != tagged || tagged == 0 {
			t.Errorf("%s: %d settings with ranges, %d tagged", ty.Name(), len(fields), tagged)
		}
	}
}
