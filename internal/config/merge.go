package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// spots are where decoding failed in one file: a setting whose value holds
// one was not decoded (its error is reported) and must not override the
// value before it, or validate would complain about the zero value too.
type spots []hcl.Range

func errorSpots(diags hcl.Diagnostics) spots {
	var s spots
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Subject != nil {
			s = append(s, *d.Subject)
		}
	}
	return s
}

func (s spots) within(r hcl.Range) bool {
	for _, p := range s {
		if p.Filename == r.Filename && (r.ContainsOffset(p.Start.Byte) || p.Start.Byte == r.Start.Byte) {
			return true
		}
	}
	return false
}

// merge lays one file's settings over r: each setting the file gives
// replaces the value before it (lists included), the others stay. listen
// blocks accumulate, after dropping the earlier ones if the file says
// listen_reset = true.
func (r *rawConfig) merge(file rawConfig, failed spots) {
	if file.ListenReset && !failed.within(file.ListenResetRange) {
		r.Listen = nil
	}
	r.Listen = append(r.Listen, file.Listen...)
	mergeSettings(&r.Database, &file.Database, failed)
	if fr := file.Database.Redis; fr != nil {
		if r.Database.Redis == nil {
			r.Database.Redis = &rawRedis{DefRange: fr.DefRange, KeyPrefix: DefaultRedisKeyPrefix}
		}
		mergeSettings(r.Database.Redis, fr, failed)
	}
	mergeSettings(&r.Greylist, &file.Greylist, failed)
	mergeSettings(&r.AutoWhitelist, &file.AutoWhitelist, failed)
	mergeSettings(&r.Whitelist, &file.Whitelist, failed)
	mergeSettings(&r.Limits, &file.Limits, failed)
	mergeSettings(&r.Control, &file.Control, failed)
	if fm := file.Metrics; fm != nil {
		if r.Metrics == nil {
			r.Metrics = &rawMetrics{DefRange: fm.DefRange, Listen: DefaultMetricsListen}
		}
		mergeSettings(r.Metrics, fm, failed)
	}
	mergeSettings(&r.Log, &file.Log, failed)
	mergeSettings(&r.Selective, &file.Selective, failed)
	mergeSettings(&r.Signals, &file.Signals, failed)
	r.DNSBLs = mergeLists(r.DNSBLs, file.DNSBLs, failed)
	r.DNSWLs = mergeLists(r.DNSWLs, file.DNSWLs, failed)
	r.Policies = mergePolicies(r.Policies, file.Policies, failed)
	mergeSettings(&r.DNS, &file.DNS, failed)
	if ft := file.Trap; ft != nil {
		if r.Trap == nil {
			r.Trap = newRawTrap(ft.DefRange)
		}
		mergeSettings(r.Trap, ft, failed)
	}
	r.P0f = mergeP0f(r.P0f, file.P0f, failed)
	if ft := file.Tarpit; ft != nil {
		if r.Tarpit == nil {
			r.Tarpit = newRawTarpit(ft.DefRange)
		}
		mergeSettings(r.Tarpit, ft, failed)
	}
}

// complete fills in the defaults that depend on other settings, once every
// file is merged.
func (r *rawConfig) complete() {
	if r.Database.Redis != nil && !given(r.Limits.StoreTimeoutRange) {
		r.Limits.StoreTimeout = FormatDuration(DefaultRedisStoreTimeout)
	}
}

func given(r hcl.Range) bool { return r.Filename != "" }

// mergeSettings copies every setting src gives (see rawConfig) into dst,
// both pointers to the same raw block struct.
func mergeSettings(dst, src any, failed spots) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for _, f := range settingFields(s.Type()) {
		rng := s.Field(f.rng).Interface().(hcl.Range)
		if !given(rng) || failed.within(rng) {
			continue
		}
		d.Field(f.val).Set(s.Field(f.val))
		d.Field(f.rng).Set(s.Field(f.rng))
	}
}

type settingField struct {
	name     string // as in the file
	val, rng int    // field indexes of X and XRange
}

var rangeType = reflect.TypeFor[hcl.Range]()

// settingFields lists the settings of a raw block struct: the fields with
// an hcl attribute tag and their XRange siblings. A setting without its
// range is a programming error (it could never be overridden).
func settingFields(t reflect.Type) []settingField {
	var out []settingField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, kind, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if name == "" || kind != "optional" {
			continue
		}
		r, ok := t.FieldByName(f.Name + "Range")
		if !ok || r.Type != rangeType {
			panic(fmt.Sprintf("config: %s.%s has no %sRange field", t.Name(), f.Name, f.Name))
		}
		out = append(out, settingField{name: name, val: i, rng: r.Index[0]})
	}
	return out
}

// origins returns where each given value of the merged r came from, by
// setting name: "greylist.delay", "database.redis.url", "listen.0.inet".
func (r *rawConfig) origins() map[string]hcl.Range {
	m := map[string]hcl.Range{}
	add := func(prefix string, block any) {
		v := reflect.ValueOf(block).Elem()
		for _, f := range settingFields(v.Type()) {
			if rng := v.Field(f.rng).Interface().(hcl.Range); given(rng) {
				m[prefix+f.name] = rng
			}
		}
	}
	for i := range r.Listen {
		add(fmt.Sprintf("listen.%d.", i), &r.Listen[i])
	}
	add("database.", &r.Database)
	if r.Database.Redis != nil {
		add("database.redis.", r.Database.Redis)
	}
	add("greylist.", &r.Greylist)
	add("auto_whitelist.", &r.AutoWhitelist)
	add("whitelist.", &r.Whitelist)
	add("limits.", &r.Limits)
	add("control.", &r.Control)
	if r.Metrics != nil {
		add("metrics.", r.Metrics)
	}
	add("log.", &r.Log)
	add("selective.", &r.Selective)
	add("signals.", &r.Signals)
	for i := range r.DNSBLs {
		add("dnsbl."+zoneKey(r.DNSBLs[i].Label)+".", &r.DNSBLs[i])
	}
	for i := range r.DNSWLs {
		add("dnswl."+zoneKey(r.DNSWLs[i].Label)+".", &r.DNSWLs[i])
	}
	for i := range r.Policies {
		add("recipient_policy."+r.Policies[i].Label+".", &r.Policies[i])
	}
	add("dns.", &r.DNS)
	if r.Trap != nil {
		add("trap.", r.Trap)
	}
	r.P0f.origins(add)
	if r.Tarpit != nil {
		add("tarpit.", r.Tarpit)
	}
	return m
}

// Origin says where the value of a setting was given, as "file:line" with
// the file relative to the configuration directory
// ("conf.d/50-local.hcl:2"), or "" for a built-in default. Settings are
// named block.setting ("greylist.delay", "database.redis.url"); listen
// blocks by their index in Listen ("listen.0.inet").
func (c *Config) Origin(setting string) string {
	r, ok := c.origins[setting]
	if !ok {
		return ""
	}
	file := r.Filename
	if rel, err := filepath.Rel(c.Dir, file); err == nil && !strings.HasPrefix(rel, "..") {
		file = rel
	}
	return fmt.Sprintf("%s:%d", file, r.Start.Line)
}
