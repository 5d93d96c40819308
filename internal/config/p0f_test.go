package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestP0f(t *testing.T) {
	win := P0fOS{Label: "windows", Name: "^Windows", Weight: 3}
	tests := []struct {
		name  string
		files map[string]string
		want  *P0f
	}{
		{"no block, no p0f", map[string]string{"a.hcl": ""}, nil},
		{"an empty block has the defaults", map[string]string{"a.hcl": "p0f {}\n"},
			&P0f{Socket: "/run/p0f/p0f.sock", Timeout: 50 * time.Millisecond}},
		{"settings", map[string]string{"a.hcl": `p0f {
  socket  = "/run/p0f/api.sock"
  timeout = "20ms"
  os "windows" {
    name   = "^Windows"
    weight = 3
  }
  os "xp" {
    name   = "^Windows"
    flavor = "XP"
    weight = 1
  }
  os "unix" {
    name   = "^(Linux|FreeBSD)"
    weight = -1
  }
}
`}, &P0f{Socket: "/run/p0f/api.sock", Timeout: 20 * time.Millisecond, OS: []P0fOS{
			win, {Label: "xp", Name: "^Windows", Flavor: "XP", Weight: 1}, {Label: "unix", Name: "^(Linux|FreeBSD)", Weight: -1}}}},
		{"one file, two p0f blocks", map[string]string{"a.hcl": "p0f {\n  timeout = \"10ms\"\n}\np0f {\n  os \"windows\" {\n    name = \"^Windows\"\n    weight = 3\n  }\n}\n"},
			&P0f{Socket: "/run/p0f/p0f.sock", Timeout: 10 * time.Millisecond, OS: []P0fOS{win}}},
		{"a later file overrides a setting of an os block and adds one", map[string]string{
			"a.hcl":        "p0f {\n  os \"windows\" {\n    name = \"^Windows\"\n    weight = 3\n  }\n}\n",
			"conf.d/b.hcl": "p0f {\n  timeout = \"100ms\"\n  os \"windows\" {\n    weight = 1\n  }\n  os \"linux\" {\n    name = \"^Linux\"\n    weight = 0\n  }\n}\n",
		}, &P0f{Socket: "/run/p0f/p0f.sock", Timeout: 100 * time.Millisecond, OS: []P0fOS{
			{Label: "windows", Name: "^Windows", Weight: 1}, {Label: "linux", Name: "^Linux"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			cfg := mustLoad(t, dir)
			if !reflect.DeepEqual(cfg.P0f, tc.want) {
				t.Errorf("files:\n%s\nP0f = %+v, want %+v", dumpFiles(tc.files), cfg.P0f, tc.want)
			}
			again, out := readBack(t, cfg)
			if !reflect.DeepEqual(again.P0f, cfg.P0f) {
				t.Errorf("written:\n%s\nread back %+v, want %+v", out, again.P0f, cfg.P0f)
			}
			if tc.want != nil && len(tc.want.OS) > 0 {
				if o := cfg.Origin("p0f.os." + tc.want.OS[0].Label + ".weight"); !strings.HasSuffix(o, ".hcl:"+map[bool]string{true: "4", false: "6"}[strings.Contains(tc.name, "later")]) &&
					!strings.Contains(tc.name, "two p0f") {
					t.Errorf("Origin of the first os block's weight: %q", o)
				}
				if spec := cfg.SignalsSpec(); spec.P0f == nil || len(spec.P0f.OS) != len(tc.want.OS) || spec.P0f.Socket != tc.want.Socket {
					t.Errorf("SignalsSpec().P0f = %+v", spec.P0f)
				}
			}
		})
	}
}

func TestP0fProblems(t *testing.T) {
	os := func(body string) string { return "p0f {\n  os \"w\" {\n" + body + "  }\n}\n" }
	tests := []struct {
		src  string
		want string
	}{
		{"p0f {\n  timeout = \"2s\"\n}\n", `DIR/a.hcl:2:13: Invalid duration: p0f.timeout 2s is out of range: more than 0 and at most 1s (p0f answers from memory; the client waits meanwhile)`},
		{"p0f {\n  timeout = \"50\"\n}\n", `DIR/a.hcl:2:13: Invalid duration: p0f.timeout = "50" has no unit; did you mean "50ms"? Units are ms, s, m, h, d and w.`},
		{"p0f {\n  socket = \"\"\n}\n", `DIR/a.hcl:2:12: Invalid value: p0f.socket must not be empty`},
		{"p0f {\n  socket = \"/a\"\n}\np0f {\n  socket = \"/b\"\n}\n", `DIR/a.hcl:5:12: Duplicate argument: p0f.socket is already given at DIR/a.hcl:2:12; a setting may be given only once in a file (a later file may override it)`},
		{os("    name = \"(Windows\"\n    weight = 3\n"), `DIR/a.hcl:3:12: Invalid regular expression: p0f os "w": name is not a regular expression (RE2 syntax): error parsing regexp: missing closing ): ` + "`(Windows`"},
		{os("    name = \"W\"\n    flavor = \"[\"\n    weight = 3\n"), `DIR/a.hcl:4:14: Invalid regular expression: p0f os "w": flavor is not a regular expression (RE2 syntax): error parsing regexp: missing closing ]: ` + "`[`"},
		{os("    weight = 3\n"), `DIR/a.hcl:2:3: Incomplete os block: p0f os "w" needs name = "<regular expression on p0f's os_name>", e.g. "^Windows"`},
		{os("    name = \"W\"\n"), `DIR/a.hcl:2:3: Incomplete os block: p0f os "w" needs weight = N, the score a match adds (a few points at most: fingerprints are coarse)`},
		{os("    name = \"W\"\n    weight = 5000\n"), `DIR/a.hcl:4:14: Value out of range: p0f.os.w.weight must be between -1000 and 1000, got 5000`},
		{"p0f {\n  os \"w\" {\n    name = \"a\"\n    weight = 1\n  }\n  os \"w\" {\n    name = \"b\"\n    weight = 1\n  }\n}\n",
			`DIR/a.hcl:6:6: Duplicate os block: p0f os "w" is already defined at DIR/a.hcl:2:6; a later file may override its settings`},
		{"p0f {\n  os \"a b\" {\n    name = \"a\"\n    weight = 1\n  }\n}\n",
			`DIR/a.hcl:2:6: Invalid os label: p0f os "a b": the label has ' ': only letters, digits, '-' and '_' (it names the signal p0f.<label>)`},
		{"p0f {\n  timout = \"1s\"\n}\n", `DIR/a.hcl:2:3: Unsupported argument: An argument named "timout" is not expected here. Did you mean "timeout"?`},
	}
	for _, tc := range tests {
		wantOneProblem(t, tc.src, tc.want)
	}
}

func TestP0fWarnings(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.hcl": "selective {\n  mode = \"score\"\n}\np0f {}\n"})
	cfg := mustLoad(t, dir)
	var got []string
	for _, w := range cfg.Warnings {
		got = append(got, strings.ReplaceAll(w.Error(), dir, "DIR"))
	}
	want := []string{
		`DIR/a.hcl:2:10: Score without signals: mode "score" without a signals, dnsbl or dnswl block scores every client 0: all pass below greylist_at = 3 without delay`,
		`DIR/a.hcl:4:1: p0f without os blocks: a p0f block without os "label" { name = "...", weight = N } blocks computes nothing`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
