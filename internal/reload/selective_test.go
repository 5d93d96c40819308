package reload

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"greyd/internal/greylist"
)

// The snapshot compiles selective greylisting; dynamic_names is an input
// like the whitelists: an edit is a change, and a reload reads it.
func TestSelectiveSnapshot(t *testing.T) {
	dir := confDir(t)
	if l := Load(dir, Options{}); !l.OK() || l.Snapshot.Selective != nil {
		t.Fatalf("default configuration: problems %v, Selective %+v; want none and nil (Postgrey's behaviour)", l.Problems(), l.Snapshot.Selective)
	}
	write(t, filepath.Join(dir, "conf.d", "50-score.hcl"), `selective {
  mode        = "score"
  greylist_at = 4
}
signals {
  rdns_missing = 3
  rdns_dynamic = 2
}
dnsbl "bl.example.net" {
  weight = 3
}
recipient_policy "billing" {
  recipients = ["@billing.example.com"]
  mode       = "always"
  delay      = "1m"
}
`)
	names := filepath.Join(dir, "dynamic_names")
	write(t, names, "/^dyn-[0-9]+\\./\n")
	initial := Load(dir, Options{})
	if !initial.OK() {
		t.Fatalf("load: %v", initial.Problems())
	}
	s := initial.Snapshot.Selective
	if s == nil || s.Mode != greylist.ModeScore || s.GreylistAt != 4 || s.Signals == nil || len(s.Policies) != 1 {
		t.Fatalf("Selective %+v", s)
	}
	if p := s.Policies[0]; p.Name != "billing" || p.Mode != greylist.ModeAlways || p.Delay == nil || *p.Delay != time.Minute || !p.Recipients.Match("x@billing.example.com") {
		t.Errorf("policy %+v", p)
	}
	if got, want := s.Signals.String(), "rdns_missing=3 rdns_dynamic=2 dnsbl.bl.example.net=3 budget=800ms"; got != want {
		t.Errorf("signals %q, want %q", got, want)
	}
	if !s.Signals.Lookups() {
		t.Error("a dnsbl block and no lookups")
	}

	var logs bytes.Buffer
	var applied *Loaded
	rl := NewReloader(dir, Options{}, initial, slog.New(slog.NewTextHandler(&logs, nil)), func(l *Loaded) { applied = l })
	write(t, names, "/^dyn-[0-9]+\\./\n/^pool-/\n")
	if got := rl.Changed(); !reflect.DeepEqual(got, []string{names}) {
		t.Fatalf("Changed() = %q, want %q", got, []string{names})
	}
	if !rl.Reload("test") || applied == nil || applied.Snapshot.Selective == nil || applied.Snapshot.Selective.Signals == nil {
		t.Fatalf("reload after a dynamic_names edit: applied %+v\n%s", applied, logs.String())
	}
	// A bad line is a problem at its line, as in the whitelists: the
	// running configuration stays.
	applied = nil
	write(t, names, "/^dyn-[0-9]+\\./\n192.0.2.1\n")
	if rl.Reload("test") || applied != nil {
		t.Fatal("a reload with a bad dynamic_names line was applied")
	}
	if want := names + ":2: \\\"192.0.2.1\\\": an address entry"; !bytes.Contains(logs.Bytes(), []byte(want)) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}
