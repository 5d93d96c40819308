package reload

import (
	"bytes"
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
