package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Hot reload: every way admins and tools edit files must be noticed within
// 2 s, and a broken edit must change nothing.

const partner = "relay.partner.example"

// partnerDecision asks about a client that only the local whitelist lets
// through, with a fixed test time so the answer depends only on the
// whitelist: DUNNO when whitelisted, greylisted otherwise.
func partnerDecision(c *client) string {
	return c.ask(rcpt("198.51.100.80", partner, "a@b.example", "c@example.org", 1700000000)...)
}

// within polls until the decision is want, at most 2 s after the edit.
func within(t *testing.T, d *proc, c *client, want, what string) {
	t.Helper()
	start := time.Now()
	var got string
	for time.Since(start) < 2*time.Second {
		if got = partnerDecision(c); got == want {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s: decision still %q 2s after the edit, want %q\n%s", what, got, want, d.logs)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReloadEditStyles(t *testing.T) {
	tests := []struct {
		name string
		// edit whitelists the partner in dir's whitelist_clients.local,
		// which exists (without the partner) before.
		edit func(t *testing.T, local string)
	}{
		{"in-place write", func(t *testing.T, local string) {
			f, err := os.OpenFile(local, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("# local\n" + partner + "\n")
			f.Close()
		}},
		{"write temp then rename", func(t *testing.T, local string) {
			writeFile(t, local+".tmp123", partner+"\n")
			if err := os.Rename(local+".tmp123", local); err != nil {
				t.Fatal(err)
			}
		}},
		{"sed -i", func(t *testing.T, local string) {
			if out, err := exec.Command("sed", "-i", "s/^# placeholder$/"+partner+"/", local).CombinedOutput(); err != nil {
				t.Fatalf("sed: %v %s", err, out)
			}
		}},
		{"delete and recreate", func(t *testing.T, local string) {
			os.Remove(local)
			time.Sleep(400 * time.Millisecond) // a reload may run in between
			writeFile(t, local, partner+"\n")
		}},
		{"append", func(t *testing.T, local string) {
			f, _ := os.OpenFile(local, os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString(partner + "\n")
			f.Close()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sock, _ := testConfig(t, dir, "")
			local := filepath.Join(dir, "whitelist_clients.local")
			writeFile(t, local, "# placeholder\n")
			d := startDaemon(t, dir)
			c := dial(t, "unix", sock)
			if got := partnerDecision(c); got == "DUNNO" {
				t.Fatalf("before the edit: got DUNNO")
			}
			tc.edit(t, local)
			within(t, d, c, "DUNNO", tc.name)
			d.waitLog("reload (changed: ")
		})
	}
}

func TestReloadNewAndRemovedLocalFile(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	greylistedNow := partnerDecision(c)
	local := filepath.Join(dir, "whitelist_clients.local")
	writeFile(t, local, partner+"\n") // appears
	within(t, d, c, "DUNNO", "new .local file")
	os.Remove(local) // removed
	within(t, d, c, greylistedNow, "removed .local file")
}

func TestReloadSymlinkSwap(t *testing.T) {
	// The configuration directory is a symlink to a versioned directory,
	// and a deployment swaps it atomically (ln -s new tmp; mv -T tmp conf).
	top := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		os.Mkdir(filepath.Join(top, v), 0o755)
	}
	conf := filepath.Join(top, "conf")
	os.Symlink("v1", conf)
	// Both versions name the same socket and database: those need a
	// restart.
	sock := filepath.Join(top, "greyd.sock")
	for _, v := range []string{"v1", "v2"} {
		cfg := fmt.Sprintf("listen {\n  unix = %q\n}\ndatabase {\n  path = %q\n}\nwhitelist {\n  clients = [%q]\n  recipients = []\n}\n",
			sock, filepath.Join(top, "state", "greyd.db"), "whitelist_clients.local")
		writeFile(t, filepath.Join(top, v, "greyd.hcl"), cfg)
	}
	writeFile(t, filepath.Join(top, "v1", "whitelist_clients.local"), "# nothing\n")
	writeFile(t, filepath.Join(top, "v2", "whitelist_clients.local"), partner+"\n")

	d := &proc{t: t, dir: top, sock: sock, logs: &syncBuf{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binary, "-config", conf)
	startProc(t, d)
	c := dial(t, "unix", sock)
	if got := partnerDecision(c); got == "DUNNO" {
		t.Fatal("v1: partner whitelisted")
	}
	os.Symlink("v2", filepath.Join(top, "conf.tmp"))
	if err := os.Rename(filepath.Join(top, "conf.tmp"), conf); err != nil {
		t.Fatal(err)
	}
	within(t, d, c, "DUNNO", "symlink swap to v2")
	// And back, Kubernetes-style inside the directory is covered by the
	// same mechanism: the swap of "..data" is an event in a watched dir.
	os.Symlink("v1", filepath.Join(top, "conf.tmp"))
	os.Rename(filepath.Join(top, "conf.tmp"), conf)
	within(t, d, c, partnerDecisionGreylisted, "symlink swap back to v1")
}

const partnerDecisionGreylisted = "DEFER_IF_PERMIT 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/example.org.html"

func TestReloadKubernetesDataSwap(t *testing.T) {
	// ConfigMap layout: conf/whitelist_clients.local -> ..data/whitelist_clients.local,
	// ..data -> ..2026_v1; an update writes ..2026_v2 and renames a new
	// ..data symlink over the old one.
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	for v, content := range map[string]string{"..2026_v1": "# none\n", "..2026_v2": partner + "\n"} {
		os.Mkdir(filepath.Join(dir, v), 0o755)
		writeFile(t, filepath.Join(dir, v, "whitelist_clients.local"), content)
	}
	os.Symlink("..2026_v1", filepath.Join(dir, "..data"))
	os.Symlink("..data/whitelist_clients.local", filepath.Join(dir, "whitelist_clients.local"))
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	if got := partnerDecision(c); got == "DUNNO" {
		t.Fatal("v1: partner whitelisted")
	}
	os.Symlink("..2026_v2", filepath.Join(dir, "..data_tmp"))
	os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
	within(t, d, c, "DUNNO", "..data swap")
}

func TestReloadBrokenEdits(t *testing.T) {
	tests := []struct {
		name, file, content, log string
	}{
		{"syntax error", "greyd.hcl", "greylist {\n  delay = \"1m\"\n", "greyd.hcl:1:10: Unclosed configuration block"},
		{"unknown key", "greyd.hcl", "greylist {\n  dealy = \"1m\"\n}\n", `greyd.hcl:2:3: Unsupported argument: An argument named "dealy" is not expected here. Did you mean "delay"?`},
		{"bad duration", "greyd.hcl", "greylist {\n  delay = \"5x\"\n}\n", `greyd.hcl:2:11: Invalid duration`},
		{"malformed whitelist line", "whitelist_clients.local", partner + "\nfoo bar baz\n", "whitelist_clients.local:2: "},
		{"half-written whitelist entry", "whitelist_clients.local", partner + "\n192.0.2.", "whitelist_clients.local:2: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sock, _ := testConfig(t, dir, "")
			good, _ := os.ReadFile(filepath.Join(dir, "greyd.hcl"))
			d := startDaemon(t, dir)
			c := dial(t, "unix", sock)
			before := partnerDecision(c)
			path := filepath.Join(dir, tc.file)
			writeFile(t, path, tc.content)
			d.waitLog(tc.log)
			d.waitLog("still running the previous configuration")
			for i := 0; i < 5; i++ {
				if got := partnerDecision(c); got != before {
					t.Fatalf("after a broken edit: decision %q, want unchanged %q", got, before)
				}
			}
			// The fix is picked up.
			if tc.file == "greyd.hcl" {
				writeFile(t, path, string(good))
				writeFile(t, filepath.Join(dir, "whitelist_clients.local"), partner+"\n")
			} else {
				writeFile(t, path, partner+"\n")
			}
			within(t, d, c, "DUNNO", "fixed "+tc.name)
		})
	}
}

func TestReloadUnreadableWhitelist(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	d := startDaemon(t, dir)
	c := dial(t, "unix", sock)
	before := partnerDecision(c)
	local := filepath.Join(dir, "whitelist_clients.local")
	os.Mkdir(local, 0o755) // exists but cannot be read as a file
	d.waitLog(local + ": cannot read")
	if got := partnerDecision(c); got != before {
		t.Fatalf("unreadable whitelist: decision %q, want %q", got, before)
	}
	os.Remove(local)
	writeFile(t, local, partner+"\n")
	within(t, d, c, "DUNNO", "readable again")
}

func TestReloadRestartOnlySettings(t *testing.T) {
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, "")
	d := startDaemon(t, dir)
	cfg, _ := os.ReadFile(filepath.Join(dir, "greyd.hcl"))
	newCfg := strings.Replace(string(cfg), filepath.Join(dir, "state", "greyd.db"), filepath.Join(dir, "other.db"), 1)
	writeFile(t, filepath.Join(dir, "greyd.hcl"), newCfg+"\ngreylist {\n  text = \"Come back later\"\n}\n")
	d.waitLog("warning: database.path changed in greyd.hcl:")
	c := dial(t, "unix", sock)
	if got := c.ask(rcpt("198.51.100.90", "x", "a@b.example", "c@example.org", 1700000000)...); got != "DEFER_IF_PERMIT 4.2.0 Come back later" {
		t.Errorf("live setting after reload: got %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.db")); err == nil {
		t.Error("database path changed live; it needs a restart")
	}
}

// TestReloadUnderLoad reloads 200 times while clients keep asking: no
// request may fail or go unanswered, and every answer must be the old or
// the new snapshot's.
func TestReloadUnderLoad(t *testing.T) {
	for _, mode := range []string{"file edits", "SIGHUP"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			sock, _ := testConfig(t, dir, "")
			local := filepath.Join(dir, "whitelist_clients.local")
			writeFile(t, local, "# none\n")
			d := startDaemon(t, dir)
			var stop atomic.Bool
			var requests, bad atomic.Int64
			var wg sync.WaitGroup
			var badMu sync.Mutex
			var badAnswers []string
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := dial(t, "unix", sock)
					for !stop.Load() {
						got := partnerDecision(c)
						requests.Add(1)
						if got != "DUNNO" && got != partnerDecisionGreylisted {
							bad.Add(1)
							badMu.Lock()
							badAnswers = append(badAnswers, got)
							badMu.Unlock()
						}
					}
				}()
			}
			for i := 0; i < 200; i++ {
				content := "# none\n"
				if i%2 == 0 {
					content = partner + "\n"
				}
				writeFile(t, local, content)
				if mode == "SIGHUP" {
					d.cmd.Process.Signal(syscall.SIGHUP)
					time.Sleep(10 * time.Millisecond)
				} else {
					time.Sleep(350 * time.Millisecond) // past the debounce
				}
			}
			stop.Store(true)
			wg.Wait()
			if bad.Load() > 0 {
				t.Errorf("%d of %d answers were neither snapshot's: %q", bad.Load(), requests.Load(), badAnswers)
			}
			if requests.Load() < 200 {
				t.Errorf("only %d requests answered during 200 reloads", requests.Load())
			}
			if strings.Contains(d.logs.String(), "failed") {
				t.Errorf("a reload failed:\n%s", d.logs)
			}
			t.Logf("%s: %d requests answered during 200 reloads", mode, requests.Load())
		})
	}
}
