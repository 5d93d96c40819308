package main

import (
	"strings"
	"testing"
)

// TestHelp: greyd -h and greyd help list every command; greyd help
// COMMAND prints what greyd COMMAND -h prints, and exits 0.
func TestHelp(t *testing.T) {
	// Every command greyd runs is listed, those of admin.go among them.
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	for name := range adminCommands {
		if _, ok := findCommand(name); !ok {
			t.Errorf("admin command %s is not in commands, so greyd -h does not list it", name)
		}
	}

	_, usageOut, code := runGreyd(t, "-h")
	if code != 0 {
		t.Fatalf("greyd -h: exit %d\n%s", code, usageOut)
	}
	for _, n := range append(names, "help") {
		if !strings.Contains(usageOut, "\n  "+n+" ") {
			t.Errorf("greyd -h does not list %s:\n%s", n, usageOut)
		}
	}
	if out, errOut, code := runGreyd(t, "help"); code != 0 || out != usageOut {
		t.Errorf("greyd help: exit %d, stdout:\n%s\nstderr:\n%s\nwant the text of greyd -h:\n%s", code, out, errOut, usageOut)
	}

	for _, n := range names {
		out, errOut, code := runGreyd(t, "help", n)
		if code != 0 || !strings.HasPrefix(out, "usage: greyd "+n+" ") || !strings.Contains(out, "-config") {
			t.Errorf("greyd help %s: exit %d, stdout:\n%s\nstderr:\n%s", n, code, out, errOut)
		}
		if _, dashH, code := runGreyd(t, n, "-h"); code != 0 || dashH != out {
			t.Errorf("greyd %s -h: exit %d, stderr:\n%s\nwant the text of greyd help %s:\n%s", n, code, dashH, n, out)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "nosuch"}, `greyd help: unknown command "nosuch"`},
		{[]string{"nosuch"}, `greyd: unknown command "nosuch"`},
		{[]string{"help", "list", "stats"}, "one command at a time"},
		{[]string{"check-config", "extra"}, `greyd check-config: unexpected argument "extra"`},
	} {
		out, errOut, code := runGreyd(t, tc.args...)
		if code != exitConfig || !strings.Contains(errOut, tc.want) {
			t.Errorf("greyd %s: exit %d, want %d and %q\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), code, exitConfig, tc.want, out, errOut)
		}
	}
}
