package config

import (
	"reflect"
	"testing"
	"time"
)

func TestTarpit(t *testing.T) {
	one := 1
	tests := []struct {
		name     string
		files    map[string]string
		want     *Tarpit
		tarpitAt *int
	}{
		{"no block, no tarpit", map[string]string{"a.hcl": ""}, nil, nil},
		{"an empty block has the defaults", map[string]string{"a.hcl": "tarpit {}\nselective {\n  mode = \"score\"\n  tarpit_at = 1\n}\n"},
			&Tarpit{Duration: 65 * time.Second, MaxConcurrent: 30, AbandonDelay: 30 * time.Minute}, &one},
		{"a later file overrides one setting", map[string]string{
			"a.hcl":        "tarpit {\n  duration = \"10s\"\n  max_concurrent = 5\n}\nselective {\n  tarpit_at = 1\n}\n",
			"conf.d/b.hcl": "tarpit {\n  abandon_delay = \"1h\"\n}\n",
		}, &Tarpit{Duration: 10 * time.Second, MaxConcurrent: 5, AbandonDelay: time.Hour}, &one},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			cfg := mustLoad(t, dir)
			if !reflect.DeepEqual(cfg.Tarpit, tc.want) || !reflect.DeepEqual(cfg.Selective.TarpitAt, tc.tarpitAt) {
				t.Errorf("files:\n%s\nTarpit = %+v, tarpit_at %v; want %+v, %v", dumpFiles(tc.files), cfg.Tarpit, cfg.Selective.TarpitAt, tc.want, tc.tarpitAt)
			}
			// check-config's output reads back the same.
			again, out := readBack(t, cfg)
			if !reflect.DeepEqual(again.Tarpit, cfg.Tarpit) || !reflect.DeepEqual(again.Selective.TarpitAt, cfg.Selective.TarpitAt) {
				t.Errorf("written:\n%s\nread back %+v, %v", out, again.Tarpit, again.Selective.TarpitAt)
			}
		})
	}
}

func TestTarpitProblems(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"tarpit {\n  duration = \"0s\"\n}\n", `DIR/a.hcl:2:14: Invalid duration: tarpit.duration must be at least 1s, got "0s"`},
		{"tarpit {\n  duration = \"241s\"\n}\n", `DIR/a.hcl:2:14: Value out of range: tarpit.duration must be at most 4m (a sending MTA waits 300 s for the RCPT reply), got "241s"`},
		{"tarpit {\n  duration = \"1500ms\"\n}\n", `DIR/a.hcl:2:14: Invalid duration: tarpit.duration must be whole seconds, got "1500ms"`},
		{"tarpit {\n  max_concurrent = 0\n}\n", `DIR/a.hcl:2:20: Value out of range: tarpit.max_concurrent must be at least 1, got 0`},
		{"tarpit {\n  abandon_delay = \"2d\"\n}\n", `DIR/a.hcl:2:19: Value out of range: tarpit.abandon_delay must be shorter than greylist.retry_window (2d), or a client that left during its tarpit could never pass; got "2d"`},
		{"selective {\n  tarpit_at = 1\n}\n", `DIR/a.hcl:2:15: Missing tarpit block: selective.tarpit_at needs a tarpit block (duration, max_concurrent, abandon_delay); add one, or remove tarpit_at`},
		{"tarpit {}\nselective {\n  greylist_at = 3\n  tarpit_at = 3\n}\n", `DIR/a.hcl:4:15: Value out of range: selective.tarpit_at = 3 must be below greylist_at = 3`},
	}
	for _, tc := range tests {
		wantOneProblem(t, tc.src, tc.want)
	}
}
