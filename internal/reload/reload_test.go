package reload

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// confDir is a configuration directory with greyd.hcl and no conf.d.
func confDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "greyd.hcl"), "database {\n  path = \"state/greyd.db\"\n}\n")
	write(t, filepath.Join(dir, "whitelist_clients"), "# none\n")
	write(t, filepath.Join(dir, "whitelist_recipients"), "# none\n")
	return dir
}

func TestInputsAndWatchDirsCoverConfD(t *testing.T) {
	dir := confDir(t)
	confd := filepath.Join(dir, "conf.d")
	if dirs, _ := watchDirs(dir); !slices.Contains(dirs, confd) {
		t.Errorf("watchDirs(%s) = %q: conf.d is not watched before it exists", dir, dirs)
	}
	before := takeFingerprint(inputs(dir))

	drop := filepath.Join(confd, "50-local.hcl")
	write(t, drop, "greylist {\n  delay = \"1m\"\n}\n")
	after := takeFingerprint(inputs(dir))
	if got := changed(before, after); !reflect.DeepEqual(got, []string{drop}) {
		t.Errorf("a drop-in appeared: changed = %q, want %q", got, []string{drop})
	}

	// An empty conf.d appearing or going away changes nothing.
	os.Remove(drop)
	if got := changed(before, takeFingerprint(inputs(dir))); len(got) != 0 {
		t.Errorf("empty conf.d: changed = %q", got)
	}
	os.Remove(confd)
	if got := changed(before, takeFingerprint(inputs(dir))); len(got) != 0 {
		t.Errorf("conf.d removed: changed = %q", got)
	}

	// The password file is an input, and its directory is watched.
	pw := filepath.Join(t.TempDir(), "redis.password")
	write(t, pw, "secret\n")
	os.Chmod(pw, 0o600)
	write(t, drop, "database {\n  redis {\n    url = \"redis://127.0.0.1/0\"\n    password_file = \""+pw+"\"\n  }\n}\n")
	l := Load(dir, Options{})
	if !l.OK() {
		t.Fatalf("load: %v", l.Problems())
	}
	if in := inputs(dir, l.Config); !slices.Contains(in, pw) {
		t.Errorf("inputs = %q: no password file", in)
	}
	if dirs, _ := watchDirs(dir, l.Config); !slices.Contains(dirs, filepath.Dir(pw)) {
		t.Errorf("watchDirs = %q: the password file's directory is not watched", dirs)
	}
}

func TestReloaderConfD(t *testing.T) {
	dir := confDir(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	initial := Load(dir, Options{})
	if !initial.OK() {
		t.Fatalf("load: %v", initial.Problems())
	}
	var applied *Loaded
	rl := NewReloader(dir, Options{}, initial, log, func(l *Loaded) { applied = l })

	drop := filepath.Join(dir, "conf.d", "50-local.hcl")
	write(t, drop, "greylist {\n  delay = \"1m\"\n}\ncontrol {\n  socket = \"\"\n}\nmetrics {}\n")
	if got := rl.Changed(); !reflect.DeepEqual(got, []string{drop}) {
		t.Fatalf("Changed() = %q, want %q", got, []string{drop})
	}
	if !rl.Reload("test") || applied == nil || applied.Snapshot.Delay != time.Minute {
		t.Fatalf("reload with a drop-in: applied %+v\n%s", applied, logs.String())
	}
	// Sockets are bound once: control and metrics keep their running
	// values, and the log says so.
	if c := applied.Config; c.Control.Socket != "/run/greyd/control.sock" || c.Metrics != nil {
		t.Errorf("control %+v, metrics %+v: want the running values", c.Control, c.Metrics)
	}
	for _, w := range []string{
		"control.socket changed in conf.d/50-local.hcl:5: restart greyd to apply it (running with /run/greyd/control.sock)",
		"metrics changed in the configuration: restart greyd to apply it (running with no metrics block)",
	} {
		if strings.Count(logs.String(), w) != 1 {
			t.Errorf("log lacks the warning %q once:\n%s", w, logs.String())
		}
	}
	if len(rl.Changed()) != 0 {
		t.Errorf("Changed() after the reload = %q", rl.Changed())
	}

	// A typo in a drop-in: nothing applied, the problem logged at its line.
	applied = nil
	typo := filepath.Join(dir, "conf.d", "60-typo.hcl")
	write(t, typo, "greylist {\n  dealy = \"2m\"\n}\n")
	if rl.Reload("test") || applied != nil {
		t.Fatal("a reload with a typo was applied")
	}
	if !strings.Contains(logs.String(), typo+":2:3: Unsupported argument") {
		t.Errorf("log lacks the typo's position:\n%s", logs.String())
	}
}

func TestReloaderRedisIsNotARestartEveryTime(t *testing.T) {
	// Database holds a *Redis: an unchanged redis block must compare equal.
	dir := confDir(t)
	write(t, filepath.Join(dir, "conf.d", "r.hcl"), "database {\n  redis {\n    url = \"redis://127.0.0.1/0\"\n  }\n}\n")
	var logs bytes.Buffer
	initial := Load(dir, Options{})
	if !initial.OK() {
		t.Fatalf("load: %v", initial.Problems())
	}
	rl := NewReloader(dir, Options{}, initial, slog.New(slog.NewTextHandler(&logs, nil)), func(*Loaded) {})
	if !rl.Reload("SIGHUP") || strings.Contains(logs.String(), "restart") {
		t.Errorf("reload of an unchanged redis configuration:\n%s", logs.String())
	}
}

// An edit made before the watcher has its watches in place raises no
// event; the watcher still notices it when it starts.
func TestWatcherSeesEditsBeforeItStarted(t *testing.T) {
	dir := confDir(t)
	initial := Load(dir, Options{})
	if !initial.OK() {
		t.Fatalf("load: %v", initial.Problems())
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rl := NewReloader(dir, Options{}, initial, log, func(*Loaded) {})
	drop := filepath.Join(dir, "conf.d", "50-local.hcl")
	write(t, drop, "greylist {\n  delay = \"1m\"\n}\n")

	whys := make(chan string, 4)
	w := NewWatcher(rl, func(why string) { whys <- why; rl.Reload(why) }, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	select {
	case why := <-whys:
		if want := "changed: " + drop; why != want {
			t.Errorf("reload why = %q, want %q", why, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an edit made before the watcher started was not noticed")
	}
}

// The daemon opens its store and sockets between the first load and
// NewReloader: an edit in that time is a change, not the new normal.
func TestReloaderSeesEditsSinceTheInitialLoad(t *testing.T) {
	dir := confDir(t)
	initial := Load(dir, Options{})
	if !initial.OK() {
		t.Fatalf("load: %v", initial.Problems())
	}
	local := filepath.Join(dir, "whitelist_clients")
	write(t, local, "relay.partner.example\n")
	rl := NewReloader(dir, Options{}, initial, slog.New(slog.NewTextHandler(io.Discard, nil)), func(*Loaded) {})
	if got := rl.Changed(); !reflect.DeepEqual(got, []string{local}) {
		t.Errorf("Changed() = %q, want %q", got, []string{local})
	}
}
