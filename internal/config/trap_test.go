package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTrap(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  *Trap // with DIR for the directory
	}{
		{"no block, no traps", map[string]string{"a.hcl": ""}, nil},
		{"an empty block has the defaults", map[string]string{"a.hcl": "trap {}\n"},
			&Trap{Recipients: []string{"DIR/trap_recipients"}, Duration: 24 * time.Hour}},
		{"settings; relative files resolve against the directory", map[string]string{"a.hcl": `trap {
  recipients = ["traps", "/etc/other/traps.local"]
  duration   = "2d"
}
`}, &Trap{Recipients: []string{"DIR/traps", "/etc/other/traps.local"}, Duration: 48 * time.Hour}},
		{"a later file overrides one setting", map[string]string{
			"a.hcl":        "trap {\n  recipients = [\"t1\"]\n  duration = \"1h\"\n}\n",
			"conf.d/b.hcl": "trap {\n  duration = \"30d\"\n}\n",
		}, &Trap{Recipients: []string{"DIR/t1"}, Duration: 30 * Day}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			cfg := mustLoad(t, dir)
			want := tc.want
			if want != nil {
				w := *want
				w.Recipients = nil
				for _, r := range want.Recipients {
					w.Recipients = append(w.Recipients, strings.ReplaceAll(r, "DIR", dir))
				}
				want = &w
			}
			if !reflect.DeepEqual(cfg.Trap, want) {
				t.Errorf("files:\n%s\nTrap = %+v, want %+v", dumpFiles(tc.files), cfg.Trap, want)
			}
			// check-config's output reads back the same.
			again, out := readBack(t, cfg)
			if !reflect.DeepEqual(again.Trap, cfg.Trap) {
				t.Errorf("written:\n%s\nread back %+v, want %+v", out, again.Trap, cfg.Trap)
			}
		})
	}
}

func TestTrapProblems(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"trap {\n  duration = \"0s\"\n}\n", `DIR/a.hcl:2:14: Invalid duration: trap.duration must be at least 1s, got "0s"`},
		{"trap {\n  duration = \"31d\"\n}\n", `DIR/a.hcl:2:14: Value out of range: trap.duration must be at most 30d, got "31d"`},
		{"trap {\n  duration = \"24\"\n}\n", `DIR/a.hcl:2:14: Invalid duration: trap.duration = "24" has no unit; did you mean "24h"? Units are ms, s, m, h, d and w.`},
		{"trap {\n  duration = \"1500ms\"\n}\n", `DIR/a.hcl:2:14: Invalid duration: trap.duration must be whole seconds, got "1500ms"`},
		{"trap {\n  recipients = []\n}\n", `DIR/a.hcl:2:16: Invalid value: trap.recipients must name at least one file (in whitelist_recipients syntax); to turn traps off, remove the trap block`},
		{"trap {\n  recipients = [\"\"]\n}\n", `DIR/a.hcl:2:16: Invalid value: trap.recipients must not be empty`},
		{"trap {\n  recipient = [\"x\"]\n}\n", `DIR/a.hcl:2:3: Unsupported argument: An argument named "recipient" is not expected here. Did you mean "recipients"?`},
	}
	for _, tc := range tests {
		wantOneProblem(t, tc.src, tc.want)
	}
}
