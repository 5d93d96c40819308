package identity

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestReplayTrace checks test/replay/trace.tsv against the rules, so that
// the end-to-end replay measures what its kinds say: every pooled attempt
// gets one organisation key per message and comes from another network
// than the attempts before it; bots and dynamic clients are never
// aggregated; single MTAs retry from their own address.
func TestReplayTrace(t *testing.T) {
	f, err := os.Open("../../test/replay/trace.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	type attempt struct {
		line int
		at   int
		addr netip.Addr
		name string
		kind string
	}
	msgs := map[string][]attempt{}
	var order []string
	m := New(Config{}) // the trace must not depend on configured lists
	last := -1
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 6 {
			t.Fatalf("line %d: %d fields, want 6: %q", n, len(fields), sc.Text())
		}
		at, err := strconv.Atoi(fields[0])
		if err != nil || at < last {
			t.Fatalf("line %d: offset %q not a number in ascending order", n, fields[0])
		}
		last = at
		addr, err := netip.ParseAddr(fields[1])
		if err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		switch fields[5] {
		case "pooled", "bot", "dynamic", "single":
		default:
			t.Fatalf("line %d: unknown kind %q", n, fields[5])
		}
		key := fields[3] + "\t" + fields[4]
		if _, seen := msgs[key]; !seen {
			order = append(order, key)
		}
		msgs[key] = append(msgs[key], attempt{n, at, addr, fields[2], fields[5]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	network := func(a netip.Addr) netip.Prefix {
		bits := 64
		if a.Is4() {
			bits = 24
		}
		p, _ := a.Prefix(bits)
		return p
	}
	count := map[string]int{}
	orgs := map[string]bool{}
	for _, key := range order {
		as := msgs[key]
		kind := as[0].kind
		count[kind]++
		org0, _, _ := m.Of(as[0].addr, as[0].name)
		for i, a := range as {
			org, rule, ok := m.Of(a.addr, a.name)
			if a.kind != kind {
				t.Errorf("line %d: kind %s in a %s message", a.line, a.kind, kind)
			}
			switch kind {
			case "pooled":
				if !ok || org != org0 {
					t.Errorf("line %d: pooled %s %s keyed (%q, %v), want %q", a.line, a.addr, a.name, org, rule, org0)
				}
			case "bot", "dynamic":
				if ok {
					t.Errorf("line %d: %s %s %s aggregated under %q (%v)", a.line, kind, a.addr, a.name, org, rule)
				}
			}
			if i == 0 {
				continue
			}
			gap := a.at - as[i-1].at
			switch kind {
			case "pooled", "dynamic":
				for _, b := range as[:i] {
					if network(a.addr) == network(b.addr) {
						t.Errorf("line %d: %s retry from %s, the network of line %d", a.line, kind, a.addr, b.line)
					}
				}
				if gap < 360 || gap > 1800 {
					t.Errorf("line %d: %s retry after %ds, want 6 to 30 minutes", a.line, kind, gap)
				}
			case "bot":
				if a.addr != as[0].addr || gap >= 60 {
					t.Errorf("line %d: bot retry from %s after %ds, want the same address within seconds", a.line, a.addr, gap)
				}
			case "single":
				if a.addr != as[0].addr || gap < 300 {
					t.Errorf("line %d: single retry from %s after %ds, want the same address after the delay", a.line, a.addr, gap)
				}
			}
		}
		switch kind {
		case "pooled":
			orgs[org0] = true
			if len(as) < 2 {
				t.Errorf("line %d: pooled message without retry", as[0].line)
			}
		case "dynamic", "single":
			if len(as) < 2 {
				t.Errorf("line %d: %s message without retry", as[0].line, kind)
			}
		}
	}
	for kind, min := range map[string]int{"pooled": 40, "bot": 30, "dynamic": 10, "single": 10} {
		if count[kind] < min {
			t.Errorf("%d %s messages, want at least %d", count[kind], kind, min)
		}
	}
	if len(orgs) < 10 {
		t.Errorf("pooled messages from %d organisations, want at least 10", len(orgs))
	}
}
