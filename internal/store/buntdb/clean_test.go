package buntdb

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

const skipped = "integrity check skipped"

// TestCleanMark: a clean Close lets the next Open skip the integrity
// check, once; any other state of the mark or the file means the check.
func TestCleanMark(t *testing.T) {
	path := dbPath(t)
	ctx := context.Background()
	d := openT(t, path, Options{})
	if err := d.PutTriplet(ctx, "k", Triplet{First: 1, Last: 2}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + cleanSuffix); err != nil {
		t.Fatalf("no clean mark after Close: %v", err)
	}

	var logs logBuffer
	d = openT(t, path, Options{Logger: logs.logger()})
	if !strings.Contains(logs.String(), skipped) {
		t.Errorf("clean file, valid mark: check not skipped:\n%s", logs.String())
	}
	if _, err := os.Stat(path + cleanSuffix); !os.IsNotExist(err) {
		t.Errorf("mark still there after Open (%v): a crash now would leave it", err)
	}
	checkTriplet(t, d, "k", Triplet{First: 1, Last: 2}, true)
	d.Close()

	for _, tc := range []struct {
		name string
		mark string // "" keeps the one Close wrote
	}{
		{"garbage mark", "garbage\n"},
		{"wrong sum", "greyd-clean SIZE 00000000\n"},
		{"wrong size", "greyd-clean 1 SUM\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			real, err := os.ReadFile(path + cleanSuffix)
			if err != nil {
				t.Fatal(err)
			}
			var size, sum string
			if f := strings.Fields(string(real)); len(f) == 3 {
				size, sum = f[1], f[2]
			}
			mark := strings.NewReplacer("SIZE", size, "SUM", sum).Replace(tc.mark)
			if err := os.WriteFile(path+cleanSuffix, []byte(mark), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			d := openT(t, path, Options{Logger: logs.logger()})
			if strings.Contains(logs.String(), skipped) {
				t.Errorf("mark %q: check skipped", mark)
			}
			checkTriplet(t, d, "k", Triplet{First: 1, Last: 2}, true)
			d.Close()
		})
	}
}

// TestCleanMarkDamagedFile: a file damaged after a clean Close does not
// match its mark and is checked, and quarantined, as without one.
func TestCleanMarkDamagedFile(t *testing.T) {
	path := dbPath(t)
	d := openT(t, path, Options{})
	if err := d.PutTriplet(context.Background(), "k", Triplet{First: 1, Last: 2}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A length of 20 digits: buntdb itself would spin forever on it.
	b = append(b, "*3\r\n$99999999999999999999\r\nset\r\n"...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	checkQuarantined(t, path, path+".corrupt-"+quarantineTime.UTC().Format("20060102T150405Z"))
}
