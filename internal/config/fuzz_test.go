package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary file contents to Load. It must never panic,
// must always explain a failure, and whatever it accepts must survive a
// WriteHCL round trip.
func FuzzLoad(f *testing.F) {
	sample, err := os.ReadFile(filepath.Join("..", "..", "etc", "greyd", "greyd.hcl"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(sample))
	f.Add(allSettings)
	for _, s := range []string{
		"",
		"greylist {\n",
		"greylist { dealy = \"5m\" }",
		"greylist { delay = 300 }",
		"greylist { ipv4_prefix = \"x\" }",
		"greylist { text = \"${x}\" }",
		"greylist { text = \"%{ if true }x%{ endif }\" }",
		"greylist { delay = null }",
		"whitelist { clients = [null, 1, true] }",
		"listen { inet = \"[::1]:10023\" }\nlisten { unix = \"s\" }",
		"limits { max_connections = 1e100 }",
		"greylist { action = upper(\"x\") }",
		"greylist { hostname = \"\xff\" }",
		"listen_reset = true\nlisten { inet = \"10023\" }",
		"database {\n  redis {\n    url = \"redis://s1/0?master_set=m&addr=s2:26379\"\n  }\n}",
		"database {\n  redis {\n    url = \"unix:///run/redis.sock?db=1\"\n  }\n}",
		"metrics {}\ncontrol { socket = \"\" }\nlog { decisions = \"none\" }",
		"greylist {\n  lookup_by = \"auto\"\n  pool_domains = [\".Example.COM\"]\n}\nlimits { store_timeout = \"1s500ms\" }",
	} {
		f.Add(s)
	}

	// One directory per fuzzing process (each runs inputs one at a time);
	// a t.TempDir per input makes fuzzing and minimizing crawl.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src string) {
		path := filepath.Join(dir, "fuzz.hcl")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, ps := Load(path)
		if cfg == nil {
			t.Fatal("nil Config")
		}
		var b bytes.Buffer
		WriteProblems(&b, ps, cfg)
		if len(ps) > 0 {
			for _, p := range ps {
				if p.Summary == "" {
					t.Fatalf("problem without a summary: %#v", p)
				}
			}
			return
		}

		var out bytes.Buffer
		if err := cfg.WriteHCL(&out); err != nil {
			t.Fatal(err)
		}
		path2 := filepath.Join(dir, "written.hcl")
		if err := os.WriteFile(path2, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg2, ps := Load(path2)
		if len(ps) > 0 {
			t.Fatalf("written config does not load: %v\nsource:\n%q\nwritten:\n%s", ps, src, out.String())
		}
		if !reflect.DeepEqual(settings(cfg), settings(cfg2)) {
			t.Fatalf("round trip changed the config\nsource:\n%q\nwritten:\n%s\n got: %+v\nwant: %+v",
				src, out.String(), settings(cfg2), settings(cfg))
		}
	})
}
