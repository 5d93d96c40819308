package postgrey

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"greyd/internal/greylist"
	"greyd/internal/store"
)

// Stats count what an import did with the records it read. Every record
// read ends up in exactly one of Imported, Merged, Expired, Skipped and
// Unparseable.
type Stats struct {
	Read, ReadTriplets, ReadClients int
	Imported                        int // new entries
	Merged                          int // combined with another record or an entry greyd had
	Expired                         int // past max_age, or pending past retry_window
	Skipped                         int // cannot be re-keyed; see SkipReasons
	Unparseable                     int // malformed lines, keys or values
	Privacy                         int // --privacy keys (also counted in Skipped)
	SkipReasons                     map[string]int
}

// Skip reasons.
const (
	SkipMapped  = "IPv4-mapped clients (::ffff:), which Postgrey stored as the one network 0:0:0:0:0:0:0:0"
	SkipNarrow  = "keys of a wider network than greyd's keys (lookup_by/ipv4_prefix/ipv6_prefix): the client host is unknown"
	SkipPrivacy = "hashed keys of Postgrey's --privacy"
	SkipNoAWL   = "auto-whitelist entries while greyd's auto_whitelist is disabled"
)

// Importer turns dump records into greyd entries: re-keyed with the
// snapshot's key functions (so prefixes, lookup_by and privacy are
// exactly the daemon's), merged, and without what has expired at Now.
type Importer struct {
	snap     *greylist.Snapshot
	src      Source
	now      int64
	Triplets map[string]store.Triplet
	Clients  map[string]store.Client
	Stats    Stats
	Problems []Problem
}

// NewImporter returns an importer into snap's keys of a database written
// by Postgrey run as src, with expiry judged at now (Unix seconds).
func NewImporter(snap *greylist.Snapshot, src Source, now int64) *Importer {
	if src.IPv4Prefix == 0 {
		src.IPv4Prefix = DefaultSource.IPv4Prefix
	}
	if src.IPv6Prefix == 0 {
		src.IPv6Prefix = DefaultSource.IPv6Prefix
	}
	if src.Delay == 0 {
		src.Delay = DefaultSource.Delay
	}
	return &Importer{
		snap: snap, src: src, now: now,
		Triplets: map[string]store.Triplet{},
		Clients:  map[string]store.Client{},
		Stats:    Stats{SkipReasons: map[string]int{}},
	}
}

// ReadAll adds every record of d. Problems of the dump itself count as
// unparseable records.
func (im *Importer) ReadAll(d *DumpReader) error {
	for {
		r, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		im.Add(r)
	}
	for _, p := range d.Problems() {
		im.Problems = append(im.Problems, p)
		if p.Lost {
			im.Stats.Read++
			im.Stats.Unparseable++
		}
	}
	sort.SliceStable(im.Problems, func(i, j int) bool { return im.Problems[i].Line < im.Problems[j].Line })
	return nil
}

func (im *Importer) skip(reason string) {
	im.Stats.Skipped++
	im.Stats.SkipReasons[reason]++
}

func (im *Importer) bad(r Record, err error) {
	im.Stats.Unparseable++
	im.Problems = append(im.Problems, Problem{Line: r.Line, Msg: err.Error()})
}

// Add imports one record: a triplet when its key has a '/', else an
// auto-whitelist entry.
func (im *Importer) Add(r Record) {
	im.Stats.Read++
	if IsPrivacyKey(r.Key) {
		im.Stats.Privacy++
		im.skip(SkipPrivacy)
		return
	}
	if strings.IndexByte(r.Key, '/') < 0 {
		im.Stats.ReadClients++
		im.addClient(r)
		return
	}
	im.Stats.ReadTriplets++
	k, err := ParseTripletKey(r.Key, im.src)
	if err != nil {
		im.bad(r, err)
		return
	}
	first, last, err := ParseValue(r.Value)
	if err != nil {
		im.bad(r, fmt.Errorf("key %q: %w", r.Key, err))
		return
	}
	if k.Mapped {
		im.skip(SkipMapped)
		return
	}
	s := im.snap.Settings
	delay, retry, maxAge := secs(s.Delay), secs(s.RetryWindow), secs(s.MaxAge)
	t := store.Triplet{First: first, Last: last}
	if last-first >= im.src.Delay {
		// Passed for Postgrey: keep it passed for greyd's delay too.
		if t.Last-t.First < delay {
			t.First = t.Last - delay
		}
	} else if t.Last-t.First >= delay {
		// Pending for Postgrey: a shorter greyd delay must not pass it
		// without a retry. Greyd judges a pending entry by First alone.
		t.Last = t.First + delay - 1
	}
	if TripletExpired(t, im.now, delay, retry, maxAge) {
		im.Stats.Expired++
		return
	}
	addr := k.Client.Addr()
	want := addr.BitLen()
	if !s.LookupByHost {
		want = s.IPv6Prefix
		if addr.Is4() {
			want = s.IPv4Prefix
		}
	}
	if k.Client.Bits() < want {
		im.skip(SkipNarrow)
		return
	}
	key := im.snap.TripletKey(addr, k.Sender, k.Recipient)
	if old, ok := im.Triplets[key]; ok {
		im.Stats.Merged++
		t = MergeTriplet(old, t, delay)
	} else {
		im.Stats.Imported++
	}
	im.Triplets[key] = t
}

func (im *Importer) addClient(r Record) {
	addr, err := ParseClientKey(r.Key)
	if err != nil {
		im.bad(r, err)
		return
	}
	count, last, err := ParseValue(r.Value)
	if err != nil {
		im.bad(r, fmt.Errorf("key %q: %w", r.Key, err))
		return
	}
	if im.snap.AutoWhitelistClients == 0 {
		im.skip(SkipNoAWL)
		return
	}
	c := store.Client{Count: count, Last: last}
	if ClientExpired(c, im.now, secs(im.snap.MaxAge)) {
		im.Stats.Expired++
		return
	}
	key := im.snap.ClientKey(addr)
	if old, ok := im.Clients[key]; ok {
		im.Stats.Merged++
		c = MergeClient(old, c)
	} else {
		im.Stats.Imported++
	}
	im.Clients[key] = c
}

// Passed reports whether t completed greylisting under delay.
func Passed(t store.Triplet, delay int64) bool { return t.Last-t.First >= delay }

// MergeTriplet combines two entries of one key, with the rule of
// store.Merge: a passed entry wins (the sender has proved it retries);
// two passed entries, or two pending ones, give the earliest first-seen
// and the latest last-seen time. Two pending entries may thereby pass:
// under the new, wider key they are one triplet seen that far apart,
// which is a retry after the delay.
func MergeTriplet(a, b store.Triplet, delay int64) store.Triplet {
	pa, pb := Passed(a, delay), Passed(b, delay)
	switch {
	case pa && !pb:
		return a
	case pb && !pa:
		return b
	}
	return store.Triplet{First: min(a.First, b.First), Last: max(a.Last, b.Last)}
}

// MergeClient combines two auto-whitelist entries of one address: both
// counted the same client, so the larger count and the latest time.
func MergeClient(a, b store.Client) store.Client {
	return store.Client{Count: max(a.Count, b.Count), Last: max(a.Last, b.Last)}
}

// TripletExpired applies greyd's rules at now: a passed entry lives
// max_age after it was last seen; a pending one its retry window after it
// was first seen (a later retry would start greylisting over).
func TripletExpired(t store.Triplet, now, delay, retry, maxAge int64) bool {
	if now-t.Last > maxAge {
		return true
	}
	return !Passed(t, delay) && now-t.First > retry
}

// ClientExpired reports whether an auto-whitelist entry is past max_age.
func ClientExpired(c store.Client, now, maxAge int64) bool { return now-c.Last > maxAge }

// TripletTTL is how long the store should keep t from now, in seconds, as
// the daemon's own writes would: max_age from last seen, and for a
// pending entry no longer than its retry window from first seen; one
// second of slack so the lookup rules decide the boundaries.
func TripletTTL(t store.Triplet, now, delay, retry, maxAge int64) int64 {
	ttl := t.Last + maxAge - now
	if !Passed(t, delay) {
		ttl = min(ttl, t.First+retry-now)
	}
	return max(ttl, 0) + 1
}

// ClientTTL is TripletTTL for an auto-whitelist entry.
func ClientTTL(c store.Client, now, maxAge int64) int64 { return max(c.Last+maxAge-now, 0) + 1 }

// Keys returns the keys of m, sorted: the order greyd writes them in, so
// that two runs on the same dump produce the same file.
func Keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Reason lists the skip reasons, most frequent first.
func (s *Stats) Reasons() []string {
	rs := Keys(s.SkipReasons)
	sort.SliceStable(rs, func(i, j int) bool { return s.SkipReasons[rs[i]] > s.SkipReasons[rs[j]] })
	return rs
}

func secs(d interface{ Seconds() float64 }) int64 { return int64(d.Seconds()) }
