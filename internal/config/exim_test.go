package config

import (
	"bytes"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestListenExim: exim is a setting of one listen block, off by default,
// added in conf.d next to the packaged socket or replacing it, located
// and written back by check-config, and a bool.
func TestListenExim(t *testing.T) {
	postfix := Listen{Unix: "/var/spool/postfix/greyd/socket", SocketMode: 0o660}
	exim := Listen{Unix: "/run/greyd/exim.sock", SocketMode: 0o660, Exim: true}
	tests := []struct {
		name  string
		files map[string]string
		want  []Listen
	}{
		{"off by default", nil, []Listen{postfix}},
		{"an Exim socket next to Postfix's", map[string]string{
			"conf.d/50-exim.hcl": "listen {\n  unix = \"/run/greyd/exim.sock\"\n  exim = true\n}\n",
		}, []Listen{postfix, exim}},
		{"the packaged socket replaced by one for Exim", map[string]string{
			"conf.d/50-exim.hcl": "listen_reset = true\nlisten {\n  unix = \"/var/spool/postfix/greyd/socket\"\n  exim = true\n}\n",
		}, []Listen{{Unix: "/var/spool/postfix/greyd/socket", SocketMode: 0o660, Exim: true}}},
		{"TCP for Exim, false spelt out", map[string]string{
			"conf.d/50-exim.hcl": "listen {\n  inet = \"10023\"\n  exim = true\n}\nlisten {\n  inet = \"10024\"\n  exim = false\n}\n",
		}, []Listen{postfix,
			{Inet: "127.0.0.1:10023", SocketMode: 0o660, Allow: LoopbackNets, Exim: true},
			{Inet: "127.0.0.1:10024", SocketMode: 0o660, Allow: LoopbackNets}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"greyd.hcl": shipped, "conf.d": "<dir>"}
			for k, v := range tc.files {
				files[k] = v
			}
			dir := writeFiles(t, files)
			cfg := mustLoad(t, dir)
			if !reflect.DeepEqual(cfg.Listen, tc.want) {
				t.Fatalf("files:\n%s\nlisten = %+v\nwant     %+v", dumpFiles(tc.files), cfg.Listen, tc.want)
			}
			// check-config writes it back, with where it was set.
			var out bytes.Buffer
			if err := cfg.WriteHCL(&out); err != nil {
				t.Fatal(err)
			}
			for i, l := range cfg.Listen {
				re := `(?m)^  exim += false( +# conf\.d/50-exim\.hcl:\d+)?$`
				if l.Exim {
					re = `(?m)^  exim += true +# conf\.d/50-exim\.hcl:\d+$`
				}
				blocks := strings.Split(out.String(), "listen {")
				if !regexp.MustCompile(re).MatchString(blocks[i+1]) {
					t.Errorf("listen block %d written as:\n%s\nwant a line matching %s", i, blocks[i+1], re)
				}
			}
			again := mustLoad(t, writeFiles(t, map[string]string{"greyd.hcl": out.String()}))
			if !reflect.DeepEqual(again.Listen, cfg.Listen) {
				t.Errorf("check-config's output loads as\n%+v\nwant\n%+v\n%s", again.Listen, cfg.Listen, out.String())
			}
		})
	}

	dir := writeFiles(t, map[string]string{"a.hcl": "listen {\n  unix = \"/run/x.sock\"\n  exim = \"yes\"\n}\n"})
	file := filepath.Join(dir, "a.hcl")
	_, ps := Load(file)
	want := file + `:3:11: Unsuitable value type: exim: a bool is required`
	if len(ps) != 1 || ps[0].Error() != want {
		t.Errorf("exim = \"yes\": problems %v, want [%s]", ps, want)
	}
}
