package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Selective greylisting's settings (issue 21).

func TestSelectiveProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // with FILE for the file
	}{
		{"mode and greylist_at", "selective {\n  mode = \"sometimes\"\n  greylist_at = 5000\n}\n", []string{
			`FILE:2:10: Invalid value: mode must be "always" or "score", got "sometimes"`,
			`FILE:3:17: Value out of range: greylist_at must be between -1000 and 1000, got 5000`,
		}},
		{"weights", "signals {\n  rdns_missing = 1001\n  spf_pass = \"x\"\n  rdns_typo = 1\n}\n", []string{
			`FILE:2:18: Value out of range: signals.rdns_missing must be between -1000 and 1000, got 1001`,
			`FILE:3:15: Unsuitable value type: spf_pass: a number is required`,
			`FILE:4:3: Unsupported argument: An argument named "rdns_typo" is not expected here.`,
		}},
		{"dnsbl zone, weight, listed", "dnsbl \"zen\" {\n  weight = -1\n  listed = [\"127.0.0.2-127.0.0.1\", \"::1\"]\n  min_trust = 1\n}\n", []string{
			`FILE:1:7: Invalid zone: dnsbl "zen": the zone is a single label: write the list's full zone, e.g. zen.spamhaus.org`,
			`FILE:2:12: Value out of range: dnsbl weight must be between 0 and 1000 (a listing in a block list adds; put lists of good senders in a dnswl block), got -1`,
			`FILE:3:12: Invalid listed entry: "127.0.0.2-127.0.0.1": the range ends below its start; write low-high`,
			`FILE:3:12: Invalid listed entry: "::1" is not an address, a range low-high or a network`,
			`FILE:4:15: Unsupported argument: min_trust belongs to dnswl blocks; a dnsbl block says which answers count with listed`,
		}},
		{"dnsbl without weight", "dnsbl \"bl.example.net\" {\n}\n", []string{
			`FILE:1:1: Incomplete dnsbl block: a dnsbl block needs weight = N, the score a listing adds (0 or more, e.g. 3)`,
		}},
		{"dnswl weight and min_trust", "dnswl \"list.dnswl.org\" {\n  weight = 3\n  min_trust = 255\n  listed = [\"127.0.0.2\"]\n}\n", []string{
			`FILE:2:12: Value out of range: dnswl weight must be between -1000 and 0 (a listing in a white list lowers the score), got 3`,
			`FILE:3:15: Value out of range: min_trust 255 is out of range: 0 to 254 (the Y of the answer 127.0.X.Y; 255 is a refusal)`,
			`FILE:4:12: Unsupported argument: listed belongs to dnsbl blocks; a dnswl block counts 127.0.X.Y with Y >= min_trust`,
		}},
		{"a zone twice in one file", "dnsbl \"bl.example.net\" {\n  weight = 1\n}\ndnsbl \"BL.example.net.\" {\n  weight = 2\n}\n", []string{
			`FILE:4:7: Duplicate dnsbl block: dnsbl "BL.example.net." is already defined at FILE:1:7; a later file may override its settings`,
		}},
		{"policies", `recipient_policy "a" {
  recipients = ["@example.com", "postmaster@"]
  mode = "sometimes"
}
recipient_policy "b" {
  recipients  = ["@EXAMPLE.com"]
  mode        = "never"
  greylist_at = 2
  delay       = "1m"
}
recipient_policy "c" {
}
recipient_policy "a" {
  mode = "always"
}
`, []string{
			`FILE:3:10: Invalid value: mode must be "always", "score" or "never", got "sometimes"`,
			`FILE:6:17: Duplicate recipient entry: "@EXAMPLE.com" is already in recipient_policy "a" at FILE:2:16: the first matching recipient_policy wins, so this one would never apply to it`,
			`FILE:8:17: Unsupported argument: greylist_at applies to mode = "score" only; this policy's mode is "never"`,
			`FILE:9:17: Unsupported argument: delay means nothing with mode = "never", which never greylists`,
			`FILE:11:1: Incomplete recipient_policy block: recipient_policy "c" needs recipients = ["@example.com", "user@example.org"] (whitelist_recipients entry syntax)`,
			`FILE:11:1: Incomplete recipient_policy block: recipient_policy "c" needs mode = "always", "score" or "never"`,
			`FILE:13:18: Duplicate recipient_policy block: recipient_policy "a" is already defined at FILE:1:18; a later file may override its settings`,
		}},
		{"dns", "dns {\n  servers = [\"dns.example.net\", \"127.0.0.1:0\"]\n  budget = \"20s\"\n}\n", []string{
			`FILE:2:13: Invalid dns server: dns server "dns.example.net": want an IP address with an optional port, as "192.0.2.53", "192.0.2.53:5353" or "[2001:db8::53]:53"`,
			`FILE:2:13: Invalid dns server: dns server "127.0.0.1:0": port 0`,
			`FILE:3:12: Invalid duration: budget 20s is out of range: more than 0 and at most 10s (the client waits for it)`,
		}},
		{"budget without unit", "dns {\n  budget = \"800\"\n}\n", []string{
			`FILE:2:12: Invalid duration: budget = "800" has no unit; did you mean "800ms"? Units are ms, s, m, h, d and w.`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"a.hcl": tc.src})
			file := filepath.Join(dir, "a.hcl")
			_, ps := Load(file)
			var got []string
			for _, p := range ps {
				got = append(got, strings.ReplaceAll(p.Error(), file, "FILE"))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("source:\n%s\ngot problems:\n  %s\nwant:\n  %s", tc.src, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestSelectiveWarnings(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"selective {\n  shadow = true\n}\n", `FILE:2:12: Shadow mode without a score`},
		{"selective {\n  mode = \"score\"\n}\n", `FILE:2:10: Score without signals`},
		{"recipient_policy \"x\" {\n  recipients = [\"x@\"]\n  mode = \"score\"\n}\n", `FILE:1:1: Score without signals`},
	}
	for _, tc := range tests {
		dir := writeFiles(t, map[string]string{"a.hcl": tc.src})
		file := filepath.Join(dir, "a.hcl")
		cfg, ps := Load(file)
		if len(ps) > 0 {
			t.Errorf("%q: problems %v", tc.src, ps)
			continue
		}
		if len(cfg.Warnings) != 1 || !strings.HasPrefix(strings.ReplaceAll(cfg.Warnings[0].Error(), file, "FILE"), tc.want) {
			t.Errorf("%q: warnings %v, want one starting with %q", tc.src, cfg.Warnings, tc.want)
		}
	}
}

// Labeled blocks merge by label across files: a later file overrides the
// settings it gives, keeps the block's place, and adds new labels after.
func TestLayersLabeledBlocks(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"greyd.hcl": `dnsbl "zen.spamhaus.org" {
  weight = 3
}
recipient_policy "billing" {
  recipients = ["@billing.example.com"]
  mode       = "always"
  delay      = "1m"
}
recipient_policy "abuse" {
  recipients = ["abuse@"]
  mode       = "never"
}
`,
		"conf.d/50-local.hcl": `dnsbl "ZEN.spamhaus.org." {
  listed = ["127.0.0.2-127.0.0.3"]
}
dnsbl "bl.example.net" {
  weight = 1
}
recipient_policy "billing" {
  mode = "score"
}
recipient_policy "new" {
  recipients = ["new@"]
  mode       = "always"
}
`,
	})
	cfg := mustLoad(t, dir)
	wantBL := []DNSBL{
		{Zone: "zen.spamhaus.org", Weight: 3, Listed: []string{"127.0.0.2-127.0.0.3"}},
		{Zone: "bl.example.net", Weight: 1, Listed: []string{"127.0.0.2-127.0.0.255"}},
	}
	if !reflect.DeepEqual(cfg.DNSBLs, wantBL) {
		t.Errorf("DNSBLs = %+v\nwant %+v", cfg.DNSBLs, wantBL)
	}
	var names []string
	for _, p := range cfg.RecipientPolicies {
		names = append(names, p.Name+":"+p.Mode)
	}
	if want := []string{"billing:score", "abuse:never", "new:always"}; !reflect.DeepEqual(names, want) {
		t.Errorf("policies %q, want %q", names, want)
	}
	if d := cfg.RecipientPolicies[0].Delay; d == nil || *d != time.Minute {
		t.Errorf("billing's delay %v, want greyd.hcl's 1m", d)
	}
	if got := cfg.Origin("recipient_policy.billing.mode"); got != "conf.d/50-local.hcl:8" {
		t.Errorf("origin of billing's mode %q", got)
	}
	if got := cfg.Origin("dnsbl.zen.spamhaus.org.weight"); got != "greyd.hcl:2" {
		t.Errorf("origin of zen's weight %q", got)
	}
	if !cfg.Scoring() {
		t.Error("Scoring() = false with a score policy")
	}
}
