package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"greyd/internal/control"
	"greyd/internal/store/redis/redistest"
)

// TestAdminStatsStoreDown: with Redis gone, greyd stats says the entries
// could not be counted instead of showing an empty greylist.
func TestAdminStatsStoreDown(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	_, cfg, _ := redisAdminDaemon(t, dir, srv)
	dial(t, "unix", dir+"/greyd.sock").ask(rcpt("198.51.100.60", "x", "a@b.example", "c@example.org", time.Now().Unix())...)
	if text := cliOK(t, 0, "stats", "-config", cfg); !strings.Contains(text, "1 triplets (1 pending, 0 passed)") || !strings.Contains(text, "log                0 line(s) dropped") {
		t.Fatalf("stats with Redis up:\n%s", text)
	}
	srv.Kill()
	// The counts of the first call are reused for a few seconds.
	var s control.Stats
	redistest.WaitFor(t, 15*time.Second, "stats to count again", func() bool {
		s = control.Stats{}
		json.Unmarshal([]byte(cliOK(t, 0, "stats", "-config", cfg, "-json")), &s)
		return s.Entries.Error != "" || s.Entries.TripletsPending == 0
	})
	if s.Entries.Error == "" || s.Entries.TripletsPending != 0 {
		t.Errorf("stats with Redis down: %+v; want the counts by state marked failed", s.Entries)
	}
	if text := cliOK(t, 0, "stats", "-config", cfg); !strings.Contains(text, "by state: FAILED: counting the entries by state: ") {
		t.Errorf("stats text with Redis down:\n%s", text)
	}
}
