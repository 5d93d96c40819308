package config

import (
	"strings"
	"testing"
)

// TestPoolDomainPublicSuffix: a public suffix in pool_domains would make
// unrelated registrants one sender; it is refused at its line.
func TestPoolDomainPublicSuffix(t *testing.T) {
	for _, d := range []string{"co.uk", "compute-1.amazonaws.com", "github.io"} {
		dir := writeFiles(t, map[string]string{"greyd.hcl": "greylist {\n  pool_domains = [\"" + d + "\"]\n}\n"})
		_, ps := Load(dir)
		if len(ps) == 0 || !strings.Contains(ps.Error(), "greyd.hcl:2:") || !strings.Contains(ps.Error(), "public suffix") {
			t.Errorf("pool_domains = [%q]: problems %v, want a public-suffix error at greyd.hcl:2", d, ps)
		}
	}
	dir := writeFiles(t, map[string]string{"greyd.hcl": "greylist {\n  pool_domains = [\"google.com\"]\n  dynamic_domains = [\"dyndns.org\"]\n}\n"})
	if _, ps := Load(dir); len(ps) > 0 {
		t.Errorf("google.com / dyndns.org: %v", ps)
	}
}
