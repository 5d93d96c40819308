package migrate

import (
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

// The imports and exports themselves run against the real Postgrey and
// the real binary in cmd/greyd's tests; these cover the pieces.

func TestLineWriter(t *testing.T) {
	tests := []struct {
		writes []string
		want   []string
	}{
		{[]string{"a\nb\n"}, []string{"a", "b"}},
		{[]string{"a", "b\nc", "\n"}, []string{"ab", "c"}},
		{[]string{"a\n\n  \nb"}, []string{"a", "b"}}, // blank lines skipped; the last without newline at close
		{[]string{"", "\n"}, nil},
	}
	for i, tc := range tests {
		var got []string
		l := &lineWriter{fn: func(b []byte) error { got = append(got, string(b)); return nil }}
		for _, w := range tc.writes {
			if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("%d: Write(%q) = %d, %v", i, w, n, err)
			}
		}
		if err := l.close(); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%d: writes %q gave lines %q, want %q", i, tc.writes, got, tc.want)
		}
	}
}

func TestDBLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "greyd.db")
	if DBLocked(path) {
		t.Errorf("no lock file: locked")
	}
	f, err := os.Create(path + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if DBLocked(path) {
		t.Errorf("lock file nobody holds: locked")
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if !DBLocked(path) {
		t.Errorf("lock file held, as the daemon holds it: not locked")
	}
}
