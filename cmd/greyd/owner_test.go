package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestControlSocketOwnUser: greyd started by hand by a user outside
// group greyd cannot give its control socket to that group. It keeps the
// socket to itself and root, says so once, and greyd stats works for the
// user who started it.
//
// Group greyd must exist for that: greyd runs in a mount namespace where
// /etc/group has it. Run as root, the test starts greyd as nobody; run as
// another user, as that user (in a user namespace that maps only it, for
// the mount).
func TestControlSocketOwnUser(t *testing.T) {
	root := os.Geteuid() == 0
	base, err := os.MkdirTemp("", "greyd-own-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	os.Chmod(filepath.Dir(binary), 0o755) // nobody must be able to run it
	uid := os.Geteuid()
	var asUser *syscall.SysProcAttr
	if root {
		uid = 65534
		asUser = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if err := os.Chown(base, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	groups := filepath.Join(base, "group")
	if err := os.WriteFile(groups, withGroupGreyd(t), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(base, "control.sock")
	testConfig(t, base, "")
	cfg := filepath.Join(base, "greyd.hcl")

	// unshare (no fork) and setpriv exec: the pid is greyd's.
	ns := []string{"--mount"}
	drop := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
	if !root {
		ns = []string{"--map-current-user", "--keep-caps", "--mount"}
		drop = []string{"--inh-caps=-all", "--ambient-caps=-all"}
	}
	args := append(ns, "--", "sh", "-c", `mount --bind "$0" /etc/group && exec setpriv "$@"`, groups)
	args = append(append(args, drop...), "--", binary, "-config", cfg)
	d := &proc{t: t, dir: base, sock: filepath.Join(base, "greyd.sock"), logs: &syncBuf{}, done: make(chan error, 1)}
	d.cmd = exec.Command("unshare", args...)
	startProc(t, d)
	want := fmt.Sprintf("warning: control socket %s: cannot give it to group greyd (", ctl)
	d.waitLog("control socket " + ctl + "\n")
	if n := strings.Count(d.logs.String(), want); n != 1 {
		t.Errorf("log has %d lines %q, want 1:\n%s", n, want, d.logs)
	}
	if fi, err := os.Stat(ctl); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Fatalf("control socket: %v, %v; want mode 0600, owner uid %d", fi, err, uid)
	}

	stats := func(attr *syscall.SysProcAttr) (string, int) {
		cmd := exec.Command(binary, "stats", "-config", cfg)
		cmd.SysProcAttr = attr
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := stats(asUser); code != 0 || !strings.Contains(out, "greyd              test, up ") {
		t.Errorf("stats as uid %d, who started greyd: exit %d\n%s", uid, code, out)
	}
	if !root {
		return
	}
	if out, code := stats(nil); code != 0 {
		t.Errorf("stats as root: exit %d\n%s", code, out)
	}
	other := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65533, Gid: 65533}}
	if out, code := stats(other); code != 3 || !strings.Contains(out, "cannot reach greyd at "+ctl+": permission denied") || !strings.Contains(out, "only root and uid 65534, which runs greyd, may use it") {
		t.Errorf("stats as another user: exit %d\n%s", code, out)
	}
}

// withGroupGreyd returns /etc/group with a group greyd (added, without
// members, under an unused gid, when it is missing).
func withGroupGreyd(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 {
			continue
		}
		if f[0] == "greyd" {
			return b
		}
		if gid, err := strconv.Atoi(f[2]); err == nil {
			used[gid] = true
		}
	}
	gid := 64000
	for used[gid] {
		gid++
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return fmt.Appendf(b, "greyd:x:%d:\n", gid)
}
