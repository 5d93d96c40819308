package migrate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unicode/utf8"

	"greyd/internal/config"
	"greyd/internal/control"
	"greyd/internal/greylist"
	"greyd/internal/normalize"
	"greyd/internal/postgrey"
	"greyd/internal/store"
)

// Target is where an import goes: the running greyd, through its control
// socket, or greyd's database file.
type Target struct {
	// Client is the configuration's control socket; nil when it is off.
	Client *control.Client
	// Live: a greyd answers on the socket, and uses this database.
	Live bool
	// ProbeErr is why the import cannot go to the live greyd (it keys
	// otherwise than the configuration), or, when not Live, why the
	// socket did not answer.
	ProbeErr error
	// Elsewhere: a greyd answers on the socket, but nothing holds this
	// buntdb database: that greyd uses another one (two configurations
	// naming one socket), and this one is written directly.
	Elsewhere bool
}

// FindTarget asks whether greyd runs, through the control socket: with
// buntdb only one process may open the file, and on Redis only the
// daemon holds the connection, so a running greyd takes the entries
// itself. The same question checks that it keys them as snap does.
func FindTarget(ctx context.Context, cfg *config.Config, snap *greylist.Snapshot) Target {
	var t Target
	if cfg.Control.Socket == "" {
		return t
	}
	t.Client = control.NewClient(cfg.Control.Socket)
	t.ProbeErr = CheckDaemonKeys(ctx, t.Client, snap)
	t.Live = !control.IsUnreachable(t.ProbeErr)
	if t.Live && cfg.Database.Redis == nil && !DBLocked(cfg.Database.Path) {
		t.Live, t.ProbeErr, t.Elsewhere = false, nil, true
	}
	return t
}

// DBLocked reports whether a process holds greyd's database lock (the
// daemon's flock on PATH.lock), that is whether a greyd uses the database
// at path. When it cannot tell (the lock file is not readable for this
// user) it says yes: the control socket is then the only way anyway.
func DBLocked(path string) bool {
	f, err := os.Open(path + ".lock")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// probeAddrs are the clients of the requests probeKeys asks the daemon to
// explain, one per address family: documentation addresses, which no
// whitelist should hold.
var probeAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}

const probeSender, probeRecipient = "greyd-import-probe@example.invalid", "probe@example.invalid"

// probeKeys asks the running greyd, through explain (which writes
// nothing), for the triplet and auto-whitelist keys of the probe
// requests. A family whose probe a whitelist decides has no keys: it is
// left out.
func probeKeys(ctx context.Context, c *control.Client, fn func(ip netip.Addr, x *control.Explanation) error) error {
	for _, ip := range probeAddrs {
		x, err := c.Explain(ctx, ip.String(), "unknown", probeSender, probeRecipient)
		if err != nil {
			return err
		}
		if x.Triplet == nil {
			continue
		}
		if err := fn(ip, x); err != nil {
			return err
		}
	}
	return nil
}

// CheckDaemonKeys returns nil if the daemon behind c keys triplets and
// clients exactly as snap does (prefixes, lookup_by, privacy and its
// key), an error for which control.IsUnreachable is true if it does not
// run, and another error if it keys otherwise: entries keyed by another
// configuration would be stored under keys no request ever looks up.
func CheckDaemonKeys(ctx context.Context, c *control.Client, snap *greylist.Snapshot) error {
	return probeKeys(ctx, c, func(ip netip.Addr, x *control.Explanation) error {
		want := snap.TripletKey(ip, probeSender, probeRecipient)
		got := x.Triplet.Key
		if got != want && x.Triplet.Subnet != nil && x.Triplet.Subnet.Key == want {
			got = want // lookup_by "auto": the subnet key is read alongside
		}
		if got != want {
			return fmt.Errorf("the greyd behind %s keys triplets otherwise than this configuration (%s key %q, here %q): "+
				"lookup_by, ipv4_prefix, ipv6_prefix, privacy or the privacy key differ. Run the import with the daemon's configuration (-config), "+
				"or reload greyd (systemctl reload greyd) if its configuration changed; nothing was written", c.Socket, ip, got, want)
		}
		if a := x.AutoWhitelist; a != nil && a.Enabled && a.Key != "" && snap.AutoWhitelistClients > 0 {
			if want := snap.ClientKey(ip); a.Key != want {
				return fmt.Errorf("the greyd behind %s keys auto-whitelist clients otherwise than this configuration (%s key %q, here %q): privacy or the privacy key differ; nothing was written", c.Socket, ip, a.Key, want)
			}
		}
		return nil
	})
}

// CheckDaemonNetworks returns nil if the daemon behind c keys client
// networks as cfg says and stores addresses, not hashes: an export is
// parsed with cfg's prefixes, and a subnet key read as a host's (or the
// other way round) would be exported wrong. Explain writes nothing.
func CheckDaemonNetworks(ctx context.Context, c *control.Client, cfg *config.Config) error {
	g := cfg.Greylist
	return probeKeys(ctx, c, func(ip netip.Addr, x *control.Explanation) error {
		if x.Privacy {
			return postgrey.ErrHashedKeys
		}
		want := string(normalize.AppendClientNet(nil, ip, g.LookupByHost, g.IPv4Prefix, g.IPv6Prefix))
		got := x.Triplet.Network
		if got != want && x.Triplet.Subnet != nil && x.Triplet.Subnet.Network == want {
			got = want
		}
		if got != want {
			return fmt.Errorf("the greyd behind %s keys %s by %q, this configuration by %q: lookup_by, ipv4_prefix or ipv6_prefix differ. Export with the daemon's configuration (-config), or reload greyd (systemctl reload greyd) if its configuration changed", c.Socket, ip, got, want)
		}
		return nil
	})
}

// SendImport sends the converted entries to the running greyd as the
// NDJSON records of its import endpoint, after its header, streamed: greyd's own keys,
// absolute times, and the deadline greyd's own write would give them.
// The daemon merges each with what it holds (store.Merge), on any
// backend.
func SendImport(ctx context.Context, c *control.Client, im *postgrey.Importer, snap *greylist.Snapshot, version string, now int64) (*control.ImportResult, error) {
	delay, retry, maxAge := int64(snap.Delay/time.Second), int64(snap.RetryWindow/time.Second), int64(snap.MaxAge/time.Second)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		bw := bufio.NewWriterSize(pw, 64<<10)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		err := func() error {
			// First: the daemon refuses entries whose hashing it cannot check.
			hdr := control.Header(snap, version, time.Unix(now, 0))
			if err := enc.Encode(&hdr); err != nil {
				return err
			}
			for _, k := range postgrey.Keys(im.Triplets) {
				t := im.Triplets[k]
				r := control.Record{Kind: "triplet", First: t.First, Last: t.Last, Expires: now + postgrey.TripletTTL(t, now, delay, retry, maxAge)}
				setKey(&r, k)
				if err := enc.Encode(&r); err != nil {
					return err
				}
			}
			for _, k := range postgrey.Keys(im.Clients) {
				cl := im.Clients[k]
				r := control.Record{Kind: "client", Count: cl.Count, Last: cl.Last, Expires: now + postgrey.ClientTTL(cl, now, maxAge)}
				setKey(&r, k)
				if err := enc.Encode(&r); err != nil {
					return err
				}
			}
			return bw.Flush()
		}()
		pw.CloseWithError(err)
	}()
	res, err := c.Import(ctx, pr)
	// The daemon may answer before it read everything (an error): the
	// writer must not stay blocked on the pipe.
	pr.Close()
	<-done
	return res, err
}

// setKey puts k into r: as it is, or in base64 when it is not valid
// UTF-8 (a sender is whatever bytes the client sent; JSON strings
// would replace them).
func setKey(r *control.Record, k string) {
	if utf8.ValidString(k) {
		r.Key = k
	} else {
		r.KeyBase64 = base64.StdEncoding.EncodeToString([]byte(k))
	}
}

// CombineStats adds the daemon's answer to the converter's counts: what
// the converter imported is what it sent; of that the daemon stored some
// under free keys, merged some with what it held, and found some
// expired by the time they arrived.
func CombineStats(s postgrey.Stats, res *control.ImportResult) postgrey.Stats {
	reasons := make(map[string]int, len(s.SkipReasons)+1)
	for r, n := range s.SkipReasons {
		reasons[r] = n
	}
	s.SkipReasons = reasons
	s.Imported = res.Imported
	s.Merged += res.Merged
	s.Expired += res.Expired
	if res.Skipped > 0 {
		s.Skipped += res.Skipped
		s.SkipReasons["refused by greyd (reasons above)"] += res.Skipped
	}
	return s
}

// ReadExport reads the running greyd's export stream into e and returns
// how many runtime whitelist entries it had, which Postgrey has no place
// for.
func ReadExport(ctx context.Context, c *control.Client, e *postgrey.Exporter) (whitelist int, err error) {
	lines := &lineWriter{fn: func(line []byte) error {
		var r control.Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("reading the export: %w", err)
		}
		if r.KeyBase64 != "" {
			k, err := base64.StdEncoding.DecodeString(r.KeyBase64)
			if err != nil {
				return fmt.Errorf("reading the export: key_base64: %w", err)
			}
			r.Key = string(k)
		}
		switch r.Kind {
		case "header":
			if r.Privacy {
				return postgrey.ErrHashedKeys
			}
		case "triplet":
			return e.AddTriplet(r.Key, store.Triplet{First: r.First, Last: r.Last})
		case "client":
			// An unparseable client key is counted and left out, as
			// export-postgrey does.
			if err := e.AddClient(r.Key, store.Client{Count: r.Count, Last: r.Last}); errors.Is(err, postgrey.ErrHashedKeys) {
				return err
			}
		case "whitelist":
			whitelist++
		}
		return nil
	}}
	err = c.Export(ctx, lines)
	if err == nil {
		err = lines.close()
	}
	return whitelist, err
}

// lineWriter calls fn with each complete line written to it, without the
// newline: control.Client.Export writes its stream line by line (a line
// longer than its buffer in pieces).
type lineWriter struct {
	buf []byte
	fn  func([]byte) error
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	start := 0
	for {
		i := bytes.IndexByte(l.buf[start:], '\n')
		if i < 0 {
			break
		}
		if line := bytes.TrimSpace(l.buf[start : start+i]); len(line) > 0 {
			if err := l.fn(line); err != nil {
				return 0, err
			}
		}
		start += i + 1
	}
	l.buf = l.buf[:copy(l.buf, l.buf[start:])]
	return len(p), nil
}

// close hands fn a last line that had no newline.
func (l *lineWriter) close() error {
	if line := bytes.TrimSpace(l.buf); len(line) > 0 {
		l.buf = l.buf[:0]
		return l.fn(line)
	}
	return nil
}
