package main

import (
	"bufio"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// replayLine is one request of test/replay/trace.tsv.
type replayLine struct {
	at                             int64
	addr, name, sender, rcpt, kind string
}

func readTrace(t *testing.T, path string) []replayLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []replayLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		s := sc.Text()
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		p := strings.Split(s, "\t")
		if len(p) != 6 {
			t.Fatalf("%s:%d: %d fields, want 6", path, n, len(p))
		}
		at, err := strconv.ParseInt(p[0], 10, 64)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		lines = append(lines, replayLine{at, p[1], p[2], p[3], p[4], p[5]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at < lines[j].at })
	return lines
}

// replayStats counts, per kind of sender, the messages of a replay: a
// message is one sender/recipient pair; it is delivered at its first
// answer that is not a deferral, and its later attempts are not sent
// (the sender has stopped retrying).
type replayStats struct {
	messages, delivered, deferredTwice map[string]int
}

// replay runs the trace through a fresh greyd with the given extra
// configuration.
func replay(t *testing.T, trace []replayLine, extra string) replayStats {
	t.Helper()
	dir := t.TempDir()
	sock, _ := testConfig(t, dir, extra)
	// The shipped whitelist lists many of the trace's providers: without
	// it, every pooled message depends on its key alone.
	noWhitelists(t, dir)
	startDaemonDir(t, dir)
	c := dial(t, "unix", sock)
	base := time.Now().Unix()
	st := replayStats{map[string]int{}, map[string]int{}, map[string]int{}}
	deferrals := map[string]int{}
	done := map[string]bool{}
	for _, l := range trace {
		msg := l.sender + "\x00" + l.rcpt
		if done[msg] {
			continue
		}
		if _, seen := deferrals[msg]; !seen {
			st.messages[l.kind]++
			deferrals[msg] = 0
		}
		got := c.ask(rcpt(l.addr, l.name, l.sender, l.rcpt, base+l.at)...)
		if strings.HasPrefix(got, "DEFER_IF_PERMIT") {
			if deferrals[msg]++; deferrals[msg] == 2 {
				st.deferredTwice[l.kind]++
			}
			continue
		}
		done[msg] = true
		st.delivered[l.kind]++
	}
	return st
}

// TestReplayPooledSenders replays a trace of pooled providers retrying
// from other networks, bots, dynamic clients and single-host MTAs under
// lookup_by "subnet" and "auto" (issue 12): under auto no pooled message
// is deferred twice, and exactly as many bots and dynamic clients get
// through as under subnet.
func TestReplayPooledSenders(t *testing.T) {
	trace := readTrace(t, "../../test/replay/trace.tsv")
	// No auto-whitelist: it would let a pooled host through on its own
	// after a few messages and hide what the key does.
	subnet := replay(t, trace, "greylist {\n  lookup_by = \"subnet\"\n}\nauto_whitelist {\n  clients = 0\n}\n")
	auto := replay(t, trace, "greylist {\n  lookup_by = \"auto\"\n}\nauto_whitelist {\n  clients = 0\n}\n")
	for _, kind := range []string{"pooled", "single", "bot", "dynamic"} {
		t.Logf("%-8s messages %3d | subnet: delivered %3d, deferred more than once %3d | auto: delivered %3d, deferred more than once %3d",
			kind, subnet.messages[kind], subnet.delivered[kind], subnet.deferredTwice[kind], auto.delivered[kind], auto.deferredTwice[kind])
	}
	if subnet.messages["pooled"] == 0 || subnet.messages["bot"] == 0 || subnet.messages["dynamic"] == 0 {
		t.Fatalf("the trace lacks a kind: %v", subnet.messages)
	}
	if n := auto.deferredTwice["pooled"]; n != 0 {
		t.Errorf("lookup_by auto: %d pooled message(s) deferred more than once, want 0", n)
	}
	if subnet.deferredTwice["pooled"] == 0 {
		t.Errorf("lookup_by subnet deferred no pooled message twice: the trace does not exercise pools")
	}
	if auto.delivered["pooled"] != subnet.messages["pooled"] {
		t.Errorf("lookup_by auto: %d of %d pooled messages delivered", auto.delivered["pooled"], subnet.messages["pooled"])
	}
	for _, kind := range []string{"bot", "dynamic"} {
		if auto.delivered[kind] != subnet.delivered[kind] {
			t.Errorf("%s: %d let through under auto, %d under subnet: want the same", kind, auto.delivered[kind], subnet.delivered[kind])
		}
	}
	if auto.delivered["single"] != subnet.delivered["single"] {
		t.Errorf("single-host MTAs: %d delivered under auto, %d under subnet", auto.delivered["single"], subnet.delivered["single"])
	}
}
