package buntdb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
	"unsafe"

	"greyd/internal/store"
)

// readFile fills the index straight from a buntdb file, without buntdb:
// buntdb's own load replays every record into two B-trees (its key tree
// and its expiry tree), about 3 s of one CPU at a million triplets, and
// greyd's reads need neither. Open therefore answers from what readFile
// built while buntdb loads the same file on another core (load.go).
//
// It keeps buntdb's replay semantics record by record, so that the index
// agrees with what buntdb will hold (FuzzReadFileAgrees checks it against
// buntdb on the same bytes): "set" replaces, except that a set whose
// deadline has passed is ignored (buntdb skips it and keeps the key's
// earlier value); "del" removes; "flushdb" empties. A deadline is "ae"
// (Unix seconds) or "ex" (seconds after the file's modification time).
//
// The file has passed checkAOF, so a grammar error here is unexpected; it
// is reported as errCorrupt all the same, never a panic.
type fileReader struct {
	idx *index
	wl  map[string]string // runtime whitelist records ("w:…"), raw values
	now int64             // unix nanoseconds: what has expired is skipped
	mod int64             // the file's modification time, for "ex"

	bad     int    // malformed values, left out
	example string // one of their keys
	live    int64  // the size of the file buntdb would write for the entries read
	boot    bool   // a boot file was read too (load.go)
}

// readFile reads the buntdb file at path into r.idx and r.wl.
func (r *fileReader) readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r.mod = fi.ModTime().UnixNano()
	return r.read(bufio.NewReaderSize(f, 1<<20), fi.Size())
}

// read parses records from br until EOF.
func (r *fileReader) read(br *bufio.Reader, size int64) error {
	maxLen := max(size, 1<<20)
	var (
		off   int64
		parts [5][]byte
		bufs  [5][]byte
	)
	bad := func(why string) error { return fmt.Errorf("%w: %s at byte %d", errCorrupt, why, off) }
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if c == 0 {
			off++
			continue // buntdb skips NUL bytes; checkAOF allows them only at the end
		}
		_ = br.UnreadByte()
		count, n, err := readAOFHeader(br, '*', maxLen)
		if err != nil {
			return bad(fmt.Sprint(err))
		}
		off += n
		if count == 0 || count > int64(len(parts)) {
			return bad("unexpected number of command parts")
		}
		for i := int64(0); i < count; i++ {
			l, n, err := readAOFHeader(br, '$', maxLen)
			if err != nil {
				return bad(fmt.Sprint(err))
			}
			off += n
			// Each part into its own reused buffer: a record's parts are
			// a few dozen bytes, so the copy costs less than a string each.
			if cap(bufs[i]) < int(l)+2 {
				bufs[i] = make([]byte, max(l+2, 64))
			}
			p := bufs[i][:l+2]
			if _, err := io.ReadFull(br, p); err != nil {
				return bad("short record")
			}
			if p[l] != '\r' || p[l+1] != '\n' {
				return bad("bulk string not ended by CRLF")
			}
			parts[i] = p[:l]
			off += l + 2
		}
		if err := r.apply(parts[:count]); err != nil {
			return bad(err.Error())
		}
	}
}

var errCommand = errors.New("unknown or malformed command")

// maxNanos stands for a deadline past 2262, which UnixNano cannot hold.
const maxNanos = 1<<63 - 1

// apply replays one command.
func (r *fileReader) apply(parts [][]byte) error {
	name := parts[0]
	if len(name) < 3 {
		return errCommand
	}
	switch {
	case equalFoldASCII(name[:3], "set"):
		if len(parts) != 3 && len(parts) != 5 {
			return errCommand
		}
		var exp int64
		if len(parts) == 5 {
			// strconv, as buntdb and checkAOF: it takes a leading '+'.
			// The error, which would hold the bytes, is dropped.
			v, err := strconv.ParseInt(unsafe.String(unsafe.SliceData(parts[4]), len(parts[4])), 10, 64)
			if err != nil {
				return errCommand
			}
			// Computed as buntdb does, overflow included, so that both
			// skip the same records.
			var at time.Time
			switch {
			case equalFoldASCII(parts[3], "ae"):
				at = time.Unix(v, 0)
			case equalFoldASCII(parts[3], "ex"):
				at = time.Unix(0, r.mod).Add(time.Duration(v) * time.Second)
			default:
				return errCommand
			}
			if !at.After(time.Unix(0, r.now)) {
				return nil // buntdb skips it too, keeping any earlier value
			}
			exp = maxNanos
			if at.Before(time.Unix(0, maxNanos)) {
				exp = at.UnixNano()
			}
		}
		r.set(parts[1], parts[2], exp)
	case equalFoldASCII(name[:3], "del"):
		if len(parts) != 2 {
			return errCommand
		}
		k := parts[1]
		if isWhitelistKey(k) {
			delete(r.wl, string(k))
			return nil
		}
		if len(k) == 0 {
			return nil
		}
		r.forget(k, true)
	case len(name) == 7 && equalFoldASCII(name, "flushdb"):
		r.idx.reset(0)
		r.live = 0
		clear(r.wl)
	default:
		return errCommand
	}
	return nil
}

// set stores one record's key and value.
func (r *fileReader) set(k, v []byte, exp int64) {
	if isWhitelistKey(k) {
		r.wl[string(k)] = string(v)
		return
	}
	if len(k) == 0 {
		return // not a key greyd writes; buntdb keeps it, reads never ask
	}
	a, b, ok := store.ParseValue(unsafe.String(unsafe.SliceData(v), len(v)))
	hk, sh := r.forget(k, !ok)
	if !ok {
		// Read as missing; the next put overwrites it.
		if r.bad++; r.bad == 1 {
			r.example = string(k)
		}
		return
	}
	e := entry{a: a, b: b}
	if exp != 0 {
		e.exp = exp / 1e9 // rounded up, as everywhere
		if exp%1e9 != 0 {
			e.exp++
		}
	}
	sh.set(hk, e)
	r.live += recordLen(len(k), len(v), exp != 0)
}

// forget takes k's record out of r.live and, with del, k out of the index.
func (r *fileReader) forget(k []byte, del bool) (hkey, *shard) {
	hk := r.idx.key(k)
	sh := r.idx.shard(hk)
	if old, mine := sh.get(hk); mine {
		var num [41]byte
		r.live -= recordLen(len(k), len(store.AppendValue(num[:0], old.a, old.b)), old.exp != 0)
		if del {
			sh.drop(hk.h)
		}
	}
	return hk, sh
}

func isWhitelistKey(k []byte) bool {
	return len(k) > 1 && k[0] == nsWhitelist && k[1] == ':'
}

// liveSize is r.live with the runtime whitelist's records.
func (r *fileReader) liveSize() int64 {
	live := r.live
	for k, v := range r.wl {
		live += recordLen(len(k), len(v), false)
	}
	return live
}

// recordLen is the size of the record buntdb writes for an entry when it
// rewrites the file: a RESP array of "set", the key, the value and, with
// a deadline, "ae" and ten digits of Unix seconds.
func recordLen(k, v int, expires bool) int64 {
	bulk := func(n int) int64 {
		d := 1
		for m := n; m >= 10; m /= 10 {
			d++
		}
		return int64(1 + d + 2 + n + 2)
	}
	if expires {
		return 4 + bulk(3) + bulk(k) + bulk(v) + bulk(2) + bulk(10)
	}
	return 4 + bulk(3) + bulk(k) + bulk(v)
}
