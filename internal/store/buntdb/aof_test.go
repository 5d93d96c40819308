package buntdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resp encodes one buntdb AOF command.
func resp(parts ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(parts))
	for _, p := range parts {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(p), p)
	}
	return b.String()
}

var (
	future = strconv.FormatInt(time.Now().Add(24*time.Hour).Unix(), 10)
	recA   = resp("set", "t:a", "1,2")
	recB   = resp("set", "t:b", "3,4", "ae", future)
	recC   = resp("set", "c:c", "5,6", "AE", future)
	recDel = resp("del", "t:zz")
	recAll = recA + recB + recDel + recC
)

var quarantineTime = time.Date(2026, 11, 22, 11, 55, 0, 0, time.UTC)

func fixedNow() time.Time { return quarantineTime.In(time.FixedZone("CET", 3600)) }

// checkQuarantined opens a damaged file and checks it was moved aside to
// wantAside, replaced by an empty database, and loudly logged.
func checkQuarantined(t *testing.T, path, wantAside string) {
	t.Helper()
	damaged, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	d, err := Open(path, Options{Logger: logs.logger(), Now: fixedNow})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	if nt, nc, err := d.Len(); nt != 0 || nc != 0 || err != nil {
		t.Errorf("Len() = %d, %d, %v; want an empty database", nt, nc, err)
	}
	if aside, err := os.ReadFile(wantAside); err != nil || !bytes.Equal(aside, damaged) {
		t.Errorf("%s: %v; want the damaged file (%d bytes), got %d bytes", wantAside, err, len(damaged), len(aside))
	}
	log := logs.String()
	for _, want := range []string{"level=ERROR", "path=" + path, "moved_to=" + wantAside, "greylisting state was reset"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q; got:\n%s", want, log)
		}
	}
	// The fresh database works and persists.
	if err := d.PutTriplet(context.Background(), "new", Triplet{First: 1, Last: 2}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openT(t, path, Options{})
	checkTriplet(t, d, "new", Triplet{First: 1, Last: 2}, true)
	d.Close()
}

func TestCorruptFile(t *testing.T) {
	tests := []struct {
		name, data string
	}{
		{"garbage between records", recA + "garbage" + recB},
		{"NUL bytes before the first record", "\x00\x00\x00" + recA + recB},
		{"NUL bytes between records", recA + "\x00\x00" + recB},                                // buntdb would overwrite recB on the next write
		{"length of 1e12", recA + "*3\r\n$3\r\nset\r\n$1000000000000\r\nx\r\n" + recB},         // buntdb: fatal out of memory
		{"length of 20 digits", recA + "*3\r\n$3\r\nset\r\n$99999999999999999999\r\nx" + recB}, // buntdb: endless loop
		{"array of 20 digits", recA + "*99999999999999999999\r\n" + recB},
		{"empty command", recA + "*0\r\n" + recB},                               // buntdb would overwrite recB on the next write
		{"empty command name", recA + resp("") + recB},                          // buntdb: panic
		{"short command name", recA + resp("s", "k", "v") + recB},               // buntdb: panic
		{"non-numeric expiry", recA + resp("set", "k", "v", "ae", "zz") + recB}, // buntdb: *strconv.NumError
		{"overlong expiry", recA + resp("set", "k", "v", "ae", strings.Repeat("1", 30)) + recB},
		{"unknown set option", recA + resp("set", "k", "v", "px", "1") + recB},
		{"set with 4 parts", recA + resp("set", "k", "v", "ae") + recB},
		{"del with 3 parts", recA + resp("del", "k", "v") + recB},
		{"unknown command", recA + resp("get", "k") + recB},
		{"bulk string without CRLF", recA + "*1\r\n$3\r\nsetXX" + recB},
		{"array header without CR", recA + "*3\n" + recB},
		{"bulk header not a number", recA + "*1\r\n$x\r\n" + recB},
		{"overlong header line", recA + "*" + strings.Repeat("1", 70000) + "\r\n" + recB},
	}
	for _, background := range []bool{false, true} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/background-%v", tc.name, background), func(t *testing.T) {
				if background {
					asyncAlways(t) // as a big file is opened
				}
				path := dbPath(t)
				if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
					t.Fatal(err)
				}
				checkQuarantined(t, path, path+".corrupt-20261122T115500Z")
			})
		}
	}
}

// TestCorruptMiddle damages a file greyd wrote, twice in the same second.
func TestCorruptMiddle(t *testing.T) {
	path := dbPath(t)
	for round, aside := range []string{".corrupt-20261122T115500Z", ".corrupt-20261122T115500Z.2"} {
		d := openT(t, path, Options{})
		for i := range 100 {
			key := fmt.Sprintf("198.51.100/s%d@example.org/r@example.net", i)
			if err := d.PutTriplet(context.Background(), key, Triplet{First: 1763812500, Last: int64(i)}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		if _, err := f.WriteAt([]byte(strings.Repeat("GARBAGE!", 8)), fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		f.Close()
		t.Logf("round %d", round)
		checkQuarantined(t, path, path+aside)
	}
}

// TestOpenBuntdbCorrupt checks the safety net behind checkAOF on the
// damage buntdb reports in its own ways.
func TestOpenBuntdbCorrupt(t *testing.T) {
	for _, data := range []string{
		recA + "garbage\r\n" + recB,       // bunt.ErrInvalid
		resp(""),                          // index out of range panic
		resp("set", "k", "v", "ae", "zz"), // *strconv.NumError
	} {
		path := dbPath(t)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := openBuntdb(path)
		if !errors.Is(err, errCorrupt) {
			if db != nil {
				db.Close()
			}
			t.Errorf("openBuntdb(%q) = %v; want errCorrupt", data, err)
		}
	}
}

func TestCheckAOF(t *testing.T) {
	type tc struct {
		name, data string
		good       int
	}
	tests := []tc{
		{"empty", "", 0},
		{"complete", recAll, len(recAll)},
		{"flushdb", recA + resp("FLUSHDB") + recB, len(recA + resp("FLUSHDB") + recB)},
		{"relative expiry", resp("set", "k", "v", "ex", "-5"), len(resp("set", "k", "v", "ex", "-5"))},
		{"long command name", resp("settle", "k", "v"), len(resp("settle", "k", "v"))}, // buntdb reads 3 bytes
		{"trailing NULs", recAll + strings.Repeat("\x00", 4096), len(recAll)},
	}
	// Every cut inside the last record keeps the others.
	for cut := 1; cut < len(recC); cut++ {
		tests = append(tests, tc{fmt.Sprintf("cut at %d", cut), recA + recB + recDel + recC[:cut], len(recA + recB + recDel)})
		tests = append(tests, tc{fmt.Sprintf("cut at %d, then NULs", cut), recA + recC[:cut] + "\x00\x00", len(recA)})
	}
	for _, tc := range tests {
		good, err := checkAOF(strings.NewReader(tc.data), int64(len(tc.data)))
		if err != nil || good != int64(tc.good) {
			t.Errorf("%s: checkAOF = %d, %v; want %d, nil", tc.name, good, err, tc.good)
		}
	}
}

func TestTruncatedTail(t *testing.T) {
	path := dbPath(t)
	d := openT(t, path, Options{})
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if err := d.PutTriplet(ctx, k, Triplet{First: 1, Last: 2}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	complete := fi.Size()
	if err := d.PutTriplet(ctx, "c", Triplet{First: 3, Last: 4}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(path)
	if err := os.Truncate(path, fi.Size()-5); err != nil {
		t.Fatal(err)
	}

	var logs logBuffer
	d = openT(t, path, Options{Logger: logs.logger()})
	checkTriplet(t, d, "a", Triplet{First: 1, Last: 2}, true)
	checkTriplet(t, d, "b", Triplet{First: 1, Last: 2}, true)
	checkTriplet(t, d, "c", Triplet{}, false)
	if fi, _ := os.Stat(path); fi.Size() != complete {
		t.Errorf("file is %d bytes; want truncated to %d", fi.Size(), complete)
	}
	if log := logs.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "incomplete record") {
		t.Errorf("no warning logged; got:\n%s", log)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Errorf("quarantined %v; want the file kept", m)
	}
	// Writes continue after the last complete record.
	if err := d.PutTriplet(ctx, "d", Triplet{First: 5, Last: 6}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openT(t, path, Options{})
	checkTriplet(t, d, "b", Triplet{First: 1, Last: 2}, true)
	checkTriplet(t, d, "d", Triplet{First: 5, Last: 6}, true)
}

// TestTrailingNULs: a file system may leave a zeroed tail after a crash.
func TestTrailingNULs(t *testing.T) {
	path := dbPath(t)
	if err := os.WriteFile(path, []byte(recAll+strings.Repeat("\x00", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := openT(t, path, Options{})
	checkTriplet(t, d, "a", Triplet{First: 1, Last: 2}, true)
	checkClient(t, d, "c", Client{Count: 5, Last: 6}, true)
	if fi, _ := os.Stat(path); fi.Size() != int64(len(recAll)) {
		t.Errorf("file is %d bytes; want %d", fi.Size(), len(recAll))
	}
	if err := d.PutTriplet(context.Background(), "d", Triplet{First: 5, Last: 6}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openT(t, path, Options{})
	checkTriplet(t, d, "b", Triplet{First: 3, Last: 4}, true)
	checkTriplet(t, d, "d", Triplet{First: 5, Last: 6}, true)
}

// FuzzOpen: whatever the file holds, Open must neither hang nor crash, and
// whatever checkAOF lets through must load in buntdb.
func FuzzOpen(f *testing.F) {
	for _, s := range []string{
		recAll, recA + "garbage" + recB, "\x00" + recA, recA + "\x00\x00", recA + recB[:10],
		recA + "*3\r\n$3\r\nset\r\n$1000000000000\r\nx\r\n", "*1\r\n$99999999999999999999\r\n",
		resp(""), resp("s", "k"), resp("set", "k", "v", "ae", "zz"), resp("flushdb"), resp("del", "t:a"),
		recA + "*0\r\n" + recB, recA + recB[:20] + "\x00\x00\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		good, err := checkAOF(bytes.NewReader(data), int64(len(data)))
		if err != nil && !errors.Is(err, errCorrupt) {
			t.Fatalf("checkAOF: %v", err)
		}
		path := dbPath(t)
		if err == nil {
			if err := os.WriteFile(path, data[:good], 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := openBuntdb(path)
			if err != nil {
				t.Fatalf("checkAOF accepted %q but buntdb says %v", data[:good], err)
			}
			db.Close()
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Open must work, and so must writing and reading back: buntdb
		// can load a file and still resume writing at the wrong offset.
		d, err := Open(path, Options{Logger: discard})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := d.PutTriplet(context.Background(), "fuzz-check", Triplet{First: 1, Last: 2}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d, err = Open(path, Options{Logger: discard})
		if err != nil {
			t.Fatalf("reopen after a write: %v", err)
		}
		defer d.Close()
		if _, found, err := d.Triplet(context.Background(), "fuzz-check"); !found || err != nil {
			t.Fatalf("reopen after a write: found %v, %v", found, err)
		}
	})
}

// TestQuarantineKeepsNewest: quarantined copies beyond the newest
// keepCorrupt are deleted, by the time in their names, with a log line;
// the copy just made stays even when the clock was set back, and files
// named otherwise are not touched.
func TestQuarantineKeepsNewest(t *testing.T) {
	tests := []struct {
		name      string
		now       time.Time
		existing  []string // suffixes after path
		newCopy   string
		remaining []string
	}{
		{
			name: "older copies deleted",
			now:  quarantineTime,
			existing: []string{
				".corrupt-20240101T000000Z", ".corrupt-20240102T000000Z",
				".corrupt-20240103T000000Z", ".corrupt-20240103T000000Z.2", ".corrupt-20240103T000000Z.10",
			},
			newCopy:   ".corrupt-20261122T115500Z",
			remaining: []string{".corrupt-20240103T000000Z.10", ".corrupt-20240103T000000Z.2", ".corrupt-20261122T115500Z"},
		},
		{
			name:      "clock set back",
			now:       time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
			existing:  []string{".corrupt-20240101T000000Z", ".corrupt-20240102T000000Z", ".corrupt-20240103T000000Z"},
			newCopy:   ".corrupt-20200101T000000Z",
			remaining: []string{".corrupt-20200101T000000Z", ".corrupt-20240102T000000Z", ".corrupt-20240103T000000Z"},
		},
		{
			name:      "same second",
			now:       quarantineTime,
			existing:  []string{".corrupt-20261122T115500Z", ".corrupt-20261122T115500Z.2", ".corrupt-20261122T115500Z.3"},
			newCopy:   ".corrupt-20261122T115500Z.4",
			remaining: []string{".corrupt-20261122T115500Z.2", ".corrupt-20261122T115500Z.3", ".corrupt-20261122T115500Z.4"},
		},
		{
			name:      "few enough",
			now:       quarantineTime,
			existing:  []string{".corrupt-20240101T000000Z"},
			newCopy:   ".corrupt-20261122T115500Z",
			remaining: []string{".corrupt-20240101T000000Z", ".corrupt-20261122T115500Z"},
		},
	}
	// Never deleted: not quarantine's names, or another database's.
	foreign := []string{"greyd.db.corrupt-manual", "greyd.db.corrupt-20200101T000000Z.x", "greyd.db.corrupt-20200101T000000Z.1",
		"other.db.corrupt-20200101T000000Z", "greyd.db.boot.corrupt-20200101T000000Z"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := dbPath(t)
			dir := filepath.Dir(path)
			for _, name := range foreign {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range tc.existing {
				if err := os.WriteFile(path+s, []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(path, []byte(recA+"garbage"+recB), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			d := openT(t, path, Options{Logger: logs.logger(), Now: func() time.Time { return tc.now }})
			d.Close()

			var got []string
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if s, ok := strings.CutPrefix(e.Name(), "greyd.db.corrupt-"); ok && !slices.Contains(foreign, e.Name()) {
					got = append(got, ".corrupt-"+s)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.remaining) {
				t.Errorf("quarantined copies left: %q; want %q", got, tc.remaining)
			}
			if data, err := os.ReadFile(path + tc.newCopy); err != nil || string(data) != recA+"garbage"+recB {
				t.Errorf("the new copy %s: %q, %v", tc.newCopy, data, err)
			}
			for _, name := range foreign {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					t.Errorf("%s: %v; want it left alone", name, err)
				}
			}
			log := logs.String()
			for _, s := range tc.existing {
				deleted := !slices.Contains(tc.remaining, s)
				if logged := strings.Contains(log, "path="+path+s+"\n"); logged != deleted {
					t.Errorf("%s: deleted %v, logged %v; log:\n%s", s, deleted, logged, log)
				}
			}
			if n := strings.Count(log, "deleted an old copy of a corrupt database"); n != len(tc.existing)+1-len(tc.remaining) {
				t.Errorf("%d deletions logged, want %d:\n%s", n, len(tc.existing)+1-len(tc.remaining), log)
			}
		})
	}
}
