package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bunt "github.com/tidwall/buntdb"

	"greyd/internal/config"
	"greyd/internal/postgrey"
	"greyd/internal/store"
	"greyd/internal/store/buntdb"
)

// WriteImport stores the entries in greyd's database, merged with what it
// holds, under the lock the daemon takes: store.ErrLocked if a greyd
// runs. It moves the entries greyd held already from im.Stats.Imported
// to Merged.
func WriteImport(cfg *config.Config, im *postgrey.Importer, now int64) error {
	if err := os.MkdirAll(filepath.Dir(cfg.Database.Path), 0o750); err != nil {
		return err
	}
	sync, err := buntdb.ParseSync(cfg.Database.Sync)
	if err != nil {
		return err
	}
	db, err := buntdb.Open(cfg.Database.Path, buntdb.Options{Sync: sync})
	if err != nil {
		return err
	}
	if err := putEntries(db, cfg.Greylist, im, now); err != nil {
		db.Close()
		return err
	}
	return db.Close()
}

func putEntries(db *buntdb.DB, g config.Greylist, im *postgrey.Importer, now int64) error {
	ctx := context.Background()
	delay, retry, maxAge := int64(g.Delay/time.Second), int64(g.RetryWindow/time.Second), int64(g.MaxAge/time.Second)
	for _, k := range postgrey.Keys(im.Triplets) {
		t := im.Triplets[k]
		if old, ok, err := db.Triplet(ctx, k); err != nil {
			return err
		} else if ok {
			t = postgrey.MergeTriplet(old, t, delay)
			im.Stats.Imported--
			im.Stats.Merged++
		}
		ttl := postgrey.TripletTTL(t, now, delay, retry, maxAge)
		if err := db.PutTriplet(ctx, k, t, time.Duration(ttl)*time.Second); err != nil {
			return err
		}
	}
	for _, k := range postgrey.Keys(im.Clients) {
		c := im.Clients[k]
		if old, ok, err := db.Client(ctx, k); err != nil {
			return err
		} else if ok {
			c = postgrey.MergeClient(old, c)
			im.Stats.Imported--
			im.Stats.Merged++
		}
		if err := db.PutClient(ctx, k, c, time.Duration(postgrey.ClientTTL(c, now, maxAge))*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// ReadOptionsFile reads and translates Postgrey's options file
// (/etc/default/postgrey, or its argument list).
func ReadOptionsFile(path string) (*postgrey.Options, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	o, err := postgrey.ParseOptionsFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return o, nil
}

// PostgreyKeys returns how the Postgrey that will read an export keys
// its entries: its options file, or Postgrey's defaults.
func PostgreyKeys(optsFile string) (postgrey.KeyConfig, error) {
	if optsFile == "" {
		return postgrey.KeyConfig{IPv4Prefix: 24, IPv6Prefix: 64}, nil
	}
	o, err := ReadOptionsFile(optsFile)
	if err != nil {
		return postgrey.KeyConfig{}, err
	}
	return postgrey.KeyConfig{LookupByHost: o.LookupByHost, IPv4Prefix: o.IPv4Prefix, IPv6Prefix: o.IPv6Prefix}, nil
}

// NewExporter returns an exporter from greyd's keys under cfg to
// Postgrey's keys to, judging expiry now by greyd's rules.
func NewExporter(cfg *config.Config, to postgrey.KeyConfig) *postgrey.Exporter {
	g := cfg.Greylist
	return &postgrey.Exporter{
		From:  postgrey.KeyConfig{LookupByHost: g.LookupByHost, IPv4Prefix: g.IPv4Prefix, IPv6Prefix: g.IPv6Prefix},
		To:    to,
		Delay: int64(g.Delay / time.Second), RetryWindow: int64(g.RetryWindow / time.Second), MaxAge: int64(g.MaxAge / time.Second),
		Now: time.Now().Unix(),
	}
}

// ReadGreydDB reads every entry of greyd's database into e. It holds the
// daemon's lock while it copies the file (so greyd must be stopped) and
// reads the copy with buntdb itself: greyd's store has no iteration, and
// buntdb's background expiry must not write to the real file.
func ReadGreydDB(path string, e *postgrey.Exporter) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := buntdb.Open(path, buntdb.Options{})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("greyd is running (%v): stop greyd first, or export through it: greyd export -format postgrey-dump", err)
	}
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "greyd-export-")
	if err != nil {
		db.Close()
		return err
	}
	defer os.RemoveAll(tmp)
	cp := filepath.Join(tmp, "greyd.db")
	err = copyFile(path, cp)
	db.Close()
	if err != nil {
		return err
	}
	return readBuntFile(cp, e)
}

// readBuntFile adds the entries of the buntdb file at path to e.
func readBuntFile(path string, e *postgrey.Exporter) error {
	b, err := bunt.Open(path)
	if err != nil {
		return err
	}
	defer b.Close()
	var addErr error
	err = b.View(func(tx *bunt.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			if len(k) < 2 || k[1] != ':' {
				return true
			}
			a, c, err := postgrey.ParseValue(v)
			if err != nil {
				return true
			}
			switch k[0] {
			case 't':
				addErr = e.AddTriplet(k[2:], store.Triplet{First: a, Last: c})
			case 'c':
				addErr = e.AddClient(k[2:], store.Client{Count: a, Last: c})
			}
			return !errors.Is(addErr, postgrey.ErrHashedKeys)
		})
	})
	if errors.Is(addErr, postgrey.ErrHashedKeys) {
		return addErr
	}
	return err
}

// WriteDumps writes the postgrey.db dump to triplets ('-' = stdout) and,
// if clients is set, the postgrey_clients.db dump to clients.
func WriteDumps(e *postgrey.Exporter, triplets, clients string, stdout io.Writer) error {
	if err := writeDumpFile(triplets, e.Triplets(), stdout); err != nil {
		return err
	}
	if clients != "" {
		return writeDumpFile(clients, e.Clients(), stdout)
	}
	return nil
}

// writeDumpFile writes entries to name ('-' = stdout) through a temporary
// file and a rename, so an interrupted export leaves no half file.
func writeDumpFile(name string, es []postgrey.Entry, stdout io.Writer) error {
	if name == "-" {
		return postgrey.WriteDump(stdout, es)
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := postgrey.WriteDump(f, es); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
