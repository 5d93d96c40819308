package reload

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestPrivacyKeyCreationRace: the daemon and greyd import-postgrey may
// both find no key and create one. Exactly one key wins, and every
// creator uses it: a loser that kept its own would store entries no
// other process can find.
func TestPrivacyKeyCreationRace(t *testing.T) {
	for round := 0; round < 20; round++ {
		path := filepath.Join(t.TempDir(), "state", "privacy.key")
		const n = 8
		keys := make([][]byte, n)
		errs := make([]error, n)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range n {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				keys[i], errs[i] = privacyKey(path, true)
			}()
		}
		start.Done()
		done.Wait()
		onDisk, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d, creator %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(keys[i], onDisk) {
				t.Fatalf("round %d: creator %d uses key %x, the file holds %x", round, i, keys[i], onDisk)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".privacy.key-*")); len(left) > 0 {
			t.Fatalf("round %d: temporary files left: %q", round, left)
		}
	}
}

// TestPrivacyKeyMode: a key other users can read is no secret; greyd
// refuses it and says how to fix it.
func TestPrivacyKeyMode(t *testing.T) {
	key := bytes.Repeat([]byte{7}, keySize)
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o604, false},
		{0o644, false},
		{0o660, false},
	} {
		path := filepath.Join(t.TempDir(), "privacy.key")
		if err := os.WriteFile(path, key, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		for _, create := range []bool{true, false} { // daemon, check-config
			got, err := privacyKey(path, create)
			switch {
			case tc.ok && (err != nil || !bytes.Equal(got, key)):
				t.Errorf("mode %#o: key %x, %v; want the file's key", tc.mode, got, err)
			case !tc.ok && err == nil:
				t.Errorf("mode %#o: key accepted; want it refused", tc.mode)
			case !tc.ok && (!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600 "+path)):
				t.Errorf("mode %#o: error %q does not name the file and the fix", tc.mode, err)
			}
		}
	}
}

// TestReloadKeepsPrivacyKey: the key belongs to the running database. A
// reload never reads or creates a key file, even when database.path (and
// so the key's place) or greylist.privacy changed for the next restart,
// and keeps hashing with the running key.
func TestReloadKeepsPrivacyKey(t *testing.T) {
	dir := confDir(t)
	hcl := filepath.Join(dir, "greyd.hcl")
	write(t, hcl, "database {\n  path = \"state/greyd.db\"\n}\ngreylist {\n  privacy = true\n}\n")
	o := Options{CreateKey: true}
	initial := Load(dir, o)
	if !initial.OK() || initial.Snapshot.Privacy == nil {
		t.Fatalf("load: %v", initial.Problems())
	}
	running := initial.Snapshot.Privacy
	var logs bytes.Buffer
	var applied *Loaded
	rl := NewReloader(dir, o, initial, slog.New(slog.NewTextHandler(&logs, nil)), func(l *Loaded) { applied = l })

	for _, tc := range []struct{ name, hcl, key string }{
		{"database.path", "database {\n  path = \"next/greyd.db\"\n}\ngreylist {\n  privacy = true\n}\n", filepath.Join(dir, "next", "privacy.key")},
		{"greylist.privacy", "database {\n  path = \"state/greyd.db\"\n}\ngreylist {\n  privacy = false\n}\n", ""},
		// The running key file made unusable: the running key stays.
		{"key file refused", "database {\n  path = \"state/greyd.db\"\n}\ngreylist {\n  privacy = true\n}\n# mode\n", ""},
	} {
		if tc.name == "key file refused" {
			os.Chmod(filepath.Join(dir, "state", "privacy.key"), 0o644)
		}
		applied = nil
		logs.Reset()
		write(t, hcl, tc.hcl)
		if !rl.Reload("test") || applied == nil {
			t.Fatalf("%s: reload failed:\n%s", tc.name, logs.String())
		}
		if applied.Snapshot.Privacy != running {
			t.Errorf("%s: the reload changed the privacy key", tc.name)
		}
		if !applied.Config.Greylist.Privacy {
			t.Errorf("%s: greylist.privacy is not the running value", tc.name)
		}
		if tc.key != "" {
			if _, err := os.Stat(tc.key); err == nil {
				t.Errorf("%s: the reload created %s", tc.name, tc.key)
			}
		}
	}
}
