package redis

import (
	"context"
	_ "embed"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"greyd/internal/store"
)

// store.Admin on Redis. None of it may hold Redis up for the steps of
// the other hosts, which share its one thread:
//
//   - Scan walks the keys with SCAN MATCH {prefix}t:* (then c:*, x:*, p:*), COUNT
//     1000, and reads each batch's values and deadlines in one pipeline
//     (GET and PTTL per key); never KEYS.
//   - Delete and Import run admin.lua over batches of a few hundred keys,
//     each about a millisecond in Redis; an import merges each entry with
//     the stored one atomically, by store.Merge.
//   - Between two batches, each of these waits as long as the last one
//     took (pace): a listing of a million entries takes twice as long,
//     and the requests of every host sharing the Redis go on meanwhile.
//   - Counts reads the count buckets that step.lua and admin.lua keep (a
//     hash "{prefix}n": how many keys of each kind expire in each hour):
//     one HGETALL of at most a field per hour of max_age, whatever the
//     number of entries. An entry is counted from its write until the end
//     of the hour in which it expires, so "expired but not yet removed"
//     means up to an hour here. Keys that something other than greyd
//     removes (DEL by hand, eviction under maxmemory) stay counted until
//     their hour is over; keys written by hand, or by a greyd before the
//     buckets existed, are not counted until the hour of the deadline
//     they had then is over (a rewrite moves them out of a bucket that
//     never counted them).
//   - The runtime whitelist is the hash "{prefix}wl", field "c:<value>"
//     or "r:<value>", value "<added>,<expires>,<comment>"; every change
//     increments "{prefix}wlver", which WhitelistVersion reads, so the
//     other hosts' engines notice it at their next poll.
//
// Admin calls do not count towards the circuit breaker (a slow listing
// is not an outage), but fail at once while it is open.

//go:embed admin.lua
var adminLua string

var adminScript = rueidis.NewLuaScript(adminLua)

var _ store.Admin = (*Store)(nil)

const (
	// scanCount is SCAN's COUNT: about that many keys are read per round
	// trip; each SCAN call costs Redis about a millisecond.
	scanCount = 1000
	// importBatch and deleteBatch bound the keys of one admin.lua call,
	// and so how long it holds Redis: about a millisecond (measured:
	// 6 µs an imported entry, 3 µs a deleted key).
	importBatch = 128
	deleteBatch = 300
	// adminTimeout bounds each round trip of an admin call (a batch, not
	// a whole listing): long enough for a busy Redis, short enough that a
	// frozen one does not hang the CLI.
	adminTimeout = 10 * time.Second

	hourMs   = 3600 * 1000
	wlNS     = "wl"
	wlVerNS  = "wlver"
	fieldCli = "c:"
	fieldRcp = "r:"
)

// adminClient returns the client for an admin call, or why there is none.
func (s *Store) adminClient() (rueidis.Client, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	if o := s.down.Load(); o != nil {
		return nil, o.err
	}
	return s.client.Load().c, nil
}

func (s *Store) tag() string { return "{" + s.opts.KeyPrefix + "}" }

// adminErr wraps an error of an admin operation, naming a schema
// conflict found by admin.lua as step.go does.
func adminErr(op string, err error) error {
	if re, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(re.Error(), "GREYDSCHEMA ") {
		return fmt.Errorf("%w: %s", ErrSchema, strings.TrimPrefix(re.Error(), "GREYDSCHEMA "))
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// namespace is the key prefix and the admin.lua letter of kind.
func (s *Store) namespace(kind store.Kind) (prefix, letter string, err error) {
	switch kind {
	case store.KindTriplet:
		return s.tripletNS, "t", nil
	case store.KindClient:
		return s.clientNS, "c", nil
	case store.KindTrap:
		return s.trapNS, "x", nil
	case store.KindTarpit:
		return s.tarpitNS, "p", nil
	}
	return "", "", fmt.Errorf("unknown kind %q", kind)
}

// Scan implements store.Admin. SCAN may return a key more than once
// (while Redis resizes its table), so the keys seen are remembered, as
// 64-bit hashes: 8 bytes and some per entry listed (about 10 MB for a
// million).
func (s *Store) Scan(ctx context.Context, kinds []store.Kind, fn func(store.Entry) bool) error {
	if len(kinds) == 0 {
		kinds = store.Kinds
	}
	var nss []string
	for _, k := range kinds {
		ns, _, err := s.namespace(k)
		if err != nil {
			return fmt.Errorf("redis: scan: %w", err)
		}
		nss = append(nss, ns)
	}
	c, err := s.adminClient()
	if err != nil {
		return err
	}
	sc := scanner{s: s, c: c, seed: maphash.MakeSeed(), seen: map[uint64]struct{}{}}
	var busy time.Duration // the last batch's round trips
	for i, ns := range nss {
		kind := kinds[i]
		pattern := globEscape(ns) + "*"
		var cursor uint64
		for {
			if err := pace(ctx, busy); err != nil {
				return fmt.Errorf("redis: scan: %w", err)
			}
			start := time.Now()
			entries, next, err := sc.batch(ctx, kind, ns, pattern, cursor)
			if err != nil {
				return err
			}
			busy = time.Since(start)
			// fn runs without a deadline: a slow reader (a CLI piped
			// into less) holds nothing in Redis.
			for _, e := range entries {
				if !fn(e) {
					return nil
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return nil
}

type scanner struct {
	s    *Store
	c    rueidis.Client
	seed maphash.Seed
	seen map[uint64]struct{}
	cmds rueidis.Commands
}

// batch runs one SCAN call and reads the values and deadlines of the
// keys it returned, in one pipeline with Redis's clock (TIME): a
// deadline is Redis's, whatever this host's clock says.
func (sc *scanner) batch(ctx context.Context, kind store.Kind, ns, pattern string, cursor uint64) ([]store.Entry, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	// A connection of its own for the batch: the steps, pipelined on the
	// shared ones, never wait behind a few thousand replies.
	c, release := sc.c.Dedicate()
	defer release()
	// SetSlot: on a Cluster, the node holding the site's slot.
	se, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(pattern).Count(scanCount).Build().SetSlot(sc.s.schemaKey)).AsScanEntry()
	if err != nil {
		return nil, 0, adminErr("scan", err)
	}
	keys := se.Elements[:0]
	for _, k := range se.Elements {
		h := maphash.String(sc.seed, k)
		if _, dup := sc.seen[h]; dup {
			continue
		}
		sc.seen[h] = struct{}{}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, se.Cursor, nil
	}
	cmds := append(sc.cmds[:0], c.B().Time().Build().SetSlot(sc.s.schemaKey))
	for _, k := range keys {
		cmds = append(cmds, c.B().Get().Key(k).Build(), c.B().Pttl().Key(k).Build())
	}
	res := c.DoMulti(ctx, cmds...)
	sc.cmds = cmds[:0]
	now, err := redisTime(res[0])
	if err != nil {
		return nil, 0, adminErr("scan", err)
	}
	out := make([]store.Entry, 0, len(keys))
	for i, k := range keys {
		v, err := res[1+2*i].ToString()
		if rueidis.IsRedisNil(err) {
			continue // expired or deleted since SCAN saw it
		}
		if err != nil {
			return nil, 0, adminErr("scan", err)
		}
		ttl, err := res[2+2*i].AsInt64()
		if err != nil {
			return nil, 0, adminErr("scan", err)
		}
		a, b, ok := store.ParseValue(v) // as step.lua reads it
		if !ok || ttl == -2 {
			continue // not greyd's value (Step reads it as absent too), or gone
		}
		e := store.StoredEntry(kind, strings.TrimPrefix(k, ns), a, b, 0)
		if ttl >= 0 {
			// Rounded up: an exported entry never expires before the
			// original.
			e.Expires = (now + ttl + 999) / 1000
		}
		out = append(out, e)
	}
	return out, se.Cursor, nil
}

// redisTime is TIME's answer in Unix milliseconds.
func redisTime(r rueidis.RedisResult) (int64, error) {
	t, err := r.AsStrSlice()
	if err != nil {
		return 0, err
	}
	if len(t) != 2 {
		return 0, fmt.Errorf("TIME returned %d values", len(t))
	}
	sec, err1 := strconv.ParseInt(t[0], 10, 64)
	usec, err2 := strconv.ParseInt(t[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("TIME returned %q", t)
	}
	return sec*1000 + usec/1000, nil
}

// globEscape quotes the glob characters of SCAN's MATCH in a literal
// prefix: a key prefix may contain them.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Delete implements store.Admin: UNLINK in batches, each also taking the
// keys out of their count buckets.
func (s *Store) Delete(ctx context.Context, kind store.Kind, keys []string) (int, error) {
	ns, letter, err := s.namespace(kind)
	if err != nil {
		return 0, fmt.Errorf("redis: delete: %w", err)
	}
	c, err := s.adminClient()
	if err != nil {
		return 0, err
	}
	deleted := 0
	var busy time.Duration
	for len(keys) > 0 {
		if err := pace(ctx, busy); err != nil {
			return deleted, fmt.Errorf("redis: delete: %w", err)
		}
		batch := keys[:min(len(keys), deleteBatch)]
		keys = keys[len(batch):]
		rkeys := make([]string, 0, 2+len(batch))
		rkeys = append(rkeys, s.schemaKey, s.countsKey)
		for _, k := range batch {
			rkeys = append(rkeys, ns+k)
		}
		start := time.Now()
		n, err := s.runAdmin(ctx, c, rkeys, []string{"delete", letter}).AsInt64()
		if err != nil {
			return deleted, adminErr("delete", err)
		}
		deleted += int(n)
		busy = time.Since(start)
	}
	return deleted, nil
}

// pace waits busy, what the last batch of a listing, import or delete
// took, before the next: a long one keeps Redis (and this host) busy
// about half the time, and the steps of every host are served in between
// at close to their usual latency (BENCHMARKS.md: without it, a listing
// or an import slowed concurrent steps five-fold). It fails only when ctx
// ends.
func pace(ctx context.Context, busy time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if busy <= 0 {
		return nil
	}
	t := time.NewTimer(busy)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *Store) runAdmin(ctx context.Context, c rueidis.Client, keys, args []string) rueidis.RedisResult {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return adminScript.Exec(ctx, c, keys, args)
}

// Import implements store.Admin: admin.lua merges each entry with the
// stored one by store.Merge, atomically per batch, and sets the merged
// deadline to the millisecond (PEXPIREAT). Entries past their deadline by
// Redis's clock are skipped. Two entries of one key in one import merge
// with each other, as on buntdb: the later sees the earlier's write.
// Numbers are Lua's doubles there: exact up to store.MaxValue, and
// entries with other numbers are refused before anything is written.
func (s *Store) Import(ctx context.Context, entries []store.Entry, delay int64) (imported, merged int, err error) {
	for _, e := range entries {
		if _, _, err := s.namespace(e.Kind); err != nil {
			return 0, 0, fmt.Errorf("redis: import %q: %w", e.Key, err)
		}
		if err := store.CheckEntry(e); err != nil {
			return 0, 0, fmt.Errorf("redis: import %q: %w", e.Key, err)
		}
	}
	c, err := s.adminClient()
	if err != nil {
		return 0, 0, err
	}
	d := strconv.FormatInt(delay, 10)
	var busy time.Duration
	for len(entries) > 0 {
		if err := pace(ctx, busy); err != nil {
			return imported, merged, fmt.Errorf("redis: import: %w", err)
		}
		batch := entries[:min(len(entries), importBatch)]
		entries = entries[len(batch):]
		keys := make([]string, 0, 2+len(batch))
		keys = append(keys, s.schemaKey, s.countsKey)
		args := make([]string, 0, 2+4*len(batch))
		args = append(args, "import", d)
		for _, e := range batch {
			ns, letter, _ := s.namespace(e.Kind)
			keys = append(keys, ns+e.Key)
			a, b := e.Stored()
			args = append(args, letter, strconv.FormatInt(a, 10), strconv.FormatInt(b, 10), strconv.FormatInt(e.Expires, 10))
		}
		start := time.Now()
		v, err := s.runAdmin(ctx, c, keys, args).AsIntSlice()
		if err == nil && len(v) != 2 {
			err = fmt.Errorf("import script returned %d values", len(v))
		}
		if err != nil {
			return imported, merged, adminErr("import", err)
		}
		imported += int(v[0])
		merged += int(v[1])
		busy = time.Since(start)
	}
	return imported, merged, nil
}

// Counts implements store.Admin from the count buckets (see the top of
// this file): one round trip, within the store's deadline. While Redis
// cannot be reached it returns the last numbers it got: a gauge that
// drops to 0 with every outage would look like a flushed greylist.
func (s *Store) Counts() (triplets, clients int) {
	last := func() (int, int) {
		if p := s.counts.Load(); p != nil {
			return p[0], p[1]
		}
		return 0, 0
	}
	c, err := s.adminClient()
	if err != nil {
		return last()
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.deadline())
	defer cancel()
	res := c.DoMulti(ctx,
		c.B().Time().Build().SetSlot(s.countsKey),
		c.B().Hgetall().Key(s.countsKey).Build())
	now, err := redisTime(res[0])
	if err != nil {
		return last()
	}
	m, err := res[1].AsStrMap()
	if err != nil {
		return last()
	}
	cur := now / hourMs
	var n [2]int
	for f, v := range m {
		if len(f) < 3 || f[1] != ':' {
			continue
		}
		if h := f[2:]; h != "-" {
			if hour, err := strconv.ParseInt(h, 10, 64); err != nil || hour < cur {
				continue // past: those keys are gone
			}
		}
		cnt, err := strconv.Atoi(v)
		if err != nil {
			continue
		}
		switch f[0] {
		case 't':
			n[0] += cnt
		case 'c':
			n[1] += cnt
		}
	}
	// Below zero only if keys counted by nothing were deleted through
	// greyd (written by hand, or before the buckets existed).
	n[0], n[1] = max(n[0], 0), max(n[1], 0)
	s.counts.Store(&n)
	return n[0], n[1]
}

// The runtime whitelist.

func wlField(kind store.WhitelistKind, value string) (string, error) {
	switch kind {
	case store.WhitelistClient:
		return fieldCli + value, nil
	case store.WhitelistRecipient:
		return fieldRcp + value, nil
	}
	return "", fmt.Errorf("redis: unknown whitelist %q", kind)
}

// encodeWhitelist is a field's value: "<added>,<expires>,<comment>", the
// comment last so that it may hold commas.
func encodeWhitelist(e store.WhitelistEntry) string {
	return strconv.FormatInt(e.Added, 10) + "," + strconv.FormatInt(e.Expires, 10) + "," + e.Comment
}

func decodeWhitelist(field, v string) (store.WhitelistEntry, bool) {
	var kind store.WhitelistKind
	switch {
	case strings.HasPrefix(field, fieldCli):
		kind = store.WhitelistClient
	case strings.HasPrefix(field, fieldRcp):
		kind = store.WhitelistRecipient
	default:
		return store.WhitelistEntry{}, false
	}
	added, rest, ok1 := strings.Cut(v, ",")
	expires, comment, ok2 := strings.Cut(rest, ",")
	a, err1 := strconv.ParseInt(added, 10, 64)
	x, err2 := strconv.ParseInt(expires, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || len(field) == 2 {
		return store.WhitelistEntry{}, false
	}
	return store.WhitelistEntry{Kind: kind, Value: field[2:], Comment: comment, Added: a, Expires: x}, true
}

// Whitelist implements store.Admin. Expired entries are left out and
// removed on the way, each only if it was not replaced meanwhile.
func (s *Store) Whitelist(ctx context.Context) ([]store.WhitelistEntry, error) {
	c, err := s.adminClient()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	key := s.tag() + wlNS
	m, err := c.Do(ctx, c.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return nil, adminErr("whitelist", err)
	}
	now := time.Now().Unix()
	var out []store.WhitelistEntry
	expired := []string{"wlexpire"}
	for f, v := range m {
		e, ok := decodeWhitelist(f, v)
		switch {
		case !ok:
			s.log.Warn("ignoring a malformed runtime whitelist entry in redis", "key", key, "field", f)
		case !e.Live(now):
			expired = append(expired, f, v)
		default:
			out = append(out, e)
		}
	}
	if len(expired) > 1 {
		// A failure is retried at the next read.
		_ = adminScript.Exec(ctx, c, []string{key}, expired).Error()
	}
	return out, nil
}

// AddWhitelist implements store.Admin.
func (s *Store) AddWhitelist(ctx context.Context, e store.WhitelistEntry) (bool, error) {
	field, err := wlField(e.Kind, e.Value)
	if err != nil {
		return false, err
	}
	if e.Value == "" || strings.ContainsAny(e.Value, "\n\r") {
		return false, fmt.Errorf("redis: whitelist entry %q: empty or several lines", e.Value)
	}
	c, err := s.adminClient()
	if err != nil {
		return false, err
	}
	tag := s.tag()
	old, err := s.runAdmin(ctx, c, []string{tag + wlNS, tag + wlVerNS}, []string{"wladd", field, encodeWhitelist(e)}).ToString()
	switch {
	case rueidis.IsRedisNil(err):
		return false, nil
	case err != nil:
		return false, adminErr("whitelist add", err)
	}
	oe, ok := decodeWhitelist(field, old)
	return ok && oe.Live(time.Now().Unix()), nil
}

// RemoveWhitelist implements store.Admin.
func (s *Store) RemoveWhitelist(ctx context.Context, kind store.WhitelistKind, value string) (bool, error) {
	field, err := wlField(kind, value)
	if err != nil {
		return false, err
	}
	c, err := s.adminClient()
	if err != nil {
		return false, err
	}
	tag := s.tag()
	old, err := s.runAdmin(ctx, c, []string{tag + wlNS, tag + wlVerNS}, []string{"wlremove", field}).ToString()
	switch {
	case rueidis.IsRedisNil(err):
		return false, nil
	case err != nil:
		return false, adminErr("whitelist remove", err)
	}
	oe, ok := decodeWhitelist(field, old)
	return ok && oe.Live(time.Now().Unix()), nil
}

// WhitelistVersion implements store.Admin: "{prefix}wlver", which every
// change on any host increments; 0 before the first.
func (s *Store) WhitelistVersion(ctx context.Context) (int64, error) {
	c, err := s.adminClient()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.deadline())
	defer cancel()
	v, err := c.Do(ctx, c.B().Get().Key(s.tag()+wlVerNS).Build()).AsInt64()
	switch {
	case rueidis.IsRedisNil(err):
		return 0, nil
	case err != nil:
		return 0, adminErr("whitelist version", err)
	}
	return v, nil
}
