package postgrey

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"greyd/internal/normalize"
	"greyd/internal/store"
)

// KeyConfig is how a program builds triplet keys: Postgrey's options, or
// greyd's lookup_by/ipv4_prefix/ipv6_prefix.
type KeyConfig struct {
	LookupByHost           bool
	IPv4Prefix, IPv6Prefix int
}

// Exporter turns greyd's entries back into Postgrey 1.37 keys and values,
// for `db_load` (the way back from greyd to Postgrey).
type Exporter struct {
	From, To KeyConfig // greyd's keys, Postgrey's options
	// Delay, RetryWindow and MaxAge are greyd's, in seconds: entries that
	// greyd would no longer use are not exported.
	Delay, RetryWindow, MaxAge int64
	Now                        int64

	triplets, clients map[string]string
	Stats             Stats
}

// ErrHashedKeys is returned for a greyd database under privacy: its keys
// are keyed hashes that Postgrey cannot use.
var ErrHashedKeys = errors.New("greyd's database holds hashed keys (greylist { privacy = true }): they cannot be turned back into Postgrey keys")

// AddTriplet adds one greyd triplet entry.
func (e *Exporter) AddTriplet(key string, t store.Triplet) error {
	e.init()
	e.Stats.Read++
	e.Stats.ReadTriplets++
	if TripletExpired(t, e.Now, e.Delay, e.RetryWindow, e.MaxAge) {
		e.Stats.Expired++
		return nil
	}
	k, err := ParseTripletKey(key, Source{IPv4Prefix: e.From.IPv4Prefix, IPv6Prefix: e.From.IPv6Prefix})
	if err != nil {
		if errors.Is(err, ErrPrivacy) || len(key) == 32*3+2 {
			return ErrHashedKeys
		}
		// lookup_by "auto" keys by organisation: Postgrey has no such key.
		e.Stats.Skipped++
		e.Stats.SkipReasons["keys that are not a client address (lookup_by \"auto\" organisation keys)"]++
		return nil
	}
	addr := k.Client.Addr()
	want := addr.BitLen()
	if !e.To.LookupByHost {
		want = e.To.IPv6Prefix
		if addr.Is4() {
			want = e.To.IPv4Prefix
		}
	}
	if k.Client.Bits() < want {
		e.Stats.Skipped++
		e.Stats.SkipReasons[SkipNarrow]++
		return nil
	}
	b := normalize.AppendClientNet(nil, addr, e.To.LookupByHost, e.To.IPv4Prefix, e.To.IPv6Prefix)
	b = append(b, '/')
	b = append(b, k.Sender...)
	b = append(b, '/')
	b = append(b, k.Recipient...)
	pk := string(b)
	if old, ok := e.triplets[pk]; ok {
		f, l, _ := ParseValue(old)
		t = MergeTriplet(store.Triplet{First: f, Last: l}, t, e.Delay)
		e.Stats.Merged++
	} else {
		e.Stats.Imported++
	}
	e.triplets[pk] = pair(t.First, t.Last)
	return nil
}

// AddClient adds one greyd auto-whitelist entry.
func (e *Exporter) AddClient(key string, c store.Client) error {
	e.init()
	e.Stats.Read++
	e.Stats.ReadClients++
	if ClientExpired(c, e.Now, e.MaxAge) {
		e.Stats.Expired++
		return nil
	}
	addr, err := ParseClientKey(key)
	if err != nil {
		if len(key) == 32 {
			return ErrHashedKeys
		}
		e.Stats.Unparseable++
		return fmt.Errorf("auto-whitelist key %q: %w", key, err)
	}
	// Postgrey's own spelling: IPv6 upper case, uncompressed.
	pk := string(normalize.AppendClientAddr(nil, addr))
	if old, ok := e.clients[pk]; ok {
		n, l, _ := ParseValue(old)
		c = MergeClient(store.Client{Count: n, Last: l}, c)
		e.Stats.Merged++
	} else {
		e.Stats.Imported++
	}
	e.clients[pk] = pair(c.Count, c.Last)
	return nil
}

func (e *Exporter) init() {
	if e.triplets == nil {
		e.triplets, e.clients = map[string]string{}, map[string]string{}
		e.Stats.SkipReasons = map[string]int{}
	}
}

// Triplets returns the postgrey.db entries, sorted by key.
func (e *Exporter) Triplets() []Entry { return sortedEntries(e.triplets) }

// Clients returns the postgrey_clients.db entries, sorted by key.
func (e *Exporter) Clients() []Entry { return sortedEntries(e.clients) }

func sortedEntries(m map[string]string) []Entry {
	out := make([]Entry, 0, len(m))
	for k, v := range m {
		out = append(out, Entry{Key: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func pair(a, b int64) string {
	return strconv.FormatInt(a, 10) + "," + strconv.FormatInt(b, 10)
}
